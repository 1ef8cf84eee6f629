"""Talking to the real bot (aiogram or python-telegram-bot) through the fake Bot API.

    async with BotHarness(framework, db_url, settings_for) as h:
        replies = await h.say(WANG, "/start")
        await h.press(WANG, replies[-1], "rp:cat:streetlight")

`settle()` waits until every pushed update is handled and every due outbox row is delivered,
by looking at the database, so tests never sleep for a guessed time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import func, select

from bot.core_models import InboxUpdate
from bot.outbox.models import OutboxMessage
from bot.runner import BotRunner
from tests.fakebotapi import FakeBotAPI
from tests.fakebotapi import updates as U

TgUser = U.TgUser


class BotHarness:
    def __init__(self, framework: str, db_url: str, settings_for, *, token: str | None = None, api: FakeBotAPI | None = None,
                 clock=None, **settings_kw: Any) -> None:
        self.clock = clock
        from tests.conftest import TOKEN

        self.framework = framework
        self.db_url = db_url
        self.settings_for = settings_for
        self.token = token or TOKEN
        self.api = api
        self._own_api = api is None
        self.settings_kw = settings_kw
        self.runner: BotRunner | None = None
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> BotHarness:
        if self.api is None:
            self.api = FakeBotAPI(token=self.token)
            await self.api.start()
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()
        if self._own_api:
            await self.api.stop()

    async def start(self) -> None:
        settings = self.settings_for(self.db_url, framework=self.framework, telegram_api_base=self.api.base_url,
                                     bot_token=self.token, **self.settings_kw)
        self.runner = BotRunner(settings, poll_timeout=1, with_scheduler=False, clock=self.clock)
        self.task = asyncio.create_task(self.runner.run())
        ready = asyncio.create_task(self.runner.ready.wait())
        # the first start in a process loads jieba, the pinyin table and the FAQ encoder (a few seconds,
        # several times that on a busy shared machine)
        done, _ = await asyncio.wait({ready, self.task}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if self.task in done:
            self.task.result()  # raises what stopped it
        if ready not in done:
            raise TimeoutError("bot did not start")

    async def stop(self) -> None:
        if self.runner is not None and self.task is not None:
            self.runner.stop()
            await asyncio.wait_for(self.task, 30)
            self.task = None

    @property
    def core(self):
        return self.runner.core

    # --- talking -------------------------------------------------------------------------------

    async def push(self, update: dict) -> dict:
        return self.api.push_update(update)

    async def settle(self, timeout: float = 15.0) -> None:
        """Until the bot has taken every pushed update, handled it, and sent what is due."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.api.pending_updates() and await self._idle():
                # one more look after a beat: a handler may have just queued a message
                await asyncio.sleep(0.05)
                if not self.api.pending_updates() and await self._idle():
                    return
            await asyncio.sleep(0.02)
        raise TimeoutError(f"bot did not settle; pending updates {len(self.api.pending_updates())}")

    async def delivered(self, timeout: float = 30.0) -> None:
        """Until the outbox holds nothing pending at all, retries included."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with self.core.sessionmaker() as s:
                left = (await s.execute(select(func.count()).select_from(OutboxMessage).where(
                    OutboxMessage.status.in_(("pending", "in_flight", "sending"))))).scalar_one()
            if left == 0:
                return
            self.core.dispatcher.kick()
            await asyncio.sleep(0.1)
        raise TimeoutError("outbox not delivered")

    async def _idle(self) -> bool:
        core = self.core
        if core._chains or core._loose:
            return False
        now = core.clock()
        async with core.sessionmaker() as s:
            unhandled = (await s.execute(select(func.count()).select_from(InboxUpdate)
                                         .where(InboxUpdate.handled_at.is_(None)))).scalar_one()
            due = (await s.execute(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.status.in_(("pending", "in_flight", "sending")), OutboxMessage.next_attempt_at <= now))).scalar_one()
        return unhandled == 0 and due == 0

    async def say(self, user: TgUser, text: str | None = None, **kw: Any) -> list:
        """Send a message as `user`; returns what the bot sent to that chat in reply."""
        mark = self.api.mark()
        upd = U.message(user, text=text, **kw)
        await self.push(upd)
        await self.settle()
        chat = kw.get("chat")
        chat_id = user.id if chat is None else (chat if isinstance(chat, int) else chat["id"])
        return self.api.sent(chat_id, since=mark)

    async def press(self, user: TgUser, call_or_message: Any, data: str) -> list:
        """Press the button with callback data `data` on a message the bot sent."""
        msg = getattr(call_or_message, "result", call_or_message)
        if isinstance(msg, list):
            msg = msg[-1]
        chat_id = msg["chat"]["id"]
        current = self.api.messages[chat_id].get(msg["message_id"], msg)
        datas = [b.get("callback_data") for row in (current.get("reply_markup") or {}).get("inline_keyboard", [])
                 for b in row]
        if data not in datas and not data.startswith("!"):
            raise AssertionError(f"no button {data!r} on message; buttons: {datas}")
        mark = self.api.mark()
        await self.push(U.callback(user, current, data.lstrip("!")))
        await self.settle()
        return self.api.sent(chat_id, since=mark)

    def buttons(self, call_or_message: Any) -> list[str]:
        msg = getattr(call_or_message, "result", call_or_message)
        if isinstance(msg, list):
            msg = msg[-1]
        current = self.api.messages[msg["chat"]["id"]].get(msg["message_id"], msg)
        return [b.get("callback_data") or b.get("url") for row in
                (current.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]

    def texts(self, chat_id: int, since: int = 0) -> list[str]:
        return [c.text or "" for c in self.api.sent(chat_id, since=since)]

    def last_with_buttons(self, chat_id: int, since: int = 0):
        for c in reversed(self.api.sent(chat_id, since=since)):
            msg = c.result[-1] if isinstance(c.result, list) else c.result
            if msg.get("reply_markup"):
                return msg
        raise AssertionError(f"no message with buttons to {chat_id}")
