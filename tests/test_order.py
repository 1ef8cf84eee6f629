"""Per-chat order: a chat's messages leave strictly in order, even around retries."""

from __future__ import annotations

from datetime import timedelta

from bot.outbox import dispatcher as dispatcher_module
from bot.outbox.service import enqueue
from bot.transport.base import Outgoing
from tests.fakebotapi import updates as U
from tests.harness import BotHarness

X, Y = U.TgUser(41_001, "陈静"), U.TgUser(41_002, "杨磊")


async def held_for_a_retry(bot: BotHarness, text: str) -> None:
    """A message to X that meets a 502 and waits a second for its retry."""
    bot.api.fail_next("sendMessage", status=502, chat_id=X.id)
    core = bot.core
    async with core.sessionmaker() as s, s.begin():
        await enqueue(session=s, msg=Outgoing(chat_id=X.id, text=text), kind="reply", now=core.clock())
    core.dispatcher.kick()
    await bot.api.wait_for(lambda c: c.method == "sendMessage" and not c.ok and c.chat_id in (X.id, str(X.id)),
                           timeout=10)


async def test_a_message_waiting_to_be_retried_holds_back_the_later_ones_of_its_chat_only(db_url, settings_for):
    async with BotHarness("aiogram", db_url, settings_for) as bot:
        for u in (X, Y):
            bot.api.add_user(u)
        await held_for_a_retry(bot, "请描述处理结果")
        core = bot.core
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


async def test_a_question_asked_while_its_chat_has_a_message_waiting_is_answered_after_it(db_url, settings_for):
    """A reply goes straight to the dispatcher at commit only when nothing of its chat is queued
    or under way; behind a message waiting for its retry it takes its turn, for a question that
    arrives alone and for one in a batch with another chat's."""
    async with BotHarness("aiogram", db_url, settings_for) as bot:
        for u in (X, Y):
            bot.api.add_user(u)
        await held_for_a_retry(bot, "请描述处理结果")
        await bot.say(X, "路灯不亮了找谁？")
        await bot.api.wait_sent(X.id, count=2, timeout=15)
        texts = bot.texts(X.id)
        assert texts[0] == "请描述处理结果" and len(texts) == 2, texts
        # again, the question in one batch with another chat's, which is answered at once
        await held_for_a_retry(bot, "请补充照片")
        for user, text in ((Y, "路灯不亮了找谁？"), (X, "垃圾分类怎么分？")):  # one getUpdates batch
            bot.api.push_update(U.message(user, text=text))
        await bot.api.wait_sent(X.id, count=4, timeout=15)
        texts = bot.texts(X.id)
        assert texts[2] == "请补充照片" and len(texts) == 4, texts
        assert bot.api.sent(Y.id)[0].time < bot.api.sent(X.id)[2].time


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


async def test_webhook_posts_of_one_chat_in_parallel_are_handled_in_update_id_order(db_url, settings_for):
    """Telegram posts updates in parallel (max_connections): one chat's updates may be stored
    in another order than their ids; they are handled in update_id order all the same."""
    import asyncio
    import re

    import aiohttp

    from bot.runner import BotRunner
    from tests.conftest import TOKEN
    from tests.fakebotapi import FakeBotAPI
    from tests.test_reliability import listening
    from tests.test_replicas import free_port
    from tests.test_restart import wait_until

    users = [U.TgUser(42_000 + i, f"居民{i}") for i in range(20)]
    per_chat = 4
    port = free_port()
    async with FakeBotAPI(token=TOKEN) as api:
        for u in users:
            api.add_user(u)
        settings = settings_for(db_url, framework="aiogram", telegram_api_base=api.base_url,
                                webhook_url="https://gridbot.example.test", webhook_host="127.0.0.1", webhook_port=port)
        runner = BotRunner(settings, webhook=True, with_scheduler=False)
        task = asyncio.create_task(runner.run())
        try:
            await asyncio.wait_for(runner.ready.wait(), 60)
            await wait_until(lambda: listening(port), 30, "the webhook server did not listen")
            url = f"http://127.0.0.1:{port}/telegram/webhook"
            uid = 0
            async with aiohttp.ClientSession() as http:
                async def post(update):
                    async with http.post(url, json=update) as r:
                        assert r.status == 200

                posts = []
                for k in range(1, per_chat + 1):
                    for u in users:
                        uid += 1
                        upd = dict(U.message(u, text=f"/case {k}"), update_id=uid)
                        upd["message"].update(message_id=uid, date=0)
                        posts.append(asyncio.create_task(post(upd)))
                        await asyncio.sleep(0)  # sent in id order, answered in any
                await asyncio.gather(*posts)

            async def answered():
                return all(len(api.sent(u.id)) >= per_chat for u in users)

            await wait_until(answered, 60, "not every update was answered")
        finally:
            runner.stop()
            await asyncio.wait_for(task, 30)
    for u in users:
        refs = [int(m) for c in api.sent(u.id) for m in re.findall(r"#(\d+)", c.text or "")]
        assert refs == list(range(1, per_chat + 1)), (u.id, refs)
