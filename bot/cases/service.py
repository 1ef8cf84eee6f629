"""Case queries and changes. Keyword-only, never commits, never sends."""

from __future__ import annotations

import math
from datetime import datetime

from sqlalchemy import case as sql_case
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.areas.models import Category
from bot.areas.service import load_tree
from bot.cases.deadlines import deadline, reminder_at
from bot.cases.models import Case, CaseEvent, CasePhoto, CaseSubscriber
from bot.cases.transitions import OPEN, Actor, Event, apply

# how near two pins must be to be the same problem, per category (metres)
DUPLICATE_RADIUS_M = {"streetlight": 60, "manhole": 30, "road": 40, "garbage": 50, "vending": 80, "parking": 50,
                      "noise": 150}
DEFAULT_RADIUS_M = 50


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6371000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


async def assignee_for(*, session: AsyncSession, area_id: str | None) -> int | None:
    """Who is responsible for the area (AreaTree.responsible_for)."""
    return (await load_tree(session=session)).responsible_for(area_id)


async def supervisors_above(*, session: AsyncSession, area_id: str | None) -> list[int]:
    """Supervisors from the case's area up to the root, nearest first, without repeats."""
    return (await load_tree(session=session)).supervisors_above(area_id)


async def actor_for(*, session: AsyncSession, case: Case, user_id: int, is_admin: bool) -> Actor:
    sups = await supervisors_above(session=session, area_id=case.area_id)
    return Actor(id=user_id, is_admin=is_admin, supervises_area=user_id in sups)


def compute_deadline(case: Case, category: Category, start: datetime, tz) -> datetime:
    return deadline(start, category.sla_hours, working_time=category.working_hours, tz=tz)


def start_clock(case: Case, category: Category, start: datetime, tz) -> None:
    """A new deadline from `start` (assignment, transfer, reopen); the chase starts over and the
    sweep next looks at the case at its reminder time."""
    case.deadline_at = compute_deadline(case, category, start, tz)
    case.next_check_at = reminder_at(start, case.deadline_at, category, tz)
    case.chase_level = 0


def record(session: AsyncSession, event: Event, now: datetime) -> None:
    session.add(CaseEvent(case_id=event.case_id, at=now, actor_id=event.actor_id, action=event.action,
                          from_status=event.from_status, to_status=event.to_status, note=event.note or ""))


async def create(*, session: AsyncSession, now: datetime, tz, reporter_id: int, report_chat_id: int,
                 category_id: str, description: str, photos: list[str], address: str, lat: float | None,
                 lon: float | None, area_id: str | None, share_contact: bool, language: str) -> Case:
    category = await session.get(Category, category_id)
    c = Case(status="new", category_id=category_id, description=description, address=address, lat=lat, lon=lon,
             area_id=area_id, reporter_id=reporter_id, report_chat_id=report_chat_id, share_contact=share_contact,
             language=language, created_at=now, updated_at=now, reporter_count=1, chase_level=0, reopen_count=0,
             was_overdue=False)
    c.assignee_id = await assignee_for(session=session, area_id=area_id)
    c.assigned_at = now
    start_clock(c, category, now, tz)
    session.add(c)
    await session.flush()
    for p in photos:
        session.add(CasePhoto(case_id=c.id, file_id=p, kind="report"))
    record(session, Event("report", c.id, reporter_id, "", "new", note=""), now)
    return c


async def move(*, session: AsyncSession, case: Case, action: str, actor: Actor, now: datetime, note: str = "",
               **data) -> Event:
    ev = apply(case, action, actor, now, note, **data)
    record(session, ev, now)
    return ev


async def photos_of(*, session: AsyncSession, case_id: int, kind: str = "report") -> list[str]:
    return list((await session.execute(select(CasePhoto.file_id).where(CasePhoto.case_id == case_id,
                                                                       CasePhoto.kind == kind)
                                       .order_by(CasePhoto.id))).scalars())


async def find_duplicate(*, session: AsyncSession, category_id: str, area_id: str | None, lat: float | None,
                         lon: float | None, reporter_id: int) -> Case | None:
    """An open case of the same category at the same place: same micro-grid, or near the pin."""
    if area_id is None and lat is None:
        return None
    q = select(Case).where(Case.category_id == category_id, Case.status.in_(OPEN + ("resolved",)))
    if lat is not None and lon is not None:
        # a box first (uses no trigonometry in SQL), then the exact distance in Python
        radius = DUPLICATE_RADIUS_M.get(category_id, DEFAULT_RADIUS_M)
        dlat = radius / 111_000
        dlon = radius / (111_000 * max(math.cos(math.radians(lat)), 0.01))
        near = (Case.lat.between(lat - dlat, lat + dlat)) & (Case.lon.between(lon - dlon, lon + dlon))
        q = q.where(or_(near, Case.area_id == area_id) if area_id else near)
    else:
        q = q.where(Case.area_id == area_id)
    for c in (await session.execute(q.order_by(Case.created_at).limit(20))).scalars():
        if c.reporter_id == reporter_id:
            continue
        if lat is not None and c.lat is not None:
            if distance_m(lat, lon, c.lat, c.lon) <= DUPLICATE_RADIUS_M.get(category_id, DEFAULT_RADIUS_M):
                return c
            continue
        if area_id and c.area_id == area_id:
            return c
    return None


async def subscribe(*, session: AsyncSession, case: Case, user_id: int, now: datetime) -> bool:
    if user_id == case.reporter_id:
        return False
    exists = (await session.execute(select(CaseSubscriber.id).where(CaseSubscriber.case_id == case.id,
                                                                    CaseSubscriber.user_id == user_id))).first()
    if exists:
        return False
    session.add(CaseSubscriber(case_id=case.id, user_id=user_id, at=now))
    case.reporter_count = (case.reporter_count or 1) + 1
    record(session, Event("me_too", case.id, user_id, case.status, case.status), now)
    return True


async def followers(*, session: AsyncSession, case: Case) -> list[int]:
    """The reporter and everyone who said "Me too"."""
    subs = (await session.execute(select(CaseSubscriber.user_id).where(CaseSubscriber.case_id == case.id)
                                  .order_by(CaseSubscriber.id))).scalars().all()
    return [case.reporter_id, *[s for s in subs if s != case.reporter_id]]


async def open_tasks(*, session: AsyncSession, assignee_id: int, now: datetime, limit: int = 30) -> list[Case]:
    overdue_first = sql_case((Case.deadline_at < now, 0), else_=1)
    q = (select(Case).where(Case.assignee_id == assignee_id, Case.status.in_(OPEN))
         .order_by(overdue_first, Case.deadline_at, Case.id).limit(limit))
    return list((await session.execute(q)).scalars())


async def cases_of_resident(*, session: AsyncSession, user_id: int, limit: int = 20) -> list[Case]:
    sub = select(CaseSubscriber.case_id).where(CaseSubscriber.user_id == user_id)
    q = (select(Case).where(or_(Case.reporter_id == user_id, Case.id.in_(sub)))
         .order_by(Case.created_at.desc()).limit(limit))
    return list((await session.execute(q)).scalars())


async def history(*, session: AsyncSession, case_id: int) -> list[CaseEvent]:
    return list((await session.execute(select(CaseEvent).where(CaseEvent.case_id == case_id)
                                       .order_by(CaseEvent.at, CaseEvent.id))).scalars())
