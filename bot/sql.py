"""Small SQL helpers that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def insert_ignore(session: AsyncSession, model: Any):
    """INSERT … ON CONFLICT DO NOTHING for the session's backend."""
    ins = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
    return ins(model).on_conflict_do_nothing()


RESERVED_IDS = "gridbot_reserved_ids"  # session.info: {table: ids taken ahead for rows it will add}
NEXT_IDS = "gridbot_next_ids"  # session.info, SQLite: {table: no id below this one is free in this transaction}


async def reserve_ids(session: AsyncSession, model: Any, n: int) -> None:
    """Take `n` ids of `model`'s table ahead, in one statement, for rows the session adds
    later: each then gets its id without a flush of its own (give_id), and they are all
    written in one INSERT at the end. Unused ones are a gap in the ids, nothing more.
    PostgreSQL: values of the table's sequence. SQLite: the ids above the table's largest
    (_sqlite_ids)."""
    if n < 2:
        return
    table = model.__tablename__
    if dialect_name(session) == "postgresql":
        ids = (await session.execute(text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
                                     {"t": table, "n": n})).scalars().all()
    else:
        ids = await session.run_sync(_sqlite_ids, table, n)
    session.info.setdefault(RESERVED_IDS, {})[table] = list(reversed(ids))


def _sqlite_ids(session: Session, table: str, n: int) -> list[int]:
    """`n` ids nobody has used, on SQLite: above the table's largest id and above those this
    transaction gave out already. Every transaction there is BEGIN IMMEDIATE (bot.db), so it
    holds the database's one writer: no other transaction, of this process or another, can
    insert a row meanwhile. An INSERT of this transaction that leaves the id to SQLite takes
    the largest id + 1, so the table's largest is read again each time; only ids given out
    and not written yet (reserve_ids) could meet such an INSERT of the same table, and none
    is written that way."""
    nxt = session.info.setdefault(NEXT_IDS, {})
    top = session.execute(text(f'SELECT coalesce(max(id), 0) FROM "{table}"')).scalar_one()
    first = max(top + 1, nxt.get(table, 0))
    nxt[table] = first + n
    return list(range(first, first + n))


async def give_id(session: AsyncSession, obj: Any) -> int:
    """The id of a row just added to the session: one reserved for it, else learnt by a flush."""
    pool = session.info.get(RESERVED_IDS, {}).get(obj.__tablename__)
    if pool and obj.id is None:
        obj.id = pool.pop()
    else:
        await session.flush()
    return obj.id


_SERIAL: dict[type, tuple[str, str] | None] = {}  # mapped class -> (its integer id's attribute, table), or None


def _serial(cls: type) -> tuple[str, str] | None:
    if cls not in _SERIAL:
        mapper = inspect(cls)
        found = None
        if len(mapper.primary_key) == 1:
            col = mapper.primary_key[0]
            if isinstance(col.type, Integer) and col.autoincrement in (True, "auto") and col.default is None \
                    and col.server_default is None and not col.foreign_keys:
                found = (mapper.get_property_by_column(col).key, col.table.name)
        _SERIAL[cls] = found
    return _SERIAL[cls]


@event.listens_for(Session, "before_flush")
def _ids_before_flush(session: Session, flush_context, instances) -> None:
    """SQLite: new rows of a table that leave their id to the database, two or more in one
    flush, are given ids here (_sqlite_ids, or those reserved), so that they are written in
    one INSERT. Left to the database, each would be an INSERT … RETURNING of its own: SQLite
    cannot tie the ids of a multi-row INSERT to its rows, so SQLAlchemy writes them one by one."""
    if not session.new:
        return
    waiting: dict[str, list] = {}
    for obj in session.new:
        serial = _serial(type(obj))
        if serial is not None and getattr(obj, serial[0]) is None:
            waiting.setdefault(serial[1], []).append((obj, serial[0]))
    waiting = {t: objs for t, objs in waiting.items() if len(objs) > 1}
    if not waiting or session.get_bind().dialect.name != "sqlite":
        return
    for table, objs in waiting.items():
        # in the order they were added: the outbox sends a chat's messages in the order of their ids
        objs.sort(key=lambda o: inspect(o[0]).insert_order)
        pool = session.info.setdefault(RESERVED_IDS, {}).setdefault(table, [])  # the smallest last
        if (more := len(objs) - len(pool)) > 0:
            pool[:0] = reversed(_sqlite_ids(session, table, more))
        for obj, key in objs:
            setattr(obj, key, pool.pop())


@event.listens_for(Session, "after_transaction_end")
def _forget_ids(session: Session, transaction) -> None:
    """Ids taken ahead are the transaction's: on SQLite another may use them once it ends."""
    if transaction.parent is None:
        session.info.pop(NEXT_IDS, None)
        session.info.pop(RESERVED_IDS, None)


def upsert(session: AsyncSession, model: Any, index_elements: list[str], values: dict, update: dict):
    ins = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
    return ins(model).values(**values).on_conflict_do_update(index_elements=index_elements, set_=update)
