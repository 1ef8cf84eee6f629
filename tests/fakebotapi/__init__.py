"""Strict fake Telegram Bot API server for end-to-end tests.

    from tests.fakebotapi import FakeBotAPI, TgUser, message, callback

    async with FakeBotAPI(token="123456:TEST") as api:
        alice = TgUser(1001, "Alice")
        api.push_update(message(alice, text="/start"))   # chat 1001 becomes known
        ... run the bot against api.base_url ...
        [call] = await api.wait_sent(alice.id)
        api.push_update(callback(alice, call.result, "menu:open"))
"""

from .server import (
    SEND_METHODS,
    ApiError,
    Call,
    FakeBotAPI,
    FaultRule,
    HtmlParseError,
    UploadedFile,
    parse_html,
)
from .updates import (
    TgUser,
    callback,
    edited_message,
    group_chat,
    message,
    my_chat_member,
    photo_sizes,
    private_chat,
)

__all__ = [
    "SEND_METHODS",
    "ApiError",
    "Call",
    "FakeBotAPI",
    "FaultRule",
    "HtmlParseError",
    "UploadedFile",
    "parse_html",
    "TgUser",
    "callback",
    "edited_message",
    "group_chat",
    "message",
    "my_chat_member",
    "photo_sizes",
    "private_chat",
]
