"""The console's routes: pages rendered on the server, a JSON feed for the map, the desk's forms."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import jinja2
from aiohttp import ClientSession, ClientTimeout, web
from markupsafe import Markup
from sqlalchemy import select

from bot.cases.models import Case, CasePhoto
from bot.cases.transitions import NotAllowed, OPEN
from bot.i18n import Texts
from bot.notify import language_of
from bot.people.models import Person
from bot.people.service import ensure_person
from bot.web import actions, queries
from bot.web.auth import COOKIE, LINK_MAX_AGE, SESSION_MAX_AGE, AuthError, signer_for, validate_init_data
from bot.web.scope import Viewer, viewer_for

log = logging.getLogger("gridbot.web")

HERE = Path(__file__).resolve().parent
PREFIX = "/console"
CORE = web.AppKey("gridbot_core", object)
JINJA = web.AppKey("gridbot_jinja", jinja2.Environment)
HTTP = web.AppKey("gridbot_http", dict)
LINK_JOB = "console_link"  # job_runs rows named so: one per spent sign-in link


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=jinja2.select_autoescape(("html", "xml")), trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["pct"] = lambda r: "—" if r is None else f"{r * 100:.0f}%"
    return env


# --- plumbing ------------------------------------------------------------------------------------------


def _core(request: web.Request):
    return request.app[CORE]


def base_url(settings) -> str:
    """Where people reach the console: GRIDBOT_WEB_BASE_URL, else the webhook's host, else local."""
    if settings.web_base_url:
        return settings.web_base_url.rstrip("/")
    if settings.webhook_url:
        from urllib.parse import urlsplit

        u = urlsplit(settings.webhook_url)
        return f"{u.scheme}://{u.netloc}"
    if settings.web_port:
        host = "127.0.0.1" if settings.web_host in ("0.0.0.0", "", "::") else settings.web_host
        return f"http://{host}:{settings.web_port}"
    return ""


def _render(request: web.Request, name: str, status: int = 200, *, t: Texts, viewer: Viewer | None = None,
            session: dict | None = None, **ctx) -> web.Response:
    core = _core(request)
    signer = signer_for(core.settings)
    tz = core.settings.tz

    def tr(key: str, **params) -> Markup:
        return Markup(t(key, **params))  # the catalog escapes every parameter

    def when(dt: datetime | None) -> str:
        return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M") if dt else "—"

    html = request.app[JINJA].get_template(name).render(
        t=tr, lang=t.lang, viewer=viewer, when=when, prefix=PREFIX, path=request.path,
        csrf=signer.csrf_token(session) if session else "", **ctx)
    resp = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    resp.headers["Cache-Control"] = "no-store"
    # framed only by itself and Telegram's web clients (a Mini App opens in their iframe)
    resp.headers["Content-Security-Policy"] = "frame-ancestors 'self' https://web.telegram.org https://*.telegram.org"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"
    return resp


def _error(request: web.Request, status: int, key: str, t: Texts | None = None, **ctx) -> web.Response:
    return _render(request, "error.html", status, t=t or Texts("zh"), message_key=key, code=status, **ctx)


async def _session_of(request: web.Request) -> dict | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        return signer_for(_core(request).settings).unsign("session", token)
    except AuthError:
        return None


def page(fn=None, *, supervisors_only: bool = False):
    """A console page: signed in (401 otherwise), staff (403 otherwise); one database session."""

    def wrap(handler):
        async def inner(request: web.Request) -> web.StreamResponse:
            sess = await _session_of(request)
            if sess is None:
                return _error(request, 401, "web.login_needed")
            core = _core(request)
            async with core.sessionmaker() as s:
                person = await s.get(Person, int(sess["uid"]))
                if person is None:
                    return _error(request, 403, "web.forbidden")
                t = Texts(language_of(person))
                viewer = await viewer_for(session=s, person=person, settings=core.settings)
                if not viewer.allowed or (supervisors_only and not viewer.supervisor):
                    return _error(request, 403, "web.forbidden", t)
                return await handler(request, s, viewer, t, sess)

        return inner

    return wrap(fn) if fn is not None else wrap


