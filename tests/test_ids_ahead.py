"""Ids given to new rows before they are written (bot.sql), so that a transaction's rows of a
table go out in one INSERT. On SQLite the database cannot tie the ids of a multi-row INSERT
to its rows, so rows left to it were written one INSERT each; there the ids come from above
the table's largest, which the transaction (holding the one writer) may hand out."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from sqlalchemy import event, func, insert, select

from bot.core_models import UnansweredQuestion
from bot.db import Base, make_engine, make_sessionmaker
from bot.models import import_all_models
from bot.sql import give_id, reserve_ids

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=timezone.utc)


def question(user: int) -> UnansweredQuestion:
    return UnansweredQuestion(at=NOW, user_id=user, query="路灯", normalized="路灯", kind="unknown")


class Inserts:
    def __init__(self, engine) -> None:
        self.n: Counter[str] = Counter()
        event.listen(engine.sync_engine, "before_cursor_execute", self._exec)

    def _exec(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO FAQ_UNANSWERED"):
            self.n["faq_unanswered"] += 1


async def _engine(db_url: str):
    import_all_models()
    engine = make_engine(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    return engine


async def test_new_rows_of_a_table_are_written_in_one_insert(db_url):
    engine = await _engine(db_url)
    try:
        count = Inserts(engine)
        async with make_sessionmaker(engine)() as s, s.begin():
            s.add_all([question(u) for u in range(7)])
            await s.flush()
        assert count.n["faq_unanswered"] == 1
        async with make_sessionmaker(engine)() as s:
            ids = sorted((await s.execute(select(UnansweredQuestion.id))).scalars())
        assert len(ids) == len(set(ids)) == 7
    finally:
        await engine.dispose()


async def test_ids_taken_ahead_never_meet_rows_written_meanwhile(db_url):
    """Reserved ids, a flush of rows left without one, an INSERT that leaves the id to the
    database, a second flush, and a second session after the commit: no id is given twice,
    none is lost to a collision, and the reserved rows are written together."""
    engine = await _engine(db_url)
    sm = make_sessionmaker(engine)
    try:
        count = Inserts(engine)
        async with sm() as s, s.begin():
            await reserve_ids(s, UnansweredQuestion, 4)
            given = []
            for u in range(5):  # one more than reserved: that one is flushed to learn its id
                q = question(u)
                s.add(q)
                given.append(await give_id(s, q))
            s.add_all([question(u) for u in range(10, 13)])
            await s.flush()
            await s.execute(insert(UnansweredQuestion).values(at=NOW, user_id=99, query="x", normalized="x"))
            s.add_all([question(u) for u in range(20, 23)])
            await s.flush()
        assert len(set(given)) == 5
        async with sm() as s, s.begin():  # what was taken ahead ended with its transaction
            await reserve_ids(s, UnansweredQuestion, 3)
            for u in range(30, 33):
                q = question(u)
                s.add(q)
                given.append(await give_id(s, q))
        async with sm() as s:
            ids = list((await s.execute(select(UnansweredQuestion.id))).scalars())
            n = await s.scalar(select(func.count()).select_from(UnansweredQuestion))
        assert n == 5 + 3 + 1 + 3 + 3 == len(set(ids))
        assert set(given) <= set(ids)
        # 4 reserved + the fifth's own, the 3 left without, the statement, the 3 after it, the 3
        # reserved in the second transaction: a few INSERTs, not one per row
        assert count.n["faq_unanswered"] <= 7, count.n
    finally:
        await engine.dispose()


async def test_two_engines_on_one_sqlite_file_take_ids_in_turn(tmp_path):
    """Two processes' engines on one file (two replicas): each transaction holds the writer,
    so the ids one hands out ahead are never written by the other."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    a = await _engine(url)
    b = make_engine(url)
    try:
        for round_ in range(3):
            for engine in (a, b):
                async with make_sessionmaker(engine)() as s, s.begin():
                    await reserve_ids(s, UnansweredQuestion, 3)
                    for u in range(3):
                        q = question(round_ * 10 + u)
                        s.add(q)
                        await give_id(s, q)
                    s.add_all([question(100 + u) for u in range(2)])
        async with make_sessionmaker(a)() as s:
            ids = list((await s.execute(select(UnansweredQuestion.id))).scalars())
        assert len(ids) == len(set(ids)) == 3 * 2 * 5
    finally:
        await a.dispose()
        await b.dispose()
