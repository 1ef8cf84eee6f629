from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base


class Area(Base):
    """One node of the grid tree: 街道 → 社区 → 网格 → 微网格. Ids come from the grid file."""

    __tablename__ = "areas"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    aliases: Mapped[list] = mapped_column(JSON, default=list)
    parent_id: Mapped[str | None] = mapped_column(String(64), ForeignKey("areas.id", ondelete="RESTRICT"), index=True)
    level: Mapped[int] = mapped_column(Integer, default=0)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    captain_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    supervisor_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    boundary: Mapped[list | None] = mapped_column(JSON)
    extra: Mapped[dict] = mapped_column(JSON, default=dict)
    # areas dropped from the grid file are kept (cases point at them) but hidden
    retired: Mapped[bool] = mapped_column(Boolean, default=False)


class Category(Base):
    __tablename__ = "categories"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str | None] = mapped_column(String(100))
    keywords: Mapped[list] = mapped_column(JSON, default=list)
    sla_hours: Mapped[float] = mapped_column(Float, default=72)
    working_hours: Mapped[bool] = mapped_column(Boolean, default=False)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
