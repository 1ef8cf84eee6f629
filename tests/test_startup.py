"""Start-up as the operator meets it, by running the real `gridbot` command: one line for what
they must fix (and the right exit status), waiting and retrying for what passes by itself."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_URL, TOKEN, child_env
from tests.fakebotapi import FakeBotAPI
from tests.fakebotapi import updates as U
from tests.test_cli import gridbot

ROOT = Path(__file__).resolve().parent.parent
EXPECTED_FORM = "sqlite+aiosqlite:///path/to/gridbot.db or postgresql+asyncpg://"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line_error(r, code: int = 2) -> str:
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    err = r.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("url", ["not-a-url", "mysql://x/db"])
def test_a_bad_database_url_says_the_form_expected(tmp_path, url):
    err = one_line_error(gridbot("db", "upgrade", env={"GRIDBOT_DATABASE_URL": url}))
    assert "GRIDBOT_DATABASE_URL" in err and EXPECTED_FORM in err


def test_a_plain_sqlite_url_gets_the_async_driver(tmp_path):
    r = gridbot("db", "upgrade", env={"GRIDBOT_DATABASE_URL": f"sqlite:///{tmp_path}/plain.db"})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "plain.db").exists()


@pytest.mark.parametrize("name,value", [("GRIDBOT_BOT_TOKEN", "not a token"), ("GRIDBOT_LOG_LEVEL", "chatty"),
                                        ("GRIDBOT_LOG_FORMAT", "xml"), ("GRIDBOT_PROXY", "ftp://x"),
                                        ("GRIDBOT_WEBHOOK_URL", "http://bot.example.org"),
                                        ("GRIDBOT_WEBHOOK_URL", "https://bot.example.org:8080")])
def test_each_bad_setting_is_one_line_naming_it(tmp_path, name, value):
    err = one_line_error(gridbot("run", env={"GRIDBOT_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", name: value}))
    assert name in err


async def start(env: dict, *args: str) -> asyncio.subprocess.Process:
    environ = child_env(GRIDBOT_BOT_TOKEN=TOKEN, **env)
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "run", *args, cwd=str(ROOT), env=environ,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


async def read_until(proc, predicate, timeout: float = 60) -> list[str]:
    """stderr lines up to and including the first one `predicate` accepts."""
    lines: list[str] = []

    async def go():
        while True:
            raw = await proc.stderr.readline()
            if not raw:
                raise AssertionError("the process ended:\n" + "\n".join(lines[-30:]))
            lines.append(raw.decode().rstrip())
            if predicate(lines[-1]):
                return lines

    try:
        return await asyncio.wait_for(go(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError("not seen in time:\n" + "\n".join(lines[-30:])) from None


async def stop(proc) -> tuple[int, str]:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    rest = await asyncio.wait_for(proc.stderr.read(), 60)
    return await asyncio.wait_for(proc.wait(), 30), rest.decode()


async def finished(proc, timeout: float = 120) -> tuple[int, str]:
    err = await asyncio.wait_for(proc.stderr.read(), timeout)
    return await asyncio.wait_for(proc.wait(), 10), err.decode()


@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_a_token_telegram_rejects_is_one_line_and_exit_1(tmp_path, framework):
    async with FakeBotAPI(token="999:other-bot-token") as api:
        proc = await start({"GRIDBOT_TELEGRAM_API_BASE": api.base_url, "GRIDBOT_FRAMEWORK": framework,
                            "GRIDBOT_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}, "--sample-grid")
        code, err = await finished(proc)
    assert code == 1, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert "Telegram rejected GRIDBOT_BOT_TOKEN" in err and "@BotFather" in err


async def test_run_on_a_database_with_no_grid_refuses_and_says_how_to_import(tmp_path):
    async with FakeBotAPI(token=TOKEN) as api:
        proc = await start({"GRIDBOT_TELEGRAM_API_BASE": api.base_url,
                            "GRIDBOT_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
        code, err = await finished(proc)
    assert code == 2, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert "gridbot grid import FILE" in err and "--sample-grid" in err
    assert not [c for c in api.calls if c.method.startswith("send")]


async def test_an_api_base_that_does_not_answer_is_waited_for(tmp_path):
    port = free_port()
    proc = await start({"GRIDBOT_TELEGRAM_API_BASE": f"http://127.0.0.1:{port}", "GRIDBOT_ADMIN_IDS": "9100",
                        "GRIDBOT_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}, "--sample-grid")
    try:
        seen = await read_until(proc, lambda line: "does not answer getMe" in line)
        assert "retrying in 1s" in seen[-1] and f"127.0.0.1:{port}" in seen[-1]
        await read_until(proc, lambda line: "does not answer getMe" in line)  # again, later
        assert proc.returncode is None
        api = FakeBotAPI(token=TOKEN)
        await api.start(port=port)  # Telegram is back
        lines: list[str] = []
        try:
            lines = await read_until(proc, lambda line: "gridbot started" in line)
            assert "@gridbot_test_bot" in lines[-1] and "long polling" in lines[-1]
        finally:
            code, rest = await stop(proc)
            await api.stop()
    finally:
        if proc.returncode is None:
            proc.kill()
    assert code == 0, rest
    assert "Traceback" not in "\n".join(seen + lines), lines


async def test_a_database_that_is_down_is_waited_for_and_sigterm_still_stops(tmp_path):
    port = free_port()  # nothing listens there
    proc = await start({"GRIDBOT_TELEGRAM_API_BASE": "http://127.0.0.1:9",
                        "GRIDBOT_DATABASE_URL": f"postgresql://gridbot:gridbot@127.0.0.1:{port}/gridbot"})
    try:
        first = await read_until(proc, lambda line: "not reachable" in line)
        assert f"PostgreSQL 127.0.0.1:{port}/gridbot" in first[-1] and "retrying" in first[-1]
        assert "gridbot:gridbot@" not in first[-1]  # no password in the log
        await read_until(proc, lambda line: "not reachable" in line)
        code, rest = await stop(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert code == 0 and "Traceback" not in rest, rest


def test_a_database_that_refuses_is_one_line(tmp_path):
    # a folder where the SQLite file should be: SQLite cannot open it, waiting will not help
    url = f"sqlite:///{tmp_path}"
    r = gridbot("run", env={"GRIDBOT_BOT_TOKEN": TOKEN, "GRIDBOT_DATABASE_URL": url,
                            "GRIDBOT_TELEGRAM_API_BASE": "http://127.0.0.1:9"})
    err = one_line_error(r, 2)
    assert "GRIDBOT_DATABASE_URL" in err and "unable to open database file" in err


@pytest.mark.skipif(not PG_URL, reason="needs GRIDBOT_TEST_POSTGRES_URL")
def test_a_wrong_postgres_password_is_one_line():
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL).set(password="wrong-password").render_as_string(hide_password=False)
    r = gridbot("run", env={"GRIDBOT_BOT_TOKEN": TOKEN, "GRIDBOT_DATABASE_URL": url,
                            "GRIDBOT_TELEGRAM_API_BASE": "http://127.0.0.1:9"})
    err = one_line_error(r, 2)
    assert "password authentication failed" in err and "wrong-password" not in err


async def test_no_digest_or_weekly_list_for_a_period_that_began_before_the_first_start(core, clock):
    from scheduler.jobs import mark_installed
    from scheduler.registry import run_job

    # first started on Monday 09:05 Shanghai: today's 08:30 digest and this week's list (09:00) are not news
    clock.advance(minutes=5)
    await mark_installed(core.engine, clock.now)
    assert (await run_job(core, "digest", force=False))["skipped"] == "period began before the first start"
    assert (await run_job(core, "weekly", force=False))["skipped"] == "period began before the first start"
    await mark_installed(core.engine, clock.now.replace(year=2030))  # the first start is kept
    clock.advance(days=1)
    result = await run_job(core, "digest", force=False)
    assert "skipped" not in result and result["supervisors"] >= 1, result


def test_env_example_lists_every_setting_with_its_default():
    from bot.settings import Settings

    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^(GRIDBOT_\w+)=(.*)$", text, re.M))
    fields = Settings.model_fields
    assert set(listed) == {f"GRIDBOT_{name.upper()}" for name in fields}
    for name, field in fields.items():
        default = field.default
        shown = listed[f"GRIDBOT_{name.upper()}"]
        if default in (None, (), ""):
            assert shown == "", name
        elif isinstance(default, float):
            assert float(shown) == default, name
        else:
            assert shown == str(default), name
    # and the file is a valid configuration as it stands
    from bot.settings import load_settings

    env = {k: v for k, v in listed.items() if v}
    import os as _os

    saved = {k: _os.environ.get(k) for k in env}
    try:
        _os.environ.update(env)
        load_settings()
    finally:
        for k, v in saved.items():
            if v is None:
                _os.environ.pop(k, None)
            else:
                _os.environ[k] = v
