"""/broadcast: an admin writes a notice, picks an audience, sees a preview, confirms.

Every step and every button checks on the server that the user is an admin: a forged `bc:`
button from a resident gets a polite refusal and changes nothing.

Buttons (all under the prefix `bc`): a:<audience> · t:<area> (open an area's children) ·
p:<area> (pick that subtree) · go:<broadcast> · x[:<broadcast>] (cancel).
"""

from __future__ import annotations

from bot.areas.models import Area
from bot.areas.service import load_tree
from bot.broadcasts import flows, service
from bot.i18n import Safe
from bot.transport.base import Button
from handlers.admin import audit
from handlers.registry import callback, command, flow

FLOW = "bc"
AUD_KEYS = {"all": "all", "res": "residents", "wrk": "workers", "grp": "groups"}


async def _is_admin(ctx) -> bool:
    return (await ctx.roles()).admin


async def _refuse(ctx) -> None:
    if ctx.ev.kind == "callback":
        ctx.answer(ctx.t("core.not_allowed"), alert=True)
    else:
        await ctx.say("core.not_allowed")


@command("broadcast", private_only=True, menu="bc.menu", roles=("admin",))
async def broadcast(ctx) -> None:
    if not await _is_admin(ctx):
        await _refuse(ctx)
        return
    await ctx.set_state(FLOW, "text", {})
    await ctx.say("bc.ask_text")


@flow(FLOW)
async def on_message(ctx) -> None:
    """The notice itself: text, or one photo with a caption."""
    if not await _is_admin(ctx):
        await ctx.clear_state()
        await _refuse(ctx)
        return
    ev = ctx.ev
    text = (ev.text or "").strip()
    if ctx.state.step != "text" or ev.unsupported or ev.location or not (text or ev.photos):
        await ctx.say("bc.need_text")
        return
    if len(text) > service.MAX_TEXT:
        await ctx.say("bc.too_long", n=len(text), max=service.MAX_TEXT)
        return
    await ctx.set_state(FLOW, "audience", {"text": text, "photo": ev.photos[0] if ev.photos else None})
    await ctx.say("bc.choose_audience", _audience_buttons(ctx.t))


def _audience_buttons(t) -> list[list[Button]]:
    return [[Button(t("bc.aud_all"), "bc:a:all"), Button(t("bc.aud_residents"), "bc:a:res")],
            [Button(t("bc.aud_workers"), "bc:a:wrk"), Button(t("bc.aud_groups"), "bc:a:grp")],
            [Button(t("bc.aud_area"), "bc:a:area")],
            [Button(t("bc.cancel"), "bc:x")]]


@callback("bc")
async def on_button(ctx, rest: str) -> None:
    if not await _is_admin(ctx):
        await _refuse(ctx)
        return
    op, _, arg = rest.partition(":")
    if op == "go":
        await _confirm(ctx, arg)
        return
    if op == "x":
        await _cancel(ctx, arg)
        return
    st = await ctx.load_state()
    if st is None or st.flow != FLOW or not (st.data or {}).get("text"):
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    if op == "a" and arg in AUD_KEYS:
        await _preview(ctx, AUD_KEYS[arg])
    elif op == "a" and arg == "area":
        await _tree(ctx, None)
    elif op == "t":
        await _tree(ctx, arg)
    elif op == "p":
        area = await ctx.session.get(Area, arg)
        if area is None or area.retired:
            ctx.answer(ctx.t("core.stale_button"), alert=True)
            return
        await _preview(ctx, f"area:{area.id}", area.name)
    else:
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    ctx.answer()


async def _tree(ctx, parent_id: str | None) -> None:
    """One level of the area tree: ▸ opens an area, its name picks its whole subtree."""
    t = ctx.t
    tree = await load_tree(session=ctx.session, include_retired=False)
    parent = tree.get(parent_id)
    rows: list[list[Button]] = []
    if parent is not None:
        rows.append([Button(t("bc.pick_this", area=parent.name), f"bc:p:{parent.id}")])
    for a in tree.children(parent_id)[:40]:
        if len(f"bc:p:{a}".encode()) > 64:
            continue  # an id too long for a button (ids come from the grid file)
        row = [Button(tree.name(a), f"bc:p:{a}")]
        if tree.children(a):
            row.append(Button("▸", f"bc:t:{a}"))
        rows.append(row)
    rows.append(([Button(t("bc.up"), f"bc:t:{parent.parent_id}" if parent.parent_id else "bc:a:area")]
                 if parent is not None else []) + [Button(t("bc.cancel"), "bc:x")])
    await ctx.edit(t("bc.pick_area"), rows)


async def _preview(ctx, audience: str, area_name: str | None = None) -> None:
    t = ctx.t
    data = dict(ctx.state.data or {})
    n = await service.count(session=ctx.session, audience=audience)
    if n == 0:
        await ctx.edit(t("bc.nobody"), _audience_buttons(t))
        return
    bc = await service.create_draft(session=ctx.session, author_id=ctx.person.id, text=data["text"],
                                    photo=data.get("photo"), audience=audience, total=n, now=ctx.now)
    data["bid"] = bc.id
    await ctx.set_state(FLOW, "confirm", data)
    body = flows.render_notice(t, data["text"])
    if data.get("photo"):
        body = f"{t('bc.photo_tag')}\n{body}"
    text = t("bc.preview", body=Safe(body), n=n, audience=flows.audience_label(t, audience, area_name))
    buttons = [[Button(t("bc.confirm"), f"bc:go:{bc.id}"), Button(t("bc.cancel"), f"bc:x:{bc.id}")]]
    await ctx.reply(text, buttons)


async def _confirm(ctx, arg: str) -> None:
    if not arg.isdigit():
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    bc = await service.start(session=ctx.session, broadcast_id=int(arg), author_id=ctx.person.id,
                             chat_id=ctx.ev.chat.id, now=ctx.now)
    if bc is None:  # confirmed before, cancelled, or someone else's
        ctx.answer(ctx.t("bc.stale"), alert=True)
        return
    n = await flows.launch(session=ctx.session, now=ctx.now, bc=bc, admin_chat_id=ctx.ev.chat.id, t=ctx.t)
    audit(ctx, "broadcast", f"#{bc.id} {bc.audience} {n}")
    await ctx.clear_state()
    await ctx.edit(ctx.t("bc.started", id=bc.id, n=n))
    ctx.answer()


async def _cancel(ctx, arg: str) -> None:
    if arg.isdigit():
        if await service.cancel(session=ctx.session, broadcast_id=int(arg), author_id=ctx.person.id):
            audit(ctx, "broadcast_cancel", f"#{arg}")
    st = await ctx.load_state()
    if st is not None and st.flow == FLOW:
        await ctx.clear_state()
    await ctx.edit(ctx.t("bc.cancelled"))
    ctx.answer()
