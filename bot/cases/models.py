from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base, UTCDateTime

# the predicate of the partial indexes over open cases (transitions.OPEN; a test keeps the two
# the same); a query uses them only when it names these states as literals (stats.literal_in)
OPEN_CASES = text("status IN ('new', 'accepted', 'reopened')")


class Case(Base):
    """A reported problem. Its id is the public reference `#<id>`."""

    __tablename__ = "cases"
    __table_args__ = (
        # the sweep walks open cases by their next check time
        Index("ix_cases_open_next_check", "status", "next_check_at"),
        # a worker's task list and digest
        Index("ix_cases_assignee_status", "assignee_id", "status"),
        Index("ix_cases_area_status", "area_id", "status"),
        Index("ix_cases_reporter", "reporter_id", "created_at"),
        Index("ix_cases_created", "created_at"),
        # digests and the weekly list: open cases per worker and per area, by deadline (a small
        # share of the table: these stay small however many cases were ever closed); with the id,
        # so a window over them reads nothing else (PostgreSQL keeps no row id in an index)
        Index("ix_cases_open_assignee", "assignee_id", "deadline_at", "id", sqlite_where=OPEN_CASES,
              postgresql_where=OPEN_CASES),
        Index("ix_cases_open_area", "area_id", "deadline_at", "id", sqlite_where=OPEN_CASES,
              postgresql_where=OPEN_CASES),
        # a period's figures (bot/stats.py): the cases with an event or a deadline in the period
        Index("ix_cases_assigned", "assigned_at"),
        Index("ix_cases_accepted", "accepted_at"),
        Index("ix_cases_resolved", "resolved_at"),
        Index("ix_cases_closed", "closed_at"),
        Index("ix_cases_deadline", "deadline_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(24), default="new")
    category_id: Mapped[str] = mapped_column(String(40), ForeignKey("categories.id"))
    description: Mapped[str] = mapped_column(Text, default="")
    address: Mapped[str] = mapped_column(String(300), default="")
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    area_id: Mapped[str | None] = mapped_column(String(64), ForeignKey("areas.id"))
    reporter_id: Mapped[int] = mapped_column(BigInteger)
    report_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    assignee_id: Mapped[int | None] = mapped_column(BigInteger)
    share_contact: Mapped[bool] = mapped_column(Boolean, default=False)
    language: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # when the sweep must next look at this case (reminder, overdue, escalation, auto-close)
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # 0 none, 1 pre-deadline reminder sent, 2 overdue, 3+ escalated further up
    chase_level: Mapped[int] = mapped_column(Integer, default=0)
    was_overdue: Mapped[bool] = mapped_column(Boolean, default=False)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    reporter_count: Mapped[int] = mapped_column(Integer, default=1)
    rating: Mapped[int | None] = mapped_column(Integer)
    resolution_note: Mapped[str | None] = mapped_column(Text)
    resolution_photo: Mapped[str | None] = mapped_column(String(255))
    resolved_by: Mapped[int | None] = mapped_column(BigInteger)
    close_reason: Mapped[str | None] = mapped_column(Text)
    duplicate_of: Mapped[int | None] = mapped_column(Integer)
    # the pushed task message, so buttons can be refreshed
    task_chat_id: Mapped[int | None] = mapped_column(BigInteger)

    @property
    def ref(self) -> str:
        return f"#{self.id}"


class CasePhoto(Base):
    __tablename__ = "case_photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    file_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16), default="report")  # report | resolution


class CaseEvent(Base):
    """The case history: who did what, when, from which status to which."""

    __tablename__ = "case_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(24))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str | None] = mapped_column(String(24))
    note: Mapped[str] = mapped_column(Text, default="")


class CaseSubscriber(Base):
    """Residents who pressed "Me too": they hear what the reporter hears."""

    __tablename__ = "case_subscribers"
    __table_args__ = (UniqueConstraint("case_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