def _set_session(resp: web.StreamResponse, request: web.Request, user_id: int) -> None:
    settings = _core(request).settings
    secure = base_url(settings).startswith("https://") or request.secure
    resp.set_cookie(COOKIE, signer_for(settings).session_cookie(user_id), max_age=SESSION_MAX_AGE, path="/",
                    httponly=True, samesite="Lax", secure=secure)


# --- sign-in ---------------------------------------------------------------------------------------------


async def webapp_page(request: web.Request) -> web.Response:
    """Opened by Telegram as a Mini App: the page reads initData from its URL fragment and posts it."""
    return _render(request, "webapp.html", t=Texts(_lang_hint(request)))


def _lang_hint(request: web.Request) -> str:
    return "en" if request.headers.get("Accept-Language", "").lower().startswith("en") else "zh"


async def webapp_auth(request: web.Request) -> web.Response:
    core = _core(request)
    form = await request.post()
    try:
        user = validate_init_data(str(form.get("init_data", "")), core.settings.bot_token)
    except AuthError as e:
        log.info("console: initData refused: %s", e)
        return web.json_response({"ok": False, "reason": str(e)}, status=403)
    async with core.sessionmaker() as s, s.begin():
        name = " ".join(p for p in (user.first_name, user.last_name) if p)
        person = await ensure_person(session=s, user_id=user.id, name=name, now=core.clock())
        if person.tg_language is None and user.language_code:
            person.tg_language = user.language_code  # the console speaks their Telegram language
        viewer = await viewer_for(session=s, person=person, settings=core.settings)
        if not viewer.allowed:
            return web.json_response({"ok": False, "reason": "not staff"}, status=403)
    resp = web.json_response({"ok": True, "next": PREFIX + "/"})
    _set_session(resp, request, user.id)
    return resp


async def link_login(request: web.Request) -> web.StreamResponse:
    core = _core(request)
    signer = signer_for(core.settings)
    try:
        data = signer.unsign("link", request.query.get("t", ""))
    except AuthError as e:
        return _error(request, 403, "web.login_needed", login_reason=str(e))
    from bot.core_models import JobRun
    from bot.sql import insert_ignore

    async with core.sessionmaker() as s, s.begin():
        # spend the nonce: the row exists once, so a second use of the link finds it taken
        res = await s.execute(insert_ignore(s, JobRun).values(job=LINK_JOB, period=str(data["n"]),
                                                              started_at=core.clock(), detail=str(data["uid"])))
        if res.rowcount != 1:
            return _error(request, 403, "web.login_needed", login_reason="link already used")
    resp = web.Response(status=303, headers={"Location": PREFIX + "/"})
    _set_session(resp, request, int(data["uid"]))
    return resp


async def logout(request: web.Request) -> web.StreamResponse:
    sess = await _session_of(request)
    form = await request.post()
    if sess is not None and not signer_for(_core(request).settings).csrf_ok(sess, form.get("csrf")):
        return _error(request, 403, "web.csrf")
    resp = web.Response(status=303, headers={"Location": PREFIX + "/app"})
    resp.del_cookie(COOKIE, path="/")
    return resp


def login_link(settings, user_id: int) -> str:
    return f"{base_url(settings)}{PREFIX}/login?t={quote(signer_for(settings).login_link_token(user_id))}"


LINK_MINUTES = LINK_MAX_AGE // 60


# --- pages ---------------------------------------------------------------------------------------------------


@page
async def overview(request, s, viewer, t, sess):
    core = _core(request)
    data = await queries.overview(session=s, viewer=viewer, now=core.clock(), tz=core.settings.tz)
    return _render(request, "overview.html", t=t, viewer=viewer, session=sess, data=data,
                   days=queries.RATES_DAYS, weeks=queries.TREND_WEEKS,
                   trend_max=max([w.new for w in data.weeks] + [1]))


