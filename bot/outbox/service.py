"""Writing to the outbox. Never sends anything: the dispatcher does, after commit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.outbox.kinds import MessageKind
from bot.outbox.models import OutboxMessage
from bot.sql import insert_ignore
from bot.transport.base import Outgoing


async def enqueue(
    *,
    session: AsyncSession,
    msg: Outgoing,
    kind: MessageKind,
    now: datetime,
    dedupe_key: str | None = None,
    broadcast_id: int | None = None,
    remember_as: str | None = None,
) -> bool:
    """Add one message; with a dedupe_key a second enqueue of the same key does nothing.

    Returns False when the key was already there (the message was, or will be, sent once).
    """
    values = dict(
        dedupe_key=dedupe_key,
        kind=kind,
        chat_id=msg.chat_id,
        payload=msg.to_json(),
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        broadcast_id=broadcast_id,
        remember_as=remember_as,
    )
    if dedupe_key is None:
        session.add(OutboxMessage(**values))
        return True
    result = await session.execute(insert_ignore(session, OutboxMessage).values(**values))
    return result.rowcount == 1


async def enqueue_many(*, session: AsyncSession, rows: list[dict]) -> int:
    """Bulk insert of prepared rows (broadcast fan-out); ignores existing dedupe keys."""
    if not rows:
        return 0
    result = await session.execute(insert_ignore(session, OutboxMessage.__table__), rows)
    return getattr(result, "rowcount", 0) or 0
