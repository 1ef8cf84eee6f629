"""The resident's side: /report (guided and one-line), /my, /case, Me too, confirm / not fixed / rate."""

from __future__ import annotations

from sqlalchemy import select

from bot.areas.models import Area, Category
from bot.areas.service import load_tree
from bot.cases import flows, messages, service
from bot.cases.models import Case
from bot.cases.transitions import OPEN, TransitionError
from bot.i18n import Safe
from bot.people.models import Person
from bot.transport.base import Button
from handlers.registry import callback, command, flow

MAX_DESCRIPTION = 1000
MAX_ADDRESS = 200
MAX_PHOTOS = 10
STEPS = ("category", "desc", "photos", "place", "confirm")
# the one-line form takes a category without asking when it is this sure
CATEGORY_SURE = 70


async def categories(ctx) -> list[Category]:
    return list((await ctx.session.execute(select(Category).order_by(Category.sort_order))).scalars())


def cancel_row(t) -> list[Button]:
    return [Button(t("btn.back"), "rp:back"), Button(t("btn.cancel"), "rp:x")]


# --- entering the flow -----------------------------------------------------------------------


@command("report", private_only=True, menu="menu.report")
async def report(ctx) -> None:
    await begin_report(ctx, ctx.ev.args)


async def begin_report(ctx, args: str) -> None:
    data: dict = {"photos": [], "share": False}
    args = args.strip()
    if args:
        await _prefill(ctx, data, args)
    await ctx.set_state("report", "category", data)
    await _advance(ctx, data)


async def _prefill(ctx, data: dict, args: str) -> None:
    """The one-line form: `/report 香港路12号 路灯不亮三天了` — address first, then the description."""
    router = ctx.core.router
    head, _, rest = args.partition(" ")
    rest = rest.strip()
    hit = router.route_address(head) if router and rest else None
    if hit is not None and hit.area_id:
        data.update(area_id=hit.area_id, address=head[:MAX_ADDRESS], description=rest[:MAX_DESCRIPTION])
    else:
        data["description"] = args[:MAX_DESCRIPTION]
        whole = router.route_address(args) if router else None
        if whole is not None and whole.area_id:
            data.update(area_id=whole.area_id, address="")
        elif hit is not None and hit.outside:  # said where, but it is not ours: tell at the place step
            data["place_note"] = {"address": head[:MAX_ADDRESS], "outside": hit.outside}
        elif whole is not None and whole.outside:
            data["place_note"] = {"address": args[:MAX_ADDRESS], "outside": whole.outside}
    if router:
        cats = router.infer_category(data["description"])
        if cats and cats[0][1] >= CATEGORY_SURE:
            data["category"] = cats[0][0]
            data["category_guessed"] = True
    data["photos_done"] = True  # the one-line form does not ask for photos; the confirm screen offers them


async def _advance(ctx, data: dict) -> None:
    """Ask for the first thing still missing."""
    if not data.get("category"):
        await _ask_category(ctx, data)
    elif not data.get("description"):
        await _ask(ctx, data, "desc", "report.ask_description")
    elif not data.get("photos_done"):
        await _ask(ctx, data, "photos", "report.ask_photos",
                   [[Button(ctx.t("btn.skip_photos"), "rp:pdone")], cancel_row(ctx.t)])
    elif not data.get("area_id"):
        await _ask_place(ctx, data)
    else:
        await _show_confirm(ctx, data)


async def _ask(ctx, data: dict, step: str, key: str, buttons=None) -> None:
    await ctx.set_state("report", step, data)
    await ctx.say(key, buttons or [cancel_row(ctx.t)])


async def _ask_category(ctx, data: dict) -> None:
    cats = await categories(ctx)
    rows, row = [], []
    for c in cats:
        row.append(Button(messages.category_name(ctx.t, c), f"rp:cat:{c.id}"))
        if len(row) == 3:
            rows.append(row)
            row = []
    if row:
        rows.append(row)
    rows.append([Button(ctx.t("btn.cancel"), "rp:x")])
    await ctx.set_state("report", "category", data)
    await ctx.say("report.ask_category", rows)


async def _ask_place(ctx, data: dict) -> None:
    note = data.pop("place_note", None)
    await ctx.set_state("report", "place", data)
    if note:
        await _say_unplaced(ctx, note["address"], note.get("outside"), [])
        return
    await ctx.say("report.ask_place", [[Button(ctx.t("btn.pick_area"), "rp:pick:")], cancel_row(ctx.t)])


