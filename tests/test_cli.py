"""The operator's command line, run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import child_env

ROOT = Path(__file__).resolve().parent.parent


def gridbot(*args: str, env: dict | None = None, stdin: str | None = None, timeout: float = 120):
    environ = child_env(**(env or {}))
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, env=environ, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def test_a_malformed_setting_stops_with_one_clear_line(tmp_path):
    r = gridbot("db", "upgrade", env={"GRIDBOT_TIMEZONE": "Mars/Olympus",
                                      "GRIDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db"})
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "GRIDBOT_TIMEZONE" in r.stderr and "Traceback" not in r.stderr


def test_run_without_a_token_says_what_is_missing(tmp_path):
    r = gridbot("run", env={"GRIDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db"})
    assert r.returncode == 2 and "GRIDBOT_BOT_TOKEN" in r.stderr and "Traceback" not in r.stderr


def test_db_upgrade_creates_the_schema(tmp_path):
    r = gridbot("db", "upgrade", env={"GRIDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/new/gridbot.db"})
    assert r.returncode == 0, r.stderr
    assert "revision 0001" in r.stdout or "revision" in r.stdout
    assert (tmp_path / "new" / "gridbot.db").exists()


def test_grid_route_prints_the_contract():
    r = gridbot("grid", "route", "--address", "香港中路12号", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"area_id": "xianggang-even", "assignee": 1002, "score": json.loads(r.stdout)["score"]}
    assert 0 <= json.loads(r.stdout)["score"] <= 100


def test_grid_route_reads_json_lines_from_stdin():
    lines = "\n".join(json.dumps(x, ensure_ascii=False) for x in
                      ({"address": "燕兒島路12號"}, {"lat": 36.0575, "lon": 120.385}, {"lat": 10.0, "lon": 10.0}))
    r = gridbot("grid", "route", "--json", stdin=lines + "\n")
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert [o["area_id"] for o in out] == ["yanerdao-s", "xianggang-even", None]


def test_commands_without_telegram_do_not_import_a_bot_framework(tmp_path):
    code = (
        "import sys, runpy\n"
        "sys.argv = ['gridbot'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('bot', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('aiogram', 'telegram'))\n"
        "print('FRAMEWORKS:', bad, file=sys.stderr)\n"
    )
    env = {"GRIDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db"}
    for args in (["grid", "route", "--address", "香港中路12号", "--json"], ["db", "upgrade"], ["faq", "match", "--json", "垃圾"],
                 ["jobs", "list"]):
        environ = child_env(**env)
        r = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=environ, capture_output=True, text=True,
                           timeout=120)
        assert "FRAMEWORKS: []" in r.stderr, (args, r.stderr[-1500:])


def test_grid_import_rejects_a_cycle_and_keeps_the_old_grid(tmp_path):
    env = {"GRIDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/g.db"}
    assert gridbot("grid", "import", str(ROOT / "bot/areas/sample_grid.yaml"), env=env).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("areas:\n  - id: a\n    name: 甲\n    children:\n      - id: a\n        name: 乙\n", encoding="utf-8")
    r = gridbot("grid", "import", str(bad), env=env)
    assert r.returncode == 2 and "duplicate" in r.stderr and "Traceback" not in r.stderr
    shown = gridbot("grid", "show", env=env)
    assert "xianggang-even" in shown.stdout and "王秀英" in shown.stdout


def test_grid_reimport_updates_in_place_and_keeps_cases(tmp_path):
    import asyncio

    from sqlalchemy import func, select

    from bot.cases.models import Case
    from bot.db import make_engine, make_sessionmaker

    url = f"sqlite+aiosqlite:///{tmp_path}/g.db"
    env = {"GRIDBOT_DATABASE_URL": url}
    assert gridbot("grid", "import", str(ROOT / "bot/areas/sample_grid.yaml"), env=env).returncode == 0
    import sqlite3

    con = sqlite3.connect(tmp_path / "g.db")
    con.execute("INSERT INTO cases (status, category_id, description, address, area_id, reporter_id, share_contact,"
                " created_at, updated_at, chase_level, was_overdue, reopen_count, reporter_count)"
                " VALUES ('new','streetlight','x','', 'xianggang-even', 1, 0, '2026-11-23 01:00:00',"
                " '2026-11-23 01:00:00', 0, 0, 0, 1)")
    con.commit()
    changed = (ROOT / "bot/areas/sample_grid.yaml").read_text(encoding="utf-8").replace("香港中路双号段", "香港中路偶数段")
    f = tmp_path / "grid2.yaml"
    f.write_text(changed, encoding="utf-8")
    r = gridbot("grid", "import", str(f), env=env)
    assert r.returncode == 0, r.stderr
    assert "0 areas added" in r.stdout
    assert con.execute("SELECT name FROM areas WHERE id='xianggang-even'").fetchone()[0] == "香港中路偶数段"
    assert con.execute("SELECT count(*) FROM cases").fetchone()[0] == 1


def test_every_address_the_readme_shows_routes_right():
    import re

    from bot.areas.routing import Router

    router = Router.from_file(ROOT / "bot/areas/sample_grid.yaml")
    lines = re.findall(r"^- (.+?) → `([\w-]+)`$", (ROOT / "README.md").read_text(encoding="utf-8"), re.M)
    assert len(lines) >= 5
    for address, area in lines:
        assert router.route_address(address).area_id == area, address


def test_grid_route_answers_for_the_imported_grid_and_grid_show_prints_its_region(tmp_path):
    env = {"GRIDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/g.db"}
    test_grid = ROOT / "tests" / "data" / "grid_test_city.yaml"
    # nothing imported yet: the grid file (the sample), as `gridbot run` would import it
    r = gridbot("grid", "route", "--address", "香港中路12号", "--json", env=env)
    assert json.loads(r.stdout)["area_id"] == "xianggang-even"
    assert gridbot("grid", "import", str(test_grid), env=env).returncode == 0
    lines = "\n".join(json.dumps(x, ensure_ascii=False) for x in (
        {"address": "胜利西路120号"}, {"address": "香港中路12号"}, {"address": "北京市北京路5号"},
        {"address": "桂花巷12号"}, {"lat": 24.52, "lon": 117.662}))
    r = gridbot("grid", "route", "--json", env=env, stdin=lines + "\n")
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.returncode == 0, r.stderr
    assert out == [{"area_id": "shenglixi-e", "assignee": 5110, "score": 100},
                   {"area_id": None, "assignee": None, "score": 0},
                   {"area_id": None, "assignee": None, "score": 0},
                   {"area_id": "guihua", "assignee": 5004, "score": 100},
                   {"area_id": "guihua", "assignee": 5004, "score": 100}]
    # --grid still wins
    r = gridbot("grid", "route", "--grid", str(ROOT / "bot/areas/sample_grid.yaml"), "--address", "香港中路12号",
                env=env)
    assert json.loads(r.stdout)["area_id"] == "xianggang-even"
    show = gridbot("grid", "show", env=env)
    assert "region: 福建省漳州市芗城区 (from the grid file)" in show.stdout
    sample_env = {"GRIDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/s.db"}
    assert gridbot("grid", "import", str(ROOT / "bot/areas/sample_grid.yaml"), env=sample_env).returncode == 0
    show = gridbot("grid", "show", env=sample_env)
    assert "region: 山东省青岛市 (inferred from the geometry" in show.stdout


def test_grid_route_handles_every_kind_of_address():
    """One address of each kind (tests/test_routing.py DEV_KINDS) through the command line."""
    from tests.test_routing import DEV_KINDS

    picked = {}
    for text, expected, kind in DEV_KINDS:
        picked.setdefault(kind, (text, expected))
    lines = "\n".join(json.dumps({"address": t}, ensure_ascii=False) for t, _ in picked.values())
    r = gridbot("grid", "route", "--grid", str(ROOT / "bot/areas/sample_grid.yaml"), "--json", stdin=lines + "\n")
    got = [json.loads(x)["area_id"] for x in r.stdout.splitlines()]
    assert got == [e for _, e in picked.values()], list(zip(picked, got))
    assert len(picked) == 9
