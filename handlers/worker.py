"""The grid worker's side: task buttons (Accept / Resolve / Transfer / Message), /tasks."""

from __future__ import annotations

from datetime import timedelta

from bot.areas.models import Area, Category
from bot.areas.service import load_tree
from bot.cases import flows, messages, service
from bot.cases.models import Case
from bot.cases.transitions import TransitionError, may
from bot.i18n import escape
from bot.transport.base import Button
from handlers.registry import callback, command, flow
from handlers.resident import can_view, resident_action

MAX_NOTE = 1000
RESIDENT_ACTIONS = {"ok", "no", "rate", "wd"}


async def _actor(ctx, case: Case):
    return await flows.actor_for(session=ctx.session, case=case, user_id=ctx.ev.user.id,
                                 is_admin=(await ctx.roles()).admin)


@callback("c")
async def on_case_button(ctx, rest: str) -> None:
    parts = rest.split(":")
    action = parts[0]
    case_id = parts[1] if len(parts) > 1 else ""
    arg = ":".join(parts[2:])
    case = await ctx.session.get(Case, int(case_id)) if case_id.isdigit() else None
    if case is None:
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    if action in RESIDENT_ACTIONS:
        await resident_action(ctx, case, action, arg)
        return
    handler = {"acc": _accept, "res": _start_resolve, "tr": _start_transfer, "tra": _transfer_to_area,
               "trs": _transfer_up, "msg": _start_message, "more": _more, "cu": _start_close,
               "dup": _start_close}.get(action)
    if handler is None:
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    actor = await _actor(ctx, case)
    wanted = {"acc": "accept", "res": "resolve", "tr": "transfer", "tra": "transfer", "trs": "transfer",
              "msg": "note", "more": "note", "cu": "close_unresolved", "dup": "mark_duplicate"}[action]
    if action == "cu":
        arg = "cu"
    elif action == "dup":
        arg = "dup"
    # the server decides who may act, whatever the button says: a forged or stale press changes nothing
    try:
        flows.check(case=case, action=wanted, actor=actor)
    except TransitionError as e:
        ctx.answer(ctx.t(e.reason), alert=True)
        return
    await handler(ctx, case, actor, arg)


async def _accept(ctx, case: Case, actor, _arg: str) -> None:
    await flows.accept(session=ctx.session, case=case, actor=actor, now=ctx.now)
    ctx.answer(ctx.t("cases.accepted_toast"))
    await ctx.edit(await messages.task_text(ctx.session, ctx.t, case, ctx.settings.tz, "accepted"),
                   messages.task_buttons(ctx.t, case))


# --- resolve: note, then an optional photo -------------------------------------------------------


async def _start_resolve(ctx, case: Case, actor, _arg: str) -> None:
    ctx.answer()
    await ctx.set_state("resolve", "note", {"case": case.id})
    await ctx.reply(ctx.t("work.ask_resolution_note", ref=case.ref), [[Button(ctx.t("btn.cancel"), "w:x")]],
                    chat_id=ctx.ev.user.id)


@flow("resolve")
async def on_resolve_message(ctx) -> None:
    data = dict(ctx.state.data)
    ev = ctx.ev
    if ctx.state.step == "note":
        text = ev.text.strip()
        if ev.photos:
            data["photo"] = ev.photos[0]
        if not text:
            await ctx.set_state("resolve", "note", data)
            await ctx.say("work.ask_resolution_note", [[Button(ctx.t("btn.cancel"), "w:x")]], ref=f"#{data['case']}")
            return
        if len(text) > MAX_NOTE:
            await ctx.say("report.too_long", limit=MAX_NOTE, n=len(text))
            return
        data["note"] = text
        if data.get("photo"):
            await _finish_resolve(ctx, data)
            return
        await ctx.set_state("resolve", "photo", data)
        await ctx.say("work.ask_resolution_photo", [[Button(ctx.t("btn.no_photo"), "w:nophoto")],
                                                    [Button(ctx.t("btn.cancel"), "w:x")]])
        return
    if ctx.state.step == "photo":
        if ev.photos:
            data["photo"] = ev.photos[0]
            await _finish_resolve(ctx, data)
            return
        await ctx.say("work.ask_resolution_photo", [[Button(ctx.t("btn.no_photo"), "w:nophoto")],
                                                    [Button(ctx.t("btn.cancel"), "w:x")]])


async def _finish_resolve(ctx, data: dict) -> None:
    case = await ctx.session.get(Case, int(data["case"]))
    await ctx.clear_state()
    if case is None:
        await ctx.say("core.stale_button")
        return
    try:
        await flows.resolve(session=ctx.session, case=case, actor=await _actor(ctx, case), now=ctx.now,
                            note=data["note"], photo=data.get("photo"),
                            auto_close_after=timedelta(days=ctx.settings.auto_close_days))
    except TransitionError as e:  # someone else changed it meanwhile
        await ctx.say(e.reason)
        return
    await ctx.say("work.resolved_done", ref=case.ref)


