"""Token buckets for Telegram's limits: global, per private chat, per group.

Buckets are data (capacity, rate, tokens, last refill). The per-chat buckets live in memory:
one chat's messages are sent by one process at a time (the outbox claims by chat). The global
bucket is the bot's rate as a whole, so with several processes on one database it is also a
row in `rate_buckets` (SharedBucket): each process reserves a few tokens at a time with one
conditional UPDATE and spends them locally, paced by its own in-memory bucket.

Waiting interactive messages go before broadcast ones: a resident waiting for an answer never
queues behind a 10,000-recipient notice.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select, update

log = logging.getLogger("gridbot.outbox")


@dataclass
class Bucket:
    capacity: float
    rate: float  # tokens per second
    tokens: float
    stamp: float

    def wait_time(self, now: float) -> float:
        self.refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float, n: float = 1) -> None:
        self.refill(now)
        self.tokens -= n


@dataclass(frozen=True)
class Limits:
    global_rate: float = 25.0  # messages per second for the whole bot
    # (almost) no burst above the rate: a burst after a pause is what earns a 429; the half
    # token absorbs the event loop waking a sender a little late, so the rate is still reached
    global_burst: float = 1.5
    chat_rate: float = 1.0  # per private chat
    chat_burst: float = 3.0  # a reply of two or three messages goes out at once
    group_rate: float = 20 / 60  # per group chat
    group_burst: float = 3.0
    strict: bool = False  # broadcasts: exactly 1/s per chat, no bursts
    shared: bool = True  # share the global bucket through the database when a dispatcher has one

    @classmethod
    def from_settings(cls, settings) -> Limits:
        return cls(global_rate=float(settings.broadcast_rate))


def _wall_dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


class SharedBucket:
    """The global token bucket as a row of `rate_buckets`, shared by every process.

    `reserve()` refills the row by the time elapsed since it was last written and takes up to
    `batch` tokens, in a read and a conditional UPDATE (the UPDATE matches only if nobody wrote
    the row in between; a loser simply reads again). Capacity is one batch, so processes
    together exceed the rate by at most one batch each, only right after an idle spell.
    Time is the wall clock: the row is compared across processes (and test clocks stand still).
    """

    def __init__(self, sessionmaker, *, rate: float, key: str = "global", batch: int | None = None,
                 wall=time.time) -> None:
        self.sessionmaker = sessionmaker
        self.rate = float(rate)
        self.key = key
        self.batch = batch or max(1, math.ceil(self.rate * 0.2))  # ~5 round trips a second
        self.capacity = float(self.batch)
        self.wall = wall
        self.round_trips = 0

    async def reserve(self, want: int | None = None) -> tuple[int, float]:
        """Take up to `want` tokens: (tokens taken, seconds to wait before asking again if 0)."""
        from bot.outbox.models import RateBucket
        from bot.sql import insert_ignore

        want = want or self.batch
        for _ in range(20):
            now = self.wall()
            async with self.sessionmaker() as s, s.begin():
                self.round_trips += 1
                row = (await s.execute(select(RateBucket.tokens, RateBucket.updated_at)
                                       .where(RateBucket.key == self.key))).one_or_none()
                if row is None:
                    await s.execute(insert_ignore(s, RateBucket).values(key=self.key, tokens=self.capacity,
                                                                       updated_at=_wall_dt(now)))
                    continue
                elapsed = max(0.0, now - row.updated_at.timestamp())
                level = min(self.capacity, row.tokens + elapsed * self.rate)
                take = min(want, math.floor(level))
                if take < 1:
                    return 0, (1 - level) / self.rate
                res = await s.execute(update(RateBucket).where(
                    RateBucket.key == self.key, RateBucket.tokens == row.tokens,
                    RateBucket.updated_at == row.updated_at).values(tokens=level - take, updated_at=_wall_dt(now)))
                if res.rowcount == 1:
                    return take, 0.0
        return 0, 1 / self.rate  # heavy contention: let the others go first

    async def pause(self, seconds: float) -> None:
        """A 429 stops every process: the shared row goes into debt for `seconds` of tokens."""
        from bot.outbox.models import RateBucket
        from bot.sql import upsert

        now = self.wall()
        debt = -seconds * self.rate
        async with self.sessionmaker() as s, s.begin():
            await s.execute(upsert(s, RateBucket, ["key"], dict(key=self.key, tokens=debt, updated_at=_wall_dt(now)),
                                   dict(tokens=debt, updated_at=_wall_dt(now))))


class RateLimiter:
    def __init__(self, limits: Limits | None = None, clock=time.monotonic) -> None:
        self.limits = limits or Limits()
        self.clock = clock
        now = clock()
        # start the global bucket with one token: a fresh process cannot burst past the rate
        self.global_bucket = Bucket(self.limits.global_burst, self.limits.global_rate, 1.0, now)
        self.chats: dict[int, Bucket] = {}
        self.paused_until = 0.0
        self.shared: SharedBucket | None = None
        self._stock = 0  # global tokens reserved from the shared bucket, not yet spent
        self._stock_at = 0.0
        self._refill_at = 0.0  # do not ask the shared bucket again before this
        self._urgent = 0  # interactive messages waiting
        self._shared_down = False
        self._lock = asyncio.Lock()
        self.sent = 0

    def share(self, sessionmaker, **kw) -> SharedBucket:
        """Take the global rate from the database row from now on (see SharedBucket)."""
        self.shared = SharedBucket(sessionmaker, rate=self.limits.global_rate, **kw)
        return self.shared

    def _chat_bucket(self, chat_id: int, now: float, strict: bool) -> Bucket:
        b = self.chats.get(chat_id)
        if b is None:
            group = chat_id < 0
            rate = self.limits.group_rate if group else self.limits.chat_rate
            burst = 1.0 if strict else (self.limits.group_burst if group else self.limits.chat_burst)
            b = self.chats[chat_id] = Bucket(burst, rate, burst, now)
            if len(self.chats) > 50_000:  # forget idle chats
                for k in [k for k, v in self.chats.items() if v.wait_time(now) == 0 and v.tokens >= v.capacity][:10_000]:
                    del self.chats[k]
        elif strict and b.capacity > 1:
            b.refill(now)
            b.capacity, b.tokens = 1.0, min(b.tokens, 1.0)
        return b

    def pause(self, seconds: float) -> None:
        """A 429 from Telegram: nobody sends until it has passed (never shortened)."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)
        self._stock = 0  # tokens reserved before the 429 are not to be spent in a burst after it

    async def unpaused(self) -> None:
        """Wait out a 429 pause that began after the tokens were taken."""
        while (wait := self.paused_until - self.clock()) > 0:
            await asyncio.sleep(wait)

    async def pause_all(self, seconds: float) -> None:
        """pause(), and the other processes sharing the global bucket pause too."""
        self.pause(seconds)
        if self.shared is not None:
            try:
                await self.shared.pause(seconds)
            except Exception as e:  # the local pause holds anyway
                log.warning("could not share a 429 pause: %s", e)

    def _shared_failed(self, e: Exception) -> None:
        if not self._shared_down:  # once per outage, not once per message
            self._shared_down = True
            log.warning("shared rate bucket unavailable (%s); the local rate holds meanwhile", e)

    def _shared_ok(self) -> None:
        self._shared_down = False

    def chat_wait(self, chat_id: int, strict: bool = False) -> float:
        now = self.clock()
        return self._chat_bucket(chat_id, now, strict).wait_time(now)

    async def _global_wait(self, now: float) -> float:
        """0 when a global token is available (and this caller may take it), else seconds to wait."""
        wait = self.global_bucket.wait_time(now)
        if wait > 0 or self.shared is None:
            return wait
        if self._stock and now - self._stock_at > 1.0:
            self._stock = 0  # old reservations would add a burst on top of the other processes
        if self._stock:
            if self._stock * 2 <= self.shared.batch and now >= self._refill_at:
                # ask for the next tokens while some are left, so the database round trip
                # never leaves the sender idle
                try:
                    got, wait = await self.shared.reserve()
                except Exception as e:
                    self._shared_failed(e)
                    got, wait = 0, 0.2
                else:
                    self._shared_ok()
                if got:
                    self._stock, self._stock_at = self._stock + got, self.clock()
                else:
                    self._refill_at = self.clock() + wait
            return 0.0
        if now < self._refill_at:
            return self._refill_at - now
        try:
            got, wait = await self.shared.reserve()
        except Exception as e:  # the database is briefly unavailable: a second at the local rate
            self._shared_failed(e)
            got, wait = max(1, int(self.limits.global_rate)), 0.0
        else:
            self._shared_ok()
        now = self.clock()
        if got:
            self._stock, self._stock_at = got, now
            return 0.0
        self._refill_at = now + wait
        return wait

    async def acquire(self, chat_id: int, strict: bool = False) -> None:
        """Wait until one message to chat_id may be sent, then take the tokens.

        strict marks a broadcast message: no per-chat burst, and it yields to waiting
        interactive messages.
        """
        urgent = not strict
        counted = False  # counted among the interactive messages waiting for a global token
        try:
            while True:
                async with self._lock:
                    now = self.clock()
                    wait = max(0.0, self.paused_until - now)
                    if not wait:
                        cb = self._chat_bucket(chat_id, now, strict)
                        wait = cb.wait_time(now)
                        if wait <= 0:
                            if urgent and not counted:
                                counted = True
                                self._urgent += 1
                            if not urgent and self._urgent:
                                wait = 0.002  # an interactive message goes first
                            else:
                                wait = await self._global_wait(now)
                                if wait <= 0:
                                    now = self.clock()
                                    self.global_bucket.take(now)
                                    if self._stock:
                                        self._stock -= 1
                                    cb.take(now)
                                    self.sent += 1
                                    return
                await asyncio.sleep(min(wait, 0.5))
        finally:
            if counted:
                self._urgent -= 1
