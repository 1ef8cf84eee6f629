"""Exporting cases: CSV (UTF-8 with a BOM, so Excel shows Chinese intact) or XLSX (openpyxl in
write-only mode, so a large export streams instead of building the whole sheet in memory).

Columns: reference, status, category, area, address, description, reporter (the id only when
the reporter agreed to share contact, else blank), assignee, created, deadline, resolved,
closed (local time), overdue yes/no, rating.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.areas.models import Area, Category
from bot.cases.models import Case
from bot.cases.transitions import FINAL, OPEN
from bot.people.models import Person
from bot.i18n import Texts

COLUMNS = ("ref", "status", "category", "area", "address", "description", "reporter", "assignee", "created",
           "deadline", "resolved", "closed", "overdue", "rating")
FORMATS = ("csv", "xlsx")
STATUSES = (*OPEN, "resolved", *FINAL)
DATE_FORMAT = "%Y-%m-%d %H:%M"


@dataclass(frozen=True)
class Filters:
    since: datetime | None = None  # cases reported at or after
    area_ids: tuple[str, ...] | None = None  # a subtree; None = everywhere
    status: str | None = None


_CASE_COLUMNS = (Case.id, Case.status, Case.category_id, Case.area_id, Case.address, Case.description,
                 Case.reporter_id, Case.share_contact, Case.assignee_id, Case.created_at, Case.deadline_at,
                 Case.resolved_at, Case.closed_at, Case.was_overdue, Case.rating)


def headers(t: Texts) -> list[str]:
    return [t(f"export.header_{c}") for c in COLUMNS]


def _local(dt: datetime | None, tz) -> datetime | str:
    """Local time without a zone (what a spreadsheet's date cell holds); "" for none."""
    return dt.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0) if dt else ""


async def case_rows(*, session: AsyncSession, filters: Filters, now: datetime, tz, t: Texts,
                    chunk: int = 2_000) -> AsyncIterator[list]:
    """The export rows, oldest first, read in chunks (keyset on id) to keep memory flat."""
    areas = dict((await session.execute(select(Area.id, Area.name))).all())
    cats = {c.id: c for c in (await session.execute(select(Category))).scalars()}
    last = 0
    while True:
        # plain rows, not entities: nothing piles up in the session's identity map
        q = select(*_CASE_COLUMNS).where(Case.id > last).order_by(Case.id).limit(chunk)
        if filters.since is not None:
            q = q.where(Case.created_at >= filters.since)
        if filters.area_ids is not None:
            q = q.where(Case.area_id.in_(filters.area_ids))
        if filters.status:
            q = q.where(Case.status == filters.status)
        cases = (await session.execute(q)).all()
        if not cases:
            return
        ids = {c.reporter_id for c in cases if c.share_contact} | {c.assignee_id for c in cases if c.assignee_id}
        names = dict((await session.execute(select(Person.id, Person.name).where(Person.id.in_(ids))))
                     .all()) if ids else {}

        def person(uid: int | None) -> str:
            # a name to read, the id to search by
            return f"{names[uid]} ({uid})" if names.get(uid) else str(uid) if uid else ""

        for c in cases:
            cat = cats.get(c.category_id)
            cat_name = (cat.name_en or cat.name) if cat and t.lang == "en" else (cat.name if cat else c.category_id)
            overdue = c.was_overdue or (c.status in OPEN and c.deadline_at is not None and c.deadline_at < now)
            yield [f"#{c.id}", t(f"status.{c.status}") if t.has(f"status.{c.status}") else c.status, cat_name,
                   areas.get(c.area_id, c.area_id or ""), c.address or "", c.description or "",
                   person(c.reporter_id) if c.share_contact else "", person(c.assignee_id),
                   _local(c.created_at, tz), _local(c.deadline_at, tz), _local(c.resolved_at, tz),
                   _local(c.closed_at, tz), t("export.word_yes") if overdue else t("export.word_no"),
                   c.rating if c.rating is not None else ""]
        last = cases[-1].id


def _safe_cell(v):
    # a cell starting with = + - @ would be run as a formula by Excel (CSV injection)
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@"):
        return "'" + v
    return v


def write_csv(head: list[str], rows: Iterable[list], out) -> int:
    """Write to a binary file; the number of data rows."""
    text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="")
    w = csv.writer(text)
    w.writerow(head)
    n = 0
    for r in rows:
        w.writerow([v.strftime(DATE_FORMAT) if isinstance(v, datetime) else _safe_cell(v) for v in r])
        n += 1
    text.flush()
    text.detach()
    return n


def write_xlsx(head: list[str], rows: Iterable[list], out, title: str = "cases") -> int:
    # openpyxl is slow to import and only an XLSX export needs it
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title[:31])
    ws.freeze_panes = "A2"  # the header stays in view
    widths = {"description": 40, "address": 24, "area": 16, "reporter": 18, "assignee": 18}
    for i, col in enumerate(COLUMNS[:len(head)], start=1):
        ws.column_dimensions[get_column_letter(i)].width = widths.get(col, 17 if col in _DATES else 10)
    bold = Font(bold=True)
    cells = []
    for h in head:
        cell = WriteOnlyCell(ws, value=h)
        cell.font = bold
        cells.append(cell)
    ws.append(cells)
    n = 0
    for r in rows:
        row = []
        for v in r:
            if isinstance(v, datetime):  # a real date: sorts and filters as one
                cell = WriteOnlyCell(ws, value=v)
                cell.number_format = "yyyy-mm-dd hh:mm"
                row.append(cell)
            else:
                row.append(_safe_cell(v))
        ws.append(row)
        n += 1
    ws.auto_filter.ref = f"A1:{get_column_letter(len(head))}{n + 1}"
    wb.save(out)
    return n


_DATES = ("created", "deadline", "resolved", "closed")


async def export(*, session: AsyncSession, filters: Filters, fmt: str, now: datetime, tz, t: Texts,
                 out) -> int:
    """Write the export to the binary file `out`; the number of cases."""
    rows = [r async for r in case_rows(session=session, filters=filters, now=now, tz=tz, t=t)]
    if fmt == "xlsx":
        return write_xlsx(headers(t), rows, out)
    return write_csv(headers(t), rows, out)


async def export_bytes(*, session: AsyncSession, filters: Filters, fmt: str, now: datetime, tz,
                       t: Texts) -> tuple[bytes, int]:
    buf = io.BytesIO()
    n = await export(session=session, filters=filters, fmt=fmt, now=now, tz=tz, t=t, out=buf)
    return buf.getvalue(), n


def period_start(now: datetime, days: int | None) -> datetime | None:
    return now - timedelta(days=days) if days else None
