"""The use cases of a case: report, accept, resolve, transfer, close, reopen, confirm, rate, withdraw.

Each is one keyword-only function that a handler (or the web desk, or a scheduled job) calls
inside its unit of work. It makes the move through `transitions.apply` (which checks the
actor's right to act), starts or stops the case's clocks, writes the history row and the
outbox rows for everyone else who must hear of it, and returns what happened. It never
commits and never answers the actor: the caller replies and commits once.

A refused move raises `TransitionError` (its `reason` is a catalog key), whatever the
transport the request came through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.areas.models import Category
from bot.areas.service import load_tree
from bot.cases import messages, service
from bot.cases.deadlines import reminder_at
from bot.cases.models import Case, CasePhoto
from bot.cases.transitions import MOVES, Actor, Event, IllegalMove, NotAllowed, TransitionError, may
from bot.notify import notify
from bot.outbox.kinds import MessageKind
from bot.transport.base import Button


@dataclass
class Draft:
    """What a resident has told the report conversation so far."""

    category_id: str
    description: str
    area_id: str
    address: str = ""
    lat: float | None = None
    lon: float | None = None
    photos: list[str] = field(default_factory=list)
    share_contact: bool = False


@dataclass
class Outcome:
    case: Case
    event: Event
    assignee_changed: bool = False


def check(*, case: Case, action: str, actor: Actor) -> None:
    """Would `action` be allowed now? For conversations that ask for a note before the move,
    so a forged or stale button is refused before anything is asked."""
    if not may(case, action, actor):
        raise NotAllowed(f"{actor.id} may not {action} case {case.id}")
    if (case.status, action) not in MOVES:
        raise IllegalMove(f"{action} not allowed from {case.status}")


async def actor_for(*, session: AsyncSession, case: Case, user_id: int, is_admin: bool) -> Actor:
    return await service.actor_for(session=session, case=case, user_id=user_id, is_admin=is_admin)


async def _category(session: AsyncSession, case: Case) -> Category | None:
    return await session.get(Category, case.category_id)


# --- the resident's side ----------------------------------------------------------------------------


async def submit_report(*, session: AsyncSession, reporter_id: int, chat_id: int, draft: Draft, now: datetime, tz,
                        language: str) -> Outcome:
    """A new case, assigned to whoever is responsible for its area, with its task pushed to them."""
    case = await service.create(
        session=session, now=now, tz=tz, reporter_id=reporter_id, report_chat_id=chat_id,
        category_id=draft.category_id, description=draft.description, photos=list(draft.photos),
        address=draft.address, lat=draft.lat, lon=draft.lon, area_id=draft.area_id,
        share_contact=draft.share_contact, language=language)
    await messages.push_task(session=session, now=now, case=case, tz=tz)
    return Outcome(case, Event("report", case.id, reporter_id, "", "new"), assignee_changed=True)


async def me_too(*, session: AsyncSession, case: Case, user_id: int, now: datetime) -> bool:
    """Another resident has the same problem: they follow the case from now on. False if they
    already did (or reported it)."""
    return await service.subscribe(session=session, case=case, user_id=user_id, now=now)


async def confirm(*, session: AsyncSession, case: Case, actor: Actor, now: datetime) -> Outcome:
    ev = await service.move(session=session, case=case, action="confirm", actor=actor, now=now)
    case.next_check_at = None
    if case.assignee_id:
        await notify(session=session, now=now, chat_id=case.assignee_id, kind=MessageKind.CASE_CONFIRMED,
                     render=lambda t: t("cases.confirmed_worker", ref=case.ref))
    return Outcome(case, ev)


async def reopen(*, session: AsyncSession, case: Case, actor: Actor, now: datetime, tz, reason: str) -> Outcome:
    """Not fixed: back to the assignee with a new deadline, and the nearest supervisor is told."""
    ev = await service.move(session=session, case=case, action="reopen", actor=actor, now=now, note=reason)
    service.start_clock(case, await _category(session, case), now, tz)
    await messages.push_task(session=session, now=now, case=case, tz=tz, header="reopened", note=reason)
    sups = await service.supervisors_above(session=session, area_id=case.area_id)
    for sup in sups[:1]:
        if sup != case.assignee_id:
            await notify(session=session, now=now, chat_id=sup, kind=MessageKind.CASE_REOPENED_SUPERVISOR,
                         render=lambda t: t("cases.reopened_supervisor", ref=case.ref, reason=reason or "—"))
    return Outcome(case, ev)


async def rate(*, session: AsyncSession, case: Case, actor: Actor, now: datetime, stars: int) -> Outcome:
    ev = await service.move(session=session, case=case, action="rate", actor=actor, now=now, note=str(stars),
                            rating=stars)
    return Outcome(case, ev)


async def withdraw(*, session: AsyncSession, case: Case, actor: Actor, now: datetime, note: str) -> Outcome:
    ev = await service.move(session=session, case=case, action="withdraw", actor=actor, now=now, note=note)
    case.next_check_at = None
    if case.assignee_id:
        await notify(session=session, now=now, chat_id=case.assignee_id, kind=MessageKind.CASE_WITHDRAWN,
                     render=lambda t: t("cases.withdrawn_worker", ref=case.ref))
    return Outcome(case, ev)


# --- the worker's side ------------------------------------------------------------------------------


async def accept(*, session: AsyncSession, case: Case, actor: Actor, now: datetime) -> Outcome:
    ev = await service.move(session=session, case=case, action="accept", actor=actor, now=now)
    await messages.tell_followers(session=session, now=now, case=case, key="cases.accepted_notice",
                                  kind=MessageKind.CASE_ACCEPTED)
    return Outcome(case, ev)


async def resolve(*, session: AsyncSession, case: Case, actor: Actor, now: datetime, note: str,
                  photo: str | None, auto_close_after: timedelta) -> Outcome:
    """Fixed: the followers are asked to confirm; unconfirmed, the case closes itself later."""
    ev = await service.move(session=session, case=case, action="resolve", actor=actor, now=now, note=note)
    if photo:
        case.resolution_photo = photo
        session.add(CasePhoto(case_id=case.id, file_id=photo, kind="resolution"))
    case.next_check_at = now + auto_close_after
    await messages.tell_followers(session=session, now=now, case=case, key="cases.resolved_notice",
                                  kind=MessageKind.CASE_RESOLVED, buttons_for_reporter=messages.resolved_buttons(case),
                                  photos=[photo] if photo else None, note=case.resolution_note or "—")
    return Outcome(case, ev)


async def transfer(*, session: AsyncSession, case: Case, actor: Actor, now: datetime, tz, reason: str,
                   area_id: str | None = None, to: int | None = None) -> Outcome:
    """To another area (its responsible person takes it) or straight to a person; the clock
    starts over for the new assignee."""
    old_assignee = case.assignee_id
    ev = await service.move(session=session, case=case, action="transfer", actor=actor, now=now, note=reason)
    if area_id is not None:
        case.area_id = area_id
        case.assignee_id = (await load_tree(session=session)).responsible_for(area_id)
    else:
        case.assignee_id = to
    case.assigned_at = now
    service.start_clock(case, await _category(session, case), now, tz)
    changed = bool(case.assignee_id and case.assignee_id != old_assignee)
    if changed:
        await messages.push_task(session=session, now=now, case=case, tz=tz, header="transferred", note=reason)
    await messages.tell_followers(session=session, now=now, case=case, key="cases.transferred_notice",
                                  kind=MessageKind.CASE_TRANSFERRED)
    return Outcome(case, ev, assignee_changed=changed)


async def close(*, session: AsyncSession, case: Case, actor: Actor, now: datetime, note: str,
                duplicate_of: Case | None = None) -> Outcome:
    """An honest end: cannot be fixed (with a reason), or a duplicate of another case (whose
    followers it joins)."""
    action = "mark_duplicate" if duplicate_of is not None else "close_unresolved"
    ev = await service.move(session=session, case=case, action=action, actor=actor, now=now, note=note)
    case.next_check_at = None
    if duplicate_of is not None:
        case.duplicate_of = duplicate_of.id
        for uid in await service.followers(session=session, case=case):
            await service.subscribe(session=session, case=duplicate_of, user_id=uid, now=now)
        key, kind = "cases.duplicate_notice", MessageKind.CASE_MARK_DUPLICATE
    else:
        key, kind = "cases.closed_unresolved_notice", MessageKind.CASE_CLOSE_UNRESOLVED
    await messages.tell_followers(session=session, now=now, case=case, key=key, kind=kind, reason=note)
    return Outcome(case, ev)


async def auto_close(*, session: AsyncSession, case: Case, now: datetime, days: int) -> int:
    """Resolved and neither confirmed nor reopened within `days`: closed by the system, the
    followers told once each (the reporter can still rate). Returns how many were told."""
    await service.move(session=session, case=case, action="auto_close", actor=Actor.system(), now=now)
    case.next_check_at = None
    cat = await _category(session, case)
    told = 0
    for uid in await service.followers(session=session, case=case):
        key = f"autoclose:{case.id}" if uid == case.reporter_id else f"autoclose:{case.id}:{uid}"
        told += await notify(
            session=session, now=now, chat_id=uid, kind=MessageKind.AUTO_CLOSED, dedupe_key=key,
            render=lambda t: t("sched.auto_closed", ref=case.ref, category=messages.category_name(t, cat), days=days),
            buttons=messages.rating_buttons(case) if uid == case.reporter_id else None)
    return told


async def note(*, session: AsyncSession, case: Case, actor: Actor, now: datetime, text: str) -> Outcome:
    """A remark in the case's history (the assignee, a supervisor above or an admin)."""
    return Outcome(case, await service.move(session=session, case=case, action="note", actor=actor, now=now,
                                            note=text))


