"""Small SQL helpers that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def insert_ignore(session: AsyncSession, model: Any):
    """INSERT … ON CONFLICT DO NOTHING for the session's backend."""
    ins = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
    return ins(model).on_conflict_do_nothing()


RESERVED_IDS = "gridbot_reserved_ids"  # session.info: {table: ids taken ahead for rows it will add}


async def reserve_ids(session: AsyncSession, model: Any, n: int) -> None:
    """Take `n` values of `model`'s serial id from PostgreSQL's sequence in one statement, for
    rows the session adds later: each then gets its id without a flush of its own, and they are
    all written in one INSERT at the end. Unused ones are a gap in the ids, nothing more.
    Nothing on SQLite (a statement there is a function call, not a round trip)."""
    if n < 2 or dialect_name(session) != "postgresql":
        return
    table = model.__tablename__
    ids = (await session.execute(text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
                                 {"t": table, "n": n})).scalars().all()
    session.info.setdefault(RESERVED_IDS, {})[table] = list(reversed(ids))


async def give_id(session: AsyncSession, obj: Any) -> int:
    """The id of a row just added to the session: one reserved for it, else learnt by a flush."""
    pool = session.info.get(RESERVED_IDS, {}).get(obj.__tablename__)
    if pool and obj.id is None:
        obj.id = pool.pop()
    else:
        await session.flush()
    return obj.id


def upsert(session: AsyncSession, model: Any, index_elements: list[str], values: dict, update: dict):
    ins = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
    return ins(model).values(**values).on_conflict_do_update(index_elements=index_elements, set_=update)
