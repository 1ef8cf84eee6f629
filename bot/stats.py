"""Case statistics: the one place every figure is computed (digests, weekly list, /stats).

Everything is aggregated in SQL, grouped by area, in a fixed number of queries whatever the
number of areas or workers; callers roll areas up into subtrees in Python (the area tree is
small). Figures for a period [start, end):

- new        cases reported in the period
- assigned   cases assigned (or re-assigned) in the period; responded: of those, accepted or
             resolved within `response_hours` (the 12345 hotline's 响应率)
- accepted, resolved, closed   moves made in the period (resolved counts only cases still fixed)
- due        cases whose deadline fell in the period (up to `now`); of those
  due_fixed          resolved or closed now        → resolution rate  (办结率)
  due_fixed_on_time  resolved by the deadline      → rectification rate (整改率)
  overdue            not finished by the deadline
- rated / satisfied   cases closed in the period with a rating / a rating ≥ 4 (满意率)
- open / overdue_open  the state now, not tied to the period

"closed_unresolved", "duplicate" and "withdrawn" never count as fixed (transitions.FIXED).

Indexes: the period query reads only the cases with an event or a deadline in the period,
found by the index of each time column (a few thousand rows a day, however many cases were
ever closed; a period longer than a week reads the cases reported since the cutoff); the state
now and the lists of open cases walk the partial indexes over open cases (bot/cases/models.py),
which SQLite and PostgreSQL use only when the open states are written into the statement
(`literal_in`). Events in the period on cases reported before `start - lookback` and already
final are not counted (a case closed this week that was reported three months ago); pass a
longer `lookback` for an exact historical report.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import and_, bindparam, case, extract, func, literal_column, or_, select, true, union, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from bot.areas.models import Area
from bot.cases.models import Case
from bot.cases.transitions import FIXED, OPEN
from bot.sql import dialect_name

RESPONSE_HOURS = 24  # 12345 practice: a task must be signed for (签收) within a working day
LOOKBACK = timedelta(days=45)  # longer than an SLA plus the auto-close time
SHORT_PERIOD = timedelta(days=7)  # up to this, a period's cases are found by the indexes of their times
SATISFIED_RATING = 4
ACTIVE = OPEN + ("resolved",)  # not final: events on these may happen any time
GRID_LEVEL = 2  # 街道 0 → 社区 1 → 网格 2 → 微网格 3


@dataclass
class Figures:
    new: int = 0
    assigned: int = 0
    responded: int = 0
    accepted: int = 0
    resolved: int = 0
    closed: int = 0
    due: int = 0
    due_fixed: int = 0
    due_fixed_on_time: int = 0
    overdue: int = 0
    rated: int = 0
    satisfied: int = 0
    open: int = 0
    overdue_open: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @staticmethod
    def _rate(num: int, den: int) -> float | None:
        return num / den if den else None

    @property
    def rectification_rate(self) -> float | None:
        """整改率: fixed by the deadline / due."""
        return self._rate(self.due_fixed_on_time, self.due)

    @property
    def resolution_rate(self) -> float | None:
        """办结率: resolved or closed / due."""
        return self._rate(self.due_fixed, self.due)

    @property
    def response_rate(self) -> float | None:
        """响应率: accepted within RESPONSE_HOURS / assigned."""
        return self._rate(self.responded, self.assigned)

    @property
    def satisfaction_rate(self) -> float | None:
        """满意率: ratings ≥ 4 / rated."""
        return self._rate(self.satisfied, self.rated)

    @property
    def quiet(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.0f}%"


# --- figures ------------------------------------------------------------------------------------


def _hours(session: AsyncSession, a, b):
    """b - a in hours, in SQL."""
    if dialect_name(session) == "sqlite":
        return (func.julianday(b) - func.julianday(a)) * 24.0
    return extract("epoch", b - a) / 3600.0


def _count(cond):
    return func.count(case((cond, 1)))


def literal_in(column, values):
    """`column IN ('a', 'b')` with the values written into the SQL (not bound): a planner uses a
    partial index only for a condition it can see implies the index's, and a bound parameter
    could be anything."""
    return column.in_(bindparam("states", list(values), expanding=True, literal_execute=True, unique=True))


def _period_figures(session, start, end, now, response_hours) -> dict:
    """Each period figure: the condition a case must meet to count."""
    def within(col):
        return and_(col >= start, col < end)

    due_end = min(end, now)
    due = and_(Case.deadline_at >= start, Case.deadline_at < due_end)
    fixed = Case.status.in_(FIXED)
    on_time = and_(fixed, Case.resolved_at <= Case.deadline_at)
    finished = func.coalesce(Case.resolved_at, Case.closed_at)
    responded_at = func.coalesce(Case.accepted_at, Case.resolved_at)
    cols = {
        "new": within(Case.created_at),
        "assigned": and_(within(Case.assigned_at), Case.assignee_id.is_not(None)),
        "responded": and_(within(Case.assigned_at), Case.assignee_id.is_not(None), responded_at >= Case.assigned_at,
                          _hours(session, Case.assigned_at, responded_at) <= response_hours),
        "accepted": within(Case.accepted_at),
        "resolved": and_(within(Case.resolved_at), fixed),
        "closed": and_(within(Case.closed_at), Case.status == "closed"),
        "due": due,
        "due_fixed": and_(due, fixed),
        "due_fixed_on_time": and_(due, on_time),
        "overdue": and_(due, Case.status.not_in(("withdrawn", "duplicate")),
                        (finished.is_(None)) | (finished > Case.deadline_at)),
        "rated": and_(within(Case.closed_at), Case.rating.is_not(None)),
        "satisfied": and_(within(Case.closed_at), Case.rating >= SATISFIED_RATING),
    }
    return cols


async def breakdown(*, session: AsyncSession, area_ids: list[str] | None, start: datetime, end: datetime,
                    now: datetime, response_hours: float = RESPONSE_HOURS,
                    lookback: timedelta = LOOKBACK) -> dict[str | None, Figures]:
    """Figures per area (cases without an area under None), in one statement: the period's
    figures over the cases with one of their times in the period (each time column's index: a
    few thousand rows a day, however many cases were ever closed), counting those reported since
    the cutoff or still active; and the state now over the open cases (ix_cases_open_area).

    SQLite reads each such case once, by id (the ids: a union over the time columns' indexes);
    PostgreSQL counts each time column's figures over its own index's rows (a bitmap scan each,
    cheaper there than fetching the ids from the table first and the rows again). A period
    longer than SHORT_PERIOD has a time of most cases reported since the cutoff: those are read
    (ix_cases_created), and the active cases reported before."""
    cutoff = start - lookback
    per: dict[str | None, Figures] = defaultdict(Figures)
    figures = _period_figures(session, start, end, now, response_hours)
    names = [*figures, "open", "overdue_open"]
    # every period figure needs one of these times in the period: the figures by that time
    times = {"created_at": ("new",), "assigned_at": ("assigned", "responded"), "accepted_at": ("accepted",),
             "resolved_at": ("resolved",), "closed_at": ("closed", "rated", "satisfied"),
             "deadline_at": ("due", "due_fixed", "due_fixed_on_time", "overdue")}

    def in_period(column: str):
        col = getattr(Case, column)
        return and_(col >= start, col < (min(end, now) if column == "deadline_at" else end))

    # counted inside each count, not in WHERE: PostgreSQL would otherwise AND the time index's
    # bitmap with one of every case reported since the cutoff
    counted = and_(Case.created_at < end, or_(Case.created_at >= cutoff, literal_in(Case.status, ACTIVE)))

    def part(counts: dict, *where):
        q = select(Case.area_id, *[counts[k].label(k) if k in counts else literal_column("0").label(k)
                                   for k in names]).where(*where)
        if area_ids is not None:
            q = q.where(Case.area_id.in_(area_ids))
        return q.group_by(Case.area_id)

    if end - start > SHORT_PERIOD:
        every = {k: _count(c) for k, c in figures.items()}
        parts = [part(every, Case.created_at >= cutoff, Case.created_at < end),
                 part(every, literal_in(Case.status, ACTIVE), Case.created_at < cutoff)]
    elif dialect_name(session) == "postgresql":
        parts = [part({k: _count(and_(figures[k], counted)) for k in keys}, in_period(column))
                 for column, keys in times.items()]
    else:
        touched = union(*[select(Case.id).where(in_period(column)) for column in times])
        parts = [part({k: _count(and_(c, counted)) for k, c in figures.items()}, Case.id.in_(touched))]
    parts.append(part({"open": func.count(), "overdue_open": _count(Case.deadline_at < now)},
                      literal_in(Case.status, OPEN)))
    for row in (await session.execute(union_all(*parts))).all():
        f = per[row[0]]
        for k, v in zip(names, row[1:]):
            if v:
                setattr(f, k, getattr(f, k) + int(v))
    return dict(per)


def rollup(per_area: dict[str | None, Figures], area_ids: list[str] | None = None) -> Figures:
    """The sum over `area_ids` (None = everything)."""
    keys = per_area.keys() if area_ids is None else [a for a in area_ids if a in per_area]
    total = Figures()
    for k in keys:
        total = total + per_area[k]
    return total


async def figures(*, session: AsyncSession, area_ids: list[str] | None, start: datetime, end: datetime,
                  now: datetime, response_hours: float = RESPONSE_HOURS, lookback: timedelta = LOOKBACK) -> Figures:
    """The figures for a set of areas (a subtree: see AreaTree.subtree; None = the district)."""
    return rollup(await breakdown(session=session, area_ids=area_ids, start=start, end=end, now=now,
                                  response_hours=response_hours, lookback=lookback))


# --- lists -------------------------------------------------------------------------------------


class Item(NamedTuple):
    """A case in a list: what a digest line needs, without loading the whole row (a tuple: a
    digest builds ten thousand of these)."""

    id: int
    area_id: str | None
    assignee_id: int | None
    category_id: str
    description: str
    address: str
    deadline_at: datetime | None
    status: str

    @property
    def ref(self) -> str:
        return f"#{self.id}"


_ITEM_COLUMNS = (Case.id, Case.area_id, Case.assignee_id, Case.category_id, Case.description, Case.address,
                 Case.deadline_at, Case.status)


async def _rows(session: AsyncSession, q) -> list:
    """The rows of a select of plain columns, run on the session's connection: the ORM's
    per-row loading adds nothing to columns and cost as much as the query for the digest's
    ten thousand tasks."""
    return list((await (await session.connection()).execute(q)).all())


def _items(rows) -> list[Item]:
    return [Item(i, area, who, cat, desc or "", addr or "", deadline, status)
            for i, area, who, cat, desc, addr, deadline, status in rows]


def _first_open(session: AsyncSession, keys, column: str, per: int, cond=lambda c: (),
                order=("deadline_at", "id")):
    """The `per` open cases with the earliest deadlines for each value of `keys` (a subquery
    with one column, k) in `column`, sorted by `order`: each key's few rows are read in order
    from the partial index over open cases (`column`, deadline_at, id), never the whole index
    as a window over it would (31,000 overdue entries for the 90 rows of the digest's lists).
    `cond(c)` gives further conditions on the aliased cases `c`. SQLite runs the correlated
    subquery once per key (it has no LATERAL) and reads the rows by id; PostgreSQL a LATERAL
    join that reads them as it walks the index."""
    c = aliased(Case)
    where = [getattr(c, column) == keys.c.k, literal_in(c.status, OPEN), *cond(c)]
    if dialect_name(session) == "postgresql":
        lat = (select(*(getattr(c, col.key) for col in _ITEM_COLUMNS)).where(*where)
               .order_by(c.deadline_at, c.id).limit(per).lateral())
        return select(*lat.c).select_from(keys).join(lat, true()).order_by(*(lat.c[n] for n in order))
    firsts = select(c.id).where(*where).order_by(c.deadline_at, c.id).limit(per)
    return (select(*_ITEM_COLUMNS).select_from(keys).join(Case, Case.id.in_(firsts))
            .order_by(*(getattr(Case, n) for n in order)))


async def overdue_by_area(*, session: AsyncSession, now: datetime, per_area: int = 5,
                          area_ids: list[str] | None = None) -> dict[str | None, list[Item]]:
    """The oldest overdue open cases of each area (at most per_area each): one query over the
    areas, and one for the cases without an area (all areas only).

    The k oldest of a subtree are among the k oldest of its areas, so callers merge these."""
    keys = select(Area.id.label("k"))
    if area_ids is not None:
        keys = keys.where(Area.id.in_(area_ids))
    q = _first_open(session, keys.subquery(), "area_id", per_area, lambda c: [c.deadline_at < now])
    rows = await _rows(session, q)
    if area_ids is None:
        rows += await _rows(session, select(*_ITEM_COLUMNS).where(
            literal_in(Case.status, OPEN), Case.area_id.is_(None), Case.deadline_at < now)
            .order_by(Case.deadline_at, Case.id).limit(per_area))
    out: dict[str | None, list[Item]] = defaultdict(list)
    for item in _items(rows):
        out[item.area_id].append(item)
    return dict(out)


def oldest(per_area: dict[str | None, list[Item]], area_ids: list[str] | None, limit: int = 5) -> list[Item]:
    keys = per_area.keys() if area_ids is None else [a for a in area_ids if a in per_area]
    items = [i for k in keys for i in per_area[k]]
    return sorted(items, key=lambda i: (i.deadline_at, i.id))[:limit]


async def overdue_cases(*, session: AsyncSession, now: datetime, area_ids: list[str] | None = None,
                        limit: int = 500) -> tuple[list[Item], int]:
    """Open overdue cases, oldest deadline first (the weekly list), and how many there are."""
    cond = [literal_in(Case.status, OPEN), Case.deadline_at < now]
    if area_ids is not None:
        cond.append(Case.area_id.in_(area_ids))
    total = (await session.execute(select(func.count()).select_from(Case).where(*cond))).scalar_one()
    rows = (await session.execute(select(*_ITEM_COLUMNS).where(*cond).order_by(Case.deadline_at, Case.id)
                                  .limit(limit))).all()
    return _items(rows), int(total)


@dataclass
class Load:
    open: int = 0
    overdue: int = 0
    tasks: list[Item] = field(default_factory=list)


async def workloads(*, session: AsyncSession, now: datetime, per_worker: int = 10) -> dict[int, Load]:
    """Every assignee's open and overdue counts and most urgent tasks: two queries in all
    (a grouped count and a window over the open cases), never one per worker."""
    counts = (select(Case.assignee_id, func.count().label("open"),
                     _count(Case.deadline_at < now).label("overdue"))
              .where(literal_in(Case.status, OPEN), Case.assignee_id.is_not(None)).group_by(Case.assignee_id))
    out: dict[int, Load] = {}
    for r in await _rows(session, counts):
        out[int(r.assignee_id)] = Load(open=int(r.open), overdue=int(r.overdue))
    # the assignees with open cases (a walk of ix_cases_open_assignee), then each one's first few
    keys = (select(Case.assignee_id.label("k")).where(literal_in(Case.status, OPEN), Case.assignee_id.is_not(None))
            .group_by(Case.assignee_id).subquery())
    q = _first_open(session, keys, "assignee_id", per_worker, order=("assignee_id", "deadline_at", "id"))
    for item in _items(await _rows(session, q)):
        if item.assignee_id in out:
            out[item.assignee_id].tasks.append(item)
    return out


async def counts_by(session, column, area_ids, start, end):
    """Cases created in [start, end) counted by one column (status, category_id …)."""
    q = select(column, func.count()).where(Case.created_at >= start, Case.created_at < end).group_by(column)
    if area_ids is not None:
        q = q.where(Case.area_id.in_(area_ids))
    return list((await session.execute(q)).all())


async def per_day(session, area_ids, start, end, tz) -> list[tuple[date, int]]:
    """Cases created per local day in [start, end); days with none are 0. Days are cut in Python:
    the local day boundary is written differently in every SQL dialect, and a period has few rows."""
    q = select(Case.created_at).where(Case.created_at >= start, Case.created_at < end)
    if area_ids is not None:
        q = q.where(Case.area_id.in_(area_ids))
    per: dict[date, int] = {}
    for (at,) in (await session.execute(q)).all():
        d = at.astimezone(tz).date()
        per[d] = per.get(d, 0) + 1
    first, last = start.astimezone(tz).date(), (end - timedelta(seconds=1)).astimezone(tz).date()
    out, d = [], first
    while d <= last:
        out.append((d, per.get(d, 0)))
        d += timedelta(days=1)
    return out
