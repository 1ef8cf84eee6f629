"""Named database leases: at most one holder of a name at a time, across processes.

A lease is a row in `leases`, claimed by a conditional insert (the name is free) or a
conditional update (the lease lapsed, or we hold it already). A row count of 1 means we got
it; 0 means another process holds it. That works the same on SQLite and PostgreSQL: on
PostgreSQL the competing UPDATE waits for the row lock and re-checks its WHERE clause, so
two replicas never both win.

A lease only saves work: jobs stay correct without it (every message has a dedupe key and
every state change is made under a row lock or SQLite's single writer).
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core_models import Lease
from bot.sql import insert_ignore


def holder_name(obj: object | None = None) -> str:
    """A name unique to this process (and object, so two cores in one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{id(obj):x}"[:80]


async def acquire(sessionmaker: async_sessionmaker[AsyncSession], name: str, holder: str, ttl: timedelta,
                  now: datetime) -> bool:
    """Take or renew the lease `name` until now + ttl. True if we hold it now."""
    async with sessionmaker() as s, s.begin():
        return await take(s, name, holder, ttl, now)


async def take(s: AsyncSession, name: str, holder: str, ttl: timedelta, now: datetime) -> bool:
    """acquire() within the caller's transaction (which then holds the row: a competing
    replica's claim waits for its commit)."""
    expires = now + ttl
    inserted = await s.execute(insert_ignore(s, Lease).values(name=name, holder=holder, expires_at=expires))
    if inserted.rowcount == 1:
        return True
    taken = await s.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.expires_at <= now, Lease.holder == holder))
        .values(holder=holder, expires_at=expires)
        .execution_options(synchronize_session=False)
    )
    return taken.rowcount == 1


renew = acquire  # renewing is taking again while we still hold it


async def release(sessionmaker: async_sessionmaker[AsyncSession], name: str, holder: str) -> None:
    async with sessionmaker() as s, s.begin():
        await drop(s, name, holder)


async def drop(s: AsyncSession, name: str, holder: str) -> None:
    """release() within the caller's transaction."""
    await s.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder)
                    .execution_options(synchronize_session=False))


@asynccontextmanager
async def lease(sessionmaker: async_sessionmaker[AsyncSession], name: str, holder: str, ttl: timedelta,
                now: datetime) -> AsyncIterator[bool]:
    """`async with lease(...) as acquired:` — released on exit if it was acquired.

    If the holder dies, the lease lapses after `ttl`; choose it longer than the work takes
    (or renew it between batches).
    """
    acquired = await acquire(sessionmaker, name, holder, ttl, now)
    try:
        yield acquired
    finally:
        if acquired:
            await release(sessionmaker, name, holder)
