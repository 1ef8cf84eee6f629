"""A Bot API outage of a minute delays a push; it never loses it or sends it twice."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from bot.cases.models import Case
from tests.conftest import li, wang
from tests.fakebotapi import updates as U
from tests.harness import BotHarness


@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_a_minute_of_502_loses_nothing(framework, db_url, settings_for, clock):
    async with BotHarness(framework, db_url, settings_for, clock=clock) as bot:
        bot.api.add_chat(li.id)
        confirm = (await bot.say(wang, "/report 香港中路12号 路灯不亮三天了"))[-1]
        bot.api.set_outage(True, 502)
        bot.api.push_update(U.callback(wang, confirm.result, "rp:ok"))
        failures = 0
        # a minute of outage in the bot's clock, in five-second steps, retrying as it goes
        for _ in range(12):
            await asyncio.sleep(0.15)
            clock.advance(seconds=5)
            bot.core.dispatcher.kick()
        failures = len(bot.api.calls_of("sendMessage", ok=False))
        assert bot.api.sent(li.id) == [] and failures >= 3
        bot.api.set_outage(False)
        clock.advance(seconds=61)  # past the longest backoff
        await bot.delivered()
        async with bot.core.sessionmaker() as s:
            case = (await s.execute(select(Case))).scalars().one()
        tasks = [c for c in bot.api.sent(li.id) if f"#{case.id}" in (c.text or "")]
        receipts = [c for c in bot.api.sent(wang.id) if "已提交" in (c.text or "")]
        assert len(tasks) == 1 and len(receipts) == 1
        print(f"\n[{framework}] {failures} failed attempts during the outage, then each message once")
