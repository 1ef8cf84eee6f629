"""Group chats: the bot speaks only when addressed, and keeps personal data out."""

from __future__ import annotations

from sqlalchemy import update

from bot.people.models import GroupChat
from bot.transport.base import Button


def deep_link(ctx, payload: str) -> str:
    return f"https://t.me/{ctx.core.bot_username or 'gridbot'}?start={payload}"


async def private_only(ctx, command: str) -> None:
    payload = "report" if command == "report" else "help"
    await ctx.say("group.go_private", [[Button(ctx.t("group.open_private"), url=deep_link(ctx, payload))]])


async def on_message(ctx) -> None:
    ev = ctx.ev
    if not (ev.mentions_bot or ev.reply_to_bot):
        return  # never chat back to every message in a group
    text = ev.text
    if ctx.core.bot_username:
        text = text.replace(f"@{ctx.core.bot_username}", "").strip()
    from handlers.faq import answer_question  # here: handlers/__init__.py sets the command order

    await answer_question(ctx, text)


async def on_membership(ctx) -> None:
    if ctx.ev.bot_added and not ctx.ev.is_private:
        await ctx.say("core.welcome_group", bot=ctx.core.bot_username or "gridbot")


async def on_migrated(ctx) -> None:
    """A group became a supergroup: keep its settings under the new id."""
    await ctx.session.execute(update(GroupChat).where(GroupChat.id == ctx.ev.chat.id)
                              .values(is_active=False))
