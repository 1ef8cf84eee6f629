"""/start, /help, /lang, /cancel: what every user has."""

from __future__ import annotations

from bot.i18n import Texts
from bot.transport.base import Button
from handlers.registry import COMMANDS, callback, command

LANG_CHOICES = (("zh", "简体中文"), ("en", "English"), ("zh-hant", "繁體中文"))
LANG_NAME_KEYS = {"zh": "core.lang_name_zh", "en": "core.lang_name_en", "zh-hant": "core.lang_name_zh_hant"}


def menu_for(role: str) -> list[str]:
    """The commands a role sees, in menu order."""
    return [c.name for c in COMMANDS.values() if c.menu and ("" in c.roles or role in c.roles or role == "admin")]


def bot_commands(t: Texts, role: str = "resident") -> list[tuple[str, str]]:
    return [(name, t(COMMANDS[name].menu)) for name in menu_for(role)]


async def _help_text(ctx) -> str:
    roles = await ctx.roles()
    t = ctx.t
    lines = [t("core.help_title")]
    for name, desc in bot_commands(t, roles.name):
        lines.append(f"/{name} — {desc}")
    return "\n".join(lines)


@command("start", menu="menu.start")
async def start(ctx) -> None:
    args = ctx.ev.args.strip()
    if ctx.ev.is_private and args:
        if args == "report":
            # imported here, not at the top: handlers/__init__.py imports the modules in the order
            # the menu lists their commands
            from handlers.resident import begin_report

            await begin_report(ctx, "")
            return
        if args.startswith("inv_"):
            from handlers.admin import redeem_invite

            await redeem_invite(ctx, args[4:])
            return
    roles = await ctx.roles()
    key = {"admin": "core.welcome_admin", "supervisor": "core.welcome_supervisor",
           "captain": "core.welcome_captain"}.get(roles.name, "core.welcome_resident")
    if not ctx.ev.is_private:
        await ctx.say("core.welcome_group", bot=ctx.core.bot_username or "gridbot")
        return
    await ctx.say(key, name=ctx.person.name or ctx.ev.user.full_name)


@command("help", menu="menu.help")
async def help_(ctx) -> None:
    await ctx.reply(await _help_text(ctx) if ctx.ev.is_private else ctx.t("core.help_group"))


@command("lang", private_only=True, menu="menu.lang")
async def lang(ctx) -> None:
    arg = ctx.ev.args.strip().lower()
    aliases = {"zh": "zh", "cn": "zh", "中文": "zh", "简体": "zh", "en": "en", "english": "en", "英文": "en",
               "zh-hant": "zh-hant", "繁體": "zh-hant", "繁体": "zh-hant", "tw": "zh-hant", "hk": "zh-hant"}
    if arg in aliases:
        await _set_lang(ctx, aliases[arg])
        return
    await ctx.say("core.lang_choose", [[Button(label, f"lang:{code}") for code, label in LANG_CHOICES]])


@callback("lang")
async def lang_button(ctx, code: str) -> None:
    if code not in dict(LANG_CHOICES):
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    await _set_lang(ctx, code, edit=True)


async def _set_lang(ctx, code: str, edit: bool = False) -> None:
    ctx.person.language = code
    ctx.t = Texts(code)
    # named in the language now chosen (繁體中文 is said in Traditional, not as 简体中文)
    language = ctx.t(LANG_NAME_KEYS[code])
    if edit:
        await ctx.edit(ctx.t("core.lang_set", language=language))
        ctx.answer()
    else:
        await ctx.say("core.lang_set", language=language)


@command("id", menu="menu.id")
async def my_id(ctx) -> None:
    """Anyone learns their Telegram id (for GRIDBOT_ADMIN_IDS or the grid file); in a group, its id too."""
    text = ctx.t("core.your_id", id=ctx.ev.user.id)
    if not ctx.ev.is_private:
        text += "\n" + ctx.t("core.group_id", chat=ctx.ev.chat.id)
    await ctx.reply(text)


@command("cancel", private_only=True, menu="menu.cancel")
async def cancel(ctx) -> None:
    await ctx.load_state()
    if ctx.state is None:
        await ctx.say("core.nothing_to_cancel")
        return
    await ctx.clear_state()
    await ctx.say("core.cancelled")
