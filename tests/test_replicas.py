"""Two bot replicas on one database: each reminder, escalation and digest arrives once.

Both replicas are full BotRunners (their own engine, transport, outbox dispatcher and
APScheduler) in webhook mode against one fake Bot API; on PostgreSQL in CI, SQLite always.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.cases import service
from bot.outbox.models import OutboxMessage
from bot.runner import BotRunner, prepare_database
from scheduler.registry import run_job
from tests.conftest import TOKEN
from tests.fakebotapi import FakeBotAPI

LI, ZHAO, WANG = 1002, 2001, 9001


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_two_replicas_send_each_reminder_and_digest_once(framework, db_url, settings_for, clock):
    async with FakeBotAPI(token=TOKEN) as api:
        for chat in (LI, ZHAO, WANG, 1001, 1003, 2002, 2003, 2004, 3001, 9100):
            api.add_chat(chat)
        base = dict(framework=framework, telegram_api_base=api.base_url, webhook_host="127.0.0.1")
        settings = [settings_for(db_url, webhook_port=free_port(), **base) for _ in range(2)]
        engine = await prepare_database(settings[0])
        from bot.db import make_sessionmaker

        # three cases reported yesterday morning: by now each is overdue
        async with make_sessionmaker(engine)() as s, s.begin():
            for i in range(3):
                await service.create(session=s, now=clock.now - timedelta(days=3, hours=i), tz=settings[0].tz,
                                     reporter_id=WANG, report_chat_id=WANG, category_id="streetlight",
                                     description=f"路灯不亮 {i}", photos=[], address="香港中路12号", lat=None,
                                     lon=None, area_id="xianggang-even", share_contact=False, language="zh")
        await engine.dispose()
        # after the digest time: both replicas catch the day's digest up when they start
        clock.now = clock.now.replace(hour=3)  # 11:00 in Shanghai
        runners = [BotRunner(s, webhook=True, clock=clock) for s in settings]
        tasks = [asyncio.create_task(r.run()) for r in runners]
        try:
            await asyncio.wait_for(asyncio.gather(*(r.ready.wait() for r in runners)), 30)
            await asyncio.gather(*(run_job(r.core, "sweep") for r in runners))
            await asyncio.gather(*(run_job(r.core, "sweep") for r in runners))
            await asyncio.gather(*(run_job(r.core, "digest") for r in runners))
            for _ in range(200):
                async with runners[0].core.sessionmaker() as s:
                    left = (await s.execute(select(OutboxMessage.id).where(
                        OutboxMessage.status.in_(("pending", "in_flight"))))).first()
                if left is None:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
        finally:
            for r in runners:
                r.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)

        sent = Counter((c.params["chat_id"], c.text) for c in api.sent())
        twice = {k: n for k, n in sent.items() if n > 1}
        assert not twice, twice
        texts_li = [t for (chat, t), _ in sent.items() if int(chat) == LI]
        texts_zhao = [t for (chat, t), _ in sent.items() if int(chat) == ZHAO]
        assert sum(t.startswith("⚠️ 任务") and "已超期" in t for t in texts_li) == 3  # each overdue case told to the captain once
        assert texts_zhao, "the supervisor heard of the escalations"
        engine = await prepare_database(settings[0])
        async with make_sessionmaker(engine)() as s:
            digests = (await s.execute(select(OutboxMessage.chat_id, OutboxMessage.payload, OutboxMessage.status)
                                       .where(OutboxMessage.kind.like("digest%")))).all()
        await engine.dispose()
        per_chat = Counter(chat for chat, _, _ in digests)
        assert per_chat[LI] == 1 and all(n == 1 for n in per_chat.values())
        assert all(status == "sent" for _, _, status in digests), [(c, st) for c, _, st in digests]
        li_digest = next(p["text"] for chat, p, _ in digests if chat == LI)
        assert sum(1 for c in api.sent(LI) if c.params.get("text") == li_digest) == 1
