"""What the outbox dispatcher writes: a broadcast's `sending` marks share transactions when the
database is slow (so the rate holds), and an idle dispatcher writes nothing."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import event, func, select

from bot.db import make_sessionmaker
from bot.outbox import dispatcher as dispatcher_mod
from bot.outbox.dispatcher import OutboxDispatcher
from bot.outbox.models import OutboxMessage
from bot.outbox.ratelimit import Limits, RateLimiter
from bot.outbox.service import enqueue_many
from bot.runner import prepare_database
from bot.transport.base import Outgoing


class SlowDatabase:
    """A sessionmaker whose transactions go one at a time and each take at least `cost` seconds
    (as on a busy machine, where SQLite's single writer is the queue): a stand-in for load."""

    def __init__(self, sessionmaker, cost: float) -> None:
        self.sessionmaker, self.cost = sessionmaker, cost
        self.lock = asyncio.Lock()
        self.transactions = 0

    def __call__(self):
        return _SlowSession(self)


class _SlowSession:
    def __init__(self, db: SlowDatabase) -> None:
        self.db = db
        self.session = db.sessionmaker()

    async def __aenter__(self):
        await self.db.lock.acquire()
        self.db.transactions += 1
        self.started = time.monotonic()
        return await self.session.__aenter__()

    async def __aexit__(self, *exc):
        try:
            return await self.session.__aexit__(*exc)
        finally:
            left = self.db.cost - (time.monotonic() - self.started)
            if left > 0:
                await asyncio.sleep(left)
            self.db.lock.release()


class StampingMessenger:
    """Takes each request 10 ms to answer; remembers when each one left."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, int]] = []

    async def deliver(self, msg: Outgoing) -> int:
        self.sent.append((time.monotonic(), msg.chat_id))
        await asyncio.sleep(0.01)
        return len(self.sent)


async def queue_broadcast(sm, chats: list[int]) -> None:
    now = datetime.now(timezone.utc)
    async with sm() as s, s.begin():
        await enqueue_many(session=s, rows=[dict(
            kind="broadcast", chat_id=c, payload=Outgoing(chat_id=c, text="明天上午停水").to_json(), status="pending",
            attempts=0, next_attempt_at=now, created_at=now, broadcast_id=1) for c in chats])


async def test_a_slow_database_does_not_slow_a_broadcast(db_url, settings_for):
    """Every transaction of the dispatcher waits for the one before and takes 40 ms (25 a
    second, all told). One `sending` mark per row, written between a row's turn and its
    request, left a broadcast at 40/s at about half the rate (52% measured); marked a few rows
    ahead and several to a transaction, the rows go at the rate, and no second holds more."""
    rate, n = 40, 160
    engine = await prepare_database(settings_for(db_url))
    sm = make_sessionmaker(engine)
    try:
        await queue_broadcast(sm, [30_000 + i for i in range(n)])
        slow = SlowDatabase(sm, 0.04)
        messenger = StampingMessenger()
        d = OutboxDispatcher(slow, messenger, limiter=RateLimiter(Limits(global_rate=rate)))
        d.start()
        deadline = time.monotonic() + 30
        while len(messenger.sent) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await d.stop(drain_seconds=1)
        async with sm() as s:
            statuses = dict((await s.execute(select(OutboxMessage.status, func.count())
                                             .group_by(OutboxMessage.status))).all())
    finally:
        await engine.dispose()
    times = sorted(t for t, _ in messenger.sent)
    assert len(times) == n and len({c for _, c in messenger.sent}) == n  # each once
    assert statuses == {"sent": n}
    # after the first second (the window starts empty, the first claim takes its time)
    steady = [t for t in times if t >= times[0] + 1.0]
    achieved = (len(steady) - 1) / (steady[-1] - steady[0])
    busiest = max(sum(1 for t in times if s <= t < s + 1) for s in times)
    print(f"\n{achieved:.1f}/s of {rate} ({achieved / rate:.0%}), busiest second {busiest}; {d.mark_count} rows "
          f"marked in {d.mark_writes} transactions, {slow.transactions} transactions in all")
    assert busiest <= rate
    assert achieved >= 0.85 * rate
    assert d.mark_count == n and d.mark_writes <= n / 3


async def test_an_idle_dispatcher_writes_nothing(db_url, settings_for, monkeypatch):
    """Its periodic looks (new rows, rows of dead processes, running broadcasts) only read; a row
    a dead process left in flight is still taken back and sent."""
    monkeypatch.setattr(dispatcher_mod, "RECOVER_EVERY", 0.05)
    monkeypatch.setattr(dispatcher_mod, "PROGRESS_EVERY", 0.1)
    engine = await prepare_database(settings_for(db_url))
    sm = make_sessionmaker(engine)
    writes: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _watch(conn, cursor, statement, params, context, executemany):
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            writes.append(statement)

    messenger = StampingMessenger()
    d = OutboxDispatcher(sm, messenger, limiter=RateLimiter(Limits(global_rate=30)))
    try:
        d.start()
        await asyncio.sleep(1.2)  # two dozen looks for dead processes' rows, a dozen progress reports
        assert writes == []
        # a reply a dead process had claimed: its lease ran out
        now = datetime.now(timezone.utc)
        async with sm() as s, s.begin():
            s.add(OutboxMessage(kind="reply", chat_id=77, payload=Outgoing(chat_id=77, text="您好").to_json(),
                                status="in_flight", attempts=0, next_attempt_at=now, created_at=now,
                                locked_by="dead:1", locked_until=now - timedelta(seconds=1)))
        deadline = time.monotonic() + 5
        while not messenger.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert [c for _, c in messenger.sent] == [77]
    finally:
        await d.stop(drain_seconds=1)
        await engine.dispose()
