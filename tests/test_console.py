"""The web console and Open311 over HTTP (no browser): sign-in, scoping, CSRF, actions, GeoReport v2.

The browser-driven walk through the same pages is tests/test_console_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import xml.etree.ElementTree as ET
from datetime import datetime

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.cases.models import Case, CaseEvent
from bot.outbox.models import OutboxMessage
from bot.web import mount
from bot.web.auth import AuthError, Signer, sign_init_data, validate_init_data
from tests.conftest import TOKEN
from tests.console_seed import PHONE, init_data, seed

ADMIN, SUP_FUSHANWAN, SUP_GUANHAI, CAPTAIN_ODD, RESIDENT = 9100, 2001, 2002, 1001, 9001


@pytest_asyncio.fixture
async def console(core, clock):
    cases = await seed(core, clock())
    app = web.Application()
    mount(app, core)
    client = TestClient(TestServer(app))
    await client.start_server()
    client.cases = cases
    client.core = core
    yield client
    await client.close()


async def sign_in(client, user_id: int) -> None:
    client.session.cookie_jar.clear()
    r = await client.post("/console/auth/webapp", data={"init_data": init_data(TOKEN, user_id)})
    assert r.status == 200, await r.text()


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


# --- initData, exactly as Telegram documents it ---------------------------------------------------------


def test_init_data_is_checked_with_the_bot_token_hmac():
    now = time.time()
    good = init_data(TOKEN, ADMIN, auth_date=int(now) - 10)
    assert validate_init_data(good, TOKEN, now=now).id == ADMIN
    # the documented construction, written out independently
    import hashlib
    import hmac
    from urllib.parse import parse_qsl

    fields = dict(parse_qsl(good))
    dcs = "\n".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != "hash")
    secret = hmac.new(b"WebAppData", TOKEN.encode(), hashlib.sha256).digest()
    assert fields["hash"] == hmac.new(secret, dcs.encode(), hashlib.sha256).hexdigest()
    with pytest.raises(AuthError, match="wrong hash"):
        validate_init_data(good, "654321:another-bots-token", now=now)
    forged = good.replace("%22id%22%3A9100", "%22id%22%3A9101")
    assert forged != good
    with pytest.raises(AuthError, match="wrong hash"):
        validate_init_data(forged, TOKEN, now=now)
    with pytest.raises(AuthError, match="stale"):
        validate_init_data(init_data(TOKEN, ADMIN, auth_date=int(now) - 2 * 86400), TOKEN, now=now)
    with pytest.raises(AuthError, match="no hash"):
        validate_init_data(re.sub(r"&?hash=[0-9a-f]+", "", good), TOKEN, now=now)


def test_signed_tokens_expire_and_do_not_cross_purposes():
    s = Signer("k")
    tok = s.login_link_token(5, now=1000)
    assert s.unsign("link", tok, now=1100)["uid"] == 5
    with pytest.raises(AuthError):
        s.unsign("session", tok, now=1100)  # a link is not a session
    with pytest.raises(AuthError):
        s.unsign("link", tok, now=1000 + 601)
    with pytest.raises(AuthError):
        Signer("other").unsign("link", tok, now=1100)


# --- sign-in over HTTP ------------------------------------------------------------------------------------


async def test_webapp_sign_in_sets_a_short_lived_httponly_samesite_cookie(console):
    r = await console.post("/console/auth/webapp", data={"init_data": init_data(TOKEN, ADMIN)})
    assert r.status == 200 and (await r.json())["ok"]
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=14400" in cookie
    page = await (await console.get("/console/")).text()
    assert (await console.post("/console/logout", data={}, allow_redirects=False)).status == 403  # no token
    r = await console.post("/console/logout", data={"csrf": csrf_of(page)}, allow_redirects=False)
    assert r.status == 303 and (await console.get("/console/")).status == 401
    # forged, stale, and a resident's (valid) initData are refused
    good = init_data(TOKEN, ADMIN)
    bad = good[:-1] + ("1" if good[-1] == "0" else "0")
    for data in (bad, init_data(TOKEN, ADMIN, auth_date=int(time.time()) - 7200), init_data(TOKEN, RESIDENT)):
        console.session.cookie_jar.clear()
        r = await console.post("/console/auth/webapp", data={"init_data": data})
        assert r.status == 403
        assert (await console.get("/console/")).status == 401


async def test_the_console_speaks_the_viewers_language(console):
    r = await console.post("/console/auth/webapp", data={"init_data": init_data(TOKEN, 2004, lang="en")})
    assert r.status == 200
    page = await (await console.get("/console/")).text()
    assert "Command centre" in page and "Resolved today" in page and "辛家庄社区" in page


async def test_one_time_link_signs_in_once(console):
    from bot.web import login_link

    link = login_link(console.core.settings, SUP_FUSHANWAN)
    path = link[link.index("/console/login"):]
    r = await console.get(path, allow_redirects=False)
    assert r.status == 303 and "HttpOnly" in r.headers["Set-Cookie"]
    assert (await console.get("/console/overdue")).status == 200
    console.session.cookie_jar.clear()
    assert (await console.get(path, allow_redirects=False)).status == 403  # spent
    assert (await console.get(path.replace("t=", "t=x"), allow_redirects=False)).status == 403


# --- scoping ------------------------------------------------------------------------------------------


async def test_each_viewer_sees_only_their_subtree(console):
    c = console.cases
    assert (await console.get(f"/console/case/{c.lamp}")).status == 401
    # a resident is refused at sign-in; with a session (say, staff since demoted) every page is 403
    console.session.cookie_jar.clear()
    assert (await console.post("/console/auth/webapp", data={"init_data": init_data(TOKEN, RESIDENT)})).status == 403
    from bot.web.auth import COOKIE, signer_for

    console.session.cookie_jar.update_cookies({COOKIE: signer_for(console.core.settings).session_cookie(RESIDENT)})
    for page in ("/console/", "/console/map", f"/console/case/{c.lamp}", "/console/api/map"):
        assert (await console.get(page)).status == 403, page
    await sign_in(console, SUP_GUANHAI)
    page = await (await console.get(f"/console/case/{c.garbage}")).text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)" in page  # residents' text is escaped
    r = await console.get(f"/console/case/{c.lamp}")
    assert r.status == 403
    pins = (await (await console.get("/console/api/map")).json())["pins"]
    assert {p["id"] for p in pins} == {c.garbage}
    overview = await (await console.get("/console/")).text()
    assert "观海社区" in overview and "浮山湾社区" not in overview
    await sign_in(console, CAPTAIN_ODD)  # a worker: own tasks only, no FAQ page
    overview = await (await console.get("/console/")).text()
    assert '<b id="n-open">1</b>' in overview and "只显示您自己的任务" in overview and 'id="rates"' not in overview
    assert (await console.get(f"/console/case/{c.lamp}")).status == 200
    assert (await console.get(f"/console/case/{c.garbage}")).status == 403
    assert (await console.get("/console/faq")).status == 403
    await sign_in(console, ADMIN)
    for page in ("/console/", "/console/map", "/console/overdue", "/console/faq", f"/console/case/{c.road}"):
        assert (await console.get(page)).status == 200, page
    assert "GRIDBOT_TILE_URL" in await (await console.get("/console/map")).text()  # no tiles: a plain map

    async def pins(query: str) -> set[int]:
        return {p["id"] for p in (await (await console.get("/console/api/map?" + query)).json())["pins"]}

    assert await pins("") == {c.lamp, c.garbage, c.road}
    assert await pins("status=overdue") == {c.road} and await pins("status=new") == {c.lamp, c.garbage, c.road}
    assert await pins("age=3") == {c.road} and await pins("area=guanhai") == {c.garbage}
    assert await pins("category=streetlight&area=fushanwan") == {c.lamp}
    board = await (await console.get("/console/overdue")).text()
    assert f"#{c.road}" in board and f"#{c.lamp}" not in board
    assert "垃圾分类几点收" in await (await console.get("/console/faq")).text()


# --- the desk's actions -------------------------------------------------------------------------------------


async def test_forms_need_their_csrf_token_and_go_through_the_case_rules(console):
    c, core = console.cases, console.core
    await sign_in(console, SUP_FUSHANWAN)
    page = await (await console.get(f"/console/case/{c.lamp}")).text()
    assert PHONE in page  # staff see the description as reported
    token = csrf_of(page)
    r = await console.post(f"/console/case/{c.lamp}/note", data={"note": "已联系供电所"}, allow_redirects=False)
    assert r.status == 403
    r = await console.post(f"/console/case/{c.lamp}/note", data={"note": "已联系供电所", "csrf": "0" * 64},
                           allow_redirects=False)
    assert r.status == 403
    r = await console.post(f"/console/case/{c.lamp}/note", data={"note": "已联系供电所", "csrf": token},
                           allow_redirects=False)
    assert r.status == 303
    r = await console.post(f"/console/case/{c.lamp}/extend", data={"hours": "48", "reason": "等配件", "csrf": token},
                           allow_redirects=False)
    assert r.status == 303
    async with core.sessionmaker() as s:
        events = [e.action for e in (await s.execute(select(CaseEvent).where(CaseEvent.case_id == c.lamp))).scalars()]
        assert events == ["report", "note", "extend"]
        kinds = (await s.execute(select(OutboxMessage.kind, OutboxMessage.chat_id))).all()
        assert ("case_extended", CAPTAIN_ODD) in [tuple(k) for k in kinds]
    # a captain may add notes to their task but not extend its deadline
    await sign_in(console, CAPTAIN_ODD)
    token = csrf_of(await (await console.get(f"/console/case/{c.lamp}")).text())
    r = await console.post(f"/console/case/{c.lamp}/extend", data={"hours": "48", "reason": "x", "csrf": token})
    assert r.status == 403
    # the other community's supervisor cannot act on it at all
    await sign_in(console, SUP_GUANHAI)
    token = csrf_of(await (await console.get(f"/console/case/{c.garbage}")).text())
    r = await console.post(f"/console/case/{c.lamp}/transfer", data={"area": "yanerdao-s", "reason": "x", "csrf": token})
    assert r.status == 403


async def test_transfer_from_the_desk_pushes_the_task_to_the_new_captain(console):
    c, core = console.cases, console.core
    await sign_in(console, ADMIN)
    token = csrf_of(await (await console.get(f"/console/case/{c.lamp}")).text())
    r = await console.post(f"/console/case/{c.lamp}/transfer",
                           data={"area": "", "reason": "不是这里", "csrf": token})
    assert r.status == 400  # no area chosen
    r = await console.post(f"/console/case/{c.lamp}/transfer",
                           data={"area": "yanerdao-n", "reason": "地址在燕儿岛路", "csrf": token}, allow_redirects=False)
    assert r.status == 303
    async with core.sessionmaker() as s:
        case = await s.get(Case, c.lamp)
        assert (case.area_id, case.assignee_id, case.status) == ("yanerdao-n", 1007, "new")
        rows = (await s.execute(select(OutboxMessage).where(OutboxMessage.chat_id == 1007))).scalars().all()
        assert any("地址在燕儿岛路" in (m.payload.get("text") or "") for m in rows)


# --- Open311 GeoReport v2 ---------------------------------------------------------------------------------

W3 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")
SERVICE_FIELDS = {"service_code": str, "service_name": str, "description": str, "metadata": bool, "type": str,
                  "keywords": str, "group": str}
# GeoReport v2 GET requests: every field of the list, its type, and whether it may be empty
REQUEST_FIELDS = {"service_request_id": (str, True), "status": (str, True), "status_notes": (str, False),
                  "service_name": (str, True), "service_code": (str, True), "description": (str, False),
                  "agency_responsible": (str, False), "service_notice": (str, False),
                  "requested_datetime": (str, True), "updated_datetime": (str, False),
                  "expected_datetime": (str, False), "address": (str, False), "address_id": (str, False),
                  "zipcode": (str, False), "media_url": (str, False)}


def check_request(doc: dict) -> None:
    for name, (typ, required) in REQUEST_FIELDS.items():
        assert name in doc, name
        assert isinstance(doc[name], typ), (name, doc[name])
        if required:
            assert doc[name], name
    assert doc["status"] in ("open", "closed")
    for name in ("requested_datetime", "updated_datetime", "expected_datetime"):
        assert doc[name] == "" or W3.match(doc[name]), (name, doc[name])
    if "lat" in doc or "long" in doc:
        assert isinstance(doc["lat"], float) and isinstance(doc["long"], float)
        assert -90 <= doc["lat"] <= 90 and -180 <= doc["long"] <= 180
    assert set(doc) <= set(REQUEST_FIELDS) | {"lat", "long"}, set(doc) - set(REQUEST_FIELDS)


async def test_open311_services_and_requests_follow_georeport_v2(console, clock):
    c = console.cases
    services = await (await console.get("/open311/v2/services.json")).json()
    assert {s["service_code"] for s in services} >= {"streetlight", "garbage", "road"}
    for s in services:
        assert set(s) == set(SERVICE_FIELDS)
        for k, typ in SERVICE_FIELDS.items():
            assert isinstance(s[k], typ), k
        assert s["type"] in ("realtime", "batch", "blackbox")
    root = ET.fromstring(await (await console.get("/open311/v2/services.xml")).text())
    assert root.tag == "services" and len(root.findall("service")) == len(services)

    r = await console.get("/open311/v2/requests.json")
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
    docs = await r.json()
    by_id = {d["service_request_id"]: d for d in docs}
    assert set(by_id) == {str(c.lamp), str(c.garbage), str(c.road)}  # the withdrawn report is not published
    for d in docs:
        check_request(d)
    lamp, garbage = by_id[str(c.lamp)], by_id[str(c.garbage)]
    assert lamp["agency_responsible"] == "香港中路单号段" and lamp["status"] == "open"
    assert lamp["address"] == ""  # the resident did not agree to share
    assert garbage["address"] == "燕儿岛路8号"  # this one did
    assert PHONE not in lamp["description"] and "***" in lamp["description"]
    body = await r.text()
    for personal in ("9001", "9002", "王芳", "刘强", "liuqiang", PHONE):
        assert personal not in body, personal

    # filters
    async def ids(query: str) -> set[str]:
        return {d["service_request_id"] for d in await (await console.get("/open311/v2/requests.json?" + query)).json()}

    assert await ids("service_code=garbage,road") == {str(c.garbage), str(c.road)}
    assert await ids("status=closed") == set()
    assert await ids("status=open") == {str(c.lamp), str(c.garbage), str(c.road)}
    start = datetime.fromtimestamp(clock().timestamp() - 86400).astimezone().isoformat(timespec="seconds")
    assert await ids("start_date=" + start.replace("+", "%2B")) == {str(c.lamp), str(c.garbage)}
    assert await ids("end_date=" + start.replace("+", "%2B")) == {str(c.road)}
    assert await ids(f"service_request_id={c.garbage}") == {str(c.garbage)}
    r = await console.get("/open311/v2/requests.json?start_date=yesterday")
    assert r.status == 400 and (await r.json())[0]["code"] == 400

    # one request, json and xml
    one = await (await console.get(f"/open311/v2/requests/{c.garbage}.json")).json()
    assert len(one) == 1 and one[0] == garbage
    xml = await (await console.get(f"/open311/v2/requests/{c.garbage}.xml")).text()
    assert xml.startswith('<?xml version="1.0" encoding="utf-8"?>')
    req = ET.fromstring(xml).find("request")
    assert {el.tag for el in req} == set(garbage)
    assert req.findtext("address") == "燕儿岛路8号" and float(req.findtext("lat")) == garbage["lat"]
    assert (await console.get(f"/open311/v2/requests/{c.withdrawn}.json")).status == 404
    assert (await console.get("/open311/v2/requests/999999.xml")).status == 404


async def test_weekly_trend_counts_reports_and_deadlines_met(console, clock):
    from bot.people.models import Person
    from bot.web import queries
    from bot.web.scope import viewer_for

    core = console.core
    async with core.sessionmaker() as s:
        admin = await viewer_for(session=s, person=await s.get(Person, CAPTAIN_ODD), settings=core.settings)
        weeks = await queries.weekly_trend(session=s, viewer=admin, now=clock(), tz=core.settings.tz)
        assert len(weeks) == 8 and sum(w.new for w in weeks) == 1  # the captain's one task
        sup = await viewer_for(session=s, person=await s.get(Person, 2003), settings=core.settings)
        weeks = await queries.weekly_trend(session=s, viewer=sup, now=clock(), tz=core.settings.tz)
        # 湛山: the road case (6 days ago, due 3 days later, not fixed) and the withdrawn one
        assert sum(w.new for w in weeks) == 2 and sum(w.due for w in weeks) == 1
        assert sum(w.on_time for w in weeks) == 0 and weeks[-1].rectification in (0.0, None)


def test_gridbot_demo_prints_a_console_link_that_signs_the_demo_admin_in(tmp_path):
    import subprocess
    import sys
    import urllib.request
    from http.cookiejar import CookieJar

    proc = subprocess.Popen([sys.executable, "-m", "bot", "demo", "--db", str(tmp_path / "demo.db")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=str(tmp_path.parent), env={**__import__("os").environ, "GRIDBOT_WEB_PORT": ""})
    try:
        link = None
        deadline = time.monotonic() + 60
        while link is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "demo ended before printing the console link"
            m = re.search(r"command centre.*?(http://127\.0\.0\.1:\d+/console/login\?t=\S+)", line)
            link = m.group(1) if m else None
        assert link
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        with opener.open(link, timeout=10) as r:  # 303 to the overview, with the session cookie
            page = r.read().decode()
            assert r.status == 200 and 'id="n-open"' in page and "孙敏" in page
        with pytest.raises(urllib.error.HTTPError) as spent:
            opener.open(link, timeout=10)
        assert spent.value.code == 403
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


@pytest.fixture
def bot_settings() -> dict:
    return {"web_base_url": "https://console.example.org"}


async def test_console_command_gives_staff_a_link_and_a_menu_button(bot):
    from tests.conftest import sun, wang

    reply = (await bot.say(sun, "/console"))[-1]
    link = re.search(r"https://console\.example\.org/console/login\?t=\S+", reply.text).group(0)
    assert bot.buttons(reply) == [link]
    deadline = time.monotonic() + 10
    while not bot.api.calls_of("setChatMenuButton") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    [call] = bot.api.calls_of("setChatMenuButton")
    button = call.params["menu_button"]
    button = json.loads(button) if isinstance(button, str) else button
    assert button["type"] == "web_app" and button["web_app"]["url"] == "https://console.example.org/console/app"
    assert int(call.params["chat_id"]) == sun.id
    reply = (await bot.say(wang, "/console"))[-1]
    assert "https://" not in reply.text and "网格员" in reply.text
    assert len(bot.api.calls_of("setChatMenuButton")) == 1


async def test_the_webhook_server_serves_the_console_and_open311(db_url, settings_for):
    import socket

    import aiohttp

    from bot.runner import BotRunner
    from bot.web import base_url
    from tests.fakebotapi import FakeBotAPI

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with FakeBotAPI(token=TOKEN) as api:
        settings = settings_for(db_url, telegram_api_base=api.base_url, webhook_url="https://gridbot.example.test",
                                webhook_host="127.0.0.1", webhook_port=port)
        assert base_url(settings) == "https://gridbot.example.test"  # /console links use the webhook's host
        runner = BotRunner(settings, webhook=True, with_scheduler=False)
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(runner.ready.wait(), 20)
        try:
            async with aiohttp.ClientSession() as http:
                base = f"http://127.0.0.1:{port}"
                for _ in range(100):  # the site starts right after `ready`
                    try:
                        async with http.get(base + "/console/app"):
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.05)
                async with http.get(base + "/console/app") as r:
                    assert r.status == 200
                async with http.get(base + "/console/static/console.js") as r:
                    assert r.status == 200 and "tgWebAppData" in await r.text()
                async with http.get(base + "/console/", allow_redirects=False) as r:
                    assert r.status == 401
                async with http.get(base + "/open311/v2/services.json") as r:
                    assert r.status == 200 and len(await r.json()) >= 10
        finally:
            runner.stop()
            await asyncio.wait_for(task, 30)
