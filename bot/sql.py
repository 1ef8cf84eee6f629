"""Small SQL helpers that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def insert_ignore(session: AsyncSession, model: Any):
    """INSERT … ON CONFLICT DO NOTHING for the session's backend."""
    ins = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
    return ins(model).on_conflict_do_nothing()


def upsert(session: AsyncSession, model: Any, index_elements: list[str], values: dict, update: dict):
    ins = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
    return ins(model).values(**values).on_conflict_do_update(index_elements=index_elements, set_=update)
