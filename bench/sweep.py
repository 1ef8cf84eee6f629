"""Benchmark the overdue sweep and the morning digest on a large database.

    python bench/sweep.py                       # 1,000,000 cases on SQLite (a few minutes)
    python bench/sweep.py --cases 200000        # smaller
    python bench/sweep.py --pg postgresql+asyncpg://user@host/db   # PostgreSQL too (DB is wiped!)
    GRIDBOT_BENCH_PG_URL=... python bench/sweep.py
    python bench/sweep.py --keep /tmp/sweep1m.db --runs 3   # fill once, then 3 runs on copies
    python bench/sweep.py --keep /tmp/sweep1m.db --runs 3 --pg URL --pg-keep   # PostgreSQL filled once too
    python bench/sweep.py --no-sqlite --runs 3 --pg URL --pg-keep               # PostgreSQL alone

With --runs N the due-batch sweep and the digest are timed N times, each on a fresh copy of
the filled database (SQLite) or after putting the due batch back (PostgreSQL), and the median
is printed next to the floor: the time of the bare SELECT of the due cases, and of the digest's
grouping queries, run in the same process right before.

Fills a database with N cases over the sample grid's 18 micro-grids and 1,000 workers: most
closed over the past year, a realistic share open (about 4%), a quarter of those overdue and
already chased, and a due batch for the sweep to take (overdue now, never chased). Then
times one sweep (the due batch: overdue messages and escalations), a sweep with nothing due
(the steady state, once a minute) and one digest run, and prints the query plans of the
sweep's and the digest's queries (EXPLAIN QUERY PLAN / EXPLAIN), to show they use indexes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, func, insert, select, text  # noqa: E402

from bot.app import Core  # noqa: E402
from bot.areas.models import Area, Category  # noqa: E402
from bot.cases import messages  # noqa: E402
from bot.cases.models import Case  # noqa: E402
from bot.db import Base, make_engine  # noqa: E402
from bot.models import import_all_models  # noqa: E402
from bot.outbox.models import OutboxMessage  # noqa: E402
from bot.people.models import Person  # noqa: E402
from bot.runner import prepare_database  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from scheduler import jobs  # noqa: E402

NOW = datetime(2026, 11, 24, 0, 30, tzinfo=timezone.utc)  # 08:30 in Shanghai: digest time
WORKERS = 1000
WORKER_BASE = 500_000
CHUNK = 5000
OPEN_SHARE = 0.04
OVERDUE_SHARE = 0.25  # of the open cases
FINAL_OTHER = ("closed_unresolved", "duplicate", "withdrawn")


def build_rows(n: int, areas: list[str], cats: list[tuple[str, float]], due_batch: int, seed: int = 7):
    """Yield case rows in chunks; deterministic."""
    rnd = random.Random(seed)
    worker_area = {WORKER_BASE + i: areas[i % len(areas)] for i in range(WORKERS)}
    workers = list(worker_area)
    n_open = int(n * OPEN_SHARE)
    chunk = []
    for k in range(n):
        w = workers[rnd.randrange(WORKERS)]
        cat, sla = cats[rnd.randrange(len(cats))]
        row = dict(category_id=cat, description="路灯不亮，晚上很黑", address="香港中路12号", area_id=worker_area[w],
                   reporter_id=9_000_000 + rnd.randrange(50_000), assignee_id=w, share_contact=False,
                   language="zh", reporter_count=1, reopen_count=0, chase_level=0, was_overdue=False,
                   rating=None, resolved_at=None, closed_at=None, accepted_at=None, next_check_at=None)
        if k < due_batch:  # overdue now, never chased: the sweep's work
            created = NOW - timedelta(hours=sla + rnd.uniform(0.1, 0.9))
            due = created + timedelta(hours=sla)
            row.update(status="new", next_check_at=due)
        elif k < n_open:
            created = NOW - timedelta(hours=rnd.uniform(0, 24 * 10))
            due = created + timedelta(hours=sla)
            status = rnd.choice(("new", "accepted", "accepted", "reopened"))
            row.update(status=status, accepted_at=created + timedelta(hours=1) if status != "new" else None)
            if due < NOW:  # overdue, escalated already; the next level later
                row.update(chase_level=2, was_overdue=True, next_check_at=max(due + timedelta(hours=24),
                                                                              NOW + timedelta(minutes=30)))
            else:  # waiting for its reminder
                row.update(next_check_at=created + (due - created) * 0.8 if rnd.random() < 0.5 else due)
                if row["next_check_at"] <= NOW:
                    row.update(chase_level=1, next_check_at=due)
        else:
            created = NOW - timedelta(days=rnd.uniform(0, 365))
            due = created + timedelta(hours=sla)
            fixed_at = created + timedelta(hours=sla * rnd.uniform(0.1, 1.3))
            r = rnd.random()
            if r < 0.02:
                row.update(status=FINAL_OTHER[rnd.randrange(3)], closed_at=fixed_at)
            elif r < 0.03 and fixed_at > NOW - timedelta(days=7):
                row.update(status="resolved", resolved_at=fixed_at, accepted_at=created + timedelta(hours=2),
                           next_check_at=fixed_at + timedelta(days=7))
            else:
                row.update(status="closed", accepted_at=created + timedelta(hours=rnd.uniform(0.2, 30)),
                           resolved_at=fixed_at, closed_at=fixed_at + timedelta(hours=rnd.uniform(1, 48)),
                           rating=rnd.choice((None, 3, 4, 5, 5)), was_overdue=fixed_at > due)
            if row["closed_at"] and row["closed_at"] > NOW:
                row["closed_at"] = NOW - timedelta(minutes=1)
        row.update(created_at=created, updated_at=created, assigned_at=created, deadline_at=due)
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def fill(core: Core, n: int, due_batch: int) -> float:
    t0 = time.perf_counter()
    async with core.sessionmaker() as s:
        areas = [a.id for a in (await s.execute(select(Area).where(Area.level == 3))).scalars()]
        cats = [(c.id, c.sla_hours) for c in (await s.execute(select(Category))).scalars()]
    async with core.sessionmaker() as s, s.begin():
        await s.execute(insert(Person), [dict(id=WORKER_BASE + i, name=f"网格员{i:04d}", created_at=NOW,
                                              is_active=True, has_chatted=True, is_admin=False)
                                         for i in range(WORKERS)])
    done = 0
    for chunk in build_rows(n, areas, cats, due_batch):
        async with core.engine.begin() as conn:
            await conn.execute(insert(Case.__table__), chunk)  # multi-row INSERTs (insertmanyvalues)
        done += len(chunk)
        if done % 100_000 < CHUNK:
            print(f"  … {done:,} cases ({time.perf_counter() - t0:.0f} s)", flush=True)
    async with core.engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    return time.perf_counter() - t0


class Recorder:
    """Keeps the distinct SELECTs on `cases` a piece of work ran, to EXPLAIN them after."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.seen: dict[str, tuple] = {}
        self.on = False
        event.listen(engine.sync_engine, "before_cursor_execute", self._hook)

    def _hook(self, conn, cursor, statement, parameters, context, executemany) -> None:
        s = statement.lstrip().upper()
        if self.on and not executemany and s.startswith("SELECT") and " CASES" in s:
            self.seen.setdefault(statement, parameters)


