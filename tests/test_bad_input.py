"""What bad input gets: webhook bodies that are not quite updates, /case with odd numbers,
names longer than their columns."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bot.runner import BotRunner
from tests.conftest import TOKEN
from tests.fakebotapi import FakeBotAPI
from tests.fakebotapi import updates as U
from tests.harness import BotHarness
from tests.test_reliability import inbox, listening
from tests.test_restart import wait_until
from tests.test_replicas import free_port

wang = U.TgUser(9001, "王芳")


async def test_webhook_acknowledges_every_update_and_refuses_what_is_not_one(db_url, settings_for, caplog):
    port = free_port()
    async with FakeBotAPI(token=TOKEN) as api:
        api.add_user(wang)
        settings = settings_for(db_url, framework="ptb", telegram_api_base=api.base_url,
                                webhook_url="https://gridbot.example.test", webhook_host="127.0.0.1", webhook_port=port)
        runner = BotRunner(settings, webhook=True, with_scheduler=False)
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(runner.ready.wait(), 60)
        await wait_until(lambda: listening(port), 30, "the webhook server did not listen")
        url = f"http://127.0.0.1:{port}/telegram/webhook"
        bad_member = U.my_chat_member(wang, U.group_chat(-100555, "群"), new_status="administrator")
        for k in [k for k in bad_member["my_chat_member"]["new_chat_member"] if k.startswith("can_")]:
            del bad_member["my_chat_member"]["new_chat_member"][k]
        bodies = {
            "not json": (b"<html>hello</html>", 400),
            "json, no update": (b'{"hello": 1}', 400),
            "a list": (b"[1, 2]", 400),
            "id not a number": (b'{"update_id": "7"}', 400),
            "NaN": (b'{"update_id": NaN}', 400),
            "id out of range": (b'{"update_id": 99999999999999999999999, "message": {}}', 200),
            "negative id": (b'{"update_id": -5}', 200),
            "chat id out of range": (b'{"update_id": 901, "message": {"message_id": 1, "date": 0, '
                                     b'"chat": {"id": 99999999999999999999999, "type": "private"}}}', 200),
            "garbage message": (b'{"update_id": 902, "message": "nonsense"}', 200),
        }
        try:
            async with aiohttp.ClientSession() as http:
                for name, (body, want) in bodies.items():
                    async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                        assert r.status == want, (name, r.status, await r.text())
                upd = dict(bad_member, update_id=903)
                async with http.post(url, json=upd) as r:
                    assert r.status == 200
                good = dict(U.message(wang, text="/start"), update_id=904)
                good["message"].update(message_id=5, date=0)
                async with http.post(url, json=good) as r:
                    assert r.status == 200
            await api.wait_sent(wang.id, timeout=30)
            for _ in range(100):
                rows = await inbox(db_url)
                if all(rows[i].handled_at is not None for i in (901, 902, 903, 904) if i in rows):
                    break
                await asyncio.sleep(0.1)
        finally:
            runner.stop()
            await asyncio.wait_for(task, 30)
    assert set(rows) == {901, 902, 903, 904}
    assert rows[903].error and rows[903].error.startswith("transport")  # stored, then failed alone
    assert rows[904].error is None and rows[904].handled_at is not None
    assert all(rows[i].handled_at is not None for i in (901, 902))


@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_odd_case_numbers_and_very_long_names(framework, db_url, settings_for):
    async with BotHarness(framework, db_url, settings_for) as bot:
        for arg in ("99999999999999999999999", "2147483648", "²", "١٢"):
            replies = await bot.say(wang, f"/case {arg}")
            assert len(replies) == 1 and "出了点问题" not in (replies[0].text or ""), (arg, replies[0].text)
        long = U.TgUser(9003, "长" * 300, last_name="名" * 300, username="u" * 32)
        replies = await bot.say(long, "/start")
        assert replies and "出了点问题" not in (replies[0].text or "")
