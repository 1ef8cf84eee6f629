"""bot/stats.py: the figures of digests and /stats, checked against cases built for the test.

The period is Monday 23 Nov 2026 (local); "now" is Tuesday 08:30. Cases a–e and g are in
香港中路双号段 (li's, in zhao's 浮山湾社区), f in 燕儿岛路南段 (chen's, in gao's 观海社区).
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot import stats
from bot.areas.service import load_tree
from bot.cases.models import Case
from bot.outbox.models import OutboxMessage
from scheduler.registry import run_job
from tests.conftest import chen, li, sun, wang, zhao

CST = ZoneInfo("Asia/Shanghai")


def local(*args) -> datetime:
    return datetime(*args, tzinfo=CST).astimezone(timezone.utc)


START, END, NOW = local(2026, 11, 23), local(2026, 11, 24), local(2026, 11, 24, 8, 30)
Y = lambda h, m=0: local(2026, 11, 23, h, m)  # noqa: E731 - "yesterday at"


def case(**kw) -> Case:
    created = kw.pop("created_at")
    values = dict(status="new", category_id="streetlight", description="", address="", area_id="xianggang-even",
                  reporter_id=wang.id, assignee_id=li.id, created_at=created, updated_at=created, assigned_at=created,
                  chase_level=0, was_overdue=False, reopen_count=0, reporter_count=1, share_contact=False)
    values.update(kw)
    return Case(**values)


@pytest.fixture
async def built(core, clock):
    clock.now = NOW
    cases = {
        # reported, accepted within the hour, fixed before its deadline: the model case
        "a": case(created_at=Y(10), accepted_at=Y(11), resolved_at=Y(15), deadline_at=Y(20), status="resolved"),
        # accepted the day before, still open, deadline passed yesterday
        "b": case(created_at=Y(9) - timedelta(days=1), accepted_at=Y(10) - timedelta(days=1),
                  deadline_at=Y(12), status="accepted"),
        # reported yesterday, nobody has accepted it, due tomorrow
        "c": case(created_at=Y(16), deadline_at=Y(16) + timedelta(days=2)),
        # fixed an hour late, confirmed and rated 5 yesterday
        "d": case(created_at=Y(9) - timedelta(days=2), deadline_at=Y(9), resolved_at=Y(10), closed_at=Y(12),
                  status="closed", rating=5),
        # closed unresolved before its deadline: due, never fixed, not overdue
        "e": case(created_at=Y(9) - timedelta(days=2), deadline_at=Y(14), closed_at=Y(13),
                  status="closed_unresolved"),
        # another community: reported, fixed at once (no accept: resolving is a response), closed
        # and rated 2 yesterday; due in three days
        "f": case(created_at=Y(8), area_id="yanerdao-s", assignee_id=chen.id, assigned_at=Y(8),
                  resolved_at=Y(9), closed_at=Y(18), status="closed",
                  rating=2, deadline_at=Y(8) + timedelta(days=3)),
        # marked duplicate: due yesterday, never fixed, not overdue
        "g": case(created_at=Y(9) - timedelta(days=2), deadline_at=Y(11), closed_at=Y(10), status="duplicate"),
        # reported today: outside the period
        "h": case(created_at=NOW - timedelta(hours=1), deadline_at=NOW + timedelta(days=3)),
        # reported long ago, reopened and still open: its state counts, it is past due
        "i": case(created_at=NOW - timedelta(days=200), deadline_at=NOW - timedelta(days=3), status="reopened",
                  accepted_at=NOW - timedelta(days=199)),
    }
    async with core.sessionmaker() as s, s.begin():
        s.add_all(cases.values())
    return {k: c.id for k, c in cases.items()}


async def community(core, root: str) -> list[str]:
    async with core.sessionmaker() as s:
        return (await load_tree(session=s)).subtree(root)


async def test_figures_of_a_community(core, built):
    async with core.sessionmaker() as s:
        f = await stats.figures(session=s, area_ids=await community(core, "fushanwan"), start=START, end=END,
                                now=NOW)
    assert (f.new, f.accepted, f.resolved, f.closed) == (2, 1, 2, 1)
    assert (f.due, f.due_fixed, f.due_fixed_on_time, f.overdue) == (5, 2, 1, 2)
    assert (f.assigned, f.responded) == (2, 1)
    assert (f.rated, f.satisfied) == (1, 1)
    assert (f.open, f.overdue_open) == (4, 2)  # b, c, h, i open; b and i overdue
    assert f.rectification_rate == pytest.approx(1 / 5)
    assert f.resolution_rate == pytest.approx(2 / 5)
    assert f.response_rate == pytest.approx(1 / 2)
    assert f.satisfaction_rate == 1.0


async def test_figures_of_the_district_and_per_area(core, built):
    async with core.sessionmaker() as s:
        f = await stats.figures(session=s, area_ids=None, start=START, end=END, now=NOW)
        per = await stats.breakdown(session=s, area_ids=None, start=START, end=END, now=NOW)
    assert (f.new, f.resolved, f.closed, f.rated, f.satisfied) == (3, 3, 2, 2, 1)
    assert (f.assigned, f.responded, f.accepted) == (3, 2, 1)
    assert f.satisfaction_rate == 0.5
    assert set(per) == {"xianggang-even", "yanerdao-s"}
    assert per["yanerdao-s"].new == 1 and per["yanerdao-s"].due == 0
    assert per["yanerdao-s"].rectification_rate is None and stats.percent(None) == "—"
    assert stats.rollup(per) == f


async def test_a_quiet_area_has_no_figures(core, built):
    async with core.sessionmaker() as s:
        f = await stats.figures(session=s, area_ids=await community(core, "zhanshan"), start=START, end=END, now=NOW)
    assert f.quiet and f.rectification_rate is None


async def test_workloads_and_overdue_lists_come_in_one_query_each(core, built):
    async with core.sessionmaker() as s:
        loads = await stats.workloads(session=s, now=NOW, per_worker=2)
        overdue = await stats.overdue_by_area(session=s, now=NOW, per_area=5)
        items, total = await stats.overdue_cases(session=s, now=NOW)
    assert (loads[li.id].open, loads[li.id].overdue) == (4, 2)
    assert [t.id for t in loads[li.id].tasks] == [built["i"], built["b"]]  # most urgent first, cut at 2
    assert chen.id not in loads
    assert [i.id for i in overdue["xianggang-even"]] == [built["i"], built["b"]]
    assert total == 2 and [i.id for i in items] == [built["i"], built["b"]]


async def test_the_supervisor_digest_shows_these_figures(core, built):
    await run_job(core, "digest")
    async with core.sessionmaker() as s:
        rows = {m.chat_id: m for m in (await s.execute(select(OutboxMessage))).scalars()}
    supervisor = rows[zhao.id].payload["text"]
    assert "浮山湾社区 日报（2026-11-24）" in supervisor
    assert "昨日：新增 2 件，受理 1 件，办结 2 件，到期 5 件，其中超期 2 件。" in supervisor
    assert "整改率 20% · 响应率 50% · 办结率 40% · 满意率 100%" in supervisor
    assert f"#{built['i']}" in supervisor and f"#{built['b']}" in supervisor  # the oldest overdue
    admin = rows[sun.id].payload["text"]
    assert "满意率 50%" in admin and "浮山湾社区" in admin and "观海社区" in admin
    worker = rows[li.id].payload["text"]
    assert "未办结 4 件，其中已超期 2 件" in worker


# --- the figures against their definitions, over many random cases ------------------------------------

STATES = ("new", "accepted", "reopened", "resolved", "closed", "closed_unresolved", "duplicate", "withdrawn")


def random_cases(rnd, n: int) -> list[dict]:
    """Cases around the period: some reported before the lookback, some after the period, times
    in whole minutes (no ties on a boundary of the response window), any field may be missing."""
    def at(lo_days: float, hi_days: float):  # mostly near the period
        lo_days = lo_days if rnd.random() < 0.3 else max(lo_days, -2)
        return START + timedelta(minutes=rnd.randrange(int(lo_days * 1440), int(hi_days * 1440)))

    def maybe(lo_days: float, hi_days: float):
        return at(lo_days, hi_days) if rnd.random() < 0.6 else None

    out = []
    for _ in range(n):
        created = at(-90, 1.5)
        out.append(dict(status=rnd.choice(STATES), area_id=rnd.choice(("xianggang-even", "yanerdao-s", None)),
                        assignee_id=rnd.choice((li.id, chen.id, None)), created_at=created,
                        assigned_at=rnd.choice((created, maybe(-60, 1.5))), accepted_at=maybe(-60, 1.5),
                        resolved_at=maybe(-60, 1.5), closed_at=maybe(-60, 1.5), deadline_at=maybe(-60, 4),
                        rating=rnd.choice((None, 1, 3, 4, 5))))
    return out


def expected(cases: list[dict], start=START, end=END) -> dict[str | None, stats.Figures]:
    """bot/stats.py's definitions, case by case in Python."""
    cutoff, due_end = start - stats.LOOKBACK, min(end, NOW)
    per: dict = {}

    def within(x):
        return x is not None and start <= x < end

    for c in cases:
        f = per.setdefault(c["area_id"], stats.Figures())
        if c["status"] in stats.OPEN:
            f.open += 1
            f.overdue_open += c["deadline_at"] is not None and c["deadline_at"] < NOW
        if not (c["created_at"] < end and (c["created_at"] >= cutoff or c["status"] in stats.ACTIVE)):
            continue
        fixed = c["status"] in ("resolved", "closed")
        responded_at = c["accepted_at"] or c["resolved_at"]
        finished = c["resolved_at"] or c["closed_at"]
        due = c["deadline_at"] is not None and start <= c["deadline_at"] < due_end
        assigned = within(c["assigned_at"]) and c["assignee_id"] is not None
        f.new += within(c["created_at"])
        f.assigned += assigned
        f.responded += (assigned and responded_at is not None and responded_at >= c["assigned_at"]
                        and responded_at - c["assigned_at"] <= timedelta(hours=stats.RESPONSE_HOURS))
        f.accepted += within(c["accepted_at"])
        f.resolved += within(c["resolved_at"]) and fixed
        f.closed += within(c["closed_at"]) and c["status"] == "closed"
        f.due += due
        f.due_fixed += due and fixed
        f.due_fixed_on_time += (due and fixed and c["resolved_at"] is not None
                                and c["resolved_at"] <= c["deadline_at"])
        f.overdue += (due and c["status"] not in ("withdrawn", "duplicate")
                      and (finished is None or finished > c["deadline_at"]))
        f.rated += within(c["closed_at"]) and c["rating"] is not None
        f.satisfied += within(c["closed_at"]) and c["rating"] is not None and c["rating"] >= stats.SATISFIED_RATING
    return {a: f for a, f in per.items() if not f.quiet}


