"""/console: a one-time sign-in link to the web command centre (bot/web), for staff only.

Over https the bot also puts a menu button on the chat that opens the console as a Telegram Mini
App (signed in by its initData, no link needed)."""

from __future__ import annotations

import asyncio
import logging

from bot.transport.base import Button
from handlers.registry import command

log = logging.getLogger("gridbot")


@command("console", private_only=True, menu="menu.console", roles=("captain", "supervisor", "admin"))
async def console(ctx) -> None:
    from bot.web import PREFIX, base_url, login_link
    from bot.web.views import LINK_MINUTES

    roles = await ctx.roles()
    if not (roles.admin or roles.worker):
        await ctx.say("web.console_not_staff")
        return
    base = base_url(ctx.settings)
    if not base:
        await ctx.say("web.console_not_configured")
        return
    link = login_link(ctx.settings, ctx.person.id)
    text = ctx.t("web.console_link", minutes=LINK_MINUTES) + "\n" + link
    # Telegram accepts only public https addresses in buttons and Mini Apps
    if base.startswith("https://"):
        await ctx.reply(text, [[Button(ctx.t("web.menu_button"), url=link)]])
        asyncio.get_running_loop().create_task(
            set_menu_button(ctx.settings, ctx.ev.chat.id, ctx.t("web.menu_button"), f"{base}{PREFIX}/app"))
    else:
        await ctx.reply(text)


async def set_menu_button(settings, chat_id: int, text: str, url: str) -> None:
    """The chat's menu button opens the console as a Mini App (a convenience: failures are logged)."""
    import json

    from aiohttp import ClientSession, ClientTimeout

    body = {"chat_id": chat_id, "menu_button": json.dumps({"type": "web_app", "text": text, "web_app": {"url": url}})}
    try:
        async with ClientSession(timeout=ClientTimeout(total=10)) as http:
            async with http.post(f"{settings.telegram_api_base}/bot{settings.bot_token}/setChatMenuButton",
                                 data=body) as r:
                if r.status != 200:
                    log.info("setChatMenuButton: %s %s", r.status, await r.text())
    except Exception as e:
        log.info("setChatMenuButton failed: %s", e)