@callback("w")
async def on_work_button(ctx, rest: str) -> None:
    await ctx.load_state()
    st = ctx.state
    if rest == "x":
        ctx.answer()
        if st is not None:
            await ctx.clear_state()
        await ctx.say("core.cancelled")
        return
    if rest == "nophoto" and st is not None and st.flow == "resolve" and st.step == "photo":
        ctx.answer()
        await _finish_resolve(ctx, dict(st.data))
        return
    ctx.answer(ctx.t("core.stale_button"), alert=True)


# --- transfer: to another area, or up to the supervisor, with a reason -----------------------------


async def _start_transfer(ctx, case: Case, actor, arg: str) -> None:
    ctx.answer()
    tree = await load_tree(session=ctx.session, include_retired=False)
    parent = arg or None
    rows = []
    for a in tree.children(parent):
        branch = bool(tree.children(a))
        data = f"c:tr:{case.id}:{a}" if branch else f"c:tra:{case.id}:{a}"
        rows.append([Button(tree.name(a) + (" ›" if branch else ""), data)])
    if parent:
        rows.append([Button(ctx.t("btn.pick_here", name=tree.name(parent)), f"c:tra:{case.id}:{parent}")])
    rows.append([Button(ctx.t("btn.to_supervisor"), f"c:trs:{case.id}")])
    rows.append([Button(ctx.t("btn.cancel"), "w:x")])
    await ctx.reply(ctx.t("work.transfer_pick", ref=case.ref), rows, chat_id=ctx.ev.user.id)


async def _transfer_to_area(ctx, case: Case, actor, area_id: str) -> None:
    area = await ctx.session.get(Area, area_id)
    if area is None or area.retired:
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    ctx.answer()
    await ctx.set_state("transfer", "reason", {"case": case.id, "area": area.id})
    await ctx.reply(ctx.t("work.transfer_reason", ref=case.ref, target=area.name),
                    [[Button(ctx.t("btn.cancel"), "w:x")]], chat_id=ctx.ev.user.id)


async def _transfer_up(ctx, case: Case, actor, _arg: str) -> None:
    sups = await service.supervisors_above(session=ctx.session, area_id=case.area_id)
    sups = [s for s in sups if s != ctx.ev.user.id]
    if not sups:
        ctx.answer(ctx.t("work.no_supervisor"), alert=True)
        return
    ctx.answer()
    await ctx.set_state("transfer", "reason", {"case": case.id, "to": sups[0]})
    await ctx.reply(ctx.t("work.transfer_reason", ref=case.ref, target=ctx.t("work.the_supervisor")),
                    [[Button(ctx.t("btn.cancel"), "w:x")]], chat_id=ctx.ev.user.id)


async def _note(ctx, empty_key: str) -> str | None:
    """The message's text, at most MAX_NOTE long; None (after saying why) when it is not."""
    text = ctx.ev.text.strip()
    if not text:
        await ctx.say(empty_key)
        return None
    if len(text) > MAX_NOTE:
        await ctx.say("report.too_long", limit=MAX_NOTE, n=len(text))
        return None
    return text


@flow("transfer")
async def on_transfer_reason(ctx) -> None:
    data = dict(ctx.state.data)
    reason = await _note(ctx, "work.transfer_reason_needed")
    if reason is None:
        return
    await ctx.clear_state()
    case = await ctx.session.get(Case, int(data["case"]))
    if case is None:
        await ctx.say("core.stale_button")
        return
    try:
        await flows.transfer(session=ctx.session, case=case, actor=await _actor(ctx, case), now=ctx.now,
                             tz=ctx.settings.tz, reason=reason, area_id=data.get("area"),
                             to=int(data["to"]) if "to" in data else None)
    except TransitionError as e:
        await ctx.say(e.reason)
        return
    area = await ctx.session.get(Area, case.area_id) if case.area_id else None
    await ctx.say("work.transferred", ref=case.ref, target=area.name if area else "—")


# --- honest end states: cannot be fixed, duplicate ----------------------------------------------------


async def _more(ctx, case: Case, actor, _arg: str) -> None:
    ctx.answer()
    rows = [[Button(ctx.t("btn.mark_duplicate"), f"c:dup:{case.id}")]]
    if may(case, "close_unresolved", actor):
        rows.insert(0, [Button(ctx.t("btn.close_unresolved"), f"c:cu:{case.id}")])
    rows.append([Button(ctx.t("btn.cancel"), "w:x")])
    await ctx.reply(ctx.t("work.more_title", ref=case.ref), rows, chat_id=ctx.ev.user.id)


