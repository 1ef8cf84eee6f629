"""Delivers the outbox: claims due rows, sends them through the Messenger, records the result.

Several processes may run it on one database: rows are claimed with a conditional update
(plus FOR UPDATE SKIP LOCKED on PostgreSQL), so each is sent by one of them. Messages of one
chat go out in order; different chats go out concurrently, within the rate limits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import utcnow
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

LEASE = timedelta(seconds=60)  # a claimed row is free again after this, if its holder died
MAX_AGE = timedelta(hours=24)  # after retrying this long a message is given up


def backoff(attempts: int) -> float:
    return float(min(2 ** max(attempts - 1, 0), 60))


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
    ) -> None:
        self.sessionmaker = sessionmaker
        self.messenger = messenger
        self.limiter = limiter or RateLimiter()
        self.workers = workers
        self.batch = batch
        self.clock = clock
        self.on_gone = on_gone  # async callable(session, chat_id): mark the recipient inactive
        self.name = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        self.sent_count = 0

    # --- lifecycle -------------------------------------------------------------------

    def kick(self) -> None:
        """Something was committed to the outbox: look now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="outbox-dispatcher")

    async def stop(self, drain_seconds: float = 5.0) -> None:
        """Finish what is due (for at most drain_seconds), then stop."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.drain(), drain_seconds)
        except asyncio.TimeoutError:
            pass
        self._stopping = True
        self._wake.set()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def _loop(self) -> None:
        await self.recover()
        while not self._stopping:
            try:
                n = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be briefly unavailable: keep going
                log.exception("outbox step failed")
                n = 0
            if n == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass

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
            stale = and_(OutboxMessage.status == "in_flight", OutboxMessage.locked_until < now)
            await s.execute(update(OutboxMessage).where(stale, OutboxMessage.broadcast_id.is_not(None))
                            .values(status="uncertain", locked_by=None))
            await s.execute(update(OutboxMessage).where(stale).values(status="pending", locked_by=None))

    async def claim(self) -> list[OutboxMessage]:
        now = self.clock()
        async with self.sessionmaker() as s, s.begin():
            busy_chats = select(OutboxMessage.chat_id).where(OutboxMessage.status == "in_flight",
                                                             OutboxMessage.locked_until >= now)
            q = (
                select(OutboxMessage.id)
                .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now,
                       OutboxMessage.chat_id.not_in(busy_chats))
                .order_by(OutboxMessage.id)
                .limit(self.batch)
            )
            if dialect_name(s) == "postgresql":
                q = q.with_for_update(skip_locked=True)
            ids = list((await s.execute(q)).scalars())
            if not ids:
                return []
            await s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids), OutboxMessage.status == "pending")
                .values(status="in_flight", locked_by=self.name, locked_until=now + LEASE)
            )
            rows = (await s.execute(select(OutboxMessage).where(OutboxMessage.id.in_(ids),
                                                                OutboxMessage.locked_by == self.name,
                                                                OutboxMessage.status == "in_flight")
                                    .order_by(OutboxMessage.id))).scalars().all()
            return list(rows)

    async def run_once(self) -> int:
        rows = await self.claim()
        if not rows:
            return 0
        per_chat: dict[int, list[OutboxMessage]] = defaultdict(list)
        for r in rows:
            per_chat[r.chat_id].append(r)
        sem = asyncio.Semaphore(self.workers)

        async def chat_worker(chat_rows: list[OutboxMessage]) -> None:
            async with sem:
                for i, row in enumerate(chat_rows):
                    ok = await self._deliver(row)
                    if not ok:  # keep the chat's order: release the rest for later
                        await self._release([r.id for r in chat_rows[i + 1:]], row.next_attempt_at)
                        return

        await asyncio.gather(*(chat_worker(v) for v in per_chat.values()))
        return len(rows)

    async def _release(self, ids: list[int], not_before: datetime) -> None:
        if not ids:
            return
        async with self.sessionmaker() as s, s.begin():
            await s.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids), OutboxMessage.locked_by == self.name)
                            .values(status="pending", locked_by=None, locked_until=None, next_attempt_at=not_before))

    async def _deliver(self, row: OutboxMessage) -> bool:
        """Send one row; True when the chat may continue with its next row."""
        msg = Outgoing.from_json(row.payload)
        if msg.method == "edit" and msg.message_id is None and row.payload.get("ref"):
            async with self.sessionmaker() as s:
                ref = await s.get(SentRef, row.payload["ref"])
            if ref is None:
                msg.method = "send"  # the message to edit was never sent: send it new
            else:
                msg.chat_id, msg.message_id = ref.chat_id, ref.message_id
        await self.limiter.acquire(msg.chat_id, strict=row.broadcast_id is not None)
        now = self.clock()
        status, error, message_id, retry_at = "sent", None, None, None
        try:
            message_id = await self.messenger.deliver(msg)
        except NotModified:
            status = "sent"
        except RecipientGone as e:
            status, error = "gone", str(e)
        except PermanentError as e:
            status, error = "failed", str(e)
            log.warning("outbox %s to %s failed for good: %s", row.id, row.chat_id, e)
        except ChatMigrated as e:
            payload = dict(row.payload, chat_id=e.new_chat_id)
            async with self.sessionmaker() as s, s.begin():
                await s.execute(update(OutboxMessage).where(OutboxMessage.id == row.id).values(
                    chat_id=e.new_chat_id, payload=payload, status="pending", locked_by=None, next_attempt_at=now))
            return False
        except RetryAfter as e:
            self.limiter.pause(e.seconds)
            status, error, retry_at = "pending", str(e), now + timedelta(seconds=e.seconds)
        except Exception as e:  # network trouble, 5xx, anything unexpected: retry later
            status, error = "pending", f"{type(e).__name__}: {e}"
            retry_at = now + timedelta(seconds=backoff(row.attempts + 1))
            if now - row.created_at > MAX_AGE:
                status = "failed"
        async with self.sessionmaker() as s, s.begin():
            values: dict = dict(status=status, error=error, attempts=row.attempts + 1, locked_by=None, locked_until=None)
            if status == "sent":
                values.update(sent_at=now, sent_message_id=message_id)
                if row.remember_as and message_id is not None:
                    await s.execute(upsert(s, SentRef, ["name"], dict(name=row.remember_as, chat_id=msg.chat_id,
                                                                          message_id=message_id),
                                           dict(chat_id=msg.chat_id, message_id=message_id)))
            if retry_at is not None:
                values["next_attempt_at"] = retry_at
            await s.execute(update(OutboxMessage).where(OutboxMessage.id == row.id).values(**values))
            if status == "gone" and self.on_gone is not None:
                await self.on_gone(s, row.chat_id)
                # nothing else can reach this chat either
                await s.execute(update(OutboxMessage).where(OutboxMessage.chat_id == row.chat_id,
                                                            OutboxMessage.status == "pending")
                                .values(status="gone", error="recipient gone"))
        row.next_attempt_at = retry_at or now
        if status == "sent":
            self.sent_count += 1
        return status != "pending"