async def _say_unplaced(ctx, address: str, outside: str | None, candidates: list[str]) -> None:
    """One line saying the address is outside the grid (or could not be placed), then the
    offer: a location pin, the likeliest areas, the area list."""
    rows = []
    for aid in candidates[:3]:
        area = await ctx.session.get(Area, aid)
        if area is not None and not area.retired:
            rows.append([Button(area.name, f"rp:pick:={area.id}")])
    rows += [[Button(ctx.t("btn.pick_area"), "rp:pick:")], cancel_row(ctx.t)]
    if outside:
        root = (await ctx.session.execute(select(Area).where(Area.parent_id.is_(None), Area.retired.is_(False))
                                          .order_by(Area.sort_order))).scalars().first()
        await ctx.say("report.place_outside_address", rows, address=address, place=outside,
                      grid=root.name if root else "")
    else:
        await ctx.say("report.place_unknown", rows, address=address)


async def _show_confirm(ctx, data: dict) -> None:
    cat = await ctx.session.get(Category, data["category"])
    area = await ctx.session.get(Area, data["area_id"])
    dup = await service.find_duplicate(session=ctx.session, category_id=data["category"], area_id=data["area_id"],
                                       lat=data.get("lat"), lon=data.get("lon"), reporter_id=ctx.ev.user.id)
    await ctx.set_state("report", "confirm", data)
    t = ctx.t
    lines = [t("report.confirm_title"),
             t("cases.field_category", value=messages.category_name(t, cat)),
             t("cases.field_place", value=" · ".join(x for x in (area.name if area else "", data.get("address", "")) if x)),
             t("cases.field_description", value=data.get("description", "")),
             t("report.field_photos", n=len(data.get("photos", []))),
             t("report.share_on" if data.get("share") else "report.share_off")]
    rows = [[Button(t("btn.submit"), "rp:ok")],
            [Button(t("btn.share_off" if data.get("share") else "btn.share_on"), "rp:share"),
             Button(t("btn.change_category"), "rp:ccat")]]
    if not data.get("photos"):
        rows[1].append(Button(t("btn.add_photos"), "rp:addp"))
    rows.append(cancel_row(t))
    if dup is not None:
        lines.append("")
        lines.append(t("report.duplicate_found", ref=dup.ref, n=dup.reporter_count or 1,
                       status=messages.status_name(t, dup, ctx.now)))
        rows.insert(0, [Button(t("btn.me_too", ref=dup.ref), f"rp:metoo:{dup.id}")])
    await ctx.reply("\n".join(lines), rows)


# --- the flow's steps (messages) -----------------------------------------------------------------


@flow("report")
async def on_report_message(ctx) -> None:
    st = ctx.state
    data = dict(st.data)
    ev = ctx.ev
    step = st.step
    if ev.unsupported:
        await ctx.say("report.unsupported_media", kind=ev.unsupported)
        return
    if step == "category":
        if ev.text and not ev.photos:
            # typing a description instead of pressing a category: keep it and guess
            data["description"] = ev.text[:MAX_DESCRIPTION]
            if len(ev.text) > MAX_DESCRIPTION:
                await ctx.say("report.too_long", limit=MAX_DESCRIPTION, n=len(ev.text))
                return
            cats = ctx.core.router.infer_category(ev.text) if ctx.core.router else []
            if cats and cats[0][1] >= CATEGORY_SURE:
                data["category"] = cats[0][0]
            await ctx.set_state("report", step, data)
        await _advance(ctx, data)
        return
    if step == "desc":
        text = ev.text.strip()
        if ev.photos:
            _add_photos(data, ev.photos)
        if not text:
            if ev.photos:
                await ctx.set_state("report", step, data)
                if not _same_album(data, ev):
                    await ctx.say("report.photo_kept_need_text")
                return
            await ctx.say("report.ask_description", [cancel_row(ctx.t)])
            return
        if len(text) > MAX_DESCRIPTION:
            await ctx.say("report.too_long", limit=MAX_DESCRIPTION, n=len(text))
            return
        data["description"] = text
        await _advance(ctx, data)
        return
    if step == "photos":
        if ev.photos:
            if len(data["photos"]) >= MAX_PHOTOS:
                await ctx.say("report.too_many_photos", limit=MAX_PHOTOS)
                return
            first_of_album = not _same_album(data, ev)
            _add_photos(data, ev.photos)
            data["last_group"] = ev.media_group_id
            await ctx.set_state("report", step, data)
            if first_of_album:  # an album arrives as several updates: answer it once
                await ctx.say("report.photo_added", [[Button(ctx.t("btn.photos_done"), "rp:pdone")],
                                                     cancel_row(ctx.t)])
            return
        if ev.location or ev.text:
            # skipping photos by going straight to the place
            data["photos_done"] = True
            await _take_place(ctx, data)
            return
        await ctx.say("report.ask_photos")
        return
    if step == "place":
        await _take_place(ctx, data)
        return
    if step == "confirm":
        if ev.photos:
            _add_photos(data, ev.photos)
            await ctx.set_state("report", step, data)
            if not _same_album(data, ev):
                await _show_confirm(ctx, data)
            data["last_group"] = ev.media_group_id
            await ctx.set_state("report", step, data)
            return
        await ctx.say("report.press_a_button")
        return
    await ctx.clear_state()
    await ctx.say("core.cancelled")


