"""SQLite's writer queue (bot/db.py, _SqliteWriter): transactions of one process take turns; a
transaction that would wait for the turn its own task (or a task awaiting it) holds fails at
once instead of stalling for the busy timeout; and the FAQ matcher built lazily inside a
handler's transaction does not read the database in it."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import func, select, text

from bot.app import Core
from bot.db import WriterReentryError, make_engine, make_sessionmaker

GUARD = 8.0  # far below the 30 s busy timeout the trap used to wait


@pytest.fixture
async def sm(tmp_path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'writer.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    yield make_sessionmaker(engine)
    await engine.dispose()


async def _count(sm) -> int:
    async with sm() as s:
        return (await s.execute(text("SELECT count(*) FROM t"))).scalar()


async def _insert(sm, x: int) -> None:
    async with sm() as s, s.begin():
        await s.execute(text("INSERT INTO t VALUES (:x)"), {"x": x})


async def test_a_second_session_in_the_task_holding_the_writer_fails_at_once(sm):
    async def work():
        async with sm() as s, s.begin():
            await s.execute(text("INSERT INTO t VALUES (1)"))
            for write in (False, True):  # even a read: its first statement begins a transaction
                with pytest.raises(WriterReentryError, match="SQLite's writer, which this task holds"):
                    async with sm() as inner:
                        await inner.execute(text("INSERT INTO t VALUES (2)" if write else "SELECT 1"))
            await s.execute(text("INSERT INTO t VALUES (3)"))  # the outer transaction goes on

    t0 = time.perf_counter()
    await asyncio.wait_for(work(), GUARD)
    assert time.perf_counter() - t0 < 1
    assert await _count(sm) == 2
    await _insert(sm, 4)  # and the queue is free again
    assert await _count(sm) == 3


@pytest.mark.parametrize("how", ["await", "gather", "wait_for", "taskgroup", "awaited_later"])
async def test_a_child_task_the_transaction_waits_for_fails_at_once(sm, how):
    async def work():
        async with sm() as s, s.begin():
            await s.execute(text("INSERT INTO t VALUES (1)"))
            if how == "await":
                await asyncio.create_task(_insert(sm, 2))
            elif how == "gather":
                await asyncio.gather(_insert(sm, 2))
            elif how == "wait_for":
                await asyncio.wait_for(_insert(sm, 2), 60)
            elif how == "taskgroup":
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(_insert(sm, 2))
            else:  # the child queues while the parent does other work, then the parent awaits it
                child = asyncio.create_task(_insert(sm, 2))
                await asyncio.sleep(0.1)
                await s.execute(text("SELECT 1"))
                await child

    t0 = time.perf_counter()
    with pytest.raises((WriterReentryError, ExceptionGroup)) as raised:
        await asyncio.wait_for(work(), GUARD)
    error = raised.value.exceptions[0] if isinstance(raised.value, ExceptionGroup) else raised.value
    assert isinstance(error, WriterReentryError) and "which awaits this one" in str(error)
    assert time.perf_counter() - t0 < (3 if how == "awaited_later" else 1)
    assert await _count(sm) == 0  # rolled back


async def test_other_tasks_still_take_turns(sm):
    """A task started in a transaction and not awaited by it waits for the commit; many
    transactions at once all go through."""
    async with sm() as s, s.begin():
        await s.execute(text("INSERT INTO t VALUES (1)"))
        later = asyncio.create_task(_insert(sm, 2))
        await asyncio.sleep(0.2)
        assert not later.done()  # in line behind this transaction
    await asyncio.wait_for(later, GUARD)
    await asyncio.wait_for(asyncio.gather(*(_insert(sm, 3) for _ in range(100))), GUARD)
    assert await _count(sm) == 102


async def test_the_matcher_built_inside_a_handlers_transaction_reads_the_database_after_it(core: Core):
    """Core.match with no matcher yet, in a transaction (as a handler calls it): answered at once
    without reading the database in it; the wordings admins linked are read once the
    transaction is over and the index rebuilt with them."""
    from bot.core_models import FaqAlternate

    async with core.sessionmaker() as s, s.begin():
        s.add(FaqAlternate(entry_id="fitness-equipment", text="跑步机坏了", added_at=core.clock(), added_by=9100))
    core._matcher, core.faq_extra = None, {}
    async with core.sessionmaker() as s, s.begin():
        await s.execute(select(func.count()).select_from(FaqAlternate))
        m = await asyncio.wait_for(core.match("家里的旧沙发不要了，大件垃圾怎么扔？"), GUARD)
        assert m.decision == "answer"
        assert "跑步机坏了" not in core.matcher.by_id["fitness-equipment"].alternates
    await asyncio.wait_for(core._learning, GUARD)
    assert core.faq_extra == {"fitness-equipment": ["跑步机坏了"]}
    assert "跑步机坏了" in core.matcher.by_id["fitness-equipment"].alternates