async def extend_deadline(*, session: AsyncSession, case: Case, actor: Actor, now: datetime, tz, hours: float,
                          reason: str) -> Outcome:
    """A supervisor above the case (or an admin) gives the assignee more time: the chase starts
    over towards the new deadline, and the assignee is told."""
    deadline = max(case.deadline_at or now, now) + timedelta(hours=hours)
    ev = await service.move(session=session, case=case, action="extend", actor=actor, now=now,
                            note=f"+{hours:g}h → {deadline.astimezone(tz):%m-%d %H:%M} · {reason}")
    case.deadline_at = deadline
    case.next_check_at = reminder_at(now, deadline, await _category(session, case), tz)
    case.chase_level = 0
    if case.assignee_id:
        shown = messages.fmt_time(deadline, tz)
        await notify(session=session, now=now, chat_id=case.assignee_id, kind=MessageKind.CASE_EXTENDED,
                     render=lambda t: t("web.extended_notice", ref=case.ref, deadline=shown, reason=reason))
    return Outcome(case, ev)


async def relay(*, session: AsyncSession, case: Case, sender_id: int, to: int, from_worker: bool, text: str,
                now: datetime) -> None:
    """A message between the worker and the resident through the bot, kept in the history."""
    ref = case.ref
    if from_worker:
        await notify(session=session, now=now, chat_id=to, kind=MessageKind.RELAY_TO_RESIDENT,
                     render=lambda t: t("work.relay_from_worker", ref=ref, text=text),
                     buttons=lambda t: [[Button(t("btn.reply"), f"rr:{case.id}")]])
    else:
        await notify(session=session, now=now, chat_id=to, kind=MessageKind.RELAY_TO_WORKER,
                     render=lambda t: t("work.relay_from_resident", ref=ref, text=text),
                     buttons=lambda t: [[Button(t("btn.reply"), f"c:msg:{case.id}")]])
    service.record(session, Event("message", case.id, sender_id, case.status, case.status, note=text[:200]), now)


__all__ = ["Draft", "Outcome", "TransitionError", "accept", "actor_for", "auto_close", "check", "close", "confirm", "extend_deadline", "me_too", "note", "rate",
           "relay", "reopen", "resolve", "submit_report", "transfer", "withdraw"]
