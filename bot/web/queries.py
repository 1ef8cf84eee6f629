"""What the console pages show, read in a fixed, small number of queries per page.

The figures come from bot.stats (the one place 三率 are computed); this module only scopes them
to the viewer and shapes them for the templates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Integer, and_, case, cast, extract, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import stats
from bot.areas.models import Area, Category
from bot.cases.models import Case, CaseEvent, CasePhoto
from bot.cases.transitions import FIXED, OPEN
from bot.core_models import UnansweredQuestion
from bot.people.models import AuditEntry, Person
from bot.web.scope import Viewer

RATES_DAYS = 30  # the period of the 三率 table
TREND_WEEKS = 8
COMMUNITY_LEVEL = 1
MAP_LIMIT = 3000


def _n(cond):
    return func.count(case((cond, 1)))


@dataclass
class RateRow:
    area_id: str
    name: str
    level: int
    figures: stats.Figures


@dataclass
class Week:
    start: datetime
    new: int = 0
    due: int = 0
    on_time: int = 0

    @property
    def rectification(self) -> float | None:
        return self.on_time / self.due if self.due else None


@dataclass
class Overview:
    open: int = 0
    overdue: int = 0
    resolved_today: int = 0
    new_today: int = 0
    rows: list[RateRow] = field(default_factory=list)
    total: stats.Figures | None = None
    weeks: list[Week] = field(default_factory=list)


def local_midnight(now: datetime, tz) -> datetime:
    loc = now.astimezone(tz)
    return loc.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(now.tzinfo)


async def overview(*, session: AsyncSession, viewer: Viewer, now: datetime, tz) -> Overview:
    out = Overview()
    scope = viewer.case_filter()
    today = local_midnight(now, tz)
    # 1. the state now and today's moves: one pass over the active cases and today's
    q = select(_n(Case.status.in_(OPEN)).label("open"),
               _n(and_(Case.status.in_(OPEN), Case.deadline_at < now)).label("overdue"),
               ).where(scope, Case.status.in_(OPEN))
    row = (await session.execute(q)).one()
    out.open, out.overdue = int(row.open or 0), int(row.overdue or 0)
    # resolved today: on cases reported since today - LOOKBACK (the created_at index), as bot.stats
    q = select(_n(and_(Case.resolved_at >= today, Case.status.in_(FIXED))).label("resolved"),
               _n(Case.created_at >= today).label("new")).where(scope, Case.created_at >= today - stats.LOOKBACK)
    row = (await session.execute(q)).one()
    out.resolved_today, out.new_today = int(row.resolved or 0), int(row.new or 0)
    # 2. 三率 per community and grid over the last RATES_DAYS (bot.stats, grouped by area)
    if viewer.supervisor:
        per = await stats.breakdown(session=session, area_ids=viewer.area_ids, start=now - timedelta(days=RATES_DAYS),
                                    end=now, now=now)
        tree = viewer.tree
        shown = set(viewer.visible_areas())
        for aid in viewer.visible_areas():
            a = viewer.rows.get(aid)
            if a is None or a.level not in (COMMUNITY_LEVEL, stats.GRID_LEVEL):
                continue
            sub = [x for x in tree.subtree(aid) if x in shown]
            out.rows.append(RateRow(aid, a.name, a.level, stats.rollup(per, sub)))
        out.total = stats.rollup(per, None)
    # 3. the trend: cases reported and deadlines met, per week, in one grouped pass
    out.weeks = await weekly_trend(session=session, viewer=viewer, now=now, tz=tz)
    return out


def _week_index(session: AsyncSession, col, first: datetime):
    """Whole weeks from `first` to `col`, in SQL (col >= first)."""
    from bot.db import UTCDateTime
    from bot.sql import dialect_name

    origin = literal(first, UTCDateTime())
    if dialect_name(session) == "sqlite":
        return cast((func.julianday(col) - func.julianday(origin)) / 7, Integer)
    return cast(func.floor(extract("epoch", col - origin) / 604800), Integer)


async def weekly_trend(*, session: AsyncSession, viewer: Viewer, now: datetime, tz,
                       weeks: int = TREND_WEEKS) -> list[Week]:
    """Cases reported, and deadlines met of those due, per week: two grouped queries on the
    created_at index (a case falls due at most LOOKBACK after it is reported)."""
    today = local_midnight(now, tz)
    monday = today - timedelta(days=today.astimezone(tz).weekday())
    starts = [monday - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]
    first = starts[0]
    out = [Week(start=s) for s in starts]
    scope = viewer.case_filter()
    wk = _week_index(session, Case.created_at, first).label("wk")
    q = select(wk, func.count()).where(scope, Case.created_at >= first, Case.created_at <= now).group_by(wk)
    for i, n in (await session.execute(q)).all():
        if 0 <= i < weeks:
            out[i].new += int(n)
    wk = _week_index(session, Case.deadline_at, first).label("wk")
    q = (select(wk, func.count(), _n(and_(Case.status.in_(FIXED), Case.resolved_at <= Case.deadline_at)))
         .where(scope, Case.created_at >= first - stats.LOOKBACK, Case.deadline_at >= first, Case.deadline_at < now)
         .group_by(wk))
    for i, due, ok in (await session.execute(q)).all():
        if 0 <= i < weeks:
            out[i].due += int(due)
            out[i].on_time += int(ok or 0)
    return out


# --- the map -------------------------------------------------------------------------------------------


async def map_data(*, session: AsyncSession, viewer: Viewer, now: datetime, category: str = "", status: str = "",
                   area: str = "", age_days: int = 0) -> dict:
    cond = [viewer.case_filter(), Case.status.in_(OPEN), Case.lat.is_not(None), Case.lon.is_not(None)]
    if category:
        cond.append(Case.category_id == category)
    if status == "overdue":
        cond.append(Case.deadline_at < now)
    elif status in OPEN:
        cond.append(Case.status == status)
    if area:
        cond.append(Case.area_id.in_(viewer.tree.subtree(area)))
    if age_days > 0:
        cond.append(Case.created_at <= now - timedelta(days=age_days))
    rows = (await session.execute(
        select(Case.id, Case.lat, Case.lon, Case.status, Case.category_id, Case.deadline_at, Case.area_id)
        .where(*cond).order_by(Case.id.desc()).limit(MAP_LIMIT))).all()
    pins = [{"id": r.id, "lat": r.lat, "lon": r.lon, "category": r.category_id,
             "status": "overdue" if r.deadline_at is not None and r.deadline_at < now else r.status,
             "area": viewer.tree.name(r.area_id)} for r in rows]
    shapes = []
    ids = viewer.visible_areas()
    if area:
        ids = [a for a in ids if a in set(viewer.tree.subtree(area))]
    for aid in ids:
        a = viewer.rows.get(aid)
        if a is None or not a.boundary:
            continue
        ring = a.boundary
        # a boundary is a ring of [lon, lat]; a few grid files nest it one level deeper
        if ring and isinstance(ring[0], list) and ring[0] and isinstance(ring[0][0], list):
            ring = ring[0]
        shapes.append({"id": a.id, "name": a.name, "level": a.level, "ring": [[p[1], p[0]] for p in ring]})
    return {"pins": pins, "areas": shapes, "truncated": len(pins) >= MAP_LIMIT}


# --- lists ----------------------------------------------------------------------------------------------


@dataclass
class BoardRow:
    case: Case
    category: str
    area: str
    assignee: str
    overdue_hours: float


async def overdue_board(*, session: AsyncSession, viewer: Viewer, now: datetime, lang: str,
                        limit: int = 200) -> tuple[list[BoardRow], int]:
    cond = [viewer.case_filter(), Case.status.in_(OPEN), Case.deadline_at < now]
    total = (await session.execute(select(func.count()).select_from(Case).where(*cond))).scalar_one()
    cases = list((await session.execute(select(Case).where(*cond).order_by(Case.deadline_at, Case.id)
                                        .limit(limit))).scalars())
    cats = await category_names(session, lang)
    people = await person_names(session, {c.assignee_id for c in cases if c.assignee_id})
    rows = [BoardRow(c, cats.get(c.category_id, c.category_id), viewer.tree.name(c.area_id),
                     people.get(c.assignee_id, str(c.assignee_id or "—")),
                     (now - c.deadline_at).total_seconds() / 3600) for c in cases]
    return rows, int(total)


async def category_names(session: AsyncSession, lang: str) -> dict[str, str]:
    rows = (await session.execute(select(Category).order_by(Category.sort_order))).scalars()
    return {c.id: (c.name_en or c.name) if lang == "en" else c.name for c in rows}


async def person_names(session: AsyncSession, ids) -> dict[int, str]:
    ids = [i for i in ids if i is not None]
    if not ids:
        return {}
    rows = (await session.execute(select(Person.id, Person.name).where(Person.id.in_(ids)))).all()
    return {r.id: r.name or str(r.id) for r in rows}


@dataclass
class CaseFile:
    case: Case
    category: str
    area: str
    assignee: str
    reporter: str  # only when the resident agreed to share their contact
    history: list[tuple[CaseEvent, str]]
    photos: list[CasePhoto]
    viewers: list[tuple[str, datetime]]


VIEWED = "console_view"


async def case_file(*, session: AsyncSession, case: Case, lang: str, resident: str = "resident") -> CaseFile:
    cats = await category_names(session, lang)
    area = await session.get(Area, case.area_id) if case.area_id else None
    events = list((await session.execute(select(CaseEvent).where(CaseEvent.case_id == case.id)
                                         .order_by(CaseEvent.at, CaseEvent.id))).scalars())
    photos = list((await session.execute(select(CasePhoto).where(CasePhoto.case_id == case.id)
                                         .order_by(CasePhoto.id))).scalars())
    views = (await session.execute(select(AuditEntry.actor_id, func.max(AuditEntry.at).label("at"))
                                   .where(AuditEntry.action == VIEWED, AuditEntry.detail == case.ref)
                                   .group_by(AuditEntry.actor_id).order_by(func.max(AuditEntry.at).desc()))).all()
    ids = {e.actor_id for e in events} | {case.assignee_id} | {v.actor_id for v in views}
    if case.share_contact:
        ids.add(case.reporter_id)
    names = await person_names(session, ids)
    reporter = ""
    if case.share_contact:
        rep = await session.get(Person, case.reporter_id)
        if rep is not None:
            reporter = rep.name + (f" @{rep.username}" if rep.username else "")

    def who(uid):
        if uid is None:
            return "—"
        if uid == case.reporter_id and not case.share_contact:
            return resident
        return names.get(uid, str(uid))

    return CaseFile(case=case, category=cats.get(case.category_id, case.category_id),
                    area=area.name if area else "—", assignee=names.get(case.assignee_id, "—"),
                    reporter=reporter, history=[(e, who(e.actor_id)) for e in events], photos=photos,
                    viewers=[(names.get(v.actor_id, str(v.actor_id)), v.at) for v in views])


def record_view(session: AsyncSession, *, case: Case, viewer_id: int, now: datetime) -> None:
    session.add(AuditEntry(at=now, actor_id=viewer_id, action=VIEWED, detail=case.ref))


async def unanswered(*, session: AsyncSession, limit: int = 50) -> list:
    return (await session.execute(
        select(UnansweredQuestion.normalized, func.count().label("n"), func.max(UnansweredQuestion.query).label("query"),
               func.max(UnansweredQuestion.at).label("last"))
        .where(UnansweredQuestion.kind != "answered", UnansweredQuestion.linked_entry.is_(None))
        .group_by(UnansweredQuestion.normalized).order_by(func.count().desc(), func.max(UnansweredQuestion.at).desc())
        .limit(limit))).all()


async def transfer_targets(*, session: AsyncSession) -> list[Area]:
    return list((await session.execute(select(Area).where(Area.retired.is_(False))
                                       .order_by(Area.level, Area.sort_order, Area.id))).scalars())