def _same_album(data: dict, ev) -> bool:
    return bool(ev.media_group_id and data.get("last_group") == ev.media_group_id)


def _add_photos(data: dict, photos) -> None:
    data["photos"] = (list(data.get("photos", [])) + list(photos))[:MAX_PHOTOS]


async def _take_place(ctx, data: dict) -> None:
    ev = ctx.ev
    router = ctx.core.router
    if ev.location:
        hit = router.route_point(ev.location.lat, ev.location.lon)
        if not hit.area_id:
            await ctx.say("report.place_outside", [[Button(ctx.t("btn.pick_area"), "rp:pick:")], cancel_row(ctx.t)])
            await ctx.set_state("report", "place", data)
            return
        data.update(lat=ev.location.lat, lon=ev.location.lon, address=data.get("address", ""))
        if hit.near:  # within 30 m of a neighbouring unit: the resident says which side
            rows = []
            names = []
            for aid in (hit.area_id, *hit.near):
                area = await ctx.session.get(Area, aid)
                if area is not None and not area.retired:
                    rows.append([Button(area.name, f"rp:pick:={area.id}")])
                    names.append(area.name)
            if len(rows) > 1:
                data.pop("area_id", None)
                await ctx.set_state("report", "place", data)
                await ctx.say("report.pin_which_side", rows + [cancel_row(ctx.t)], names="、".join(names))
                return
        data["area_id"] = hit.area_id
        await _advance(ctx, data)
        return
    text = ev.text.strip()
    if not text:
        await _ask_place(ctx, data)
        return
    if len(text) > MAX_ADDRESS:
        await ctx.say("report.too_long", limit=MAX_ADDRESS, n=len(text))
        return
    hit = router.route_address(text)
    if not hit.area_id:
        await ctx.set_state("report", "place", data)
        await _say_unplaced(ctx, text, hit.outside, [a for a, _ in hit.candidates])
        return
    data.update(area_id=hit.area_id, address=text)
    await _advance(ctx, data)


# --- the flow's buttons -----------------------------------------------------------------------------


@callback("rp")
async def on_report_button(ctx, rest: str) -> None:
    action, _, arg = rest.partition(":")
    await ctx.load_state()
    st = ctx.state
    if st is None or st.flow != "report" or not ctx.ev.is_private:
        ctx.answer(ctx.t("report.expired"), alert=True)
        return
    data = dict(st.data)
    ctx.answer()
    if action == "x":
        await ctx.clear_state()
        await ctx.say("report.cancelled")
    elif action == "cat":
        if await ctx.session.get(Category, arg) is None:
            ctx.answer(ctx.t("core.stale_button"), alert=True)
            return
        data["category"] = arg
        await _advance(ctx, data)
    elif action == "ccat":
        data.pop("category", None)
        await _ask_category(ctx, data)
    elif action == "pdone":
        data["photos_done"] = True
        await _advance(ctx, data)
    elif action == "addp":
        data["photos_done"] = False
        await ctx.set_state("report", "photos", data)
        await ctx.say("report.ask_photos", [[Button(ctx.t("btn.photos_done"), "rp:pdone")], cancel_row(ctx.t)])
    elif action == "share":
        data["share"] = not data.get("share")
        await ctx.set_state("report", st.step, data)
        await _show_confirm(ctx, data)
    elif action == "pick":
        await _pick(ctx, data, arg)
    elif action == "back":
        await _back(ctx, data, st.step)
    elif action == "metoo":
        await _me_too(ctx, data, arg)
    elif action == "ok":
        await _submit(ctx, data)
    else:
        ctx.answer(ctx.t("core.stale_button"), alert=True)


