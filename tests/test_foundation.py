"""The foundation, through the real aiogram and python-telegram-bot stacks against the fake Bot API."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from bot.core_models import InboxUpdate
from tests.conftest import alice, sun, wang
from tests.fakebotapi import updates as U
from tests.harness import BotHarness


async def test_it_welcomes_a_resident_in_chinese(bot):
    replies = await bot.say(wang, "/start")
    assert len(replies) == 1
    assert "王芳" in replies[0].text and "/report" in replies[0].text


async def test_it_speaks_english_to_english_users(bot):
    replies = await bot.say(alice, "/start")
    assert "Hello, Alice" in replies[0].text


async def test_help_lists_commands_for_the_role(bot):
    resident_help = (await bot.say(wang, "/help"))[0].text
    admin_help = (await bot.say(sun, "/help"))[0].text
    assert "/report" in resident_help and "/invite" not in resident_help
    assert "/invite" in admin_help and "/staff" in admin_help


async def test_it_registers_commands_in_both_languages(bot):
    calls = bot.api.calls_of("setMyCommands", ok=True)
    langs = {c.params.get("language_code") for c in calls}
    assert langs == {None, "en"}
    zh = next(c for c in calls if c.params.get("language_code") is None)
    assert any(cmd["command"] == "report" and "上报" in cmd["description"] for cmd in zh.params["commands"])


async def test_lang_switches_the_catalog(bot):
    replies = await bot.say(wang, "/lang")
    await bot.press(wang, replies[-1], "lang:en")
    assert "Hello" in (await bot.say(wang, "/start"))[0].text
    await bot.say(wang, "/lang zh")
    assert "您好" in (await bot.say(wang, "/start"))[0].text


async def test_unknown_command_gets_a_polite_answer(bot):
    replies = await bot.say(wang, "/frobnicate")
    assert "/frobnicate" in replies[0].text and "/help" in replies[0].text


async def test_it_escapes_html_in_user_text(bot):
    replies = await bot.say(wang, "/frob<b>x&y")
    # the fake server rejects malformed HTML: arriving at all means it was escaped
    assert replies and "&lt;b&gt;" in replies[0].params["text"]


async def test_unsupported_media_gets_an_answer(bot):
    replies = await bot.say(wang, None, document={"file_id": "doc1", "file_unique_id": "d1", "file_name": "a.pdf"})
    assert replies and ("document" in replies[0].text)


async def test_a_forged_button_changes_nothing(bot):
    mark = bot.api.mark()
    replies = await bot.say(wang, "/start")
    await bot.push(U.callback(wang, replies[0].result, "zz:forged"))
    await bot.settle()
    answers = bot.api.calls_of("answerCallbackQuery", since=mark)
    assert answers and answers[-1].params.get("show_alert") in (True, "true")


async def test_an_update_delivered_twice_is_handled_once(bot):
    upd = U.message(wang, text="/start")
    upd["update_id"] = 777_001
    mark = bot.api.mark()
    bot.api.push_update(dict(upd))
    await bot.settle()
    bot.api.push_update(dict(upd))
    await bot.settle()
    assert len(bot.api.sent(wang.id, since=mark)) == 1


async def test_updates_of_one_chat_are_handled_in_order(bot):
    """Two quick messages must not race the conversation state."""
    bot.api.set_latency(0.05)
    try:
        mark = bot.api.mark()
        for text in ("/report", "/cancel", "/my"):
            bot.api.push_update(U.message(wang, text=text))
        await bot.settle()
    finally:
        bot.api.set_latency(0)
    texts = [c.text for c in bot.api.sent(wang.id, since=mark)]
    assert len(texts) == 3
    assert "类别" in texts[0]  # report asks the category
    assert texts[1] == "已取消。"
    assert "还没有上报" in texts[2]


async def test_groups_only_hear_when_addressed(bot):
    group = U.group_chat(-100500, "幸福小区业主群")
    mark = bot.api.mark()
    await bot.say(wang, "今天天气不错", chat=group)
    assert bot.api.sent(-100500, since=mark) == []
    replies = await bot.say(wang, "/report", chat=group)
    assert replies and "私聊" in replies[0].text
    assert any("start=report" in (b or "") for b in bot.buttons(replies[0]))


async def test_every_update_is_recorded_in_the_inbox(bot):
    await bot.say(wang, "/start")
    async with bot.core.sessionmaker() as s:
        n, unhandled = (await s.execute(select(func.count(), func.count(InboxUpdate.update_id).filter(
            InboxUpdate.handled_at.is_(None))))).one()
    assert n >= 1 and unhandled == 0


async def test_it_survives_an_api_outage_without_losing_replies(bot):
    with bot.api.outage(502):
        bot.api.push_update(U.message(wang, text="/start"))
        # getUpdates still works during this outage; the reply waits in the outbox
        for _ in range(100):
            if not bot.api.pending_updates():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert bot.api.sent(wang.id) == []
        assert bot.api.calls_of("sendMessage", ok=False)  # it did try
    await bot.delivered()
    assert len(bot.api.sent(wang.id)) == 1


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_webhook_mode_checks_the_secret_and_answers_after_recording(framework, db_url, settings_for):
    import aiohttp

    from bot.runner import BotRunner
    from tests.conftest import TOKEN
    from tests.fakebotapi import FakeBotAPI

    port = free_port()
    async with FakeBotAPI(token=TOKEN) as api:
        settings = settings_for(db_url, framework=framework, telegram_api_base=api.base_url,
                                webhook_url="https://gridbot.example.test", webhook_secret="s3cret-token",
                                webhook_host="127.0.0.1", webhook_port=port)
        runner = BotRunner(settings, webhook=True, with_scheduler=False)
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(runner.ready.wait(), 20)
        await api.wait_for(lambda c: c.method == "setWebhook", timeout=10)
        hook = api.calls_of("setWebhook")[-1].params
        assert hook["url"] == "https://gridbot.example.test/telegram/webhook" and hook["secret_token"] == "s3cret-token"
        upd = U.message(wang, text="/start", message_id=1)
        upd["update_id"] = 4242
        api.add_chat(wang.id)
        url = f"http://127.0.0.1:{port}/telegram/webhook"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=upd, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}) as r:
                assert r.status == 403
            async with http.post(url, json=upd, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-token"}) as r:
                assert r.status == 200
            async with runner.core.sessionmaker() as s:
                assert await s.get(InboxUpdate, 4242) is not None  # recorded before the 200
        await api.wait_sent(wang.id, timeout=10)
        runner.stop()
        await asyncio.wait_for(task, 30)
        assert api.calls_of("deleteWebhook") == []  # rolling restarts keep the webhook


async def test_polling_after_webhook_mode_keeps_the_pending_updates(framework, db_url, settings_for):
    from tests.conftest import TOKEN
    from tests.fakebotapi import FakeBotAPI

    async with FakeBotAPI(token=TOKEN) as api:
        api.webhook = {"url": "https://old.example.test/hook", "max_connections": 40, "secret_token": None,
                       "allowed_updates": None, "has_custom_certificate": False, "ip_address": None}
        api.push_update(U.message(wang, text="/start"))
        async with BotHarness(framework, db_url, settings_for, api=api) as h:
            await h.settle()
            assert len(api.sent(wang.id)) == 1
            drop = api.calls_of("deleteWebhook")[-1].params.get("drop_pending_updates")
            assert drop in (None, False, "false")
