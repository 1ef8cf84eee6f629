"""Token buckets for Telegram's limits: global, per private chat, per group.

Buckets are data (capacity, rate, tokens, last refill). The per-chat buckets live in memory:
one chat's messages are sent by one process at a time (the outbox claims by chat). The global
bucket is the bot's rate as a whole, so with several processes on one database it is a
schedule of send slots in a row of `rate_buckets` (SharedBucket): each process takes the next
few slots with one UPDATE and sends at those times, so all processes together keep the rate.

Right before each request a sender takes its turn in this process's SendWindow: at most the
rate in any second by the requests' actual times, counted from when an answer came back, so a
sender woken late does not lose the time it missed (the next one may go sooner) and no second at
Telegram holds more than the rate. While this process is the only one booking slots, it books
them at exactly the rate and does not wait for them: the window spaces its requests. While
others book too, the slots are spaced JITTER wider, each sender waits for its slot, and a slot
missed by more than half a gap is given up.

Waiting interactive messages go before broadcast ones (at the schedule and at the window): a
resident waiting for an answer never queues behind a 10,000-recipient notice, and a broadcast
takes what the replies leave of the rate.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select, update

log = logging.getLogger("gridbot.outbox")

# how far ahead of now a broadcast message may take its send slot from the shared schedule
BULK_HORIZON = 0.1


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


# while other processes book slots too, the rate's slots are spread over 1 + JITTER seconds:
# what a busy machine or network does to the moment a request arrives does not make a second
# of more than the rate (a process alone keeps the second with its SendWindow instead)
JITTER = 0.1
# no other process has booked send slots for this long: this one is alone
SOLO_AFTER = 3.0
# a process joining a schedule another may be using alone starts its slots this much later
BAND = 1.0
# alone, senders wait this long for a booking of slots, then go on without it
SOLO_BOOKING_WAIT = 0.02
# seconds of the rate a sender may make up after a late wake-up (in a short burst)
CREDIT = 0.1
# The window counts a request from its answer (it had arrived by then), but from at most this
# long after it left: where some answers come quickly (a recent one within SLOW_ANSWER), a slow
# one was held up on the way (a busy event loop, a stalled server), and it is waited for up to
# HOLD; where every answer is slow, the network is (Telegram answers in 0.1-0.3 s, most of it the
# same way there and back), and what has to be allowed for is how much longer one request takes
# to arrive than another, GRACE.
HOLD = 1.0
GRACE = 0.05
SLOW_ANSWER = 0.05


class SharedBucket:
    """The bot's global rate as a schedule of send slots in one row of `rate_buckets`, shared by
    every process.

    The row holds the next free slot (wall-clock seconds). `reserve(n)` takes the next n slots,
    one gap apart, in one transaction (PostgreSQL serialises it on the row lock, SQLite on its
    single writer), so no two processes ever get the same slot and the slots of all of them
    together are never closer than the gap: in any second at most the rate (plus the one slot
    on the window's edge), whatever the number of processes.

    A second row (`<key>:by`) names the process that booked last, and when. A process that has
    seen no other booking for SOLO_AFTER seconds is alone: its gap is 1/rate and its
    SendWindow keeps every second at Telegram within the rate. While others book too, the gap
    is JITTER wider than 1/rate (about 9% of the rate is given up), so requests that reach
    Telegram up to 0.1 s late or early still make no second of more than the rate. A process
    that joins (or comes back after SOLO_AFTER) while another books starts its slots BAND
    seconds after the schedule's end: the other may have been sending alone up to it, and sees
    the newcomer at its next booking. Time is the wall clock: the rows are compared across
    processes (and test clocks stand still).
    """

    def __init__(self, sessionmaker, *, rate: float, key: str = "slots", batch: int | None = None,
                 wall=time.time) -> None:
        self.sessionmaker = sessionmaker
        self.rate = float(rate)
        self.wide_gap = (1.0 + JITTER) / self.rate
        self.key = key
        self.by_key = f"{key}:by"
        self.me = float(random.getrandbits(48))  # this process, in the `:by` row
        self.batch = batch or max(1, math.ceil(self.rate * 0.2))  # at most ~0.2 s of slots at once
        self.wall = wall
        self.round_trips = 0
        self._other_at = -math.inf  # when another process last booked, as far as we saw
        self._booked_at: float | None = None  # our last booking
        self.others_seen = 0  # bookings that found another process's booking before them
        self.bands = 0

    @property
    def solo(self) -> bool:
        """No other process has booked slots for SOLO_AFTER seconds."""
        return self.wall() - self._other_at >= SOLO_AFTER

    @property
    def gap(self) -> float:
        return 1.0 / self.rate if self.solo else self.wide_gap

    async def reserve(self, want: int = 1) -> list[float]:
        """The next `want` slots (wall-clock times, increasing), never shared with anyone."""
        from bot.outbox.models import RateBucket
        from bot.sql import dialect_name, insert_ignore, upsert

        want = max(1, min(int(want), self.batch))
        now = self.wall()
        async with self.sessionmaker() as s, s.begin():
            self.round_trips += 1
            pg = dialect_name(s) == "postgresql"
            later = func.greatest if pg else func.max
            if pg:  # one booking at a time (SQLite: BEGIN IMMEDIATE has done it)
                found = (await s.execute(select(RateBucket.tokens).where(RateBucket.key == self.key)
                                         .with_for_update())).first()
                if found is None:  # the first reservation ever
                    await s.execute(insert_ignore(s, RateBucket).values(key=self.key, tokens=now,
                                                                       updated_at=_wall_dt(now)))
            by = (await s.execute(select(RateBucket.tokens, RateBucket.updated_at)
                                  .where(RateBucket.key == self.by_key))).first()
            band = 0.0
            if by is not None and by.tokens != self.me:
                other_at = by.updated_at.timestamp()
                self.others_seen += 1
                if now - other_at < SOLO_AFTER and (self._booked_at is None or now - self._booked_at >= SOLO_AFTER):
                    band = BAND  # it may think itself alone: our slots after its last second
                    self.bands += 1
                self._other_at = max(self._other_at, other_at)
            gap = self.gap
            stmt = (update(RateBucket).where(RateBucket.key == self.key)
                    .values(tokens=later(RateBucket.tokens, now) + band + want * gap, updated_at=_wall_dt(now))
                    .returning(RateBucket.tokens))
            end = (await s.execute(stmt)).scalar_one_or_none()
            if end is None:  # the first reservation ever
                await s.execute(insert_ignore(s, RateBucket).values(key=self.key, tokens=now,
                                                                   updated_at=_wall_dt(now)))
                end = (await s.execute(stmt)).scalar_one()
            await s.execute(upsert(s, RateBucket, ["key"], dict(key=self.by_key, tokens=self.me, updated_at=_wall_dt(now)),
                                   dict(tokens=self.me, updated_at=_wall_dt(now))))
        self._booked_at = now
        return [end - (want - i) * gap for i in range(want)]

    async def pause(self, seconds: float) -> None:
        """A 429 stops every process: no slot is handed out before `seconds` from now."""
        from bot.outbox.models import RateBucket
        from bot.sql import dialect_name, upsert

        now = self.wall()
        until = now + seconds
        async with self.sessionmaker() as s, s.begin():
            later = func.greatest if dialect_name(s) == "postgresql" else func.max
            await s.execute(upsert(s, RateBucket, ["key"], dict(key=self.key, tokens=until, updated_at=_wall_dt(now)),
                                   dict(tokens=later(RateBucket.tokens, until), updated_at=_wall_dt(now))))
            # signed like a booking: the others stop sending alone and wait for their slots
            await s.execute(upsert(s, RateBucket, ["key"], dict(key=self.by_key, tokens=self.me, updated_at=_wall_dt(now)),
                                   dict(tokens=self.me, updated_at=_wall_dt(now))))


class SendWindow:
    """This process's requests to Telegram: at most `count` in any `span` seconds (the rate in
    any second), by when they can have arrived, and interactive ones first.

    Each request is known to have arrived at Telegram between leaving and its answer. A new one
    may leave at t when fewer than `count` earlier ones can have arrived after t - span (one
    granted and not yet gone counts as arriving any time), so no second at Telegram holds more
    than the rate whatever the network or the event loop did in between, and in whatever order
    the requests arrived. An answer is waited for only so long (HOLD where some answers are
    quick, GRACE where all are slow, as Telegram's 0.1-0.3 s are): a request is then taken to
    have arrived within that long of leaving. A sender woken late loses nothing: the window looks
    at when requests left, not at a schedule, so the next one may follow sooner. Within the
    second requests are paced at the rate by a token bucket that saves up to CREDIT seconds of
    it (what a late wake-up lost is made up, a burst after a pause stays small), never closer
    than half a gap; whenever a turn comes free it goes to the first interactive sender
    waiting, else to the first broadcast one.
    """

    def __init__(self, rate: float, clock=time.monotonic) -> None:
        self.count = max(1, int(rate))
        self.span = self.count / rate
        self.spacing = 0.5 / rate
        self.clock = clock
        # the pace within the second: the rate, with up to CREDIT seconds of it saved up (time
        # lost to a late wake-up is made up, a second's worth is never sent in one go)
        self.pace = Bucket(1.0 + CREDIT * rate, rate, 1.0, clock())
        # [left or None (granted, not gone yet), answered or None] of the requests that can
        # still have arrived within the last span
        self._recent: list[list] = []
        self._last = -math.inf
        self._queues: tuple[deque, deque] = (deque(), deque())  # waiting: interactive, broadcast
        self._timer: asyncio.TimerHandle | None = None
        self.turns = 0
        self.waited = 0.0  # seconds senders spent waiting for a turn, all together
        self.answer_time = 0.0  # seconds from leaving to the answer, all requests together
        self.answers = 0
        self._took: deque[float] = deque(maxlen=max(20, 2 * self.count))  # the latest answer times
        self.slow_network = False  # none of them within SLOW_ANSWER
        self.coming = 0  # interactive senders on their way to a turn (see expect())

    def expect(self) -> None:
        """An interactive sender is on its way to a turn (taking its send slot): until it has
        one (unexpect()), no broadcast request takes a turn that comes free."""
        self.coming += 1

    def unexpect(self) -> None:
        self.coming -= 1
        self._pump()

    def _arrived_by(self, entry: list) -> float:
        left, answered = entry
        if left is None:
            return math.inf
        latest = left + (GRACE if self.slow_network else HOLD)
        return latest if answered is None else min(latest, answered)

    def next_at(self, now: float) -> float:
        """The earliest time (clock) the next request may leave, looking from now."""
        t = max(self._last + self.spacing, now + self.pace.wait_time(now))
        horizon = now - self.span  # what arrived before this cannot share a span with later ones
        latest = []
        keep = []
        for e in self._recent:
            if (by := self._arrived_by(e)) > horizon:
                keep.append(e)
                latest.append(by)
        self._recent = keep
        if len(latest) >= self.count:
            latest.sort(reverse=True)
            t = max(t, latest[self.count - 1] + self.span)
        return t

    def _give(self, now: float) -> list:
        entry = [None, None]
        self._recent.append(entry)
        self._last = now
        self.pace.take(now)
        self.turns += 1
        return entry

    async def turn(self, urgent: bool = True) -> list:
        """Wait for this request's turn; call leaving() right before it and answered() when
        its answer (or an error) comes back."""
        now = self.clock()
        if not (self._queues[0] or self._queues[1]) and (urgent or not self.coming) and now >= self.next_at(now):
            return self._give(now)
        fut = asyncio.get_running_loop().create_future()
        self._queues[0 if urgent else 1].append(fut)
        self._pump()
        try:
            return await fut
        except BaseException:
            if fut.done() and not fut.cancelled():  # given, but its sender is gone: given back
                self.answered(fut.result())
            raise
        finally:
            self.waited += self.clock() - now

    def leaving(self, entry: list) -> None:
        """The request leaves now."""
        entry[0] = self.clock()
        self._pump()

    def answered(self, entry: list) -> None:
        now = self.clock()
        if entry[0] is None:  # it never left
            entry[0] = now
        entry[1] = now
        took = now - entry[0]
        self.answer_time += took
        self.answers += 1
        self._took.append(took)
        self.slow_network = len(self._took) >= 10 and min(self._took) > SLOW_ANSWER
        self._pump()  # the window may have opened earlier than the waiters were told

    def _pump(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while True:
            queue = next((q for q in self._queues if q), None)
            if queue is None or (queue is self._queues[1] and self.coming > 0):
                return  # (an interactive sender on its way calls again when it asks)
            if queue[0].done():  # its sender was cancelled
                queue.popleft()
                continue
            now = self.clock()
            at = self.next_at(now)
            if now < at:
                if at != math.inf:  # else a request going or answered calls again
                    self._timer = asyncio.get_running_loop().call_later(at - now, self._pump)
                return
            queue.popleft().set_result(self._give(now))


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
        self._slots: deque[float] = deque()  # send slots taken from the shared schedule, not yet used
        self._local_next = 0.0  # the next slot of our own while the shared schedule is unreachable
        self._waiting = 0  # senders in acquire()
        self.dropped_slots = 0
        self._urgent = 0  # interactive messages waiting
        self._shared_down = False
        self._booking: asyncio.Task | None = None  # a booking of slots made in the background (alone)
        self._lock = asyncio.Lock()
        self.sent = 0
        self.window = SendWindow(self.limits.global_rate, clock)

    @property
    def solo(self) -> bool:
        """This process is the only one sending for the bot (or it has no shared schedule)."""
        return self.shared is None or self.shared.solo

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
        self._slots.clear()  # slots taken before the 429 are not to be used after it

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
        """0 when the local global bucket has a token (no shared schedule), else seconds to wait."""
        return self.global_bucket.wait_time(now)

    async def _slot(self) -> float | None:
        """The wall-clock time of this process's next send slot from the shared schedule (None:
        ask again shortly). A slot missed by more than half a gap is dropped, not used late:
        used late it would crowd the next one."""
        shared = self.shared
        wall = shared.wall()
        # alone, a late slot is used (the window keeps the second); among others it would crowd
        # the next process's slot
        while self._slots and not shared.solo and self._slots[0] < wall - shared.gap / 2:
            self._slots.popleft()
            self.dropped_slots += 1
        if self._slots:
            return self._slots.popleft()
        if shared.solo:
            # alone, a whole batch (its slots are not waited for, and are used whenever they are
            # late); the booking keeps the schedule and the `:by` row current, so that a process
            # joining sees this one, and a slow database does not hold the senders: after
            # SOLO_BOOKING_WAIT they go on without it, the window spacing them
            if self._booking is None or self._booking.done():
                self._booking = asyncio.create_task(self._book(shared.batch))
            await asyncio.wait({self._booking}, timeout=SOLO_BOOKING_WAIT)
            return self._slots.popleft() if self._slots else wall
        try:
            # as many as there are senders waiting (a slot nobody uses is capacity lost)
            got = await shared.reserve(max(1, self._waiting))
        except Exception as e:  # the database is unavailable: our own share of the rate meanwhile
            self._shared_failed(e)
            slot = max(wall, self._local_next)
            self._local_next = slot + shared.gap
            return slot
        self._shared_ok()
        self._slots.extend(got)
        return self._slots.popleft()

    async def _book(self, n: int) -> None:
        try:
            got = await self.shared.reserve(n)
        except Exception as e:
            self._shared_failed(e)
            return
        self._shared_ok()
        self._slots.extend(got)

    async def acquire(self, chat_id: int, strict: bool = False, *, sleep: bool = True) -> float | None:
        """Wait until one message to chat_id may be sent, then take the tokens.

        strict marks a broadcast message: no per-chat burst, and it yields to waiting
        interactive messages.
        """
        urgent = not strict
        counted = False  # counted among the interactive messages waiting for a global token
        slot = 0.0
        self._waiting += 1
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
                            elif self.shared is not None:
                                slot = await self._slot()
                                ahead = None if slot is None else slot - self.shared.wall()
                                if (not urgent and ahead is not None and ahead > BULK_HORIZON
                                        and not self.shared.solo):  # (alone, the window orders them)
                                    # a broadcast does not book slots far ahead: a reply that comes
                                    # meanwhile takes this one (the earliest) instead of queueing
                                    # behind seconds of notices
                                    self._slots.appendleft(slot)
                                    wait = ahead - BULK_HORIZON
                                elif slot is not None:
                                    cb.take(self.clock())
                                    self.sent += 1
                                    break
                                else:
                                    wait = 0.05
                            else:
                                wait = await self._global_wait(now)
                                if wait <= 0:
                                    now = self.clock()
                                    self.global_bucket.take(now)
                                    cb.take(now)
                                    self.sent += 1
                                    return
                await asyncio.sleep(min(wait, 0.5))
        finally:
            self._waiting -= 1
            if counted:
                self._urgent -= 1
        # our slot in the shared schedule: not before it (sleep=False: the caller waits for it
        # with `until`, after its own last step before the request)
        if sleep:
            await self.until(slot)
        return slot

    async def until(self, slot: float | None, *, late_ok: bool = False) -> None:
        """Wait for a send slot that acquire(sleep=False) returned. A slot missed by more than
        half a gap (the caller was held up) is exchanged for the next free one: used late, it
        would crowd the slot after it. A process alone does not wait for its slots (nor give
        them up): its SendWindow spaces the requests."""
        if slot is None or self.shared is None or self.shared.solo:
            return  # alone, the slot's time is not waited for: the SendWindow keeps the second
        if not late_ok and self.shared.wall() - slot > self.shared.gap / 2:
            self.dropped_slots += 1
            async with self._lock:
                slot = await self._slot()
        delay = slot - self.shared.wall()
        if delay > 0:
            await asyncio.sleep(delay)