@page
async def map_page(request, s, viewer, t, sess):
    cats = await queries.category_names(s, t.lang)
    areas = [(a, viewer.rows[a]) for a in viewer.visible_areas() if a in viewer.rows]
    areas = [(a, x) for a, x in areas if x.level <= 2]
    return _render(request, "map.html", t=t, viewer=viewer, session=sess, categories=cats, areas=areas,
                   statuses=list(OPEN) + ["overdue"], tile_url=_core(request).settings.tile_url, q=request.query)


@page
async def map_api(request, s, viewer, t, sess):
    q = request.query
    try:
        age = int(q.get("age") or 0)
    except ValueError:
        age = 0
    data = await queries.map_data(session=s, viewer=viewer, now=_core(request).clock(), category=q.get("category", ""),
                                  status=q.get("status", ""), area=q.get("area", ""), age_days=age)
    return web.json_response(data, headers={"Cache-Control": "no-store"})


@page
async def overdue(request, s, viewer, t, sess):
    rows, total = await queries.overdue_board(session=s, viewer=viewer, now=_core(request).clock(), lang=t.lang)
    return _render(request, "overdue.html", t=t, viewer=viewer, session=sess, rows=rows, total=total)


@page(supervisors_only=True)
async def faq(request, s, viewer, t, sess):
    rows = await queries.unanswered(session=s)
    return _render(request, "faq.html", t=t, viewer=viewer, session=sess, rows=rows)


async def _case_for(request, s, viewer) -> Case | web.Response:
    cid = request.match_info["id"]
    case = await s.get(Case, int(cid)) if cid.isdigit() else None
    if case is None:
        return _error(request, 404, "web.not_found")
    if not viewer.may_see(case):
        return _error(request, 403, "web.forbidden")
    return case


async def _case_page(request, s, viewer, t, sess, *, status=200, error_key: str | None = None, done: str = ""):
    core = _core(request)
    case = await _case_for(request, s, viewer)
    if isinstance(case, web.Response):
        return case
    now = core.clock()
    queries.record_view(s, case=case, viewer_id=viewer.id, now=now)
    await s.commit()
    cf = await queries.case_file(session=s, case=case, lang=t.lang, resident=t("role.resident"))
    left = (case.deadline_at - now).total_seconds() / 3600 if case.deadline_at else None
    targets = await queries.transfer_targets(session=s)
    return _render(request, "case.html", status, t=t, viewer=viewer, session=sess, cf=cf, case=case,
                   left=left, is_open=case.status in OPEN, targets=targets, error_key=error_key,
                   done=done or request.query.get("done", ""),
                   status_text=t(f"status.{case.status}"), action_name=lambda a: t(f"action.{a}")
                   if t.has(f"action.{a}") else a)


@page
async def case_page(request, s, viewer, t, sess):
    return await _case_page(request, s, viewer, t, sess)


def case_action(kind: str):
    @page
    async def handler(request, s, viewer, t, sess):
        core = _core(request)
        form = await request.post()
        if not signer_for(core.settings).csrf_ok(sess, form.get("csrf")):
            return _error(request, 403, "web.csrf", t)
        case = await _case_for(request, s, viewer)
        if isinstance(case, web.Response):
            return case
        now, tz = core.clock(), core.settings.tz
        try:
            if kind == "transfer":
                await actions.transfer(session=s, now=now, tz=tz, case=case, user_id=viewer.id, is_admin=viewer.admin,
                                       area_id=str(form.get("area", "")), reason=str(form.get("reason", "")))
            elif kind == "note":
                await actions.add_note(session=s, now=now, case=case, user_id=viewer.id, is_admin=viewer.admin,
                                       text=str(form.get("note", "")))
            else:
                try:
                    hours = float(form.get("hours", ""))
                except ValueError:
                    hours = 0.0
                await actions.extend_deadline(session=s, now=now, tz=tz, case=case, user_id=viewer.id,
                                              is_admin=viewer.admin, hours=hours, reason=str(form.get("reason", "")))
        except actions.ActionError as e:
            await s.rollback()
            await s.refresh(viewer.person)  # the rollback expired it
            return await _case_page(request, s, viewer, t, sess, status=403 if e.key == NotAllowed.reason else 400,
                                    error_key=e.key)
        await s.commit()
        if core.dispatcher is not None:
            core.dispatcher.kick()
        raise web.HTTPSeeOther(f"{PREFIX}/case/{case.id}?done={kind}")

    return handler


