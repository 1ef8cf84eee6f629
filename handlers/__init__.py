"""Conversation handlers. They see neutral events (bot.transport.base.Incoming) only."""

from __future__ import annotations

from handlers.registry import CALLBACKS, COMMANDS, FLOWS

# importing the modules registers their handlers
from handlers import common, resident, worker, admin, group, faq, broadcast, reports, console  # noqa: E402,F401


async def dispatch(ctx) -> None:
    ev = ctx.ev
    if ev.kind == "member":
        await group.on_membership(ctx)
        return
    if ev.migrate_to_chat_id:
        await group.on_migrated(ctx)
        return
    if ev.kind == "edited":
        # an edit of an old message does not re-run it; say so only in private chats
        if ev.is_private:
            await ctx.say("core.edited_ignored")
        return
    if ev.kind == "callback":
        prefix, _, rest = (ev.callback_data or "").partition(":")
        fn = CALLBACKS.get(prefix)
        if fn is None:
            ctx.answer(ctx.t("core.stale_button"), alert=True)
            return
        await fn(ctx, rest)
        return
    if ev.command:
        spec = COMMANDS.get(ev.command)
        if spec is None:
            if ev.is_private:
                await ctx.say("core.unknown_command", command=ev.command)
            return
        if spec.private_only and not ev.is_private:
            await group.private_only(ctx, ev.command)
            return
        if ev.is_private and ev.command not in ("cancel", "lang", "help", "start"):
            await ctx.load_state()
            if ctx.state is not None:
                await ctx.clear_state()  # a new command leaves the old flow
        await spec.handler(ctx)
        return
    if not ev.is_private:
        await group.on_message(ctx)
        return
    await ctx.load_state()
    if ctx.state is not None and ctx.state.flow in FLOWS:
        await FLOWS[ctx.state.flow](ctx)
        return
    if ev.unsupported:
        await ctx.say("core.unsupported", kind=ev.unsupported)
        return
    if ev.photos or ev.location:
        await ctx.say("core.photo_outside_flow")
        return
    await faq.on_text(ctx)
