"""The escalation ladder (SPEC flow 4), as a pure function of the case's chase state and `now`.

    reminder ──► deadline: overdue to the assignee + the first supervisor
             ──► every ESCALATE_EVERY still overdue: the next supervisor up, … then the admins

`next_steps` says which rungs are due now and when to look again; the sweep (scheduler/jobs.py)
renders and queues the messages, writes the history rows and stores the new state. After an
outage every rung that fell due goes out at once, each once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

ESCALATE_EVERY = timedelta(hours=24)  # still overdue this long after the last level: the next one up


@dataclass(frozen=True)
class Ladder:
    """One case's rungs: when the reminder is due, the deadline, and who is escalated to,
    level by level (each supervisor up the tree, then the admins together)."""

    remind_at: datetime
    due: datetime
    groups: tuple[tuple[int, ...], ...]
    every: timedelta = ESCALATE_EVERY


@dataclass(frozen=True)
class Step:
    action: str  # remind | overdue | escalate
    level: int = 0  # the chase level an escalation reaches (2 = the first supervisor)
    number: int = 0  # the escalation's number as people see it (1 = the first supervisor)
    group: tuple[int, ...] = ()


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    level: int  # the case's chase level after the steps
    next_check_at: datetime | None  # always later than now; None = nothing left to do


def next_steps(level: int, ladder: Ladder, now: datetime) -> Plan:
    """The rungs due at `now` for a case at chase `level` (0 = nothing sent yet, 1 = reminded,
    n ≥ 2 = overdue and escalated to groups[0 .. n-2])."""
    due = ladder.due
    steps: list[Step] = []
    if level == 0:
        if now < ladder.remind_at:
            return Plan((), 0, ladder.remind_at)
        if now < due:
            return Plan((Step("remind"),), 1, due)
        # the sweep came late (the bot was down): a "due soon" reminder after the deadline is noise
    if level <= 1 and now < due:
        return Plan((), level, due)
    groups = ladder.groups
    if level <= 1:
        steps.append(Step("overdue"))
        if groups:
            steps.append(Step("escalate", 2, 1, groups[0]))
        level = 2
    nxt: datetime | None = None
    while True:
        done = level - 1  # groups[0 .. done-1] were escalated to
        if done >= len(groups):
            break
        at = due + ladder.every * done
        if now < at:
            nxt = at
            break
        steps.append(Step("escalate", level + 1, done + 1, groups[done]))
        level += 1
    return Plan(tuple(steps), level, nxt)


def escalation_groups(supervisors: list[int], admins: list[int], assignee: int | None) -> tuple[tuple[int, ...], ...]:
    """Each supervisor up the tree on their own, then the admins together; never the assignee."""
    sups = [s for s in supervisors if s != assignee]
    out = [(s,) for s in sups]
    rest = tuple(a for a in admins if a != assignee and a not in sups)
    if rest:
        out.append(rest)
    return tuple(out)
