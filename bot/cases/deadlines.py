"""Deadlines from a category's SLA, in calendar time or in working time.

Working time skips weekends and Chinese public holidays and counts make-up working days
(调休), from the chinese_calendar library's official schedule.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=4096)
def is_working_day(d: date) -> bool:
    try:
        import chinese_calendar  # optional: without it only weekends are days off

        return chinese_calendar.is_workday(d)
    except Exception:  # a year the calendar does not cover yet: plain weekdays
        return d.weekday() < 5


def deadline(start: datetime, sla_hours: float, *, working_time: bool, tz: ZoneInfo) -> datetime:
    """When a case started at `start` is due. Working time counts only hours that fall on
    working days (in the local time zone); a start on a day off counts from the next working day."""
    if not working_time:
        return start + timedelta(hours=sla_hours)
    local = start.astimezone(tz)
    remaining = timedelta(hours=sla_hours)
    cursor = local
    for _ in range(3660):  # ten years of days: a bound, never reached in practice
        day_end = datetime.combine(cursor.date() + timedelta(days=1), datetime.min.time(), tzinfo=tz)
        if is_working_day(cursor.date()):
            available = day_end - cursor
            if remaining <= available:
                return (cursor + remaining).astimezone(start.tzinfo)
            remaining -= available
        cursor = day_end
    raise ValueError("deadline too far in the future")


REMIND_AT = 0.8  # the assignee is reminded at 80% of the time allowed


def reminder_time(start: datetime, due: datetime, fraction: float = REMIND_AT) -> datetime:
    """The pre-deadline reminder: at `fraction` of the time allowed."""
    return start + (due - start) * fraction


def reminder_at(start: datetime, due: datetime, category, tz: ZoneInfo) -> datetime:
    """When the assignee is reminded: at REMIND_AT of the time allowed. For a working-time
    SLA that is REMIND_AT of the working time (never on the weekend before a Monday deadline)."""
    if category is not None and category.working_hours and category.sla_hours:
        r = deadline(start, category.sla_hours * REMIND_AT, working_time=True, tz=tz)
    else:
        r = reminder_time(start, due, REMIND_AT)
    return min(r, due)
