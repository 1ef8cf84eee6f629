"""Throughput and latency of gridbot against bare echo bots of the same framework, on the test
fake Bot API (tests/fakebotapi) on 127.0.0.1.

    python bench/throughput.py                  # both frameworks, SQLite (+ PostgreSQL if a URL is given)
    python bench/throughput.py --quick          # smaller loads, one run each: a few minutes
    python bench/throughput.py --pg postgresql+asyncpg://gridbot:gridbot@127.0.0.1:5432/t14   # tables dropped!
    python bench/throughput.py --only latency,handled --frameworks ptb --runs 3

The bot runs in a child process (as `gridbot run` would: its own polling loop, its own CPU
share); the fake Bot API and the load generator run in this process. Times on both sides are
CLOCK_MONOTONIC, so push → reply latencies are measured across the two. Every gridbot figure is
printed next to a baseline measured in the same run, the runs interleaved (echo, gridbot, echo,
gridbot, …) so that load from other processes on the machine hits both alike; figures are
medians of the runs.

Scenarios:
- backlog:  N questions from R residents are queued before the bot starts. replies/s (server
            side, first to last reply) against the configured global rate; handled updates/s
            (bot side) against the echo bot's; write transactions per update. The questions are
            the knowledge base's own wordings (333 texts, asked in turn); with --distinct each
            gets a number appended, so no match can come from the bot's memo of recent ones.
- broadcast: the same backlog while a broadcast to B other chats is due: the replies' rate must
            not drop, the broadcast takes what the replies leave.
- latency:  20 questions/s (each from a different resident) from the moment the bot is ready;
            p50/p99 from the push to the reply's arrival at the server, against the echo bot's.

The echo bots are the frameworks' own polling and dispatch with one handler that answers the
text: aiogram with its defaults (updates handled as tasks), PTB with 8 updates at a time (the
fastest setting for it here: 1 is slower, 256 contends for the 32 HTTP connections).

Write transactions are counted in the bot with SQLAlchemy events (a transaction that ran an
INSERT, UPDATE or DELETE), split by who ran it: the update path (storing and handling updates)
and delivery (the outbox dispatcher).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "123456:BENCH-throughput"
RESIDENT_BASE = 10_000
BROADCAST_BASE = 300_000
ADMIN = 9100


# --- the bots (child process) --------------------------------------------------------------------


class TxnCounter:
    """Counts write transactions on an engine, by the kind of task that ran them."""

    def __init__(self, engine) -> None:
        from sqlalchemy import event

        self.counts: dict[str, int] = {}
        self.all: dict[str, int] = {}
        self.tables: dict[str, int] = {}
        event.listen(engine.sync_engine, "begin", self._begin)
        event.listen(engine.sync_engine, "before_cursor_execute", self._exec)
        event.listen(engine.sync_engine, "commit", self._commit)

    @staticmethod
    def _who() -> str:
        try:
            task = asyncio.current_task()
        except RuntimeError:
            return "other"
        name = task.get_coro().__qualname__ if task is not None else ""
        if name.startswith(("Core.", "BotRunner.")) or "handle" in name:
            return "update"
        if name.startswith(("OutboxDispatcher.", "RateLimiter.", "SharedBucket.")):
            return "delivery"
        return "other:" + name

    def _begin(self, conn) -> None:
        conn.info["bench_write"] = False

    def _exec(self, conn, cursor, statement, parameters, context, executemany) -> None:
        head = statement.lstrip()[:6].upper()
        if head in ("INSERT", "UPDATE", "DELETE"):
            conn.info["bench_write"] = True

    def _commit(self, conn) -> None:
        who = self._who()
        self.all[who] = self.all.get(who, 0) + 1
        if conn.info.get("bench_write"):
            self.counts[who] = self.counts.get(who, 0) + 1
        conn.info["bench_write"] = False


async def _run_gridbot(cfg: dict, stop, ready, out) -> None:
    import logging

    from bot.app import Core
    from bot.db import Base, make_engine
    from bot.models import import_all_models
    from bot.runner import BotRunner, prepare_database
    from bot.settings import load_settings

    logging.basicConfig(level=logging.WARNING)
    url = cfg["db"]
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        from sqlalchemy import text

        import_all_models()
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
            await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    settings = load_settings(database_url=url, framework=cfg["framework"], telegram_api_base=cfg["api"],
                             bot_token=TOKEN, admin_ids=str(ADMIN), broadcast_rate=cfg["rate"])
    await prepare_database(settings, engine)
    if cfg.get("broadcast"):
        await _queue_broadcast(engine, cfg["broadcast"])
    handled: list[float] = []
    orig = Core.process

    async def process(self, update):
        await orig(self, update)
        if update.get("update_id"):  # not the start's rehearsal (Core._rehearse)
            handled.append(time.monotonic())

    Core.process = process
    counter = TxnCounter(engine)
    runner = BotRunner(settings, poll_timeout=1, with_scheduler=False, engine=engine)
    task = asyncio.create_task(runner.run())
    await _wait_ready(runner.ready, task)
    spy = None
    if os.environ.get("GRIDBOT_BENCH_PYSPY"):
        # a sampling profile of the ready bot (py-spy, not installed by the project):
        # GRIDBOT_BENCH_PYSPY=/tmp/spy, GRIDBOT_BENCH_PYSPY_S=8 (seconds from the first update)
        import subprocess

        spy = subprocess.Popen(["py-spy", "record", "--nonblocking", "-r", "250", "-f", "raw",
                                "-d", os.environ.get("GRIDBOT_BENCH_PYSPY_S", "8"), "-p", str(os.getpid()),
                                "-o", f"{os.environ['GRIDBOT_BENCH_PYSPY']}-{cfg['framework']}-{os.getpid()}.txt"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.sleep(1.0)  # attached
    ready.set()
    await _wait_stop(stop, task)
    if spy is not None:
        spy.wait(60)
    runner.stop()
    await asyncio.wait_for(task, 60)
    out.put(dict(handled=handled, writes=counter.counts, txns=counter.all, processed=len(handled)))


async def _queue_broadcast(engine, n: int) -> None:
    from datetime import datetime, timezone

    from bot.broadcasts import flows, service
    from bot.db import make_sessionmaker
    from bot.i18n import Texts
    from bot.people.models import Person

    sm = make_sessionmaker(engine)
    now = datetime.now(timezone.utc)
    async with sm() as s, s.begin():
        await s.execute(Person.__table__.insert(), [dict(id=BROADCAST_BASE + i, name=f"b{i}", has_chatted=True,
                                                         is_active=True, is_admin=False, created_at=now)
                                                    for i in range(n)])
        bc = await service.create_draft(session=s, author_id=ADMIN, text="停水通知：明天 8:00-12:00 停水。", photo=None,
                                        audience="all", total=n, now=now)
        bc = await service.start(session=s, broadcast_id=bc.id, author_id=ADMIN, chat_id=ADMIN, now=now)
        await flows.launch(session=s, now=now, bc=bc, admin_chat_id=None, t=Texts("zh"))


async def _wait_ready(ready_ev: asyncio.Event, task: asyncio.Task) -> None:
    r = asyncio.create_task(ready_ev.wait())
    done, _ = await asyncio.wait({r, task}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    if r not in done:
        raise TimeoutError("bot did not start")


async def _wait_stop(stop, task) -> None:
    while not stop.is_set():
        if task is not None and task.done():
            task.result()
            raise RuntimeError("bot stopped by itself")
        await asyncio.sleep(0.05)


async def _run_echo_aiogram(cfg: dict, stop, ready, out) -> None:
    from aiogram import Bot, Dispatcher
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.types import Message

    handled: list[float] = []
    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(cfg["api"])))
    dp = Dispatcher()

    @dp.message()
    async def echo(m: Message) -> None:
        await m.answer(m.text or "?")
        handled.append(time.monotonic())

    dp.startup.register(lambda: ready.set())
    task = asyncio.create_task(dp.start_polling(bot, polling_timeout=1, handle_signals=False))
    await _wait_stop(stop, task)
    await dp.stop_polling()
    await asyncio.wait_for(task, 30)
    out.put(dict(handled=handled, writes={}, txns={}, processed=len(handled)))


async def _run_echo_ptb(cfg: dict, stop, ready, out) -> None:
    from telegram import Update
    from telegram.ext import Application, MessageHandler, filters
    from telegram.request import HTTPXRequest

    handled: list[float] = []
    api = cfg["api"]
    app = (Application.builder().token(TOKEN).base_url(f"{api}/bot").base_file_url(f"{api}/file/bot")
           .request(HTTPXRequest(connection_pool_size=32, pool_timeout=30.0))
           .get_updates_request(HTTPXRequest(connection_pool_size=2, read_timeout=60.0))
           .concurrent_updates(int(os.environ.get("ECHO_PTB_CONC", "8"))).build())

    async def echo(update: Update, context) -> None:
        await update.effective_message.reply_text(update.effective_message.text or "?")
        handled.append(time.monotonic())

    app.add_handler(MessageHandler(filters.ALL, echo))
    async with app:
        await app.updater.start_polling(poll_interval=0, timeout=1)
        await app.start()
        ready.set()
        await _wait_stop(stop, None)
        await app.updater.stop()
        await app.stop()
    out.put(dict(handled=handled, writes={}, txns={}, processed=len(handled)))


def _child(cfg: dict, stop, ready, out) -> None:
    fn = {"gridbot": _run_gridbot, "echo-aiogram": _run_echo_aiogram, "echo-ptb": _run_echo_ptb}[cfg["bot"]]
    prof = os.environ.get("GRIDBOT_BENCH_PROFILE") if cfg["bot"] == "gridbot" else None
    if prof:  # a profile of the bot process's event-loop thread: GRIDBOT_BENCH_PROFILE=/tmp/prof (cProfile)
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        asyncio.run(fn(cfg, stop, ready, out))
    except BaseException as e:  # the parent waits for a result either way
        out.put(dict(error=f"{type(e).__name__}: {e}"))
        raise
    finally:
        if prof:
            profiler.disable()
            profiler.dump_stats(f"{prof}-{cfg['framework']}-{os.getpid()}.pstats")


# --- the load (this process) ----------------------------------------------------------------------


def questions() -> list[str]:
    from knowledge.loader import load_kb

    qs = []
    for e in load_kb(ROOT / "knowledge" / "data"):
        qs.append(e.question)
        qs.extend(e.alternates[:2])
    return qs


def _resident(i: int):
    from tests.fakebotapi import TgUser

    return TgUser(RESIDENT_BASE + i, f"居民{i:03d}")


class Run:
    """One bot process against one fresh fake Bot API."""

    def __init__(self, bot: str, framework: str, db: str, rate: float, broadcast: int = 0) -> None:
        self.cfg = dict(bot=bot, framework=framework, db=db, rate=rate, broadcast=broadcast)

    async def __aenter__(self):
        from tests.fakebotapi import FakeBotAPI

        self.api = await FakeBotAPI(token=TOKEN).start()
        self.cfg["api"] = self.api.base_url
        self.ctx = mp.get_context("spawn")
        self.stop_ev, self.ready_ev, self.out = self.ctx.Event(), self.ctx.Event(), self.ctx.Queue()
        return self

    async def start(self) -> None:
        self.proc = self.ctx.Process(target=_child, args=(self.cfg, self.stop_ev, self.ready_ev, self.out), daemon=True)
        self.proc.start()
        deadline = time.monotonic() + 120
        while not self.ready_ev.is_set():
            if not self.proc.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"bot did not start: {self._result()}")
            await asyncio.sleep(0.01)

    def _result(self) -> dict:
        try:
            return self.out.get(timeout=5)
        except Exception:
            return {"error": "no result"}

    async def finish(self) -> dict:
        self.stop_ev.set()
        deadline = time.monotonic() + 90
        while self.out.empty() and self.proc.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        res = self._result()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
        if "error" in res:
            raise RuntimeError(f"{self.cfg['bot']}: {res['error']}")
        return res

    async def __aexit__(self, *exc) -> None:
        if getattr(self, "proc", None) is not None and self.proc.is_alive():
            self.stop_ev.set()
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()
        await self.api.stop()

    def replies(self, lo: int, hi: int) -> list:
        return [c for c in self.api.calls if c.method == "sendMessage" and c.ok
                and isinstance(c.params.get("chat_id"), (int, str)) and lo <= int(c.params["chat_id"]) < hi]

    async def wait_replies(self, lo: int, hi: int, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.replies(lo, hi)) >= n:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.cfg['bot']}: {len(self.replies(lo, hi))} of {n} replies")


def _per_second(times: list[float]) -> float:
    times = sorted(times)
    if len(times) < 2 or times[-1] <= times[0]:
        return float("nan")
    return (len(times) - 1) / (times[-1] - times[0])


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))]


async def backlog(bot: str, framework: str, db: str, rate: float, n: int, residents: int, broadcast: int = 0,
                  distinct: bool = False) -> dict:
    qs = questions()
    from tests.fakebotapi import message

    async with Run(bot, framework, db, rate, broadcast) as r:
        r.api.add_chat(ADMIN)  # the broadcast's author gets its progress reports
        for i in range(broadcast):
            r.api.add_chat(BROADCAST_BASE + i)
        for k in range(n):
            # --distinct: no two questions alike (the bot's memo of recent matches never helps)
            text = f"{qs[k % len(qs)]} {k}" if distinct else qs[k % len(qs)]
            r.api.push_update(message(_resident(k % residents), text=text))
        await r.start()
        await r.wait_replies(RESIDENT_BASE, RESIDENT_BASE + residents, n, timeout=n / rate * 3 + 60)
        res = await r.finish()
        rep = sorted(c.time for c in r.replies(RESIDENT_BASE, RESIDENT_BASE + residents))[:n]
        out = dict(replies_per_s=_per_second(rep), handled_per_s=_per_second(res["handled"]),
                   processed=res["processed"], writes=res["writes"], txns=res["txns"])
        if broadcast:
            bc = sorted(c.time for c in r.replies(BROADCAST_BASE, BROADCAST_BASE + broadcast))
            during = [t for t in bc if rep[0] <= t <= rep[-1]]
            out.update(broadcast_sent=len(bc),
                       broadcast_during_per_s=len(during) / (rep[-1] - rep[0]) if rep[-1] > rep[0] else 0.0,
                       total_during_per_s=(len(during) + len(rep)) / (rep[-1] - rep[0]) if rep[-1] > rep[0] else 0.0)
        return out


async def latency(bot: str, framework: str, db: str, rate: float, per_s: float, seconds: float) -> dict:
    qs = questions()
    from tests.fakebotapi import message

    n = int(per_s * seconds)
    async with Run(bot, framework, db, rate) as r:
        await r.start()
        pushed: dict[int, float] = {}
        t0 = time.monotonic()
        for k in range(n):  # each from another resident: no per-chat limit comes into it
            at = t0 + k / per_s
            if (d := at - time.monotonic()) > 0:
                await asyncio.sleep(d)
            user = _resident(k)
            pushed[user.id] = time.monotonic()
            r.api.push_update(message(user, text=qs[k % len(qs)]))
        await r.wait_replies(RESIDENT_BASE, RESIDENT_BASE + n, n, timeout=60)
        res = await r.finish()
        first: dict[int, float] = {}
        for c in r.replies(RESIDENT_BASE, RESIDENT_BASE + n):
            first.setdefault(int(c.params["chat_id"]), c.time)
        lat = [first[u] - pushed[u] for u in pushed]
        head = [first[u] - pushed[u] for u in list(pushed)[: int(per_s)]]  # the first second
        # the five slowest: (their place in the sequence, ms), to tell a cold start from a stall
        slowest = sorted(((round(x * 1000, 1), k) for k, x in enumerate(lat)), reverse=True)[:5]
        return dict(p50=_pct(lat, 50) * 1000, p99=_pct(lat, 99) * 1000, first_second_max=max(head) * 1000,
                    slowest=[(k, ms) for ms, k in slowest],
                    processed=res["processed"], writes=res["writes"], txns=res["txns"])


# --- reporting -------------------------------------------------------------------------------------


def med(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if r.get(key) == r.get(key)]
    return statistics.median(vals) if vals else float("nan")


def per_update(rows: list[dict], who: str) -> float:
    vals = [r["writes"].get(who, 0) / r["processed"] for r in rows if r["processed"]]
    return statistics.median(vals) if vals else float("nan")


def echo_of(framework: str) -> str:
    return f"echo-{framework}"


async def main(a) -> list[dict]:
    rows = []
    dbs = ([("sqlite", None)] if "sqlite" in a.dbs else []) + ([("postgresql", a.pg)] if a.pg and "postgresql" in a.dbs else [])
    only = set(a.only.split(","))
    tmp = tempfile.mkdtemp(prefix="gridbot-tp-")

    def sqlite_url(tag: str) -> str:
        p = Path(tmp) / f"{tag}-{time.monotonic_ns()}.db"
        return f"sqlite+aiosqlite:///{p}"

    for dbname, pg in dbs:
        for fw in a.frameworks.split(","):
            echo, grid = {}, {}
            for run in range(a.runs):  # interleaved: echo, gridbot, echo, gridbot, …
                for bot in (echo_of(fw), "gridbot"):
                    url = pg or sqlite_url(f"{fw}-{run}")
                    res = {}
                    if "handled" in only:
                        res["backlog"] = await backlog(bot, fw, url, a.rate, a.n, a.residents, distinct=a.distinct)
                        url = pg or sqlite_url(f"{fw}-{run}b")
                    if "broadcast" in only and bot == "gridbot":
                        res["broadcast"] = await backlog(bot, fw, url, a.rate, a.n, a.residents, broadcast=a.broadcast)
                        url = pg or sqlite_url(f"{fw}-{run}c")
                    if "latency" in only:
                        res["latency"] = await latency(bot, fw, url, a.rate, a.per_s, a.seconds)
                    (echo if bot != "gridbot" else grid).setdefault("runs", []).append(res)
                    print(f"  [{dbname} {fw} run {run + 1}] {bot}: {json.dumps(res, default=float)[:800]}", flush=True)
            rows.append(dict(db=dbname, framework=fw, echo=echo["runs"], gridbot=grid["runs"]))
            report(rows[-1], a)
    return rows


def report(row: dict, a) -> None:
    e, g = row["echo"], row["gridbot"]
    pick = lambda runs, part: [r[part] for r in runs if part in r]  # noqa: E731
    print(f"\n=== {row['db']}, {row['framework']}: medians of {len(g)} interleaved runs ===")
    if pick(g, "backlog"):
        eb, gb = pick(e, "backlog"), pick(g, "backlog")
        rps = med(gb, "replies_per_s")
        print(f"backlog {a.n} questions / {a.residents} residents, global rate {a.rate:g}/s")
        print(f"  replies/s        gridbot {rps:7.1f}   = {rps / a.rate * 100:5.1f}% of the configured rate (target ≥ 95%)"
              f"   [echo, unlimited: {med(eb, 'replies_per_s'):.0f}/s]")
        gh, eh = med(gb, "handled_per_s"), med(eb, "handled_per_s")
        print(f"  handled/s        gridbot {gh:7.1f}   echo {eh:7.1f}   ratio {gh / eh * 100:5.1f}% (target ≥ 40%)")
        print(f"  write txns/update  update path {per_update(gb, 'update'):.2f}   delivery {per_update(gb, 'delivery'):.2f}"
              f"   (target ≤ 1 on the update path)")
    if pick(g, "broadcast"):
        gbc = pick(g, "broadcast")
        rps = med(gbc, "replies_per_s")
        print(f"backlog + a broadcast to {a.broadcast} chats at the same time")
        print(f"  replies/s        {rps:7.1f}   = {rps / a.rate * 100:5.1f}% of the rate;  broadcast meanwhile"
              f" {med(gbc, 'broadcast_during_per_s'):.1f}/s;  both {med(gbc, 'total_during_per_s'):.1f}/s")
    if pick(g, "latency"):
        el, gl = pick(e, "latency"), pick(g, "latency")
        print(f"latency at {a.per_s:g} updates/s for {a.seconds:g} s from the first second (push → reply at the server)")
        for k in ("p50", "p99", "first_second_max"):
            gv, ev = med(gl, k), med(el, k)
            print(f"  {k:<17} gridbot {gv:7.1f} ms   echo {ev:7.1f} ms   ratio {gv / ev:5.2f}×"
                  + ("   (target ≤ 4×)" if k == "p99" else ""))
        print(f"  write txns/update  update path {per_update(gl, 'update'):.2f}   delivery {per_update(gl, 'delivery'):.2f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="400 questions / 40 residents, 5 s of latency, 1 run")
    p.add_argument("--runs", type=int, default=None)
    p.add_argument("--n", type=int, default=None, help="backlog questions (default 2000)")
    p.add_argument("--residents", type=int, default=None)
    p.add_argument("--broadcast", type=int, default=None, help="broadcast recipients in the broadcast scenario")
    p.add_argument("--rate", type=float, default=25.0, help="GRIDBOT_BROADCAST_RATE")
    p.add_argument("--distinct", action="store_true",
                   help="backlog questions all different (a number appended): the 2,000 default ones are 333 texts")
    p.add_argument("--per-s", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--frameworks", default="aiogram,ptb")
    p.add_argument("--only", default="handled,broadcast,latency")
    p.add_argument("--pg", default=os.environ.get("GRIDBOT_BENCH_PG_URL", ""))
    p.add_argument("--dbs", default="sqlite,postgresql", help="which of sqlite,postgresql (PostgreSQL needs --pg)")
    a = p.parse_args()
    q = a.quick
    a.runs = a.runs or (1 if q else 3)
    a.n = a.n or (400 if q else 2000)
    a.residents = a.residents or (40 if q else 200)
    a.broadcast = a.broadcast or (500 if q else 2000)
    a.seconds = a.seconds or (5 if q else 10)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    asyncio.run(main(a))
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
