"""A getUpdates batch of many chats (a backlog after a restart or an outage) through the real
runner and both frameworks: its updates are stored and handled up to 32 in one write
transaction, each chat's in order, each answered once; a conversation that goes on within the
batch sees its own steps; a crash undoes only its chunk, which then goes the long way."""

from __future__ import annotations

import handlers
from sqlalchemy import select

from bot.app import TAKE_CHUNK
from bot.core_models import Conversation, InboxUpdate, Lease
from bot.i18n import Texts
from tests.fakebotapi import updates as U
from tests.harness import BotHarness
from tests.test_update_path import WriteLog, residents

QUESTION = "路灯不亮了找谁？"


def push_all(bot: BotHarness, ups: list[dict]) -> None:
    """Queued in one go (no await between them): the bot's next getUpdates takes them together."""
    for u in ups:
        bot.api.push_update(u)


async def test_a_backlog_of_many_chats_is_handled_in_a_few_write_transactions(bot: BotHarness, monkeypatch):
    real = handlers.dispatch
    order: dict[int, list[str]] = {}

    async def dispatch(ctx):
        order.setdefault(ctx.ev.chat.id, []).append(ctx.ev.text or "")
        return await real(ctx)

    monkeypatch.setattr(handlers, "dispatch", dispatch)
    people = residents(45)
    for p in people:
        bot.api.add_chat(p.id)
    twice = people[:6]  # these ask again in the same batch: handled after their first question
    mark = bot.api.mark()
    log = WriteLog(bot.core.engine)
    try:
        push_all(bot, [U.message(p, text=QUESTION) for p in people] + [U.message(p, text="/help") for p in twice])
        await bot.settle(timeout=30)
        await bot.delivered()
    finally:
        log.close()
    n = len(people) + len(twice)
    path = log.update_path()
    # stored and handled together: one transaction per chunk, not one (or three) per update
    assert 1 <= len(path) <= -(-n // TAKE_CHUNK) + 1, path
    assert all({"inbox", "outbox"} <= t for t in path), path
    # the questions' log rows take their ids ahead, all at once (PostgreSQL: from the sequence;
    # SQLite: above the table's largest), and new people need no look-up: no flush (an INSERT)
    # per question; the replies are written together (only /help, which reads the database,
    # flushes what came before it)
    assert log.inserts["faq_unanswered"] <= len(path) and log.inserts["people"] <= len(path), log.inserts
    assert log.inserts["outbox"] <= len(path) + len(twice), log.inserts
    for p in people:
        sent = bot.api.sent(p.id, since=mark)
        assert len(sent) == (2 if p in twice else 1), (p.id, [c.text for c in sent])
        assert order[p.id] == ([QUESTION, "/help"] if p in twice else [QUESTION])
    answer = bot.texts(people[-1].id, since=mark)[0]  # what the question got from the FAQ
    seconds = set()
    for p in twice:  # the answer, then the help (in the chat's order)
        first, second = bot.texts(p.id, since=mark)
        assert first == answer and second != answer
        seconds.add(second)
    assert len(seconds) == 1
    async with bot.core.sessionmaker() as s:
        rows = (await s.execute(select(InboxUpdate).where(InboxUpdate.chat_id.in_([p.id for p in people])))).scalars().all()
        leases = (await s.execute(select(Lease).where(Lease.name.like("chat:%")))).scalars().all()
    assert len(rows) == n and all(r.handled_at is not None and r.error is None and r.attempts == 1 for r in rows)
    # taken within the transaction and left free (no holder, lapsed) for when it committed
    assert [(x.name, x.holder) for x in leases if x.holder or x.expires_at > bot.core.clock()] == []


async def test_a_conversation_that_goes_on_within_the_batch_sees_its_own_steps(bot: BotHarness):
    """/report, the description, /cancel and a question, all in one batch: the description goes
    to the report (its conversation began two updates earlier, in the same transaction), the
    question after /cancel to the FAQ."""
    wang = U.TgUser(9101, "王芳")
    others = residents(5)
    for p in [wang, *others]:
        bot.api.add_chat(p.id)
    mark = bot.api.mark()
    push_all(bot, [U.message(p, text=QUESTION) for p in others[:2]]
             + [U.message(wang, text="/report"), U.message(wang, text="小区门口路灯坏了三天")]
             + [U.message(p, text=QUESTION) for p in others[2:]])
    await bot.settle(timeout=30)
    async with bot.core.sessionmaker() as s:
        st = await s.get(Conversation, (wang.id, wang.id))
    assert st is not None and st.flow == "report", st
    assert st.data.get("description") == "小区门口路灯坏了三天"
    faq_answers = [t for t in bot.texts(wang.id, since=mark) if "路灯" in t and "找" in t]
    assert faq_answers == []  # the description was not taken for a question
    mark2 = bot.api.mark()
    push_all(bot, [U.message(wang, text="/cancel"), U.message(wang, text=QUESTION)]
             + [U.message(p, text="/help") for p in others])
    await bot.settle(timeout=30)
    async with bot.core.sessionmaker() as s:
        assert await s.get(Conversation, (wang.id, wang.id)) is None
    after = bot.texts(wang.id, since=mark2)
    assert len(after) == 2, after
    asked = bot.texts(others[0].id, since=mark)[0]  # what the same question got from the FAQ
    assert after[1] == asked


async def test_a_crash_undoes_its_chunk_which_then_goes_the_long_way(bot: BotHarness, monkeypatch):
    """One handler in a batch of twelve crashes: nothing of the chunk is kept from the combined
    transaction; every update is handled again the long way, each answered exactly once, the
    crash recorded and its sender told."""
    real = handlers.dispatch
    calls: list[int] = []

    async def dispatch(ctx):
        calls.append(ctx.ev.chat.id)
        if ctx.ev.text == "崩溃":
            raise RuntimeError("handler bug")
        return await real(ctx)

    monkeypatch.setattr(handlers, "dispatch", dispatch)
    people = residents(12)
    for p in people:
        bot.api.add_chat(p.id)
    bad = people[5]
    mark = bot.api.mark()
    push_all(bot, [U.message(p, text="崩溃" if p is bad else QUESTION) for p in people])
    await bot.settle(timeout=30)
    await bot.delivered()
    for p in people:
        sent = bot.texts(p.id, since=mark)
        assert len(sent) == 1, (p.id, sent)
    assert bot.texts(bad.id, since=mark) == [Texts("zh")("core.error")]
    assert calls.count(bad.id) == 2  # once in the chunk's transaction, once the long way
    async with bot.core.sessionmaker() as s:
        rows = {r.chat_id: r for r in (await s.execute(select(InboxUpdate).where(
            InboxUpdate.chat_id.in_([p.id for p in people])))).scalars()}
    assert len(rows) == len(people) and all(r.handled_at is not None for r in rows.values())
    assert "handler bug" in rows[bad.id].error
    assert all(r.error is None for c, r in rows.items() if c != bad.id)


async def test_an_update_the_database_cannot_store_does_not_hold_back_its_batch(bot: BotHarness):
    """A text with a NUL character (PostgreSQL's JSON cannot hold one) in a batch of eight chats:
    the others are answered once each; that update is kept (as a failed stub where it cannot be
    stored) and nothing stays unhandled."""
    people = residents(8)
    for p in people:
        bot.api.add_chat(p.id)
    odd = people[3]
    mark = bot.api.mark()
    push_all(bot, [U.message(p, text="路灯\x00不亮" if p is odd else QUESTION) for p in people])
    await bot.settle(timeout=30)
    await bot.delivered()
    answer = bot.texts(people[0].id, since=mark)
    assert len(answer) == 1
    for p in people:
        if p is not odd:
            assert bot.texts(p.id, since=mark) == answer
    assert len(bot.texts(odd.id, since=mark)) <= 1
    async with bot.core.sessionmaker() as s:
        left = (await s.execute(select(InboxUpdate).where(InboxUpdate.handled_at.is_(None)))).scalars().all()
    assert left == []