# --- photos: fetched from Telegram with the bot token, never exposing it ----------------------------------


PLACEHOLDER = ('<svg xmlns="http://www.w3.org/2000/svg" width="320" height="240"><rect width="100%" height="100%" '
               'fill="#e5e7eb"/><text x="50%" y="50%" font-size="18" text-anchor="middle" fill="#6b7280">photo'
               '</text></svg>')


@page
async def photo(request, s, viewer, t, sess):
    pid = request.match_info["id"]
    row = await s.get(CasePhoto, int(pid)) if pid.isdigit() else None
    if row is None:
        return _error(request, 404, "web.not_found", t)
    case = await s.get(Case, row.case_id)
    if case is None or not viewer.may_see(case):
        return _error(request, 403, "web.forbidden", t)
    body, ctype = await _telegram_file(request, row.file_id)
    if body is None:
        return web.Response(text=PLACEHOLDER, content_type="image/svg+xml", headers={"Cache-Control": "no-store"})
    return web.Response(body=body, content_type=ctype, headers={"Cache-Control": "private, max-age=3600"})


async def _telegram_file(request: web.Request, file_id: str) -> tuple[bytes | None, str]:
    settings = _core(request).settings
    if not settings.bot_token:
        return None, ""
    cache: dict = request.app[HTTP]
    if file_id in cache:
        return cache[file_id]
    http = cache.get("_client")
    if http is None:
        http = cache["_client"] = ClientSession(timeout=ClientTimeout(total=10))
    base = settings.telegram_api_base
    try:
        async with http.get(f"{base}/bot{settings.bot_token}/getFile", params={"file_id": file_id}) as r:
            info = await r.json()
        if not info.get("ok"):
            return None, ""
        async with http.get(f"{base}/file/bot{settings.bot_token}/{info['result']['file_path']}") as r:
            if r.status != 200:
                return None, ""
            body = await r.read()
            ctype = r.headers.get("Content-Type", "image/jpeg").split(";")[0]
    except Exception as e:  # Telegram unreachable: the page still renders
        log.info("console: photo %s not fetched: %s", file_id, e)
        return None, ""
    if not ctype.startswith("image/"):
        ctype = "image/png" if body[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    if len(cache) > 200:
        for k in [k for k in cache if k != "_client"][:100]:
            del cache[k]
    cache[file_id] = (body, ctype)
    return body, ctype


async def _close_http(app: web.Application) -> None:
    http = app[HTTP].get("_client")
    if http is not None:
        await http.close()


# --- mounting -------------------------------------------------------------------------------------------


async def _to_slash(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(PREFIX + "/")


def mount(app: web.Application, core) -> None:
    """Add the console and the Open311 endpoints to an aiohttp application."""
    from bot.web import open311

    app[CORE] = core
    app[JINJA] = environment()
    app[HTTP] = {}
    app.on_cleanup.append(_close_http)
    r = app.router
    r.add_get(PREFIX, _to_slash)
    r.add_get(PREFIX + "/", overview)
    r.add_get(PREFIX + "/app", webapp_page)
    r.add_post(PREFIX + "/auth/webapp", webapp_auth)
    r.add_get(PREFIX + "/login", link_login)
    r.add_post(PREFIX + "/logout", logout)
    r.add_get(PREFIX + "/map", map_page)
    r.add_get(PREFIX + "/api/map", map_api)
    r.add_get(PREFIX + "/overdue", overdue)
    r.add_get(PREFIX + "/faq", faq)
    r.add_get(PREFIX + "/case/{id}", case_page)
    for kind in ("transfer", "note", "extend"):
        r.add_post(PREFIX + "/case/{id}/" + kind, case_action(kind))
    r.add_get(PREFIX + "/photo/{id}", photo)
    r.add_static(PREFIX + "/static", HERE / "static", append_version=False)
    open311.mount(app, core)