async def test_the_figures_follow_their_definitions_over_random_cases(core, clock):
    import random

    clock.now = NOW
    rnd = random.Random(14)
    rows = random_cases(rnd, 600)
    async with core.sessionmaker() as s, s.begin():
        s.add_all(case(category_id="streetlight", description="", address="", reporter_id=wang.id, **r)
                  for r in rows)
    async with core.sessionmaker() as s:
        per = await stats.breakdown(session=s, area_ids=None, start=START, end=END, now=NOW)
        scoped = await stats.breakdown(session=s, area_ids=["yanerdao-s"], start=START, end=END, now=NOW)
        # a long period reads the cases by when they were reported (SHORT_PERIOD)
        long = await stats.breakdown(session=s, area_ids=None, start=START - timedelta(days=20), end=END, now=NOW)
        loads = await stats.workloads(session=s, now=NOW, per_worker=3)
        overdue = await stats.overdue_by_area(session=s, now=NOW, per_area=4)
    want = expected(rows)
    assert {a: f for a, f in per.items() if not f.quiet} == want
    assert {a: f for a, f in scoped.items() if not f.quiet} == {"yanerdao-s": want["yanerdao-s"]}
    assert {a: f for a, f in long.items() if not f.quiet} == expected(rows, START - timedelta(days=20), END)
    district = stats.rollup(want)
    assert all(getattr(district, f.name) > 0 for f in fields(district))  # every figure is tried
    async with core.sessionmaker() as s:  # the ids, to check the lists' order
        ids = (await s.execute(select(Case.id, Case.status, Case.assignee_id, Case.area_id, Case.deadline_at)
                               .order_by(Case.id))).all()
    open_ = sorted((r for r in ids if r.status in stats.OPEN), key=lambda r: (r.deadline_at is None, r.deadline_at,
                                                                                 r.id))
    for uid in (li.id, chen.id):
        mine = [r for r in open_ if r.assignee_id == uid]
        # NULL deadlines sort first on SQLite, last on PostgreSQL: compare the dated ones
        dated = [i.id for i in loads[uid].tasks if i.deadline_at is not None]
        assert loads[uid].open == len(mine)
        assert dated == [r.id for r in mine if r.deadline_at is not None][:len(dated)]
    for area in ("xianggang-even", "yanerdao-s", None):
        late = [r.id for r in open_ if r.area_id == area and r.deadline_at is not None and r.deadline_at < NOW]
        assert [i.id for i in overdue[area]] == late[:4]


