"""The README's quickstart, followed as written with the fake Bot API standing in for Telegram:
its grid file (YAML, and the same tree as GeoJSON), `grid import --dry-run`, `grid import`,
`gridbot run`, `/id`, a captain's `/start`, and a report that reaches that captain. The run logs
in JSON: the start-up line, and one line for a delivery that failed for good."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap

from bot.areas.grid_file import load_grid
from tests.conftest import TOKEN
from tests.fakebotapi import FakeBotAPI
from tests.fakebotapi import updates as U
from tests.test_cli import ROOT, gridbot
from tests.test_startup import read_until, start, stop

README = (ROOT / "README.md").read_text(encoding="utf-8")
QUICKSTART = README.split("## From a BotFather token to a running district", 1)[1].split("\n## ", 1)[0]


def block(lang: str) -> str:
    return textwrap.dedent(re.search(rf"```{lang}\n(.*?)```", QUICKSTART, re.S).group(1))


def test_the_readme_grid_examples_load_and_agree(tmp_path):
    (tmp_path / "my-grid.yaml").write_text(block("yaml"), encoding="utf-8")
    (tmp_path / "my-grid.geojson").write_text(block("json"), encoding="utf-8")
    yaml_spec, geo_spec = load_grid(tmp_path / "my-grid.yaml"), load_grid(tmp_path / "my-grid.geojson")
    shape = lambda spec: [(a.id, a.parent_id, a.captain, a.supervisor) for a in spec.areas]  # noqa: E731
    assert shape(yaml_spec) == shape(geo_spec) and len(yaml_spec.areas) == 3


async def test_following_the_quickstart_gets_a_district_running(tmp_path):
    grid = tmp_path / "my-grid.yaml"
    grid.write_text(block("yaml"), encoding="utf-8")
    env = {"GRIDBOT_DATABASE_URL": f"sqlite:///{tmp_path}/gridbot.db"}
    dry = gridbot("grid", "import", "--dry-run", str(grid), env=env)
    assert dry.returncode == 0 and "3 areas would be added" in dry.stdout, dry.stderr
    assert gridbot("grid", "import", str(grid), env=env).returncode == 0
    shown = gridbot("grid", "show", env=env).stdout
    assert "yanan-beilu" in shown and "captain" in shown

    captain, resident = U.TgUser(5003, "陈队长"), U.TgUser(7777, "居民甲")
    async with FakeBotAPI(token=TOKEN) as api:
        proc = await start({"GRIDBOT_TELEGRAM_API_BASE": api.base_url, "GRIDBOT_LOG_FORMAT": "json", **env})
        try:
            lines = await read_until(proc, lambda line: "gridbot started" in line, timeout=90)
            records = [json.loads(x) for x in lines]  # every line is one JSON object
            start_line = records[-1]["msg"]
            for part in ("@gridbot_test_bot", "long polling", "aiogram", "grid 3 areas (1 captains)",
                         "knowledge entries", "admins: none"):
                assert part in start_line, start_line
            assert not [r for r in records if r["logger"].startswith("alembic")]
            api.push_update(U.message(captain, text="/id"))
            reply = (await api.wait_sent(captain.id, timeout=30))[-1]
            assert "5003" in (reply.text or "")
            api.push_update(U.message(captain, text="/start"))
            await api.wait_sent(captain.id, count=2, timeout=30)
            api.push_update(U.message(resident, text="/report 延安北路12号 路灯不亮三天了"))
            confirm = await api.wait_for(lambda c: c.params.get("chat_id") in (resident.id, str(resident.id))
                                         and "rp:ok" in str(c.params.get("reply_markup")), timeout=30)
            api.push_update(U.callback(resident, confirm.result, "rp:ok"))
            task = await api.wait_for(lambda c: str(c.params.get("chat_id")) == str(captain.id)
                                      and "延安北路" in (c.text or ""), timeout=30)
            assert "路灯" in task.text
            # someone who blocked the bot: their reply fails for good, and the log says who, what, why
            blocked = U.TgUser(7778, "居民乙")
            api.block_chat(blocked.id)
            api.push_update(U.message(blocked, text="/start"))
            failed = json.loads((await read_until(proc, lambda line: "failed for good" in line))[-1])
            assert failed["level"] == "WARNING"
            assert "chat 7778" in failed["msg"] and "reply message" in failed["msg"] and "blocked" in failed["msg"]
        finally:
            code, rest = await stop(proc)
        await asyncio.sleep(0)
    assert code == 0, rest