async def _start_close(ctx, case: Case, actor, kind: str) -> None:
    ctx.answer()
    await ctx.set_state("close", kind, {"case": case.id})
    await ctx.reply(ctx.t("work.ask_close_reason" if kind == "cu" else "work.ask_duplicate_of", ref=case.ref),
                    [[Button(ctx.t("btn.cancel"), "w:x")]], chat_id=ctx.ev.user.id)


@flow("close")
async def on_close_text(ctx) -> None:
    data = dict(ctx.state.data)
    kind = ctx.state.step
    text = ctx.ev.text.strip()
    case = await ctx.session.get(Case, int(data["case"]))
    if case is None:
        await ctx.clear_state()
        return
    other = None
    if kind == "dup":
        num = text.lstrip("#")
        other = await ctx.session.get(Case, int(num)) if num.isdigit() else None
        if other is None or other.id == case.id:
            await ctx.say("work.duplicate_unknown", ref=f"#{num}" if num else "?")
            return
        note = other.ref
    else:
        note = await _note(ctx, "work.transfer_reason_needed")
        if note is None:
            return
    await ctx.clear_state()
    try:
        await flows.close(session=ctx.session, case=case, actor=await _actor(ctx, case), now=ctx.now, note=note,
                          duplicate_of=other)
    except TransitionError as e:
        await ctx.say(e.reason)
        return
    await ctx.say("work.closed_done", ref=case.ref)


# --- talking to the resident through the bot ----------------------------------------------------------


async def _start_message(ctx, case: Case, actor, _arg: str) -> None:
    ctx.answer()
    await ctx.set_state("relay", "text", {"case": case.id, "to": case.reporter_id, "side": "worker"})
    await ctx.reply(ctx.t("work.relay_ask", ref=case.ref), [[Button(ctx.t("btn.cancel"), "w:x")]],
                    chat_id=ctx.ev.user.id)


@callback("rr")
async def resident_reply_button(ctx, case_id: str) -> None:
    case = await ctx.session.get(Case, int(case_id)) if case_id.isdigit() else None
    if case is None or ctx.ev.user.id != case.reporter_id or case.assignee_id is None:
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    ctx.answer()
    await ctx.set_state("relay", "text", {"case": case.id, "to": case.assignee_id, "side": "resident"})
    await ctx.say("work.relay_ask", [[Button(ctx.t("btn.cancel"), "w:x")]], ref=case.ref)


@flow("relay")
async def on_relay_text(ctx) -> None:
    data = dict(ctx.state.data)
    text = await _note(ctx, "work.relay_text_only")
    if text is None:
        return
    await ctx.clear_state()
    case = await ctx.session.get(Case, int(data["case"]))
    if case is None:
        return
    await flows.relay(session=ctx.session, case=case, sender_id=ctx.ev.user.id, to=int(data["to"]),
                      from_worker=data["side"] == "worker", text=text, now=ctx.now)
    await ctx.say("work.relay_sent")


# --- the task list --------------------------------------------------------------------------------------


@command("tasks", private_only=True, menu="menu.tasks", roles=("captain", "supervisor"))
async def tasks(ctx) -> None:
    cases = await service.open_tasks(session=ctx.session, assignee_id=ctx.ev.user.id, now=ctx.now)
    if not cases:
        await ctx.say("work.no_tasks")
        return
    tz = ctx.settings.tz
    lines = [ctx.t("work.tasks_title", n=len(cases))]
    rows = []
    for c in cases:
        cat = await ctx.session.get(Category, c.category_id)
        overdue = c.deadline_at is not None and c.deadline_at < ctx.now
        lines.append(ctx.t("work.task_line_overdue" if overdue else "work.task_line", ref=c.ref,
                           category=messages.category_name(ctx.t, cat), status=messages.status_name(ctx.t, c),
                           deadline=messages.fmt_time(c.deadline_at, tz), description=c.description[:30]))
        if len(rows) < 8:
            rows.append([Button(f"{c.ref} {escape(messages.category_name(ctx.t, cat))}"[:40], f"cv:{c.id}")])
    await ctx.reply("\n".join(lines), rows or None)


@callback("cv")
async def view_case_button(ctx, case_id: str) -> None:
    case = await ctx.session.get(Case, int(case_id)) if case_id.isdigit() else None
    if case is None or not await can_view(ctx, case):
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    ctx.answer()
    await messages.push_task(session=ctx.session, now=ctx.now, case=case, tz=ctx.settings.tz,
                          header="accepted" if case.status == "accepted" else "view", to=ctx.ev.user.id)
