"""The update path at a steady pace, through the real runner: an update that arrives alone is
stored and handled in one write transaction (inbox row, chat lease, handler, outbox rows, which
go to the dispatcher at commit, already claimed), and what does not fit that (an earlier update of the chat still waiting, another replica holding the
chat, a handler that crashes) still goes the long way, in order, nothing lost."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import timedelta

import handlers
from sqlalchemy import event, select

from bot.core_models import InboxUpdate, Lease
from bot.i18n import Texts
from bot.sql import insert_ignore
from tests.fakebotapi import updates as U
from tests.harness import BotHarness

WRITE = re.compile(r"^\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)", re.I)


class WriteLog:
    """The tables each committed write transaction of an engine touched."""

    def __init__(self, engine) -> None:
        self.engine = engine.sync_engine
        self.txns: list[set[str]] = []
        self.inserts: Counter[str] = Counter()  # INSERT statements per table
        event.listen(self.engine, "begin", self._begin)
        event.listen(self.engine, "before_cursor_execute", self._exec)
        event.listen(self.engine, "commit", self._commit)

    def close(self) -> None:
        event.remove(self.engine, "begin", self._begin)
        event.remove(self.engine, "before_cursor_execute", self._exec)
        event.remove(self.engine, "commit", self._commit)

    def _begin(self, conn) -> None:
        conn.info["test_tables"] = set()

    def _exec(self, conn, cursor, statement, parameters, context, executemany) -> None:
        m = WRITE.match(statement)
        if m:
            conn.info.setdefault("test_tables", set()).add(m.group(1).lower())
            if statement.lstrip()[:6].upper() == "INSERT":
                self.inserts[m.group(1).lower()] += 1

    def _commit(self, conn) -> None:
        tables = conn.info.pop("test_tables", set())
        if tables:
            self.txns.append(tables)

    def update_path(self) -> list[set[str]]:
        """Transactions of the update path (they store, claim or handle updates, or hold chats)."""
        return [t for t in self.txns if t & {"inbox", "leases"}]


def residents(n: int) -> list[U.TgUser]:
    return [U.TgUser(20_000 + i, f"居民{i}") for i in range(n)]


async def test_an_update_that_arrives_alone_costs_one_write_transaction(bot: BotHarness):
    """Ten questions from ten residents one after another (each its own getUpdates batch): ten
    write transactions on the update path, each storing the update and writing its reply."""
    people = residents(10)
    dispatcher = bot.core.dispatcher
    claimed: list[int] = []
    claim = dispatcher.claim

    async def counted_claim(*a, **kw):
        rows = await claim(*a, **kw)
        claimed.extend(r.chat_id for r in rows)
        return rows

    kicks: list[int] = []
    kick = dispatcher.kick

    def counted_kick():
        kicks.append(1)
        kick()

    dispatcher.claim, dispatcher.kick = counted_claim, counted_kick
    log = WriteLog(bot.core.engine)
    try:
        for person in people:
            bot.api.add_chat(person.id)
            replies = await bot.say(person, "路灯不亮了找谁？")
            assert replies, f"no reply to {person.id}"
    finally:
        log.close()
        del dispatcher.claim, dispatcher.kick
    path = log.update_path()
    assert len(path) == len(people), path
    assert all({"inbox", "outbox"} <= t for t in path), path  # stored and answered together
    # the replies were handed to the dispatcher at commit, claimed already: no claim took them
    assert not set(claimed) & {p.id for p in people}, claimed
    # nor did the dispatcher look for due rows after them: it was handed all there was
    assert kicks == []
    async with bot.core.sessionmaker() as s:
        rows = (await s.execute(select(InboxUpdate).where(InboxUpdate.chat_id.in_([p.id for p in people])))).scalars().all()
        leases = (await s.execute(select(Lease).where(Lease.name.like("chat:%")))).scalars().all()
    assert len(rows) == len(people) and all(r.handled_at is not None and r.error is None for r in rows)
    # taken within the transaction and left free (no holder, lapsed) for when it committed
    assert [(x.name, x.holder) for x in leases if x.holder or x.expires_at > bot.core.clock()] == []


async def test_an_earlier_update_still_waiting_goes_first(bot: BotHarness, monkeypatch):
    """Another replica stored an update of wang's chat and died before handling it. wang's next
    update is not handled ahead of it: both are handled, the earlier one first."""
    real = handlers.dispatch
    order: list[int] = []

    async def dispatch(ctx):
        order.append(ctx.ev.update_id)
        return await real(ctx)

    monkeypatch.setattr(handlers, "dispatch", dispatch)
    wang = U.TgUser(9001, "王芳")
    bot.api.add_chat(wang.id)
    earlier = U.message(wang, text="/help")
    earlier["update_id"], earlier["message"]["message_id"] = 5, 500
    core = bot.core
    async with core.sessionmaker() as s, s.begin():
        await s.execute(insert_ignore(s, InboxUpdate).values(update_id=5, chat_id=wang.id, payload=earlier,
                                                             received_at=core.clock(), attempts=0))
    later = U.message(wang, text="/start")
    later["update_id"] = 6
    bot.api.push_update(later)
    await bot.settle()
    assert order == [5, 6]
    async with core.sessionmaker() as s:
        rows = (await s.execute(select(InboxUpdate).where(InboxUpdate.chat_id == wang.id))).scalars().all()
    assert len(rows) == 2 and all(r.handled_at is not None and r.error is None for r in rows)


async def test_a_chat_held_by_another_replica_is_left_to_it(bot: BotHarness):
    """While another replica holds wang's chat, his update is stored, not handled here; once
    that lease lapses, the inbox sweep hands it over and it is answered."""
    wang = U.TgUser(9001, "王芳")
    bot.api.add_chat(wang.id)
    core = bot.core
    async with core.sessionmaker() as s, s.begin():
        await s.execute(insert_ignore(s, Lease).values(name=f"chat:{wang.id}", holder="elsewhere",
                                                       expires_at=core.clock() + timedelta(seconds=2)))
    mark = bot.api.mark()
    upd = bot.api.push_update(U.message(wang, text="/start"))
    deadline = asyncio.get_running_loop().time() + 15
    while bot.api.pending_updates() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    async with core.sessionmaker() as s:
        row = await s.get(InboxUpdate, upd["update_id"])
    assert row is not None and row.handled_at is None  # stored, and left to the holder
    assert bot.api.sent(wang.id, since=mark) == []
    await bot.settle(timeout=20)  # the lease lapses, the sweep takes the chat
    assert bot.api.sent(wang.id, since=mark)


async def test_a_handler_that_crashes_is_recorded_and_the_next_update_handled(bot: BotHarness, monkeypatch):
    """A crash in the handler undoes the whole transaction, storing included; the update then
    goes the long way: stored, handled again, its failure kept, the user told; the bot goes on."""
    real = handlers.dispatch
    calls: list[str] = []

    async def dispatch(ctx):
        calls.append(ctx.ev.text)
        if ctx.ev.text == "崩溃":
            raise RuntimeError("handler bug")
        return await real(ctx)

    monkeypatch.setattr(handlers, "dispatch", dispatch)
    wang = U.TgUser(9001, "王芳")
    bot.api.add_chat(wang.id)
    replies = await bot.say(wang, "崩溃")
    assert [c.params["text"] for c in replies] == [Texts("zh")("core.error")]
    assert await bot.say(wang, "/start")
    async with bot.core.sessionmaker() as s:
        rows = (await s.execute(select(InboxUpdate).where(InboxUpdate.chat_id == wang.id)
                                .order_by(InboxUpdate.update_id))).scalars().all()
    assert [r.error is not None for r in rows] == [True, False]
    assert "handler bug" in rows[0].error and rows[0].handled_at is not None
    assert calls.count("崩溃") == 2  # once in the combined transaction, once the long way


async def test_the_start_rehearses_a_question_and_keeps_nothing_of_it(framework, db_url, settings_for, monkeypatch):
    """Before it is ready the bot handles one made-up question through its framework and the
    update path's transaction, then rolls it back (its statements are compiled and prepared
    there, not in a resident's first update): no row, no message of it remains, and the first
    real question is answered as usual."""
    from sqlalchemy import func

    from bot.app import REHEARSAL_USER
    from bot.core_models import UnansweredQuestion
    from bot.outbox.models import OutboxMessage
    from bot.people.models import Person

    real = handlers.dispatch
    seen: list[int] = []

    async def dispatch(ctx):
        seen.append(ctx.ev.chat.id)
        return await real(ctx)

    monkeypatch.setattr(handlers, "dispatch", dispatch)
    async with BotHarness(framework, db_url, settings_for) as bot:
        assert seen == [REHEARSAL_USER]
        async with bot.core.sessionmaker() as s:
            assert await s.get(Person, REHEARSAL_USER) is None
            for model in (InboxUpdate, UnansweredQuestion, OutboxMessage):
                assert (await s.execute(select(func.count()).select_from(model))).scalar_one() == 0, model
        wang = U.TgUser(9101, "王芳")
        bot.api.add_chat(wang.id)
        replies = await bot.say(wang, "路灯不亮了找谁？")
        assert replies and seen == [REHEARSAL_USER, wang.id]
        await bot.settle()
        assert bot.api.sent(REHEARSAL_USER) == []
        assert bot.core.processed == 1
