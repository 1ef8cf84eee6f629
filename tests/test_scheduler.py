"""The chase (SPEC flow 4), digests, the weekly list and auto-close, with a settable clock.

The cast (tests/conftest.py): captain li of 香港中路双号段 (xianggang-even), under the community
浮山湾社区 (supervisor zhao) under 海滨街道 (supervisor song); admin sun; resident wang. Another
community's captain chen (燕儿岛路南段) and its supervisor gao.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, select

from bot.app import Core
from bot.cases import service
from bot.cases.chase import ESCALATE_EVERY
from bot.cases.models import Case, CaseEvent
from bot.cases.transitions import Actor
from bot.cli import run_job_now
from bot.core_models import JobRun
from bot.db import make_engine
from bot.outbox.models import OutboxMessage
from scheduler import jobs
from scheduler.registry import JOBS, describe_jobs, run_job
from tests.conftest import chen, gao, li, song, sun, wang, zhao

CST = ZoneInfo("Asia/Shanghai")
WANG, LI, ZHAO, SONG, SUN, CHEN, GAO = (p.id for p in (wang, li, zhao, song, sun, chen, gao))


def local(*args) -> datetime:
    return datetime(*args, tzinfo=CST).astimezone(timezone.utc)


async def report(core, *, category="streetlight", area="xianggang-even", description="路灯不亮 <b>三天</b>") -> int:
    async with core.sessionmaker() as s, s.begin():
        c = await service.create(session=s, now=core.clock(), tz=core.settings.tz, reporter_id=WANG,
                                 report_chat_id=WANG, category_id=category, description=description, photos=[],
                                 address="香港中路11号", lat=None, lon=None, area_id=area, share_contact=False,
                                 language="zh")
        return c.id


async def get_case(core, case_id: int) -> Case:
    async with core.sessionmaker() as s:
        return await s.get(Case, case_id)


async def outbox(core, kind: str | None = None) -> list[OutboxMessage]:
    async with core.sessionmaker() as s:
        q = select(OutboxMessage).order_by(OutboxMessage.id)
        if kind:
            q = q.where(OutboxMessage.kind == kind)
        return list((await s.execute(q)).scalars())


def chats(rows) -> list[int]:
    return [r.chat_id for r in rows]


async def sweep(core) -> dict:
    return await run_job(core, "sweep")


# --- the chase --------------------------------------------------------------------------------


async def test_it_walks_reminder_overdue_and_each_escalation_level_once(core, clock):
    case_id = await report(core)
    due = (await get_case(core, case_id)).deadline_at
    assert due == local(2026, 11, 26, 9, 0)  # streetlight: 72 h
    remind_at = clock.now + (due - clock.now) * 0.8

    await sweep(core)
    assert await outbox(core, "sla_reminder") == []
    assert (await get_case(core, case_id)).next_check_at == remind_at

    clock.now = remind_at - timedelta(minutes=1)
    await sweep(core)
    assert await outbox(core, "sla_reminder") == []

    clock.now = remind_at
    for _ in range(3):  # the same instant, again and again
        await sweep(core)
    reminders = await outbox(core, "sla_reminder")
    assert chats(reminders) == [LI]
    assert reminders[0].dedupe_key == f"remind:{case_id}:1:2026-11-26T01:00:00Z"
    assert "&lt;b&gt;三天&lt;/b&gt;" in reminders[0].payload["text"]  # the resident's text is escaped

    clock.now = due
    await sweep(core)
    await sweep(core)
    assert chats(await outbox(core, "overdue_assignee")) == [LI]
    assert chats(await outbox(core, "escalation")) == [ZHAO]
    c = await get_case(core, case_id)
    assert c.was_overdue and c.chase_level == 2 and c.next_check_at == due + ESCALATE_EVERY

    clock.now = due + timedelta(hours=23)
    await sweep(core)
    assert chats(await outbox(core, "escalation")) == [ZHAO]

    clock.now = due + timedelta(hours=24)
    await sweep(core)
    await sweep(core)
    assert chats(await outbox(core, "escalation")) == [ZHAO, SONG]

    clock.now = due + timedelta(hours=48, minutes=5)
    await sweep(core)
    assert chats(await outbox(core, "escalation")) == [ZHAO, SONG, SUN]
    assert (await get_case(core, case_id)).next_check_at is None

    clock.advance(days=5)
    await sweep(core)
    assert chats(await outbox(core, "escalation")) == [ZHAO, SONG, SUN]
    assert chats(await outbox(core, "sla_reminder")) == [LI]
    assert chats(await outbox(core, "overdue_assignee")) == [LI]

    async with core.sessionmaker() as s:
        actions = [e.action for e in await service.history(session=s, case_id=case_id)]
    assert actions.count("overdue") == 1 and actions.count("escalate") == 3 and actions.count("remind") == 1

    await core.dispatcher.drain()
    sent = core.messenger.to(ZHAO)
    assert len(sent) == 1 and f"#{case_id}" in sent[0].text and "超期督办" in sent[0].text


async def test_it_sends_every_due_level_once_after_an_outage(core, clock):
    case_id = await report(core)
    due = (await get_case(core, case_id)).deadline_at
    clock.now = due + timedelta(hours=50)  # the bot was down for the whole chase
    await sweep(core)
    await sweep(core)
    assert await outbox(core, "sla_reminder") == []  # "due soon" after the deadline is noise
    assert chats(await outbox(core, "overdue_assignee")) == [LI]
    assert sorted(chats(await outbox(core, "escalation"))) == sorted([ZHAO, SONG, SUN])


async def test_resolving_before_the_deadline_stops_the_chase(core, clock):
    case_id = await report(core)
    clock.advance(hours=2)
    async with core.sessionmaker() as s, s.begin():
        c = await s.get(Case, case_id)
        await service.move(session=s, case=c, action="resolve", actor=Actor(id=LI), now=clock.now, note="修好了")
        c.next_check_at = clock.now + timedelta(days=30)  # far away: only the chase is under test here
    clock.advance(days=5)
    await sweep(core)
    assert [m.kind for m in await outbox(core)] == []


async def reopen(core, case_id: int) -> None:
    """What handlers/resident.py does on "Not fixed"."""
    async with core.sessionmaker() as s, s.begin():
        c = await s.get(Case, case_id)
        await service.move(session=s, case=c, action="reopen", actor=Actor(id=WANG), now=core.clock(), note="没修好")
        service.start_clock(c, await s.get(service.Category, c.category_id), core.clock(), core.settings.tz)


async def test_reopening_restarts_the_chase_with_new_keys(core, clock):
    case_id = await report(core)
    first_due = (await get_case(core, case_id)).deadline_at
    clock.now = first_due + timedelta(hours=1)
    await sweep(core)
    assert chats(await outbox(core, "escalation")) == [ZHAO]
    async with core.sessionmaker() as s, s.begin():
        c = await s.get(Case, case_id)
        await service.move(session=s, case=c, action="resolve", actor=Actor(id=LI), now=clock.now, note="修好了")
    clock.advance(hours=3)
    reopened_at = clock.now
    await reopen(core, case_id)
    new_due = (await get_case(core, case_id)).deadline_at
    assert new_due == reopened_at + timedelta(hours=72)

    await sweep(core)  # the reminder is counted from the reopen, not from the first assignment
    assert chats(await outbox(core, "sla_reminder")) == []
    clock.now = reopened_at + (new_due - reopened_at) * 0.8
    await sweep(core)
    reminders = await outbox(core, "sla_reminder")
    assert chats(reminders) == [LI] and reminders[0].dedupe_key.endswith(jobs.key_time(new_due))
    clock.now = new_due
    await sweep(core)
    assert chats(await outbox(core, "overdue_assignee")) == [LI, LI]
    assert chats(await outbox(core, "escalation")) == [ZHAO, ZHAO]


async def test_working_time_sla_skips_the_national_day_holiday_and_weekend(core, clock):
    # 私搭乱建: 120 working hours. Reported Wed 30 Sep 2026 10:00; 1–7 Oct are the holiday,
    # Sat 10 Oct a make-up working day, Sun 11 Oct off.
    clock.now = local(2026, 9, 30, 10, 0)
    case_id = await report(core, category="construction", description="楼顶加盖彩钢房")
    due = (await get_case(core, case_id)).deadline_at
    assert due == local(2026, 10, 13, 10, 0)
    for day in (local(2026, 10, 5, 12, 0), local(2026, 10, 11, 12, 0), local(2026, 10, 12, 9, 59)):
        clock.now = day
        await sweep(core)
        assert await outbox(core, "sla_reminder") == []
    clock.now = local(2026, 10, 12, 10, 0)  # 96 working hours in: 80%
    await sweep(core)
    assert chats(await outbox(core, "sla_reminder")) == [LI]
    clock.now = due - timedelta(minutes=1)
    await sweep(core)
    assert await outbox(core, "overdue_assignee") == []
    clock.now = due
    await sweep(core)
    assert chats(await outbox(core, "overdue_assignee")) == [LI]


async def test_two_replicas_send_each_message_once(core, clock, settings_for, db_url):
    ids = [await report(core) for _ in range(5)]
    due = (await get_case(core, ids[0])).deadline_at
    other = Core(core.settings, engine=make_engine(db_url), clock=clock)
    try:
        clock.now = due
        results = await asyncio.gather(run_job(core, "sweep"), run_job(other, "sweep"))
        assert sum(r.get("overdue", 0) for r in results) == 5
        # and without the lease: the row locks and dedupe keys alone keep it once
        clock.now = due + timedelta(hours=24)
        await asyncio.gather(jobs.sweep(core, clock.now), jobs.sweep(other, clock.now),
                             jobs.sweep(core, clock.now))
        clock.now = due + timedelta(hours=48)
        await asyncio.gather(jobs.sweep(other, clock.now), jobs.sweep(core, clock.now))
    finally:
        await other.engine.dispose()
    keys = [m.dedupe_key for m in await outbox(core)]
    assert len(keys) == len(set(keys))
    assert len(await outbox(core, "overdue_assignee")) == 5
    assert sorted(chats(await outbox(core, "escalation"))) == sorted([ZHAO, SONG, SUN] * 5)
    async with core.sessionmaker() as s:
        n = (await s.execute(select(func.count()).select_from(CaseEvent).where(CaseEvent.action == "overdue"))).scalar()
    assert n == 5


async def test_a_case_without_a_captain_escalates_past_its_own_supervisor(core, clock):
    # 福州南路北段 has no captain: the case goes to the community supervisor zhao, so the first
    # level of escalation is the district
    case_id = await report(core, area="fuzhou-n")
    assert (await get_case(core, case_id)).assignee_id == ZHAO
    clock.now = (await get_case(core, case_id)).deadline_at
    await sweep(core)
    assert chats(await outbox(core, "overdue_assignee")) == [ZHAO]
    assert chats(await outbox(core, "escalation")) == [SONG]


# --- auto-close ---------------------------------------------------------------------------------------


async def test_it_auto_closes_a_resolved_case_nobody_confirmed(core, clock):
    case_id = await report(core)
    async with core.sessionmaker() as s, s.begin():
        c = await s.get(Case, case_id)
        await service.move(session=s, case=c, action="resolve", actor=Actor(id=LI), now=clock.now, note="修好了")
    clock.advance(days=core.settings.auto_close_days, minutes=-1)
    assert (await run_job(core, "autoclose"))["closed"] == 0
    clock.advance(minutes=1)
    assert (await run_job(core, "autoclose"))["closed"] == 1
    assert (await run_job(core, "autoclose"))["closed"] == 0
    c = await get_case(core, case_id)
    assert c.status == "closed" and c.next_check_at is None
    told = await outbox(core, "auto_closed")
    assert chats(told) == [WANG] and told[0].dedupe_key == f"autoclose:{case_id}"


# --- digests -------------------------------------------------------------------------------------------


async def digest_rows(core) -> dict[int, OutboxMessage]:
    rows = [m for m in await outbox(core) if m.kind.startswith("digest_")]
    assert len(rows) == len({m.chat_id for m in rows})
    return {m.chat_id: m for m in rows}


async def test_digest_goes_to_workers_with_tasks_supervisors_and_admins(core, clock):
    a = await report(core)
    await report(core, category="manhole")  # 24 h: overdue by tomorrow morning
    clock.now = local(2026, 11, 24, 8, 29)
    assert (await run_job(core, "digest", force=False)).get("skipped")
    clock.now = local(2026, 11, 24, 9, 30)
    result = await run_job(core, "digest", force=False)
    assert result["workers"] == 1 and result["admins"] == 1 and result["supervisors"] == 5
    rows = await digest_rows(core)
    assert CHEN not in rows  # no open tasks, no digest
    assert rows[LI].kind == "digest_worker" and rows[LI].dedupe_key == f"digest:{LI}:2026-11-24"
    text = rows[LI].payload["text"]
    assert "未办结 2 件，其中已超期 1 件" in text and f"#{a}" in text
    assert rows[ZHAO].kind == "digest_supervisor" and "浮山湾第一网格" in rows[ZHAO].payload["text"]
    assert rows[SUN].kind == "digest_admin" and "全街道" in rows[SUN].payload["text"]
    assert rows[GAO].kind == "digest_supervisor"
    assert all(len(m.payload["text"]) < 4096 for m in rows.values())
    # once a day
    assert (await run_job(core, "digest", force=False))["skipped"] == "done"
    assert (await run_job(core, "digest"))["already_sent"] == len(rows)
    assert len(await digest_rows(core)) == len(rows)


async def test_an_interrupted_digest_sends_the_rest_and_nothing_twice(core, clock, monkeypatch):
    await report(core)
    await report(core, area="yanerdao-s")
    clock.now = local(2026, 11, 24, 9, 0)
    real = jobs.Letters.write
    calls = {"n": 0}

    async def flaky(self, session):
        calls["n"] += 1  # one write per batch of letters
        if calls["n"] > 1:
            raise ConnectionError("database went away")
        return await real(self, session)

    monkeypatch.setattr(jobs.Letters, "write", flaky)
    with pytest.raises(ConnectionError):
        await run_job(core, "digest", force=False, batch=2)
    first = await digest_rows(core)
    assert len(first) == 2  # the first batch committed, the second rolled back
    async with core.sessionmaker() as s:
        assert (await s.get(JobRun, ("digest", "2026-11-24"))).finished_at is None
    monkeypatch.setattr(jobs.Letters, "write", real)
    result = await run_job(core, "digest", force=False, batch=2)
    assert result["already_sent"] == 2
    rows = await digest_rows(core)
    assert len(rows) == 2 + result["workers"] + result["supervisors"] + result["admins"]
    assert {LI, CHEN, ZHAO, GAO, SONG, SUN} <= set(rows)
    assert all(rows[c].id == first[c].id for c in first)


async def test_a_missed_digest_runs_later_the_same_day(core, clock):
    await report(core)
    clock.now = local(2026, 11, 24, 11, 15)  # the bot came back up after digest time
    result = await run_job(core, "digest", force=False)
    assert result["period"] == "2026-11-24" and result["workers"] == 1


async def test_a_missed_digest_is_not_sent_the_next_day(core, clock):
    await report(core)
    clock.now = local(2026, 11, 25, 7, 0)  # down all of the 24th; back before the 25th's digest
    assert (await run_job(core, "digest", force=False))["skipped"] == "before digest time"
    assert await digest_rows(core) == {}
    clock.now = local(2026, 11, 25, 8, 30)
    await run_job(core, "digest", force=False)
    keys = {m.dedupe_key for m in (await digest_rows(core)).values()}
    assert f"digest:{LI}:2026-11-25" in keys and not any(k.endswith("2026-11-24") for k in keys)


async def test_a_long_task_list_is_cut_to_fit_one_message(core, clock):
    now = clock.now
    async with core.sessionmaker() as s, s.begin():
        s.add_all([Case(status="accepted", category_id="garbage", description="垃圾没清运" * 30, address="香港中路" * 10,
                        area_id="xianggang-even", reporter_id=WANG, assignee_id=LI, created_at=now - timedelta(days=9),
                        updated_at=now, assigned_at=now - timedelta(days=9), deadline_at=now - timedelta(hours=i + 1),
                        chase_level=2, was_overdue=True, reopen_count=0, reporter_count=1, share_contact=False)
                   for i in range(150)])
    clock.now = local(2026, 11, 30, 9, 5)  # Monday
    result = await run_job(core, "weekly", force=False)
    assert result["overdue"] == 150
    weekly = {m.chat_id: m for m in await outbox(core, "weekly_overdue")}
    assert set(weekly) >= {ZHAO, SONG, SUN, GAO}
    text = weekly[ZHAO].payload["text"]
    assert "限期未完成整改问题清单（2026-W49）" in text and "… 还有" in text and len(text) < 4096
    assert "本周没有超期" in weekly[GAO].payload["text"]
    assert weekly[SUN].dedupe_key == f"weekly:{SUN}:2026-W49"
    assert (await run_job(core, "weekly"))["sent"] == 0
    await run_job(core, "digest")
    assert len((await digest_rows(core))[LI].payload["text"]) < 4096


async def test_the_weekly_list_waits_for_monday_morning(core, clock):
    clock.now = local(2026, 11, 24, 9, 5)  # a Tuesday
    assert (await run_job(core, "weekly", force=False))["skipped"]
    assert await outbox(core, "weekly_overdue") == []


# --- the registry ----------------------------------------------------------------------------------------


def test_describe_jobs_lists_every_job_with_its_next_run(settings_for, tmp_path):
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", digest_time="07:45")
    lines = describe_jobs(settings, now=local(2026, 11, 24, 10, 0))
    assert [line.split()[0] for line in lines] == ["sweep", "digest", "weekly", "autoclose"]
    digest = next(line for line in lines if line.startswith("digest"))
    assert "2026-11-25 07:45 CST" in digest
    weekly = next(line for line in lines if line.startswith("weekly"))
    assert "2026-11-30 09:00 CST" in weekly
    assert set(JOBS) >= {"sweep", "digest", "weekly", "autoclose"}


async def test_run_job_now_works_on_a_fresh_sqlite_file(settings_for, tmp_path):
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'gridbot.db'}")
    result = await run_job_now(settings, "sweep")
    assert result["job"] == "sweep" and result["checked"] == 0
    assert (await run_job_now(settings, "digest"))["job"] == "digest"


async def test_a_held_lease_makes_the_other_replica_skip(core, clock):
    from bot.leases import lease

    async with lease(core.sessionmaker, "job:sweep", "someone-else", timedelta(minutes=5), clock.now) as got:
        assert got
        assert (await run_job(core, "sweep"))["skipped"]
    assert "skipped" not in await run_job(core, "sweep")
    # a lease whose holder died lapses
    async with core.sessionmaker() as s, s.begin():
        await s.execute(delete(JobRun))
    from bot.leases import acquire

    assert await acquire(core.sessionmaker, "job:sweep", "dead", timedelta(minutes=5), clock.now)
    assert (await run_job(core, "sweep"))["skipped"]
    clock.advance(minutes=6)
    assert "skipped" not in await run_job(core, "sweep")


async def test_start_scheduler_registers_the_jobs(core):
    from scheduler.registry import start_scheduler

    sched = start_scheduler(core)
    try:
        assert {j.id for j in sched.get_jobs()} == set(JOBS)
        job = sched.get_job("sweep")
        assert job.coalesce and job.max_instances == 1
    finally:
        sched.shutdown(wait=False)
