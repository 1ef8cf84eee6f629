"""Open311 GeoReport v2, read only: categories as services, cases as service requests.

    GET /open311/v2/services.json|xml
    GET /open311/v2/requests.json|xml   ?service_code=a,b &status=open,closed &start_date= &end_date=
                                        &service_request_id=1,2
    GET /open311/v2/requests/{id}.json|xml

Dates are W3C datetimes with an offset. Without dates the answer covers the last 90 days (at most
1000 requests, newest first), as the specification's default.

Personal data: nothing about the resident is published — no name, id, phone or chat. The street
address is included only when the resident agreed to share their contact (the same consent that
shows them to the worker); the pin's lat/long is published when there is one (it marks the
problem, not the person). Phone numbers and e-mail addresses in the description are masked.
Withdrawn reports are not published.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

from aiohttp import web
from sqlalchemy import select

from bot.areas.models import Area, Category
from bot.cases.models import Case
from bot.cases.transitions import OPEN
from bot.i18n import Texts

BASE = "/open311/v2"
DEFAULT_DAYS = 90
MAX_REQUESTS = 1000
HIDDEN = ("withdrawn",)
CORE = web.AppKey("gridbot_open311_core", object)

_PHONE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)|(?<!\d)0\d{2,3}-?\d{7,8}(?!\d)")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


def mask_personal(text: str) -> str:
    return _EMAIL.sub("***", _PHONE.sub("***", text or ""))


def w3(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_w3(value: str) -> datetime:
    v = value.strip().replace("Z", "+00:00").replace(" ", "+")
    dt = datetime.fromisoformat(v)
    if dt.tzinfo is None:
        raise ValueError("a time zone is required")
    return dt.astimezone(timezone.utc)


class BadRequest(Exception):
    pass


# --- building the documents -----------------------------------------------------------------------------


def service_doc(c: Category) -> dict:
    return {"service_code": c.id, "service_name": c.name, "description": c.name_en or c.name, "metadata": False,
            "type": "realtime", "keywords": ",".join(c.keywords or []), "group": ""}


def request_doc(case: Case, cat: Category | None, area: Area | None) -> dict:
    t = Texts("zh")
    doc = {
        "service_request_id": str(case.id),
        "status": "open" if case.status in OPEN else "closed",
        "status_notes": t(f"status.{case.status}"),
        "service_name": cat.name if cat else case.category_id,
        "service_code": case.category_id,
        "description": mask_personal(case.description),
        "agency_responsible": area.name if area else "",
        "service_notice": "",
        "requested_datetime": w3(case.created_at),
        "updated_datetime": w3(case.updated_at or case.created_at),
        "expected_datetime": w3(case.deadline_at) or "",
        "address": case.address if case.share_contact and case.address else "",
        "address_id": "",
        "zipcode": "",
        "media_url": "",
    }
    if case.lat is not None and case.lon is not None:
        doc["lat"] = float(case.lat)
        doc["long"] = float(case.lon)
    return doc


def to_xml(root: str, item: str, docs: list[dict]) -> str:
    top = ET.Element(root)
    for d in docs:
        el = ET.SubElement(top, item)
        for k, v in d.items():
            sub = ET.SubElement(el, k)
            sub.text = ("true" if v else "false") if isinstance(v, bool) else "" if v is None else str(v)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(top, encoding="unicode")


def respond(fmt: str, root: str, item: str, docs: list[dict], status: int = 200) -> web.Response:
    headers = {"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=60"}
    if fmt == "xml":
        return web.Response(text=to_xml(root, item, docs), status=status, content_type="text/xml", charset="utf-8",
                            headers=headers)
    return web.json_response(docs, status=status, headers=headers)


def error(fmt: str, status: int, description: str) -> web.Response:
    return respond(fmt, "errors", "error", [{"code": status, "description": description}], status)


# --- queries -------------------------------------------------------------------------------------------------


async def load_requests(session, *, now: datetime, query) -> list[tuple[Case, Category | None, Area | None]]:
    cond = [Case.status.not_in(HIDDEN)]
    ids = [x for x in (query.get("service_request_id") or "").split(",") if x]
    if ids:
        if not all(x.isdigit() for x in ids):
            raise BadRequest("service_request_id must be numbers")
        cond.append(Case.id.in_([int(x) for x in ids]))
    else:
        codes = [x for x in (query.get("service_code") or "").split(",") if x]
        if codes:
            cond.append(Case.category_id.in_(codes))
        statuses = {x for x in (query.get("status") or "").split(",") if x}
        if statuses - {"open", "closed"}:
            raise BadRequest("status must be open or closed")
        if statuses == {"open"}:
            cond.append(Case.status.in_(OPEN))
        elif statuses == {"closed"}:
            cond.append(Case.status.not_in(OPEN))
        try:
            end = parse_w3(query["end_date"]) if query.get("end_date") else now
            start = parse_w3(query["start_date"]) if query.get("start_date") else end - timedelta(days=DEFAULT_DAYS)
        except ValueError as e:
            raise BadRequest(f"dates must be W3C datetimes with a time zone: {e}") from None
        if start > end:
            raise BadRequest("start_date is after end_date")
        cond += [Case.created_at >= start, Case.created_at <= end]
    cases = list((await session.execute(select(Case).where(*cond).order_by(Case.created_at.desc(), Case.id.desc())
                                        .limit(MAX_REQUESTS))).scalars())
    cats = {c.id: c for c in (await session.execute(select(Category))).scalars()}
    area_ids = {c.area_id for c in cases if c.area_id}
    areas = {a.id: a for a in (await session.execute(select(Area).where(Area.id.in_(area_ids))))
             .scalars()} if area_ids else {}
    return [(c, cats.get(c.category_id), areas.get(c.area_id)) for c in cases]


# --- routes ----------------------------------------------------------------------------------------------------


def _fmt(request: web.Request) -> str | None:
    fmt = request.match_info.get("fmt", "")
    return fmt if fmt in ("json", "xml") else None


async def services(request: web.Request) -> web.Response:
    fmt = _fmt(request)
    if fmt is None:
        return error("json", 404, "format must be json or xml")
    core = request.app[CORE]
    async with core.sessionmaker() as s:
        cats = (await s.execute(select(Category).order_by(Category.sort_order))).scalars()
        return respond(fmt, "services", "service", [service_doc(c) for c in cats])


async def requests_(request: web.Request) -> web.Response:
    fmt = _fmt(request)
    if fmt is None:
        return error("json", 404, "format must be json or xml")
    core = request.app[CORE]
    async with core.sessionmaker() as s:
        try:
            rows = await load_requests(s, now=core.clock(), query=request.query)
        except BadRequest as e:
            return error(fmt, 400, str(e))
        return respond(fmt, "service_requests", "request", [request_doc(*r) for r in rows])


async def one_request(request: web.Request) -> web.Response:
    fmt = _fmt(request)
    if fmt is None:
        return error("json", 404, "format must be json or xml")
    rid = request.match_info["id"]
    core = request.app[CORE]
    async with core.sessionmaker() as s:
        case = await s.get(Case, int(rid)) if rid.isdigit() else None
        if case is None or case.status in HIDDEN:
            return error(fmt, 404, f"no service request {rid}")
        cat = await s.get(Category, case.category_id)
        area = await s.get(Area, case.area_id) if case.area_id else None
        return respond(fmt, "service_requests", "request", [request_doc(case, cat, area)])


def mount(app: web.Application, core) -> None:
    app[CORE] = core
    app.router.add_get(BASE + "/services.{fmt}", services)
    app.router.add_get(BASE + "/requests.{fmt}", requests_)
    app.router.add_get(BASE + r"/requests/{id:\d+}.{fmt}", one_request)
