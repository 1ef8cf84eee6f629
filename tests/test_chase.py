"""The escalation ladder on its own: which rungs are due at a given time, and when to look again."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot.cases.chase import Ladder, Plan, Step, escalation_groups, next_steps
from tests.conftest import li, song, sun, zhao

DUE = datetime(2026, 11, 26, 1, 0, tzinfo=timezone.utc)
LADDER = Ladder(remind_at=DUE - timedelta(hours=14), due=DUE, groups=((zhao.id,), (song.id,), (sun.id,)))
DAY = timedelta(hours=24)


def test_nothing_before_the_reminder_then_the_reminder_once():
    assert next_steps(0, LADDER, LADDER.remind_at - timedelta(minutes=1)) == Plan((), 0, LADDER.remind_at)
    assert next_steps(0, LADDER, LADDER.remind_at) == Plan((Step("remind"),), 1, DUE)
    assert next_steps(1, LADDER, LADDER.remind_at + timedelta(hours=1)) == Plan((), 1, DUE)


def test_at_the_deadline_overdue_and_the_first_supervisor():
    plan = next_steps(1, LADDER, DUE)
    assert plan == Plan((Step("overdue"), Step("escalate", 2, 1, (zhao.id,))), 2, DUE + DAY)


def test_it_climbs_one_rung_a_day_then_stops():
    assert next_steps(2, LADDER, DUE + DAY).steps == (Step("escalate", 3, 2, (song.id,)),)
    assert next_steps(3, LADDER, DUE + 2 * DAY) == Plan((Step("escalate", 4, 3, (sun.id,)),), 4, None)
    assert next_steps(4, LADDER, DUE + 10 * DAY) == Plan((), 4, None)


def test_after_an_outage_every_due_rung_goes_out_at_once_without_a_late_reminder():
    plan = next_steps(0, LADDER, DUE + 2 * DAY)
    assert [s.action for s in plan.steps] == ["overdue", "escalate", "escalate", "escalate"]
    assert plan.level == 4 and plan.next_check_at is None


def test_groups_skip_the_assignee_and_put_the_admins_last_together():
    assert escalation_groups([zhao.id, song.id], [sun.id, 9101, zhao.id], li.id) == ((zhao.id,), (song.id,), (sun.id, 9101))
    assert escalation_groups([zhao.id, song.id], [sun.id], zhao.id) == ((song.id,), (sun.id,))
