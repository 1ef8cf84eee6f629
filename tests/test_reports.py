"""/stats and /export, through both frameworks against the fake Bot API; the chart and the
export files decoded and checked."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import matplotlib.image as mpimg
import pytest
from openpyxl import load_workbook
from sqlalchemy import select

import handlers.broadcast  # noqa: F401  (registers /broadcast)
import handlers.reports  # noqa: F401  (registers /stats and /export)
from bot.cases.models import Case
from bot.charts import SIZE, ChartData, Label, render_png
from bot.cli import export_cli_main
from bot.people.models import AuditEntry
from tests.conftest import li, sun, wang, zhao
from tests.harness import BotHarness


@pytest.fixture
async def bot(bot):
    await add_cases(bot)
    return bot


async def add_cases(h: BotHarness) -> None:
    now = datetime.now(timezone.utc)
    rows = []
    for i, (status, cat, area, days_ago) in enumerate([
        ("new", "streetlight", "xianggang-even", 1), ("accepted", "garbage", "xianggang-even", 2),
        ("closed", "streetlight", "fushanwan-g1", 5), ("resolved", "manhole", "fushanwan", 3),
        ("new", "noise", "guanhai", 40), ("closed", "road", "guanhai", 4),
    ]):
        created = now - timedelta(days=days_ago)
        rows.append(Case(status=status, category_id=cat, description=f"=问题{i}", address=f"香港中路{i}号",
                         area_id=area, reporter_id=wang.id, share_contact=i % 2 == 0, assignee_id=li.id,
                         created_at=created, updated_at=created, deadline_at=created + timedelta(days=1),
                         resolved_at=created + timedelta(hours=12) if status in ("closed", "resolved") else None,
                         closed_at=created + timedelta(hours=20) if status == "closed" else None,
                         rating=5 if status == "closed" else None))
    async with h.core.sessionmaker() as s, s.begin():
        s.add_all(rows)


def test_the_chart_is_a_png_of_the_expected_size(tmp_path):
    data = ChartData(title=Label("统计", "Statistics"), by_status=[(Label("待受理", "new"), 3)],
                     by_category=[(Label("路灯", "Streetlight"), 2)], grid_rates=[(Label("一网格", "g1"), 0.5)],
                     per_day=[(datetime(2026, 11, d).date(), d % 3) for d in range(1, 8)])
    png = render_png(data)
    (tmp_path / "stats.png").write_bytes(png)
    img = mpimg.imread(tmp_path / "stats.png")
    assert (img.shape[1], img.shape[0]) == SIZE


async def test_an_admin_gets_figures_and_a_chart(bot):
    replies = await bot.say(sun, "/stats")
    text = next(c.text for c in replies if c.method == "sendMessage")
    assert "全辖区" in text and "新上报" in text and "整改率" in text
    photo = next(c for c in replies if c.method == "sendPhoto")
    [upload] = photo.files.values()
    img = mpimg.imread(io.BytesIO(upload.data))
    assert (img.shape[1], img.shape[0]) == SIZE
    async with bot.core.sessionmaker() as s:
        assert (await s.execute(select(AuditEntry).where(AuditEntry.action == "stats"))).scalars().first()


async def test_a_supervisor_sees_only_their_subtree(bot):
    replies = await bot.say(zhao, "/stats")
    assert any("浮山湾" in (c.text or "") for c in replies)
    replies = await bot.say(zhao, "/stats guanhai 7d")
    assert "只能查看" in replies[-1].text


async def test_an_admin_exports_csv_with_a_bom(bot):
    replies = await bot.say(sun, "/export")
    docs = await bot.press(sun, replies[-1], "ex:csv")
    doc = next(c for c in docs if c.method == "sendDocument")
    [upload] = doc.files.values()
    data = upload.data
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0][:3] == ["编号", "状态", "类别"] and len(rows) == 7
    by_desc = {r[5]: r for r in rows[1:]}
    assert str(wang.id) in by_desc["'=问题0"][6] and by_desc["'=问题1"][6] == ""  # shared contact only
    assert by_desc["'=问题0"][1] == "待受理"


async def test_an_admin_exports_xlsx_for_an_area(bot):
    replies = await bot.say(sun, "/export fushanwan 30d")
    docs = await bot.press(sun, replies[-1], "ex:xlsx")
    doc = next(c for c in docs if c.method == "sendDocument")
    [upload] = doc.files.values()
    wb = load_workbook(io.BytesIO(upload.data))
    ws = wb.active
    rows = list(ws.iter_rows(values_only=True))
    assert len(rows) == 1 + 4  # the community's subtree only
    assert upload.filename.endswith(".xlsx")
    # dates are dates, people have names, the header stays in view and filters
    from datetime import datetime

    created = rows[0].index("上报时间")
    assert all(isinstance(r[created], datetime) for r in rows[1:])
    assigned = rows[0].index("处理人")
    assert any(r[assigned] and "(" in r[assigned] and not r[assigned].isdigit() for r in rows[1:])
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref and ws.auto_filter.ref.startswith("A1:")


async def test_the_command_line_export_writes_a_file(db_url, settings_for, tmp_path, bot, monkeypatch):
    out = tmp_path / "cases.csv"
    settings = settings_for(db_url)
    lines = []
    # export_cli_main runs its own event loop: in a thread, as the command line would
    import asyncio

    rc = await asyncio.to_thread(export_cli_main, settings, fmt="csv", out=str(out), area="guanhai", echo=lines.append)
    assert rc == 0 and "2 cases" in lines[-1]
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")
    monkeypatch.chdir(tmp_path)
    rc = await asyncio.to_thread(export_cli_main, settings, fmt="xlsx", out=None, echo=lines.append)
    assert rc == 0 and lines[-1].endswith(".xlsx") and (tmp_path / lines[-1].split(" to ")[-1]).exists()
    lines.clear()
    rc = await asyncio.to_thread(export_cli_main, settings, fmt="csv", out=str(out), status="bogus", echo=lines.append)
    assert rc == 2 and "--status must be one of" in lines[-1] and "accepted" in lines[-1]
