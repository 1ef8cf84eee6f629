"""The python-telegram-bot 22 adapter: PTB's Bot sends, its Application carries updates to the core."""

from __future__ import annotations

import contextvars
import logging
from datetime import timedelta
from typing import Any

from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, InputMediaPhoto, Update
from telegram import Bot
from telegram.error import BadRequest, ChatMigrated as PtbChatMigrated, Forbidden, InvalidToken, NetworkError
from telegram.error import RetryAfter as PtbRetryAfter
from telegram.error import TelegramError, TimedOut
from telegram.ext import Application, TypeHandler

from bot.transport.base import ChatMigrated, Keyboard, PermanentError, RecipientGone, RetryAfter, TransientError
from bot.transport.common import BaseMessenger
from bot.transport.errors import classify_bad_request
from bot.transport.ptb_http import AiohttpRequest

log = logging.getLogger("gridbot.ptb")
_RAW: contextvars.ContextVar[dict | None] = contextvars.ContextVar("gridbot_raw_update", default=None)
ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]


def _markup(buttons: Keyboard | None) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(b.text, url=b.url) if b.url else
                                  InlineKeyboardButton(b.text, callback_data=b.data) for b in row] for row in buttons])


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class _Errors:
    async def __aenter__(self):
        return self

    async def __aexit__(self, et, e, tb):
        if e is None:
            return False
        if isinstance(e, PtbRetryAfter):
            raise RetryAfter(_seconds(e.retry_after), str(e)) from e
        if isinstance(e, PtbChatMigrated):
            raise ChatMigrated(e.new_chat_id) from e
        if isinstance(e, Forbidden):
            raise RecipientGone(str(e)) from e
        if isinstance(e, BadRequest):
            raise classify_bad_request(e.message) from e
        if isinstance(e, InvalidToken):
            raise PermanentError(str(e)) from e
        if isinstance(e, (TimedOut, NetworkError, OSError, TimeoutError)):
            raise TransientError(str(e)) from e
        if isinstance(e, TelegramError):
            raise TransientError(str(e)) from e
        return False


class PtbTransport(BaseMessenger):
    name = "ptb"

    def __init__(self, token: str, api_base: str, proxy: str = "") -> None:
        # PTB's requests over aiohttp (bot/transport/ptb_http.py: half the CPU of its httpx client
        # per request); GRIDBOT_PROXY (http:// or socks5://, aiohttp-socks) for both
        request = AiohttpRequest(connection_pool_size=32, pool_timeout=30.0, read_timeout=30.0, connect_timeout=10.0,
                                 proxy=proxy or None)
        polling = AiohttpRequest(connection_pool_size=2, read_timeout=60.0, proxy=proxy or None)
        self.bot = Bot(token, base_url=f"{api_base}/bot", base_file_url=f"{api_base}/file/bot", request=request,
                       get_updates_request=polling)
        self._requests = (request, polling)
        self.app = Application.builder().bot(self.bot).updater(None).build()
        self._process = None

        async def to_core(update: Update, context) -> None:
            # every update goes to the one core; PTB's handlers and filters stay unused on purpose.
            # The core reads the update as received (parsed once by PTB, not dumped back)
            raw = _RAW.get()
            await self._process(raw if raw is not None and raw.get("update_id") == update.update_id
                                else update.to_dict())

        self.app.add_handler(TypeHandler(Update, to_core))

    def bind(self, process) -> None:
        self._process = process

    async def feed(self, update: dict[str, Any]) -> None:
        token = _RAW.set(update)  # the handler runs in this task (block=True): it reads it back
        try:
            await self.app.process_update(Update.de_json(update, self.bot))
        finally:
            _RAW.reset(token)

    async def start(self) -> tuple[int, str]:
        async with _Errors():
            await self.app.initialize()
        return self.bot.id, self.bot.username or ""

    async def get_updates(self, offset: int | None, timeout: int) -> list[dict[str, Any]]:
        async with _Errors():
            updates = await self.bot.get_updates(offset=offset, timeout=timeout, allowed_updates=ALLOWED_UPDATES,
                                                 read_timeout=timeout + 15)
        return [u.to_dict() for u in updates]

    async def set_webhook(self, url: str, secret: str) -> None:
        async with _Errors():
            await self.bot.set_webhook(url, secret_token=secret or None, allowed_updates=ALLOWED_UPDATES,
                                       drop_pending_updates=False)

    async def webhook_url(self) -> str:
        async with _Errors():
            return (await self.bot.get_webhook_info()).url or ""

    async def delete_webhook(self) -> None:
        async with _Errors():
            await self.bot.delete_webhook(drop_pending_updates=False)

    async def close(self) -> None:
        try:
            await self.app.shutdown()
        except Exception as e:  # shutting down twice, or never initialised
            log.debug("shutdown: %s", e)
        for request in self._requests:  # opened by a request even if PTB was never initialised
            await request.shutdown()

    # --- Messenger ---------------------------------------------------------------------------

    async def send_text(self, chat_id, text, buttons, html) -> int:
        async with _Errors():
            m = await self.bot.send_message(chat_id, text, parse_mode="HTML" if html else None,
                                            reply_markup=_markup(buttons), disable_web_page_preview=True)
        return m.message_id

    async def send_photo(self, chat_id, photo, caption, buttons) -> int:
        async with _Errors():
            m = await self.bot.send_photo(chat_id, photo, caption=caption or None, parse_mode="HTML",
                                          reply_markup=_markup(buttons))
        return m.message_id

    async def send_file(self, chat_id, kind, name, data, caption, buttons) -> int:
        f = InputFile(data, filename=name, attach=True)
        async with _Errors():
            if kind == "photo":
                m = await self.bot.send_photo(chat_id, f, caption=caption or None, parse_mode="HTML",
                                              reply_markup=_markup(buttons))
            else:
                m = await self.bot.send_document(chat_id, f, caption=caption or None, parse_mode="HTML",
                                                 reply_markup=_markup(buttons))
        return m.message_id

    async def send_album(self, chat_id, photos, caption) -> int:
        media = [InputMediaPhoto(p, caption=caption if i == 0 and caption else None,
                                 parse_mode="HTML" if i == 0 and caption else None) for i, p in enumerate(photos)]
        async with _Errors():
            ms = await self.bot.send_media_group(chat_id, media)
        return ms[0].message_id

    async def send_location(self, chat_id, lat, lon) -> int:
        async with _Errors():
            m = await self.bot.send_location(chat_id, latitude=lat, longitude=lon)
        return m.message_id

    async def edit_text(self, chat_id, message_id, text, buttons) -> None:
        async with _Errors():
            await self.bot.edit_message_text(text, chat_id=chat_id, message_id=message_id, parse_mode="HTML",
                                             reply_markup=_markup(buttons), disable_web_page_preview=True)

    async def edit_caption(self, chat_id, message_id, caption, buttons) -> None:
        async with _Errors():
            await self.bot.edit_message_caption(chat_id=chat_id, message_id=message_id, caption=caption,
                                                parse_mode="HTML", reply_markup=_markup(buttons))

    async def answer_callback(self, callback_id, text=None, alert=False) -> None:
        async with _Errors():
            await self.bot.answer_callback_query(callback_id, text=text, show_alert=alert)

    async def set_commands(self, commands) -> None:
        for lang, items in commands.items():
            async with _Errors():
                await self.bot.set_my_commands([BotCommand(c, d) for c, d in items], language_code=lang or None)