async def _back(ctx, data: dict, step: str) -> None:
    order = list(STEPS)
    i = order.index(step) if step in order else 0
    if i == 0:
        await ctx.clear_state()
        await ctx.say("report.cancelled")
        return
    prev = order[i - 1]
    # forget the answer of the step we go back to, so _advance asks it again
    forget = {"category": ("category",), "desc": ("description",), "photos": ("photos_done",),
              "place": ("area_id", "lat", "lon", "address")}[prev]
    for k in forget:
        data.pop(k, None)
    if prev == "photos":
        data["photos"] = []
    await _advance(ctx, data)


async def _pick(ctx, data: dict, area_id: str) -> None:
    """Walk the tree with buttons; a leaf (or "here") chooses the area."""
    if area_id.startswith("="):
        chosen = await ctx.session.get(Area, area_id[1:])
        if chosen is None:
            ctx.answer(ctx.t("core.stale_button"), alert=True)
            return
        data.update(area_id=chosen.id, address=data.get("address", ""))
        await _advance(ctx, data)
        return
    tree = await load_tree(session=ctx.session, include_retired=False)
    parent = area_id or None
    kids = tree.children(parent)
    if parent is None and len(kids) == 1:  # skip a single root (the sub-district)
        parent = kids[0]
        kids = tree.children(parent)
    rows = []
    for a in kids:
        branch = bool(tree.children(a))
        rows.append([Button(tree.name(a) + (" ›" if branch else ""), f"rp:pick:{a}" if branch else f"rp:pick:={a}")])
    if parent:
        here = tree.get(parent)
        rows.append([Button(ctx.t("btn.pick_here", name=here.name if here else ""), f"rp:pick:={parent}")])
    rows.append(cancel_row(ctx.t))
    await ctx.set_state("report", "place", data)
    await ctx.say("report.pick_area", rows)


async def _me_too(ctx, data: dict, case_id: str) -> None:
    case = await ctx.session.get(Case, int(case_id)) if case_id.isdigit() else None
    if case is None or case.status not in OPEN + ("resolved",):
        await _show_confirm(ctx, data)
        return
    added = await flows.me_too(session=ctx.session, case=case, user_id=ctx.ev.user.id, now=ctx.now)
    await ctx.clear_state()
    await ctx.say("report.me_too_done" if added else "report.me_too_already", ref=case.ref, n=case.reporter_count)


async def _submit(ctx, data: dict) -> None:
    if not (data.get("category") and data.get("description") and data.get("area_id")):
        await _advance(ctx, data)
        return
    tz = ctx.settings.tz
    draft = flows.Draft(category_id=data["category"], description=data["description"], area_id=data["area_id"],
                        address=data.get("address", ""), lat=data.get("lat"), lon=data.get("lon"),
                        photos=list(data.get("photos", [])), share_contact=bool(data.get("share")))
    await ctx.clear_state()
    case = (await flows.submit_report(session=ctx.session, reporter_id=ctx.ev.user.id, chat_id=ctx.ev.chat.id,
                                      draft=draft, now=ctx.now, tz=tz, language=ctx.lang)).case
    area = await ctx.session.get(Area, case.area_id)
    role = ctx.t("report.role_captain") if area and case.assignee_id == area.captain_id else ctx.t("report.role_worker")
    await ctx.say("report.submitted", [[Button(ctx.t("btn.withdraw"), f"c:wd:{case.id}")]], ref=case.ref,
                  area=area.name if area else "—", role=role, deadline=messages.fmt_time(case.deadline_at, tz))


# --- following a case -----------------------------------------------------------------------------


@command("my", private_only=True, menu="menu.my")
async def my_cases(ctx) -> None:
    cases = await service.cases_of_resident(session=ctx.session, user_id=ctx.ev.user.id)
    if not cases:
        await ctx.say("cases.my_empty")
        return
    lines = [ctx.t("cases.my_title")]
    for c in cases:
        cat = await ctx.session.get(Category, c.category_id)
        lines.append(ctx.t("cases.my_line", ref=c.ref, category=messages.category_name(ctx.t, cat),
                           status=messages.status_name(ctx.t, c, ctx.now), description=c.description[:40]))
    lines.append(ctx.t("cases.my_footer"))
    await ctx.reply("\n".join(lines))


