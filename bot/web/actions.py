"""What a supervisor does from the desk: transfer, add a note, extend a deadline.

Each goes through the case state machine (bot.cases.transitions: the same right-to-act check as a
button in chat), writes the same history row, and tells people through the same outbox, inside
the caller's one transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.areas.models import Area
from bot.cases import flows, service
from bot.cases.models import Case
from bot.cases.transitions import TransitionError

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
        await flows.note(session=session, case=case, actor=await _actor(session, case, user_id, is_admin), now=now,
                         text=text)
    except TransitionError as e:
        raise ActionError(e.reason) from None


async def extend_deadline(*, session: AsyncSession, now: datetime, tz, case: Case, user_id: int, is_admin: bool,
                          hours: float, reason: str) -> None:
    """A supervisor above the case (or an admin) gives the assignee more time, with a reason."""
    reason = _text(reason)
    if not 0 < hours <= MAX_EXTEND_HOURS:
        raise ActionError("web.err_bad_hours")
    try:
        await flows.extend_deadline(session=session, case=case, actor=await _actor(session, case, user_id, is_admin),
                                    now=now, tz=tz, hours=hours, reason=reason)
    except TransitionError as e:
        raise ActionError(e.reason) from None
