"""Per-chat order: a chat's messages leave strictly in order, even around retries."""

from __future__ import annotations

from datetime import timedelta

from bot.outbox import dispatcher as dispatcher_module
from bot.outbox.service import enqueue
from bot.transport.base import Outgoing
from tests.fakebotapi import updates as U
from tests.harness import BotHarness

X, Y = U.TgUser(41_001, "陈静"), U.TgUser(41_002, "杨磊")


async def test_a_message_waiting_to_be_retried_holds_back_the_later_ones_of_its_chat_only(db_url, settings_for):
    async with BotHarness("aiogram", db_url, settings_for) as bot:
        for u in (X, Y):
            bot.api.add_user(u)
        # the first message to X meets a 502 and waits a second for its retry
        bot.api.fail_next("sendMessage", status=502, chat_id=X.id)
        core = bot.core
        async with core.sessionmaker() as s, s.begin():
            await enqueue(session=s, msg=Outgoing(chat_id=X.id, text="请描述处理结果"), kind="reply", now=core.clock())
        core.dispatcher.kick()
        await bot.api.wait_for(lambda c: c.method == "sendMessage" and not c.ok, timeout=10)
        # queued while the first one waits for its retry: they must not overtake it
        async with core.sessionmaker() as s, s.begin():
            for text in ("请补充照片", "已办结"):
                await enqueue(session=s, msg=Outgoing(chat_id=X.id, text=text), kind="reply", now=core.clock())
            await enqueue(session=s, msg=Outgoing(chat_id=Y.id, text="你好"), kind="reply", now=core.clock())
        core.dispatcher.kick()
        await bot.api.wait_sent(X.id, count=3, timeout=15)
        assert bot.texts(X.id) == ["请描述处理结果", "请补充照片", "已办结"]
        failed = bot.api.calls_of("sendMessage", ok=False)
        assert len(failed) == 1
        first_y = bot.api.sent(Y.id)[0]
        # the other chat did not wait for X's retry
        assert first_y.time < bot.api.sent(X.id)[0].time


async def test_the_hold_is_bounded(core):
    """A row still failing long after it was queued no longer holds its chat's later rows."""
    now = core.clock()
    async with core.sessionmaker() as s, s.begin():
        await enqueue(session=s, msg=Outgoing(chat_id=X.id, text="old"), kind="reply",
                      now=now - dispatcher_module.ORDER_HOLD - timedelta(seconds=1))
        await enqueue(session=s, msg=Outgoing(chat_id=Y.id, text="recent"), kind="reply", now=now - timedelta(seconds=5))
    from sqlalchemy import update

    from bot.outbox.models import OutboxMessage

    async with core.sessionmaker() as s, s.begin():  # both waiting for a retry an hour from now
        await s.execute(update(OutboxMessage).values(next_attempt_at=now + timedelta(hours=1), attempts=5))
        await enqueue(session=s, msg=Outgoing(chat_id=X.id, text="x later"), kind="reply", now=now)
        await enqueue(session=s, msg=Outgoing(chat_id=Y.id, text="y later"), kind="reply", now=now)
    claimed = await core.dispatcher.claim()
    assert [r.payload["text"] for r in claimed] == ["x later"]