def test_the_partial_indexes_cover_exactly_the_open_states():
    from bot.cases.models import OPEN_CASES

    assert str(OPEN_CASES) == "status IN (%s)" % ", ".join(f"'{s}'" for s in stats.OPEN)


async def test_each_digest_is_in_its_readers_language(core, built):
    from bot.people.models import Person

    async with core.sessionmaker() as s, s.begin():
        people = {p.id: p for p in (await s.execute(select(Person))).scalars()}
        for uid, lang, tg in ((zhao.id, None, "en-US"), (li.id, "en", "zh-CN"), (chen.id, None, None)):
            p = people.get(uid) or Person(id=uid, name="", created_at=NOW)
            p.language, p.tg_language = lang, tg
            s.add(p)
    await run_job(core, "digest")
    async with core.sessionmaker() as s:
        rows = {m.chat_id: m.payload["text"] for m in (await s.execute(select(OutboxMessage))).scalars()}
    assert "daily report (2026-11-24)" in rows[zhao.id]  # from Telegram's language
    assert "Good morning! Your tasks for 2026-11-24" in rows[li.id]  # chosen with /lang, over Telegram's
    assert "日报（2026-11-24）" in rows[sun.id]  # nothing known: Chinese


async def test_the_digests_task_lines_are_the_catalog_line_in_every_language(core, built):
    """The worker's task lines come from the template with names looked up once per language:
    the same text as the catalog's own rendering, user text escaped, Traditional Chinese too."""
    from bot.areas.models import Category
    from bot.cases import messages
    from bot.i18n import Safe, Texts

    async with core.sessionmaker() as s:
        tree = await load_tree(session=s)
        cats = {c.id: c for c in (await s.execute(select(Category))).scalars()}
        loads = await stats.workloads(session=s, now=NOW, per_worker=10)
    tasks = [i._replace(address="路口 <东> & 西") if k % 2 else i for k, i in enumerate(loads[li.id].tasks)]
    assert len(tasks) == 4 and sum(i.deadline_at < NOW for i in tasks) == 2  # b and i are overdue
    names = messages.Names(tree, cats, {})
    for lang in ("zh", "en", "zh-hant"):
        t = Texts(lang)
        want = [t("sched.task_line", ref=i.ref, category=names.category(t, i.category_id), place=names.place(i),
                  deadline=i.deadline_at.astimezone(CST).strftime("%m-%d %H:%M"),
                  flag=Safe(t("sched.overdue_flag")) if i.deadline_at < NOW else "") for i in tasks]
        assert messages._task_lines(t, names, tasks, NOW, CST) == want
        assert messages._task_lines(t, names, tasks, NOW, CST) == want  # again, from what it looked up
        assert any("&lt;" in line and "&gt; &amp; " in line for line in want)  # the address, escaped