async def explain(engine, recorder: Recorder, title: str) -> None:
    sqlite = engine.dialect.name == "sqlite"
    print(f"\n--- query plans: {title} ---")
    for stmt, params in recorder.seen.items():
        one_line = " ".join(stmt.split())
        print(f"\n> {one_line[:230]}{'…' if len(one_line) > 230 else ''}")
        async with engine.connect() as conn:
            prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            rows = (await conn.exec_driver_sql(prefix + stmt, params)).all()
        for r in rows:
            print("   ", r[-1] if sqlite else r[0])
    recorder.seen.clear()


CPU: dict[str, float] = {}  # CPU seconds of the last timed step, by label (all threads of this process)


async def timed(label: str, coro):
    t0, c0 = time.perf_counter(), time.process_time()
    result = await coro
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    CPU[label] = cpu
    print(f"{label:<34} {dt * 1000:9.0f} ms  (CPU {cpu * 1000:.0f} ms)   {result}")
    return dt, result


async def pg_is_filled(url: str, n: int) -> bool:
    """The PostgreSQL database holds a filled bench (at the current schema) of n cases."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT count(*) FROM cases"))).scalar() == n
    except Exception:  # no table yet
        return False
    finally:
        await engine.dispose()


async def put_back(url: str, due_batch: int) -> None:
    """Undo a run on a kept PostgreSQL database: the due batch (the first rows filled) is due
    again and never chased, and the messages and history rows the run wrote are gone."""
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE cases SET chase_level = 0, was_overdue = false, next_check_at = deadline_at"
                                " WHERE id <= :n"), {"n": due_batch})
        for sql in ("DELETE FROM outbox", "DELETE FROM case_history", "DELETE FROM job_runs WHERE job = 'digest'"):
            await conn.execute(text(sql))
    await engine.dispose()


async def bench(url: str, n: int, due_batch: int, plans: bool, filled: bool = False, fill_only: bool = False) -> dict:
    engine = make_engine(url)
    if filled:
        settings = load_settings(database_url=url, admin_ids="9100", bot_token="")
        core = Core(settings, engine=engine, clock=lambda: NOW)
        print(f"\n=== {engine.dialect.name}: the filled database ===")
        return await measure(core, engine, plans)
    if engine.dialect.name == "postgresql":  # a clean schema
        import_all_models()
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
            await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    settings = load_settings(database_url=url, admin_ids="9100", bot_token="")
    await prepare_database(settings, engine)
    core = Core(settings, engine=engine, clock=lambda: NOW)
    print(f"\n=== {engine.dialect.name}: {n:,} cases, {WORKERS} workers, due batch {due_batch} ===")
    fill_s = await fill(core, n, due_batch)
    async with core.sessionmaker() as s:
        open_n = (await s.execute(select(func.count()).select_from(Case).where(
            Case.status.in_(("new", "accepted", "reopened"))))).scalar()
    print(f"filled in {fill_s:.0f} s; open cases {open_n:,}")
    if fill_only:
        await engine.dispose()
        return {}
    return await measure(core, engine, plans)


async def floors(core: Core) -> dict:
    """The bare reads under the work: selecting the due cases; the digest's grouping queries."""
    from bot import stats

    out = {}
    t0 = time.perf_counter()
    async with core.sessionmaker() as s:
        rows = (await s.execute(select(Case.id).where(Case.status.in_(("new", "accepted", "reopened")),
                                                      Case.next_check_at <= NOW))).all()
    out["select_due"] = time.perf_counter() - t0
    out["due"] = len(rows)
    t0 = time.perf_counter()
    async with core.sessionmaker() as s:
        await stats.workloads(session=s, now=NOW, per_worker=jobs.WORKER_TASKS)
        await stats.breakdown(session=s, area_ids=None, start=NOW - timedelta(days=1), end=NOW, now=NOW)
        await stats.overdue_by_area(session=s, now=NOW, per_area=messages.OLDEST)
    out["digest_queries"] = time.perf_counter() - t0
    return out


