"""Delivers the outbox: claims due rows, sends them through the Messenger, records the result.

Several processes may run it on one database: rows are claimed with a conditional update
(plus FOR UPDATE SKIP LOCKED on PostgreSQL), so each is sent by one of them. Messages of one
chat go out in order; different chats go out concurrently, within the rate limits.

Interactive messages (replies, tasks, reminders) are claimed before broadcast rows and go
first at the rate limiter, so a broadcast never makes a resident wait. Broadcast rows are
claimed about two seconds of the rate at a time as `in_flight`; a broadcast row is marked
`sending` just before its turn to send: a few rows ahead (at most MARK_AHEAD of the rate), their
marks written together in one transaction (with the results waiting), so the request leaves the
moment its turn comes and a busy machine or database does not hold a broadcast to one write per
message. When a process dies, rows it had only claimed go back to pending, and only the
`sending` ones (marked ahead, under way, or answered within the last result write) become
`uncertain`: counted and reported, never sent twice, and nobody else is skipped. Results are
written in batches (one UPDATE for many rows, a few times a second). An idle dispatcher only
reads.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.orm import aliased
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import utcnow
from bot.logonce import ErrorLog
from bot.outbox.models import OutboxMessage, SentRef
from bot.outbox.ratelimit import RateLimiter
from bot.sql import dialect_name, upsert
from bot.transport.base import (
    ChatMigrated,
    Messenger,
    NotModified,
    Outgoing,
    PermanentError,
    RecipientGone,
    RetryAfter,
)

log = logging.getLogger("gridbot.outbox")

# A claimed row is free again after this if its holder stopped renewing it (it died); the
# holder renews every LEASE/4, so a live process misses three beats before it could lose a row,
# and a killed process's rows are retaken a few seconds after. Read at run time (tests shorten it).
LEASE = timedelta(seconds=6)
RECOVER_EVERY = 1.0  # seconds between looks for rows of dead processes
# a row waiting to be retried holds its chat's later rows back for at most this long after it
# was queued (then they go: one unreachable message does not keep the rest forever)
ORDER_HOLD = timedelta(minutes=5)
MARK_LEAD = 0.05  # seconds before its send slot a broadcast row is marked "sending"
# broadcast rows are marked "sending" up to this many seconds of the rate ahead of their turn
# (after a crash they are "uncertain", not resent: this bounds how many of them never left)
MARK_AHEAD = 0.2
CLAIM_LOCK_ID = 0x67726F62  # PostgreSQL advisory lock taken by each claim transaction
MAX_AGE = timedelta(hours=24)  # after retrying this long a message is given up
FLUSH_EVERY = 0.2  # seconds between batched result writes
PROGRESS_EVERY = 3.0  # seconds between looks at running broadcasts when nothing else happens
RETRY_SUMMARY_EVERY = 60.0  # seconds between log lines summing up deliveries put off for a retry

ACTIVE = ("in_flight", "sending")  # held by a dispatcher


def backoff(attempts: int) -> float:
    return float(min(2 ** max(attempts - 1, 0), 60))


@dataclass
class _Result:
    row_id: int
    chat_id: int
    broadcast_id: int | None
    values: dict[str, Any]
    remember: tuple[str, int, int] | None = None  # (name, chat id, message id)
    gone: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class OutboxDispatcher:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        messenger: Messenger,
        *,
        limiter: RateLimiter | None = None,
        workers: int = 8,
        batch: int = 200,
        clock=utcnow,
        on_gone=None,
        on_progress=None,
        share_rate: bool = True,
        health=None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.messenger = messenger
        self.limiter = limiter or RateLimiter()
        if share_rate and self.limiter.limits.shared and self.limiter.shared is None:
            self.limiter.share(sessionmaker)
        self.workers = workers
        self.batch = batch
        self.clock = clock
        self.on_gone = on_gone  # async callable(session, chat_id): mark the recipient inactive
        # async callable(sessionmaker, now, broadcast_ids): report broadcast progress (passed in by
        # the core: the outbox knows nothing of broadcasts)
        self.on_progress = on_progress
        self.name = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"[:80]
        rate = self.limiter.limits.global_rate
        # enough concurrent requests to reach the rate with Telegram's ~0.1-0.3 s answers
        # sending slots follow from the rate: enough requests under way to keep it with Telegram's
        # 0.1-0.4 s answers (a slot is held only for the global token and the request itself)
        self.concurrency = max(workers, math.ceil(rate * 0.4))
        # broadcast rows held at once: two seconds of the rate, so a slow claim never starves the
        # senders (rows only claimed go back to pending after a crash; they are not "uncertain")
        self.window = max(self.concurrency, math.ceil(rate * 2))
        self._gap = 1.0 / rate
        self._next_slot = 0.0
        self._wake = asyncio.Event()
        self._deadline: float | None = None
        self._task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._results: list[_Result] = []
        self._touched: set[int] = set()  # broadcasts with results written since the last progress report
        self._flush_lock = asyncio.Lock()
        self.health = health  # bot.db.DbHealth: database outages are waited out, logged twice
        self.errors = ErrorLog(log)
        self._held = 0  # rows claimed and not yet finished
        self._bc_held = 0
        self._sem_fast = asyncio.Semaphore(self.concurrency)
        self._sem_bulk = asyncio.Semaphore(self.concurrency)
        self.sent_count = 0
        self._marks: list[tuple[int, asyncio.Future]] = []  # broadcast rows to mark `sending`
        self._marker: asyncio.Task | None = None
        # broadcast rows marked `sending` before their turn: at most `ahead` (MARK_AHEAD of the rate)
        self.ahead = max(2, math.ceil(rate * MARK_AHEAD))
        self._ahead = 0
        self._ahead_open = True
        self._ahead_event = asyncio.Event()
        self._ahead_event.set()
        self.mark_writes = 0  # transactions that marked them
        self.mark_count = 0
        self._retries: list[tuple[int, str]] = []  # (chat, reason) put off since the last summary
        self._last_summary = time.monotonic()

    # --- lifecycle -------------------------------------------------------------------

    def kick(self) -> None:
        """Something was committed to the outbox: look now rather than at the next poll."""
        self._wake.set()

    @property
    def taking(self) -> bool:
        """Running, and not stopping: rows may be handed to it (`hand`)."""
        return self._task is not None and not self._task.done() and self._deadline is None

    def hand(self, rows: list[OutboxMessage]) -> None:
        """Rows a handler's transaction inserted already claimed for this dispatcher (in_flight,
        locked_by its name; committed): sent as if claim() had returned them, without a claim."""
        self._spawn(rows)

    def start(self) -> None:
        self._deadline = None
        self._task = asyncio.create_task(self._loop(), name="outbox-dispatcher")

    async def stop(self, drain_seconds: float = 5.0) -> None:
        """Finish what is due (for at most drain_seconds), then stop. Rows claimed but not
        started go back to pending; a send under way is finished, never cut off."""
        task = self._task
        if task is None:
            return
        self._deadline = time.monotonic() + drain_seconds
        self._wake.set()
        if not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), drain_seconds + 30)
            except asyncio.TimeoutError:
                task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self._task = None

    def _stopping(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    async def _loop(self) -> None:
        await self.recover()
        flusher = asyncio.create_task(self._flush_loop())
        house = time.monotonic()
        last_recover = last_beat = last_progress = house
        try:
            while True:
                if self._stopping():
                    break
                # cleared before the claim, not after: a wake-up while it runs (rows committed,
                # room for broadcast rows) is not lost to a half-second wait
                self._wake.clear()
                try:
                    room = self.window - self._bc_held
                    # shielded, like every database step here: a cancelled task must not leave a
                    # transaction (and SQLite's write lock) half done
                    rows = await asyncio.shield(self.claim(room if room * 2 >= self.window else 0))
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the database may be briefly unavailable: keep going
                    await self._trouble(e, "claim")
                    rows = []
                self._spawn(rows)
                if self._deadline is not None and not rows and not self._tasks:
                    break  # stopping, and nothing is due any more
                now = time.monotonic()
                lease = LEASE.total_seconds()
                try:
                    if self._held and now - last_beat >= lease / 4:
                        last_beat = now
                        await asyncio.shield(self._heartbeat())
                    if now - last_recover >= min(RECOVER_EVERY, lease / 2):
                        last_recover = now
                        await asyncio.shield(self.recover())
                    if now - self._last_summary >= RETRY_SUMMARY_EVERY:
                        self.retry_summary()
                    if now - last_progress >= PROGRESS_EVERY:
                        last_progress = now
                        await asyncio.shield(self._progress(set()))
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    await self._trouble(e, "housekeeping")
                if not rows:
                    try:
                        await asyncio.wait_for(self._wake.wait(), 0.5)
                    except asyncio.TimeoutError:
                        pass
        except asyncio.CancelledError:
            # killed, not stopped: like a crash, nothing more is written
            for t in list(self._tasks):
                t.cancel()
            flusher.cancel()
            raise
        # a graceful stop: let the sends under way finish (their rows released), then write
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        await self._flush()
        lim = self.limiter
        w = lim.window
        log.info("outbox stopped: %d sent, %d broadcast rows marked sending in %d transactions, %d send turns (%.1f s waited for them in all, answers in %.1f ms on "
                 "average; network slow: %s), %d slots given up, %d bookings after another process's, alone: %s",
                 self.sent_count, self.mark_count, self.mark_writes, w.turns, w.waited, w.answer_time / max(1, w.answers) * 1000, w.slow_network,
                 lim.dropped_slots, lim.shared.others_seen if lim.shared else 0, lim.solo)

    async def drain(self) -> None:
        """Deliver until nothing is due now (used by tests, the console and shutdown)."""
        while await self.run_once():
            pass

    # --- one step --------------------------------------------------------------------

    async def recover(self) -> None:
        """Rows left in flight by a process that died: retry them, except broadcast rows,
        which may have reached the user and are counted as uncertain, not resent."""
        now = self.clock()
        async with self.sessionmaker() as s, s.begin():
            # never our own rows: a late heartbeat must not make us take back what we still hold
            expired = and_(OutboxMessage.locked_until < now,
                           or_(OutboxMessage.locked_by.is_(None), OutboxMessage.locked_by != self.name))
            # looked for first: an idle dispatcher (almost always nothing to recover) writes nothing
            if (await s.execute(select(OutboxMessage.id).where(OutboxMessage.status.in_(ACTIVE), expired)
                                .limit(1))).first() is None:
                return
            await s.execute(update(OutboxMessage).where(OutboxMessage.status == "sending", expired,
                                                        OutboxMessage.broadcast_id.is_not(None))
                            .values(status="uncertain", locked_by=None, error="being sent when its sender stopped"))
            # claimed but never attempted (or an interactive message: at least once)
            await s.execute(update(OutboxMessage).where(OutboxMessage.status.in_(ACTIVE), expired)
                            .values(status="pending", locked_by=None))

    async def _trouble(self, error: Exception, what: str) -> None:
        """A database step failed: wait out an outage (logged when it starts and ends), or log
        the error (its traceback once) and go on."""
        if self.health is not None and await self.health.down(error):
            await self.health.wait_up()
        else:
            self.errors.exception(error, "outbox %s failed", what)
            await asyncio.sleep(0.2)

    async def _heartbeat(self) -> None:
        # under the flush lock: the batched result write and this renewal lock the same rows,
        # and on PostgreSQL two transactions doing that in different orders deadlock
        async with self._flush_lock, self.sessionmaker() as s, s.begin():
            await s.execute(update(OutboxMessage).where(OutboxMessage.locked_by == self.name,
                                                        OutboxMessage.status.in_(ACTIVE))
                            .values(locked_until=self.clock() + LEASE))

    async def claim(self, broadcast_room: int | None = None) -> list[OutboxMessage]:
        """Claim due rows: interactive ones first (up to batch), then up to broadcast_room
        broadcast rows (default: the batch).

        A chat's messages go out strictly in order, and the order is decided here: a row is not
        claimed while its chat has a row in flight, or an earlier row (of the same kind) that is
        in flight or waiting to be retried; an earlier row holds the later ones back for at most
        ORDER_HOLD after it was queued, so one chat that cannot be reached does not keep its
        later messages forever. On PostgreSQL claims are made one at a time (an advisory lock
        for the claim transaction): a claimer never sees a half-claimed chat of another.
        """
        now = self.clock()
        room = self.batch if broadcast_room is None else broadcast_room
        async with self.sessionmaker() as s, s.begin():
            if dialect_name(s) == "postgresql":
                await s.execute(text(f"SELECT pg_advisory_xact_lock({CLAIM_LOCK_ID})"))
            ids: list[int] = []
            for bc, limit in ((False, self.batch), (True, room)):
                if limit <= 0:
                    continue
                kind = OutboxMessage.broadcast_id.is_not(None) if bc else OutboxMessage.broadcast_id.is_(None)
                busy_chats = select(OutboxMessage.chat_id).where(OutboxMessage.status.in_(ACTIVE),
                                                                 OutboxMessage.locked_until >= now)
                earlier = aliased(OutboxMessage)
                held_back = (
                    select(earlier.id)
                    .where(earlier.chat_id == OutboxMessage.chat_id, earlier.id < OutboxMessage.id,
                           earlier.broadcast_id.is_not(None) if bc else earlier.broadcast_id.is_(None),
                           or_(earlier.status.in_(ACTIVE),
                               and_(earlier.status == "pending", earlier.next_attempt_at > now)),
                           earlier.created_at > now - ORDER_HOLD)
                    .exists()
                )
                q = (
                    select(OutboxMessage.id)
                    .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now, kind,
                           OutboxMessage.chat_id.not_in(busy_chats), ~held_back)
                    .order_by(OutboxMessage.id)
                    .limit(limit)
                )
                got = list((await s.execute(q)).scalars())
                if not got:
                    continue
                # claimed at once, so the broadcast query below skips these chats
                await s.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(got), OutboxMessage.status == "pending")
                    .values(status="in_flight", locked_by=self.name, locked_until=now + LEASE)
                )
                ids += got
            if not ids:
                return []
            rows = (await s.execute(select(OutboxMessage).where(OutboxMessage.id.in_(ids),
                                                                OutboxMessage.locked_by == self.name,
                                                                OutboxMessage.status == "in_flight")
                                    .order_by(OutboxMessage.id))).scalars().all()
            return list(rows)

    def _groups(self, rows: list[OutboxMessage]) -> list[list[OutboxMessage]]:
        per_chat: dict[int, list[OutboxMessage]] = defaultdict(list)
        for r in rows:
            per_chat[r.chat_id].append(r)
        return list(per_chat.values())

    def _spawn(self, rows: list[OutboxMessage]) -> None:
        for chat_rows in self._groups(rows):
            t = asyncio.create_task(self._chat_worker(chat_rows))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def run_once(self) -> int:
        """Claim one batch, deliver it, write the results; the number of rows claimed."""
        rows = await self.claim()
        if not rows:
            return 0
        await asyncio.gather(*(self._chat_worker(g) for g in self._groups(rows)))
        await self._flush()
        return len(rows)

    async def _chat_worker(self, chat_rows: list[OutboxMessage]) -> None:
        bulk = chat_rows[0].broadcast_id is not None
        n = len(chat_rows)
        self._held += n
        if bulk:
            self._bc_held += n
        done = 0
        sem = self._sem_bulk if bulk else self._sem_fast
        try:
            for i, row in enumerate(chat_rows):
                # the chat's own limit (1/s after a burst) is waited out without a sending slot:
                # a slot is held only for the global token and the request
                await self._chat_turn(row.chat_id, bulk)
                if self._stopping():
                    self._release(chat_rows[i:], self.clock())
                    return
                try:
                    async with sem:
                        res = await self._deliver(row)
                except Exception as e:  # a database step before the request failed
                    self._release(chat_rows[i:], self.clock())
                    await self._trouble(e, "delivery")
                    return
                done += 1
                if bulk:
                    self._bc_held -= 1
                    if self._bc_held * 2 < self.window:
                        self._wake.set()  # room for the next broadcast rows
                if res.values["status"] == "pending":
                    # keep the chat's order: the rest waits for this one
                    self._release(chat_rows[i + 1:], res.values.get("next_attempt_at") or self.clock())
                    return
        finally:
            self._held -= n
            if bulk:
                self._bc_held -= n - done

    async def _chat_turn(self, chat_id: int, strict: bool) -> None:
        """Until the chat's own bucket has a token (or the dispatcher is stopping)."""
        while (wait := self.limiter.chat_wait(chat_id, strict)) > 0 and not self._stopping():
            if self._deadline is not None:
                wait = min(wait, max(0.0, self._deadline - time.monotonic()) + 0.001)
            await asyncio.sleep(wait)

    def _release(self, rows: list[OutboxMessage], not_before: datetime) -> None:
        for r in rows:
            self._results.append(_Result(r.id, r.chat_id, r.broadcast_id, dict(
                status="pending", locked_by=None, locked_until=None, next_attempt_at=not_before)))

    async def _deliver(self, row: OutboxMessage) -> _Result:
        """Send one row; the outcome is queued for the next batched write."""
        msg = Outgoing.from_json(row.payload)
        if msg.method == "edit" and msg.message_id is None and row.payload.get("ref"):
            ref = await asyncio.shield(self._sent_ref(row.payload["ref"]))
            if ref is None:
                msg.method = "send"  # the message to edit was never sent: send it new
            else:
                msg.chat_id, msg.message_id = ref.chat_id, ref.message_id
        window = self.limiter.window
        if row.broadcast_id is not None:
            # the send slot first, then the mark, then the turn in the window (after any waiting
            # reply), then the wait for the slot: the request leaves right at its turn and slot
            # (the window counts a turn given and not yet used as arriving any time, so a write
            # between the two would cost the rate), and the marks of the few rows next in line
            # share a transaction
            slot = await self.limiter.acquire(msg.chat_id, strict=True, sleep=False)
            if slot is not None:
                await self.limiter.until(slot - MARK_LEAD, late_ok=True)
            await self._ahead_room()
            try:
                # from here until its result is written, a crash leaves this row "uncertain"
                if not await asyncio.shield(self._mark_sending(row.id)):
                    # our claim lapsed (this process stalled past its lease) and another took the
                    # row: it is theirs to send, not ours
                    return _Result(row.id, row.chat_id, row.broadcast_id, dict(status="lost"), extra={"lost": True})
                turn = await window.turn(urgent=False)
            finally:
                self._ahead_done()
            try:
                await self.limiter.until(slot)
                if not self.limiter.solo:  # (alone, the send window paces the requests)
                    await self._pace()
                await self.limiter.unpaused()  # last, right before the request: a 429 may have come meanwhile
            except BaseException:
                window.answered(turn)  # the turn is given back as if used now
                raise
        else:
            # alone, the turns decide the order: a broadcast row does not take a turn while a reply
            # is on its way to one
            coming = self.limiter.solo
            if coming:
                window.expect()
            try:
                await self.limiter.acquire(msg.chat_id)
                turn = await window.turn(urgent=True)
            finally:
                if coming:
                    window.unexpect()
            try:
                await self.limiter.unpaused()
            except BaseException:
                window.answered(turn)
                raise
        window.leaving(turn)
        now = self.clock()
        status, error, message_id, retry_at = "sent", None, None, None
        extra: dict[str, Any] = {}
        try:
            try:
                message_id = await self.messenger.deliver(msg)
            finally:
                window.answered(turn)  # answered or failed: it has reached Telegram if it ever will
        except NotModified:
            status = "sent"
        except RecipientGone as e:
            status, error = "gone", str(e)
        except PermanentError as e:
            status, error = "failed", str(e)
        except ChatMigrated as e:
            # resent to the new id straight away (a write of its own: it is rare)
            payload = dict(row.payload, chat_id=e.new_chat_id)
            async with self.sessionmaker() as s, s.begin():
                await s.execute(update(OutboxMessage).where(OutboxMessage.id == row.id).values(
                    chat_id=e.new_chat_id, payload=payload, status="pending", locked_by=None, next_attempt_at=now))
            return _Result(row.id, row.chat_id, row.broadcast_id, dict(status="pending"), extra={"migrated": True})
        except RetryAfter as e:
            await self.limiter.pause_all(e.seconds)
            status, error, retry_at = "pending", str(e), now + timedelta(seconds=e.seconds)
        except Exception as e:  # network trouble, 5xx, anything unexpected: retry later
            status, error = "pending", f"{type(e).__name__}: {e}"
            retry_at = now + timedelta(seconds=backoff(row.attempts + 1))
            if now - row.created_at > MAX_AGE:
                status, error = "failed", f"gave up after {MAX_AGE} of retries: {error}"
        if status in ("failed", "gone"):
            # one line per message that will never arrive: who, what, why
            log.warning("delivery failed for good: chat %s, %s message (outbox #%s): %s", row.chat_id, row.kind,
                        row.id, error if status == "failed" else f"recipient gone ({error})")
        elif status == "pending":
            self._retries.append((row.chat_id, (error or "")[:80]))
        values: dict[str, Any] = dict(status=status, error=error, attempts=row.attempts + 1, locked_by=None,
                                      locked_until=None)
        res = _Result(row.id, row.chat_id, row.broadcast_id, values, gone=status == "gone", extra=extra)
        if status == "sent":
            values.update(sent_at=now, sent_message_id=message_id)
            if row.remember_as and message_id is not None:
                res.remember = (row.remember_as, msg.chat_id, message_id)
            self.sent_count += 1
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        row.next_attempt_at = retry_at or now
        self._results.append(res)
        return res

    def retry_summary(self) -> str | None:
        """Log (and return) one line summing up the deliveries put off since the last one."""
        self._last_summary = time.monotonic()
        retries, self._retries = self._retries, []
        if not retries:
            return None
        from collections import Counter

        reasons = Counter(r for _, r in retries).most_common(3)
        line = (f"outbox: {len(retries)} deliveries to {len({c for c, _ in retries})} chats put off for a retry "
                f"in the last {RETRY_SUMMARY_EVERY:.0f}s; most often: "
                + "; ".join(f"{n}× {r}" for r, n in reasons))
        log.warning("%s", line)
        return line

    async def _pace(self) -> None:
        """Space broadcast requests at the rate as they leave: senders delayed together by the
        database write above must not arrive at Telegram as a burst."""
        now = time.monotonic()
        # a sender that comes late may use the slot it missed (one, no more): the rate is kept
        # on average without a burst above it
        slot = max(now - self._gap, self._next_slot)
        self._next_slot = slot + self._gap
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _ahead_room(self) -> None:
        """Wait until this broadcast row may be marked `sending` ahead of its turn: at most
        `ahead` rows are, and once they are, no more until half of them have had their turn (so
        the marks go several to a transaction, and the next ones are written while the rows
        marked before them go)."""
        while not self._ahead_open:
            await self._ahead_event.wait()
        self._ahead += 1
        if self._ahead >= self.ahead:
            self._ahead_open = False
            self._ahead_event.clear()

    def _ahead_done(self) -> None:
        """A row marked ahead has had its turn (or will not take one)."""
        self._ahead -= 1
        if not self._ahead_open and self._ahead * 2 <= self.ahead:
            self._ahead_open = True
            self._ahead_event.set()

    async def _mark_sending(self, row_id: int) -> bool:
        """Mark a broadcast row `sending` (its turn is about to come); False if it is no longer
        ours. The rows that ask while one mark is being written are marked together in the next
        transaction: under load a write takes longer, and more rows share it."""
        fut = asyncio.get_running_loop().create_future()
        self._marks.append((row_id, fut))
        if self._marker is None or self._marker.done():
            self._marker = asyncio.create_task(self._mark_loop(), name="outbox-marks")
        return await fut

    async def _mark_loop(self) -> None:
        # never cancelled (its waiters are shielded): a transaction is not left half done
        while self._marks:
            # under the flush lock, like the heartbeat: it locks some of the same rows, and on
            # PostgreSQL two multi-row updates taking them in different orders deadlock
            async with self._flush_lock:
                marks, self._marks = self._marks, []
                results = self._take_results()  # the results waiting go with them (one write fewer)
                try:
                    async with self.sessionmaker() as s, s.begin():
                        res = await s.execute(update(OutboxMessage)
                                              .where(OutboxMessage.id.in_(sorted({i for i, _ in marks})),
                                                     OutboxMessage.locked_by == self.name,
                                                     OutboxMessage.status == "in_flight")
                                              .values(status="sending").returning(OutboxMessage.id))
                        marked = set(res.scalars())
                        if results:
                            await self._write_results(s, results)
                except Exception as e:  # each sender handles it as its own failed database step
                    self._results[:0] = results  # written with the next batch
                    for _, fut in marks:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
            self.mark_writes += 1
            self.mark_count += len(marks)
            for row_id, fut in marks:
                if not fut.done():
                    fut.set_result(row_id in marked)

    async def _sent_ref(self, name: str) -> SentRef | None:
        async with self.sessionmaker() as s:
            return await s.get(SentRef, name)

    # --- writing results -----------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            try:
                await asyncio.shield(self._flush())
            except asyncio.CancelledError:
                raise
            except Exception as e:
                await self._trouble(e, "result write (will retry)")

    async def _flush(self) -> None:
        async with self._flush_lock:
            results = self._take_results()
            if results:
                try:
                    async with self.sessionmaker() as s, s.begin():
                        await self._write_results(s, results)
                except Exception:
                    self._results[:0] = results  # written with the next batch
                    raise
        # the progress of the broadcasts whose rows were written since the last report (here or
        # with the sending marks), at most once a flush
        touched, self._touched = self._touched, set()
        if touched:
            await self._progress(touched)

    def _take_results(self) -> list[_Result]:
        results, self._results = self._results, []
        return [r for r in results if not (r.extra.get("migrated") or r.extra.get("lost"))]

    async def _write_results(self, s: AsyncSession, results: list[_Result]) -> None:
        # grouped by the columns they set: one executemany each
        groups: dict[tuple[str, ...], list[dict]] = defaultdict(list)
        for r in sorted(results, key=lambda r: r.row_id):  # rows locked in one order
            groups[tuple(sorted(r.values))].append(dict(r.values, id=r.row_id))
        for params in groups.values():
            await s.execute(update(OutboxMessage), params)
        for r in results:
            if r.remember is not None:
                name, chat_id, message_id = r.remember
                await s.execute(upsert(s, SentRef, ["name"],
                                       dict(name=name, chat_id=chat_id, message_id=message_id),
                                       dict(chat_id=chat_id, message_id=message_id)))
        for chat_id in {r.chat_id for r in results if r.gone}:
            if self.on_gone is not None:
                await self.on_gone(s, chat_id)
            # nothing else can reach this chat either
            await s.execute(update(OutboxMessage).where(OutboxMessage.chat_id == chat_id,
                                                        OutboxMessage.status == "pending")
                            .values(status="gone", error="recipient gone"))
        self._touched.update(r.broadcast_id for r in results if r.broadcast_id is not None)

    async def _progress(self, broadcast_ids: set[int]) -> None:
        if self.on_progress is None:
            return
        try:
            queued = await self.on_progress(self.sessionmaker, self.clock(), broadcast_ids)
        except Exception:
            log.exception("broadcast progress report failed")
            return
        if queued:
            self._wake.set()
