"""What a supervisor does from the desk: transfer, add a note, extend a deadline.

Each goes through the case state machine (bot.cases.transitions: the same right-to-act check as a
button in chat), writes the same history row, and tells people through the same outbox, inside
the caller's one transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.areas.models import Area, Category
from bot.cases import flows, messages, service
from bot.cases.deadlines import reminder_at
from bot.cases.models import Case
from bot.cases.transitions import OPEN, Event, NotAllowed, TransitionError
from bot.notify import notify
from bot.outbox.kinds import MessageKind

MAX_NOTE = 1000
MAX_EXTEND_HOURS = 24 * 30


class ActionError(Exception):
    """Refused; `key` is a catalog key shown to the viewer."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


async def _actor(session: AsyncSession, case: Case, user_id: int, is_admin: bool):
    return await service.actor_for(session=session, case=case, user_id=user_id, is_admin=is_admin)


def _text(value: str, *, required: bool = True) -> str:
    value = (value or "").strip()
    if required and not value:
        raise ActionError("web.err_reason_needed")
    if len(value) > MAX_NOTE:
        raise ActionError("web.err_too_long")
    return value


async def transfer(*, session: AsyncSession, now: datetime, tz, case: Case, user_id: int, is_admin: bool,
                   area_id: str, reason: str) -> None:
    """Move the case to another area's captain, with a reason; the clock starts over."""
    reason = _text(reason)
    area = await session.get(Area, area_id) if area_id else None
    if area is None or area.retired:
        raise ActionError("web.err_no_area")
    try:
        await flows.transfer(session=session, case=case, actor=await _actor(session, case, user_id, is_admin),
                             now=now, tz=tz, reason=reason, area_id=area.id)
    except TransitionError as e:
        raise ActionError(e.reason) from None


async def add_note(*, session: AsyncSession, now: datetime, case: Case, user_id: int, is_admin: bool,
                   text: str) -> None:
    text = _text(text)
    try:
        await service.move(session=session, case=case, action="note",
                           actor=await _actor(session, case, user_id, is_admin), now=now, note=text)
    except TransitionError as e:
        raise ActionError(e.reason) from None


async def extend_deadline(*, session: AsyncSession, now: datetime, tz, case: Case, user_id: int, is_admin: bool,
                          hours: float, reason: str) -> None:
    """A supervisor above the case (or an admin) gives the assignee more time, with a reason."""
    reason = _text(reason)
    if not 0 < hours <= MAX_EXTEND_HOURS:
        raise ActionError("web.err_bad_hours")
    actor = await _actor(session, case, user_id, is_admin)
    if not (actor.supervises_area or actor.is_admin):
        raise ActionError(NotAllowed.reason)
    if case.status not in OPEN:
        raise ActionError("cases.err_illegal_move")
    base = max(case.deadline_at or now, now)
    case.deadline_at = base + timedelta(hours=hours)
    case.updated_at = now
    category = await session.get(Category, case.category_id)
    case.next_check_at = reminder_at(now, case.deadline_at, category, tz)
    case.chase_level = 0
    service.record(session, Event("extend", case.id, user_id, case.status, case.status,
                                  note=f"+{hours:g}h → {case.deadline_at.astimezone(tz):%m-%d %H:%M} · {reason}"), now)
    if case.assignee_id:
        deadline = messages.fmt_time(case.deadline_at, tz)
        await notify(session=session, now=now, chat_id=case.assignee_id, kind=MessageKind.CASE_EXTENDED,
                     render=lambda t: t("web.extended_notice", ref=case.ref, deadline=deadline, reason=reason))