async def measure(core: Core, engine, plans: bool) -> dict:
    from bot.i18n import catalog

    for lang in ("zh", "en"):  # a running bot has its catalogs loaded long before the first job
        catalog(lang)
    fl = await floors(core)
    print(f"{'floor: SELECT the due cases':<34} {fl['select_due'] * 1000:9.0f} ms   ({fl['due']} due)")
    print(f"{'floor: the digest grouping queries':<34} {fl['digest_queries'] * 1000:9.0f} ms")
    rec = Recorder(engine)
    rec.on = True
    out = {}
    out["sweep_due"], r = await timed("sweep (the due batch)", jobs.sweep(core, NOW))
    if plans:
        await explain(engine, rec, "sweep")
    idle = sorted([(await timed("sweep (nothing due: every minute)", jobs.sweep(core, NOW)))[0] for _ in range(5)])
    out["sweep_idle"] = idle[2]
    print(f"{'  idle sweep, median of 5':<34} {idle[2] * 1000:9.0f} ms")
    rec.seen.clear()
    # the part the digest adds to its queries: rendering and writing the letters
    writing: list[float] = []
    deliver = jobs._deliver

    cpu: list[float] = []

    async def timed_deliver(*args, **kw):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return await deliver(*args, **kw)
        finally:
            writing.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)

    jobs._deliver = timed_deliver
    try:
        out["digest"], _ = await timed("digest (all recipients)", jobs.digest(core, NOW, force=True))
    finally:
        jobs._deliver = deliver
    out["digest_letters"], out["letters_cpu"] = sum(writing), sum(cpu)
    out["sweep_cpu"], out["digest_cpu"] = CPU["sweep (the due batch)"], CPU["digest (all recipients)"]
    print(f"{'  of which rendering + writing letters':<34} {out['digest_letters'] * 1000:9.0f} ms  (CPU"
          f" {out['letters_cpu'] * 1000:.0f} ms)")
    if plans:
        await explain(engine, rec, "digest")
    rec.on = False
    async with core.sessionmaker() as s:
        msgs = (await s.execute(select(OutboxMessage.kind, func.count()).group_by(OutboxMessage.kind))).all()
    print("outbox:", dict(msgs))
    await engine.dispose()
    out.update(fl)
    return out


