"""PostgreSQL connections are pinged on checkout only after they rested in the pool: under load
no transaction pays a round trip for it, and a connection the server dropped while it rested is
replaced before anyone uses it."""

from __future__ import annotations

import asyncio
import os

import pytest
from sqlalchemy import event, text

from bot import db
from bot.db import make_engine
from tests.conftest import PG_URL

# PostgreSQL's pool only; in CI (CI=true, where .ci/run starts PostgreSQL) they must run
pytestmark = pytest.mark.skipif(not PG_URL and not os.environ.get("CI"),
                                reason="needs GRIDBOT_TEST_POSTGRES_URL (run by .ci/run)")


def count_pings(engine) -> list[int]:
    pings: list[int] = []
    dialect = engine.sync_engine.dialect
    ping = dialect.do_ping

    def counted(dbapi_conn):
        pings.append(1)
        return ping(dbapi_conn)

    dialect.do_ping = counted
    return pings


async def test_a_connection_back_in_the_pool_a_moment_ago_is_not_pinged(monkeypatch):
    monkeypatch.setattr(db, "PING_IDLE", 5.0)
    engine = make_engine(PG_URL)
    pings = count_pings(engine)
    try:
        for _ in range(20):
            async with engine.connect() as conn:
                assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
        assert pings == []
        assert engine.sync_engine.pool.checkedin() == 1  # the last one used goes out again
    finally:
        await engine.dispose()


async def test_a_connection_the_server_dropped_while_it_rested_is_replaced_unseen(monkeypatch):
    monkeypatch.setattr(db, "PING_IDLE", 0.2)
    engine = make_engine(PG_URL)
    pings = count_pings(engine)
    errors: list[BaseException] = []
    event.listen(engine.sync_engine, "handle_error", lambda ctx: errors.append(ctx.original_exception))
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        other = make_engine(PG_URL, pool_pre_ping=False)
        try:
            async with other.connect() as conn:
                assert (await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})).scalar_one()
        finally:
            await other.dispose()
        await asyncio.sleep(0.3)  # rested longer than PING_IDLE
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid
        assert len(pings) == 1
        assert [e for e in errors if "terminat" not in str(e).lower() and "closed" not in str(e).lower()] == []
    finally:
        await engine.dispose()
