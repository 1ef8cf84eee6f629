"""The aiogram 3 adapter: aiogram's Bot client sends, its Dispatcher carries updates to the core."""

from __future__ import annotations

import functools
import logging
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BotCommand, BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto, Update

from bot.transport.base import (
    ChatMigrated,
    Keyboard,
    NotModified,
    PermanentError,
    RecipientGone,
    RetryAfter,
    TransientError,
)
from bot.transport.common import BaseMessenger
from bot.transport.errors import classify_bad_request

log = logging.getLogger("gridbot.aiogram")
ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]


def _markup(buttons: Keyboard | None) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=b.text, url=b.url) if b.url else InlineKeyboardButton(text=b.text, callback_data=b.data)
         for b in row] for row in buttons])


class _Errors:
    async def __aenter__(self):
        return self

    async def __aexit__(self, et, e, tb):
        if e is None:
            return False
        if isinstance(e, TelegramRetryAfter):
            raise RetryAfter(e.retry_after, str(e)) from e
        if isinstance(e, TelegramMigrateToChat):
            raise ChatMigrated(e.migrate_to_chat_id) from e
        if isinstance(e, TelegramForbiddenError):
            raise RecipientGone(str(e)) from e
        if isinstance(e, TelegramBadRequest):
            raise classify_bad_request(e.message) from e
        if isinstance(e, (TelegramNotFound, TelegramUnauthorizedError)):
            raise PermanentError(str(e)) from e
        if isinstance(e, (TelegramServerError, TelegramNetworkError, OSError, TimeoutError)):
            raise TransientError(str(e)) from e
        return False


@functools.cache
def _response_models() -> tuple:
    """aiogram reads each answer of the Bot API into Response[T], a generic pydantic model that
    pydantic builds on first use (10 ms for a Message, far more under load: the bench's profile
    had it at 8 % of a backlog's samples, on the event loop) and caches only weakly. Built here,
    once per process before the first update, and kept for the methods this transport calls."""
    from aiogram import methods as m
    from aiogram.methods.base import Response

    used = (m.AnswerCallbackQuery, m.DeleteWebhook, m.EditMessageCaption, m.EditMessageText, m.GetMe, m.GetUpdates,
            m.GetWebhookInfo, m.SendDocument, m.SendLocation, m.SendMediaGroup, m.SendMessage, m.SendPhoto,
            m.SetMyCommands, m.SetWebhook)
    return tuple(Response[method.__returning__] for method in used)


class AiogramTransport(BaseMessenger):
    name = "aiogram"

    def __init__(self, token: str, api_base: str, proxy: str = "") -> None:
        self._responses = _response_models()
        # GRIDBOT_PROXY (http:// or socks5://) goes through aiohttp-socks
        self.session = AiohttpSession(api=TelegramAPIServer.from_base(api_base), proxy=proxy or None)
        self.bot = Bot(token, session=self.session)
        self.dp = Dispatcher()
        self._process = None

        async def to_core(handler, event: Update, data: dict[str, Any]) -> Any:
            # every update goes to the one core; aiogram's routers stay unused on purpose. The
            # core reads the update as received (parsed once by aiogram, not dumped back)
            raw = data.get("gridbot_raw")
            await self._process(raw if raw is not None else event.model_dump(mode="json", exclude_none=True,
                                                                               by_alias=True))

        self.dp.update.outer_middleware(to_core)

    def bind(self, process) -> None:
        self._process = process

    async def feed(self, update: dict[str, Any]) -> None:
        await self.dp.feed_update(self.bot, Update.model_validate(update, context={"bot": self.bot}),
                                  gridbot_raw=update)

    async def start(self) -> tuple[int, str]:
        async with _Errors():
            me = await self.bot.get_me()
        return me.id, me.username or ""

    async def get_updates(self, offset: int | None, timeout: int) -> list[dict[str, Any]]:
        async with _Errors():
            updates = await self.bot.get_updates(offset=offset, timeout=timeout, allowed_updates=ALLOWED_UPDATES,
                                                 request_timeout=timeout + 15)
        return [u.model_dump(mode="json", exclude_none=True, by_alias=True) for u in updates]

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
        await self.session.close()

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
        f = BufferedInputFile(data, filename=name)
        async with _Errors():
            if kind == "photo":
                m = await self.bot.send_photo(chat_id, f, caption=caption or None, parse_mode="HTML",
                                              reply_markup=_markup(buttons))
            else:
                m = await self.bot.send_document(chat_id, f, caption=caption or None, parse_mode="HTML",
                                                 reply_markup=_markup(buttons))
        return m.message_id

    async def send_album(self, chat_id, photos, caption) -> int:
        media = [InputMediaPhoto(media=p, caption=caption if i == 0 and caption else None,
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
            await self.bot.edit_message_text(text=text, chat_id=chat_id, message_id=message_id, parse_mode="HTML",
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
                await self.bot.set_my_commands([BotCommand(command=c, description=d) for c, d in items],
                                               language_code=lang or None)
