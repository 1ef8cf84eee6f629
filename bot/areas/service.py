"""The grid in the database: import from a GridSpec, read back as a GridSpec for routing or as the
area tree everything else asks."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.areas.grid_file import AreaSpec, CategorySpec, GridSpec
from bot.areas.models import Area, Category
from bot.areas.routing import Router
from bot.areas.tree import AreaTree
from bot.people.service import ensure_person

_AREA_COLUMNS = {"id": "id", "name": "name", "aliases": "aliases", "parent_id": "parent_id", "level": "level",
                 "order": "sort_order", "captain": "captain_id", "supervisor": "supervisor_id", "boundary": "boundary"}


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


def _tuples(v):
    if isinstance(v, list):
        return tuple(_tuples(x) for x in v)
    return v


@dataclasses.dataclass
class ImportReport:
    areas_added: int = 0
    areas_updated: int = 0
    areas_retired: int = 0
    categories: int = 0


async def import_grid(*, session: AsyncSession, spec: GridSpec, now: datetime) -> ImportReport:
    """Insert or update every area and category in place (ids are stable); cases are kept.

    Areas missing from the new file are retired, not deleted: old cases still point at them.
    """
    report = ImportReport()
    existing = {a.id: a for a in (await session.execute(select(Area))).scalars()}
    seen_ids = set()
    for spec_area in spec.areas:  # parents come before children
        values = {}
        extra = {}
        for f in dataclasses.fields(spec_area):
            v = _jsonable(getattr(spec_area, f.name))
            if f.name in _AREA_COLUMNS:
                values[_AREA_COLUMNS[f.name]] = list(v) if f.name == "aliases" else v
            else:
                extra[f.name] = v
        if spec_area.parent_id is None and spec.region:
            extra["region"] = spec.region  # the grid file's region, kept with the root area
        values["extra"] = extra
        values["retired"] = False
        seen_ids.add(spec_area.id)
        row = existing.get(spec_area.id)
        if row is None:
            session.add(Area(**values))
            report.areas_added += 1
        else:
            for k, v in values.items():
                setattr(row, k, v)
            report.areas_updated += 1
        await session.flush()
    gone = [i for i in existing if i not in seen_ids]
    if gone:
        await session.execute(update(Area).where(Area.id.in_(gone)).values(retired=True, captain_id=None,
                                                                         supervisor_id=None))
        report.areas_retired = len(gone)
    cats = {c.id: c for c in (await session.execute(select(Category))).scalars()}
    for i, c in enumerate(spec.categories):
        values = dict(id=c.id, name=c.name, name_en=c.name_en, keywords=list(c.keywords), sla_hours=float(c.sla_hours),
                      working_hours=bool(getattr(c, "working_hours", False)), sort_order=i)
        row = cats.get(c.id)
        if row is None:
            session.add(Category(**values))
        else:
            for k, v in values.items():
                setattr(row, k, v)
        report.categories += 1
    names = {p.id: p.name for p in spec.people}
    for a in spec.areas:
        for uid in (a.captain, a.supervisor):
            if uid is not None:
                await ensure_person(session=session, user_id=uid, name=names.get(uid, ""), now=now)
    return report


async def load_spec(*, session: AsyncSession, include_retired: bool = False) -> GridSpec:
    q = select(Area).order_by(Area.level, Area.sort_order, Area.id)
    if not include_retired:
        q = q.where(Area.retired.is_(False))
    areas = []
    region = None
    field_names = {f.name for f in dataclasses.fields(AreaSpec)}
    for a in (await session.execute(q)).scalars():
        if a.parent_id is None and (a.extra or {}).get("region"):
            region = region or a.extra["region"]
        kw = {"id": a.id, "name": a.name, "aliases": tuple(a.aliases or ()), "parent_id": a.parent_id,
              "level": a.level, "order": a.sort_order, "captain": a.captain_id, "supervisor": a.supervisor_id,
              "boundary": _tuples(a.boundary) if a.boundary else None}
        for k, v in (a.extra or {}).items():
            if k in field_names:
                kw[k] = _tuples(v)
        areas.append(AreaSpec(**{k: v for k, v in kw.items() if k in field_names}))
    cats = []
    for c in (await session.execute(select(Category).order_by(Category.sort_order))).scalars():
        cats.append(CategorySpec(id=c.id, name=c.name, name_en=c.name_en, keywords=tuple(c.keywords or ()),
                                 sla_hours=c.sla_hours, working_hours=c.working_hours))
    return GridSpec(categories=tuple(cats), areas=tuple(areas), people=(), region=region)


async def build_router(*, session: AsyncSession):
    return Router(await load_spec(session=session))


async def load_tree(*, session: AsyncSession, include_retired: bool = True) -> AreaTree:
    """The area tree from the database. Retired areas are in it by default: old cases still name
    them (a retired area has nobody responsible, so the walk up passes it by)."""
    q = select(Area)
    if not include_retired:
        q = q.where(Area.retired.is_(False))
    return AreaTree.of_rows((await session.execute(q)).scalars())


async def area_count(*, session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(Area))).scalar_one()