async def migrate(url: str) -> None:
    """A kept database filled under an older schema gets the newer migrations (indexes) once."""
    from bot.db import current_revision, upgrade

    engine = make_engine(url)
    before, t0 = await current_revision(engine), time.perf_counter()
    await upgrade(engine)
    after = await current_revision(engine)
    if after != before:
        print(f"kept database migrated from {before} to {after} in {time.perf_counter() - t0:.1f} s")
    await engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1_000_000)
    ap.add_argument("--due", type=int, default=1000, help="cases the sweep finds due (overdue now)")
    ap.add_argument("--sqlite", default="", help="SQLite file (default: a temporary one)")
    ap.add_argument("--pg", default=os.environ.get("GRIDBOT_BENCH_PG_URL", ""),
                    help="a PostgreSQL URL (postgresql+asyncpg://…); its tables are dropped first")
    ap.add_argument("--no-plans", action="store_true")
    ap.add_argument("--keep", default="", help="SQLite file to fill once and keep (reused if it exists)")
    ap.add_argument("--runs", type=int, default=1, help="timed runs, each on a fresh copy (median printed)")
    ap.add_argument("--pg-keep", action="store_true",
                    help="fill the PostgreSQL database once and reuse it (--runs times, the due batch put back)")
    ap.add_argument("--no-sqlite", action="store_true",
                    help="PostgreSQL only: no SQLite runs first (their file copies push PostgreSQL's pages out of"
                         " the OS cache)")
    a = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if a.no_sqlite:
            pass
        elif a.keep:
            base = Path(a.keep)
            if not base.exists():
                asyncio.run(bench(f"sqlite+aiosqlite:///{base}", a.cases, a.due, False, fill_only=True))
            asyncio.run(migrate(f"sqlite+aiosqlite:///{base}"))
            for i in range(a.runs):
                work = Path(tmp) / f"run{i}.db"
                shutil.copyfile(base, work)
                for ext in ("-wal", "-shm"):
                    if Path(str(base) + ext).exists():
                        shutil.copyfile(str(base) + ext, str(work) + ext)
                # the copy's dirty pages written out first: their write-back would otherwise
                # stall the run's own writes (commits of 20-30 ms each, charged to the work)
                os.sync()
                results.append(asyncio.run(bench(f"sqlite+aiosqlite:///{work}", a.cases, a.due,
                                                 i == 0 and not a.no_plans, filled=True)))
                work.unlink()
        else:
            path = a.sqlite or str(Path(tmp) / "bench.db")
            if a.sqlite and Path(path).exists():
                Path(path).unlink()
            results.append(asyncio.run(bench(f"sqlite+aiosqlite:///{path}", a.cases, a.due, not a.no_plans)))
    if results:
        summary("sqlite", results)
    if a.pg and a.pg_keep:
        if not asyncio.run(pg_is_filled(a.pg, a.cases)):
            asyncio.run(bench(a.pg, a.cases, a.due, False, fill_only=True))
        asyncio.run(migrate(a.pg))
        pg = []
        for i in range(a.runs):
            asyncio.run(put_back(a.pg, a.due))
            pg.append(asyncio.run(bench(a.pg, a.cases, a.due, i == 0 and not a.no_plans, filled=True)))
        if pg:
            summary("postgresql", pg)
    elif a.pg:
        summary("postgresql", [asyncio.run(bench(a.pg, a.cases, a.due, not a.no_plans))])


def summary(db: str, results: list[dict]) -> None:
    import statistics

    m = {k: statistics.median(r[k] for r in results)
         for k in ("sweep_due", "digest", "select_due", "digest_queries", "digest_letters", "sweep_cpu", "digest_cpu",
                   "letters_cpu")}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n=== {db}: medians of {len(results)} run(s) (load average now {load}) ===")
    print(f"sweep of the due batch   {m['sweep_due'] * 1000:7.0f} ms  (target ≤ 300 ms; floor, the bare SELECT:"
          f" {m['select_due'] * 1000:.0f} ms)  CPU {m['sweep_cpu'] * 1000:.0f} ms")
    print(f"digest                   {m['digest'] * 1000:7.0f} ms  (target ≤ 400 ms; floor, its grouping queries:"
          f" {m['digest_queries'] * 1000:.0f} ms)  CPU {m['digest_cpu'] * 1000:.0f} ms")
    print(f"  of which the letters   {m['digest_letters'] * 1000:7.0f} ms  (rendered and written; the rest is its queries)"
          f"  CPU {m['letters_cpu'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