@command("case", private_only=True, menu="menu.case")
async def show_case(ctx) -> None:
    arg = ctx.ev.args.strip().lstrip("#")
    if not (arg.isascii() and arg.isdigit()):  # isdigit() alone takes '²' and other digits
        await ctx.say("cases.case_usage")
        return
    # an id beyond the column's range is simply no case (PostgreSQL would refuse the query)
    case = await ctx.session.get(Case, int(arg)) if int(arg) < 2**31 else None
    if case is None or not await can_view(ctx, case):
        await ctx.say("cases.case_not_found", ref=f"#{arg}")
        return
    tz = ctx.settings.tz
    t = ctx.t
    cat, area = await messages.names(ctx.session, case)
    lines = [t("cases.case_title", ref=case.ref, status=messages.status_name(t, case, ctx.now)),
             t("cases.field_category", value=messages.category_name(t, cat)),
             t("cases.field_place", value=messages.place_text(case, area)),
             t("cases.field_description", value=case.description),
             t("cases.field_deadline", value=messages.fmt_time(case.deadline_at, tz))]
    if case.reporter_count > 1:
        lines.append(t("cases.field_reporter_count", n=case.reporter_count))
    if case.resolution_note:
        lines.append(t("cases.field_resolution", value=case.resolution_note))
    if case.rating:
        lines.append(t("cases.field_rating", value=Safe("⭐" * case.rating)))
    lines.append(t("cases.history_title"))
    worker_view = await is_worker_for(ctx, case)
    for h in await service.history(session=ctx.session, case_id=case.id):
        who = ""
        if worker_view and h.actor_id and h.actor_id == case.reporter_id and not case.share_contact:
            who = t("cases.reporter_unnamed")  # they chose not to share their name: not here either
        elif worker_view and h.actor_id:
            p = await ctx.session.get(Person, h.actor_id)
            who = p.name if p else str(h.actor_id)
        lines.append(t("cases.history_line", at=messages.fmt_time(h.at, tz), action=t(f"action.{h.action}"),
                       who=who, note=h.note[:80] if h.note else ""))
    buttons = None
    if worker_view and case.status in OPEN:
        buttons = messages.task_buttons(t, case)
    await ctx.reply("\n".join(lines), buttons)


async def is_worker_for(ctx, case: Case) -> bool:
    roles = await ctx.roles()
    if roles.admin or case.assignee_id == ctx.ev.user.id:
        return True
    return ctx.ev.user.id in await service.supervisors_above(session=ctx.session, area_id=case.area_id)


async def can_view(ctx, case: Case) -> bool:
    if case.reporter_id == ctx.ev.user.id or await is_worker_for(ctx, case):
        return True
    return ctx.ev.user.id in await service.followers(session=ctx.session, case=case)


async def resident_action(ctx, case: Case, action: str, arg: str) -> None:
    """Confirm / Not fixed / rate / withdraw, each checked by the state machine."""
    tz = ctx.settings.tz
    actor = await flows.actor_for(session=ctx.session, case=case, user_id=ctx.ev.user.id,
                                  is_admin=(await ctx.roles()).admin)
    uow = dict(session=ctx.session, case=case, actor=actor, now=ctx.now)
    try:
        if action == "ok":
            await flows.confirm(**uow)
            await ctx.edit(ctx.t("cases.confirmed_ask_rating", ref=case.ref), messages.rating_buttons(case)(ctx.t))
        elif action == "no":
            # the note is in the resident's language: it is what they said
            await flows.reopen(**uow, tz=tz, reason=ctx.t("cases.reopen_note"))
            await ctx.edit(ctx.t("cases.reopened_resident", ref=case.ref,
                                 deadline=messages.fmt_time(case.deadline_at, tz)))
        elif action == "rate":
            if not arg.isdigit() or not 1 <= int(arg) <= 5:
                ctx.answer(ctx.t("core.stale_button"), alert=True)
                return
            if case.rating:
                ctx.answer(ctx.t("cases.already_rated"), alert=True)
                return
            await flows.rate(**uow, stars=int(arg))
            await ctx.edit(ctx.t("cases.rated", ref=case.ref, stars=Safe("⭐" * int(arg))))
        elif action == "wd":
            await flows.withdraw(**uow, note=ctx.t("cases.withdrawn_note"))
            await ctx.edit(ctx.t("cases.withdrawn", ref=case.ref))
    except TransitionError as e:
        ctx.answer(ctx.t(e.reason), alert=True)
        return
    ctx.answer()
