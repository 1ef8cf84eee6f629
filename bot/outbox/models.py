from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base, UTCDateTime


class OutboxMessage(Base):
    """One message to deliver, written in the transaction that caused it.

    status: pending → sent | failed (permanent error) | gone (recipient blocked the bot);
    in_flight while a dispatcher holds it; a row found in_flight after a crash is
    `uncertain` if it belongs to a broadcast (counted, not resent), else retried.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at", "id"),
        Index("ix_outbox_broadcast", "broadcast_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # a unique key per logical message (reminder:{case}:{level}, digest:{user}:{date}); NULL = none
    dedupe_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    chat_id: Mapped[int] = mapped_column(BigInteger, index=True)
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(80))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_message_id: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    broadcast_id: Mapped[int | None] = mapped_column(Integer)
    # after delivery, remember the sent message id under this name (e.g. a case's task message)
    remember_as: Mapped[str | None] = mapped_column(String(80))


class RateBucket(Base):
    """A token bucket shared by every replica: global, per chat and per group."""

    __tablename__ = "rate_buckets"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    tokens: Mapped[float] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SentRef(Base):
    """Message ids remembered by name (so a later edit can find the message)."""

    __tablename__ = "sent_refs"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)
