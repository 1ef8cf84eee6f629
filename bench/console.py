"""Console overview render time with many cases, on SQLite and PostgreSQL.

    python bench/console.py [--n 100000] [--pg postgresql+asyncpg://gridbot:gridbot@127.0.0.1:5432/t15b]

For each database: migrate, load the sample grid, insert 1,000 cases (the baseline), time
GET /console/ (the whole request: sign-in cookie, scope, queries, template) as the admin and as a
community supervisor; then insert up to --n cases and time it again. Cases are spread over the
last year across every micro-grid, ~8% still open (a third of those overdue), the rest resolved
or closed, half of the closed ones rated. Prints the median of --runs renders and the ratio to the
baseline; the target is < 300 ms at 100,000 cases. The PostgreSQL database is emptied first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_MS = 300
CHUNK = 5000


def make_rows(start_id: int, count: int, now: datetime, areas: list[tuple[str, int]], cats: list[str], rng) -> list:
    rows = []
    for i in range(start_id, start_id + count):
        created = now - timedelta(seconds=rng.uniform(0, 365 * 86400))
        area, captain = areas[rng.randrange(len(areas))]
        sla = timedelta(hours=rng.choice((24, 48, 72)))
        deadline = created + sla
        r = rng.random()
        row = dict(id=i, status="closed", category_id=cats[rng.randrange(len(cats))], description="路灯不亮",
                   address="", lat=36.06 + rng.uniform(-0.01, 0.01), lon=120.38 + rng.uniform(-0.01, 0.01),
                   area_id=area, reporter_id=100000 + i % 5000, report_chat_id=100000 + i % 5000, assignee_id=captain,
                   share_contact=False, language="zh", created_at=created, updated_at=created, assigned_at=created,
                   accepted_at=None, resolved_at=None, closed_at=None, deadline_at=deadline, next_check_at=None,
                   chase_level=0, was_overdue=False, reopen_count=0, reporter_count=1, rating=None)
        if r < 0.08 and now - created < timedelta(days=20):
            row["status"] = rng.choice(("new", "accepted", "reopened"))
            row["next_check_at"] = deadline
            if row["status"] != "new":
                row["accepted_at"] = created + timedelta(hours=rng.uniform(0.2, 30))
        else:
            fixed = created + sla * rng.uniform(0.2, 1.4)
            row.update(accepted_at=created + timedelta(hours=rng.uniform(0.2, 30)), resolved_at=min(fixed, now),
                       was_overdue=fixed > deadline)
            if now - fixed > timedelta(days=3) or rng.random() < 0.5:
                row.update(status="closed", closed_at=min(fixed + timedelta(days=rng.uniform(0, 3)), now))
                if rng.random() < 0.5:
                    row["rating"] = rng.choice((3, 4, 5, 5))
            else:
                row["status"] = "resolved"
        rows.append(row)
    return rows


async def fill(sm, start_id: int, count: int, now, areas, cats, rng) -> None:
    from bot.cases.models import Case

    done = 0
    while done < count:
        n = min(CHUNK, count - done)
        async with sm() as s, s.begin():
            await s.execute(Case.__table__.insert(), make_rows(start_id + done, n, now, areas, cats, rng))
        done += n


async def timed(client, path: str, runs: int) -> tuple[float, float]:
    """Median wall time and median CPU time of this process (server, SQLite thread included;
    a PostgreSQL server's own CPU is not), in ms. On a shared machine the CPU time is the steadier."""
    await client.get(path)  # warm
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        r = await client.get(path)
        body = await r.text()
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
        assert r.status == 200 and "n-open" in body, r.status
    return statistics.median(wall), statistics.median(cpu)


async def bench(url: str, n: int, runs: int) -> dict:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer
    from sqlalchemy import select

    from bot.app import Core
    from bot.areas.models import Area, Category
    from bot.runner import prepare_database
    from bot.settings import load_settings
    from bot.web import mount
    from bot.web.auth import COOKIE, signer_for

    if url.startswith("postgresql"):
        from tests.conftest import reset_postgres

        await reset_postgres(url)
    admin, supervisor = 9100, 2001
    settings = load_settings(database_url=url, admin_ids=str(admin), bot_token="123456:BENCH-token")
    engine = await prepare_database(settings)
    core = Core(settings, engine=engine)
    async with core.sessionmaker() as s:
        areas = [(a.id, a.captain_id or 1018) for a in (await s.execute(select(Area).where(Area.level == 3))).scalars()]
        cats = [c.id for c in (await s.execute(select(Category))).scalars()]
    from bot.people.service import ensure_person

    now = datetime.now(timezone.utc)
    async with core.sessionmaker() as s, s.begin():
        await ensure_person(session=s, user_id=admin, name="admin", now=now)
    rng = random.Random(15)
    app = web.Application()
    mount(app, core)
    client = TestClient(TestServer(app))
    await client.start_server()
    signer = signer_for(settings)
    cookies = {w: signer.session_cookie(w) for w in (admin, supervisor)}
    result = {}
    try:
        total = 0
        for size in (1000, n):
            t0 = time.perf_counter()
            await fill(core.sessionmaker, total + 1, size - total, now, areas, cats, rng)
            total = size
            if url.startswith("postgresql"):
                async with engine.begin() as conn:
                    from sqlalchemy import text

                    await conn.execute(text("ANALYZE cases"))
            load_s = time.perf_counter() - t0
            for who, uid in (("admin", admin), ("supervisor", supervisor)):
                client.session.cookie_jar.clear()
                client.session.cookie_jar.update_cookies({COOKIE: cookies[uid]})
                result[(size, who)] = await timed(client, "/console/", runs)
            (aw, ac), (sw, sc) = result[(size, "admin")], result[(size, "supervisor")]
            print(f"  {size:>7,} cases (loaded in {load_s:.1f} s): admin {aw:.0f} ms (cpu {ac:.0f}), "
                  f"community supervisor {sw:.0f} ms (cpu {sc:.0f})", flush=True)
    finally:
        await client.close()
        await engine.dispose()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pg", default=os.environ.get("GRIDBOT_BENCH_POSTGRES_URL", ""),
                    help="a PostgreSQL URL to use (it is emptied); none = SQLite only")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="gridbot-bench-console-")
    backends = [("SQLite", f"sqlite+aiosqlite:///{tmp}/console.db")] + ([("PostgreSQL", args.pg)] if args.pg else [])
    try:
        for name, url in backends:
            run_one(name, url, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_one(name: str, url: str, args) -> None:
    print(f"{name}: GET /console/ (overview), median of {args.runs}; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    r = asyncio.run(bench(url, args.n, args.runs))
    for who in ("admin", "supervisor"):
        (base, base_cpu), (big, big_cpu) = r[(1000, who)], r[(args.n, who)]
        verdict = "OK" if big < TARGET_MS else "OVER TARGET"
        print(f"  {who:<10} {big:.0f} ms at {args.n:,} vs {base:.0f} ms at 1,000: ×{big / base:.2f} "
              f"(cpu {big_cpu:.0f} vs {base_cpu:.0f} ms; target < {TARGET_MS} ms wall: {verdict})")

if __name__ == "__main__":
    main()
