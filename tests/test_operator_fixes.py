"""What a new operator met on the way from the demo to a real district, each fixed: /id, the
area tree indented by parent, the reporter's name kept out of /case history, /lang to
Traditional, /stats by area name and an explained 整改率, the broadcast preview and its single
summary, the broadcast and export command lines, and files one can open in the demo."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timezone

import handlers.broadcast  # noqa: F401  (registers /broadcast)
import handlers.reports  # noqa: F401  (registers /stats and /export)
from bot.broadcasts.models import Broadcast
from bot.cases.models import Case
from bot.people.models import Person
from sqlalchemy import select
from tests.conftest import li, sun, wang
from tests.fakebotapi import updates as U
from tests.test_cli import ROOT, gridbot


def tree_order(lines: list[str], names: list[str]) -> list[int]:
    return [next(i for i, line in enumerate(lines) if n in line) for n in names]


async def test_id_tells_anyone_their_telegram_id_and_a_groups_id(bot):
    stranger = U.TgUser(4242, "Someone", language_code="en")
    reply = (await bot.say(stranger, "/id"))[-1].text
    assert "4242" in reply and "Telegram" in reply
    group = {"id": -100777, "type": "supergroup", "title": "浮山湾居民群"}
    bot.api.add_chat(-100777, "supergroup", title="浮山湾居民群")
    replies = await bot.say(wang, "/id", chat=group)
    assert "9001" in replies[-1].text and "-100777" in replies[-1].text


async def test_staff_lists_each_area_under_its_own_parent(bot):
    lines = (await bot.say(sun, "/staff"))[-1].text.splitlines()
    # 浮山湾社区's micro-grids come under it, before the next community (not all grids after all communities)
    fushanwan, garden, guanhai = tree_order(lines, ["浮山湾社区", "浮山湾花园", "观海社区"])
    assert fushanwan < garden < guanhai, lines


def test_grid_show_lists_each_area_under_its_own_parent(tmp_path):
    env = {"GRIDBOT_DATABASE_URL": f"sqlite:///{tmp_path}/g.db"}
    assert gridbot("grid", "import", str(ROOT / "bot/areas/sample_grid.yaml"), env=env).returncode == 0
    lines = gridbot("grid", "show", env=env).stdout.splitlines()
    g1, odd, g2, guanhai = tree_order(lines, ["fushanwan-g1 ", "xianggang-odd ", "fushanwan-g2 ", "guanhai "])
    assert g1 < odd < g2 < guanhai, lines
    assert lines[odd].startswith("      ") and lines[g1].startswith("    ") and not lines[g1].startswith("     ")


def test_grid_import_dry_run_shows_what_would_change_and_writes_nothing(tmp_path):
    env = {"GRIDBOT_DATABASE_URL": f"sqlite:///{tmp_path}/g.db"}
    sample = (ROOT / "bot/areas/sample_grid.yaml").read_text(encoding="utf-8")
    assert gridbot("grid", "import", str(ROOT / "bot/areas/sample_grid.yaml"), env=env).returncode == 0
    changed = tmp_path / "g2.yaml"
    changed.write_text(sample.replace("香港中路单号段", "香港中路奇数段"), encoding="utf-8")
    r = gridbot("grid", "import", "--dry-run", str(changed), env=env)
    assert r.returncode == 0, r.stderr
    assert "~ xianggang-odd" in r.stdout and "香港中路单号段 → 香港中路奇数段" in r.stdout
    assert "0 areas would be added, 1 changed, 0 retired" in r.stdout and "nothing was written" in r.stdout
    assert "香港中路单号段" in gridbot("grid", "show", env=env).stdout


async def test_case_history_keeps_the_name_of_a_reporter_who_did_not_share_it(bot):
    confirm = (await bot.say(wang, "/report 香港中路12号 路灯不亮三天了"))[-1]
    await bot.press(wang, confirm, "rp:ok")  # contact not shared (the default)
    async with bot.core.sessionmaker() as s:
        case = (await s.execute(select(Case).where(Case.reporter_id == wang.id))).scalars().one()
    assert not case.share_contact
    text = (await bot.say(li, f"/case {case.id}"))[-1].text
    assert "王芳" not in text and "居民" in text, text


async def test_lang_traditional_says_traditional(bot):
    menu = (await bot.say(wang, "/lang"))[-1]
    await bot.press(wang, menu, "lang:zh-hant")
    text = bot.api.messages[wang.id][menu.result["message_id"]]["text"]  # the menu, edited
    assert "繁體中文" in text and "簡體" not in text and "简体" not in text, text


async def test_stats_by_area_name_and_an_explained_dash(bot):
    text = next(c.text for c in await bot.say(sun, "/stats 观海社区 7d") if c.method == "sendMessage")
    assert "观海社区" in text and "找不到" not in text
    assert "整改率 —" in text and "期间还没有到期的问题" in text, text
    text = next(c.text for c in await bot.say(sun, "/stats 觀海社區") if c.method == "sendMessage")
    assert "观海社区" in text  # typed in Traditional


async def test_broadcast_preview_wording_and_one_summary(bot):
    now = datetime.now(timezone.utc)
    async with bot.core.sessionmaker() as s, s.begin():
        for i in range(3):
            s.add(Person(id=600_000 + i, name=f"居民{i}", has_chatted=True, is_active=True, is_admin=False,
                         created_at=now))
    for i in range(3):
        bot.api.add_chat(600_000 + i)
    await bot.say(sun, "/broadcast")
    replies = await bot.say(sun, "明天上午停水，请提前储水。")
    preview = (await bot.press(sun, replies[-1], "bc:a:all"))[-1]
    assert "所有用户收件人" not in preview.text and re.search(r"发送范围：所有用户，共 \d+ 个收件人", preview.text), preview.text
    go = next(b for b in bot.buttons(preview) if b.startswith("bc:go:"))
    bot.api.push_update(U.callback(sun, preview.result, go))
    bid = int(go.split(":")[2])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        async with bot.core.sessionmaker() as s:
            bc = await s.get(Broadcast, bid)
        if bc.status == "done":
            break
        await asyncio.sleep(0.1)
    await bot.settle()
    await bot.delivered()
    # what the admin's chat shows in the end: the summary once (the progress message says it is over)
    shown = [m.get("text", "") for m in bot.api.messages[sun.id].values()]
    assert sum("已完成" in t and "已发送" in t for t in shown) == 1, shown
    assert any("已结束" in t for t in shown)


def test_broadcast_command_line_help_and_an_unknown_area(tmp_path):
    env = {"GRIDBOT_DATABASE_URL": f"sqlite:///{tmp_path}/g.db", "GRIDBOT_ADMIN_IDS": "9100"}
    help_text = gridbot("broadcast", "--help", env=env).stdout
    assert "HTML)" not in help_text and "exactly as written" in re.sub(r"\s+", " ", help_text.replace("│", " "))
    assert gridbot("grid", "import", str(ROOT / "bot/areas/sample_grid.yaml"), env=env).returncode == 0
    r = gridbot("broadcast", "--text", "通知", "--audience", "area:nowhere", "--yes", env=env)
    assert r.returncode == 2 and "no area 'nowhere'" in r.stderr + r.stdout


async def test_the_demo_shows_a_chart_and_an_export_one_can_open(tmp_path):
    import io

    from bot.demo import run_demo

    out: list[str] = []
    script = io.StringIO("!as admin\n/stats\n/export\n!1\n")
    await run_demo(tmp_path / "demo.db", script, interactive=False, out=out.append)
    text = "\n".join(out)
    paths = re.findall(r"open (/\S+?)\]", text)
    assert any(p.endswith("stats.png") for p in paths) and any(p.endswith(".csv") for p in paths), text[-3000:]
    for p in paths:
        with open(p, "rb") as f:
            head = f.read(8)
        assert head.startswith(b"\x89PNG") or head.startswith(b"\xef\xbb\xbf"), p


async def test_the_demo_answers_its_first_question_at_once(tmp_path):
    """The demo builds the matcher before the first line, as `gridbot run` does: built lazily,
    the first question read the learned alternates inside its own handler's transaction and
    waited the SQLite writer queue's 30 s timeout for itself."""
    import asyncio
    import io

    from bot.demo import run_demo

    out: list[str] = []
    script = io.StringIO("怎么报名当社区志愿者？\n")
    await asyncio.wait_for(run_demo(tmp_path / "demo.db", script, interactive=False, out=out.append), 20)
    assert "居委会登记" in "\n".join(out)


async def test_admins_hear_daily_of_workers_the_bot_cannot_reach(core):
    from sqlalchemy import update

    from bot.outbox.models import OutboxMessage
    from scheduler.registry import run_job

    async with core.sessionmaker() as s, s.begin():
        await s.execute(update(Person).where(Person.id != 1002).values(has_chatted=True))
        await s.execute(update(Person).where(Person.id == 1002).values(has_chatted=False))
    await run_job(core, "digest")
    async with core.sessionmaker() as s:
        letters = dict((await s.execute(select(OutboxMessage.chat_id, OutboxMessage.payload)
                                        .where(OutboxMessage.kind.like("digest%")))).all())
    admin_text = letters[sun.id]["text"]
    assert "1 位街长/负责人还无法收到任务" in admin_text and "王秀英（1002）" in admin_text, admin_text
    assert all("无法收到任务" not in p["text"] for chat, p in letters.items() if chat != sun.id)
