"""A strict fake of the Telegram Bot API for end-to-end tests.

Speaks the wire protocol both aiogram 3 and python-telegram-bot 22 use
(JSON, urlencoded and multipart bodies, nested fields JSON-encoded as strings,
``attach://`` uploads), answers with Telegram's envelope and error texts, and
records every call for assertions.

    async with FakeBotAPI(token="123456:TEST") as api:
        api.add_chat(42)                       # or push an update from the chat
        bot = aiogram.Bot(api.token, session=AiohttpSession(
            api=TelegramAPIServer.from_base(api.base_url)))
        await bot.send_message(42, "<b>hi</b>", parse_mode="HTML")
        [call] = await api.wait_sent(42)
        assert call.result["text"] == "hi"

See the README-style summary in ``tests/fakebotapi/__init__.py``.
"""

from __future__ import annotations

import asyncio
import copy
import fnmatch
import itertools
import json
import re
import secrets
import struct
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from aiohttp import web

__all__ = [
    "FakeBotAPI",
    "Call",
    "UploadedFile",
    "FaultRule",
    "ApiError",
    "HtmlParseError",
    "parse_html",
    "SEND_METHODS",
]

# Methods counted by ``sent()`` / ``max_per_second()``.
SEND_METHODS = frozenset({"sendMessage", "sendPhoto", "sendMediaGroup", "sendLocation", "sendDocument"})

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64

DESC_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
DESC_QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
DESC_GETUPDATES_CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)
DESC_WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)

_NGINX_502 = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_REASONS = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
    413: "Request Entity Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Time-out",
}

# --- request decoding tables -------------------------------------------------

_JSON_FIELDS = {
    "reply_markup": "reply keyboard markup",
    "media": "media",
    "entities": "entities",
    "caption_entities": "caption entities",
    "commands": "commands",
    "scope": "BotCommandScope",
    "link_preview_options": "link preview options",
    "allowed_updates": "allowed updates",
    "reply_parameters": "reply parameters",
    "message_ids": "message identifiers",
    "menu_button": "menu button",
    "rights": "administrator rights",
    "permissions": "chat permissions",
    "options": "poll options",
    "explanation_entities": "explanation entities",
    "results": "inline query results",
}
_INT_FIELDS = {
    "message_id", "message_thread_id", "offset", "limit", "timeout", "reply_to_message_id",
    "from_chat_id", "max_connections", "cache_time", "live_period", "heading",
    "proximity_alert_radius", "duration", "width", "height", "until_date", "user_id",
}
_FLOAT_FIELDS = {"latitude", "longitude", "horizontal_accuracy"}
_STRING_FIELDS = {
    "text", "caption", "title", "description", "short_description", "name", "url", "query",
    "callback_query_id", "inline_message_id", "file_id", "data", "secret_token", "ip_address",
    "parse_mode", "action", "language_code", "emoji", "address", "first_name", "last_name",
    "photo", "document", "video", "audio", "animation", "voice", "sticker", "thumbnail",
}
_INT_RE = re.compile(r"^-?\d+$")


class ApiError(Exception):
    """An error answer of the Bot API (status + description + optional parameters)."""

    def __init__(self, status: int, description: str, parameters: dict | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            d["parameters"] = self.parameters
        return d


def _bad(description: str) -> ApiError:
    return ApiError(400, "Bad Request: " + description)


@dataclass
class UploadedFile:
    """A multipart file part received by the fake."""

    field: str
    filename: str | None
    content_type: str | None
    size: int
    data: bytes = field(repr=False, default=b"")


@dataclass
class Call:
    """One recorded Bot API request."""

    method: str
    params: dict
    time: float  # time.monotonic() when the request arrived
    ok: bool = False
    result: Any = None
    error: dict | None = None  # {"error_code", "description", "parameters"?}
    status: int = 200
    files: dict[str, UploadedFile] = field(default_factory=dict)
    injected: bool = False  # the error came from a fault rule
    index: int = -1  # position in api.calls

    @property
    def chat_id(self) -> int | str | None:
        return self.params.get("chat_id")

    @property
    def text(self) -> str | None:
        """Text (or caption) of the resulting message, else of the request."""
        r = self.result
        if isinstance(r, list) and r:
            r = r[0]
        if isinstance(r, dict) and ("text" in r or "caption" in r):
            return r.get("text", r.get("caption"))
        return self.params.get("text", self.params.get("caption"))

    @property
    def description(self) -> str | None:
        return self.error["description"] if self.error else None

    @property
    def error_code(self) -> int | None:
        return self.error["error_code"] if self.error else None

    @property
    def messages(self) -> list[dict]:
        """Resulting Message dicts (one, or several for sendMediaGroup)."""
        if isinstance(self.result, list):
            return [m for m in self.result if isinstance(m, dict)]
        if isinstance(self.result, dict) and "message_id" in self.result:
            return [self.result]
        return []


@dataclass
class FaultRule:
    """A fault-injection / latency rule. Rules are checked in order; see FakeBotAPI.fail_next."""

    method: str | tuple[str, ...] = "*"  # fnmatch pattern(s), case-insensitive
    times: int | None = 1  # None = until removed
    status: int = 429
    retry_after: int | None = None
    description: str | None = None
    chat_id: int | str | None = None
    migrate_to_chat_id: int | None = None
    body: str | None = None  # "json" | "html" | "text"; default by status
    except_methods: frozenset[str] = frozenset()
    latency: float = 0.0  # >0 and status==0 -> a pure latency rule
    name: str = ""

    def matches(self, method: str, chat_id: Any) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        m = method.lower()
        if m in {e.lower() for e in self.except_methods}:
            return False
        pats = (self.method,) if isinstance(self.method, str) else self.method
        if not any(fnmatch.fnmatchcase(m, p.lower()) for p in pats):
            return False
        if self.chat_id is not None and str(self.chat_id) != str(chat_id):
            return False
        return True


class _Outage:
    """Returned by FakeBotAPI.outage(); usable with ``with`` and ``async with``."""

    def __init__(self, api: "FakeBotAPI", rule: FaultRule):
        self.api = api
        self.rule = rule

    def __enter__(self) -> FaultRule:
        return self.rule

    def __exit__(self, *exc: Any) -> None:
        self.api.remove_rule(self.rule)

    async def __aenter__(self) -> FaultRule:
        return self.rule

    async def __aexit__(self, *exc: Any) -> None:
        self.api.remove_rule(self.rule)


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    file_name: str | None = None
    mime_type: str | None = None
    file_path: str | None = None


# =============================================================================
# Telegram HTML parser (port of tdlib's parse_html)
# =============================================================================

class HtmlParseError(ValueError):
    """The part after "Bad Request: can't parse entities: "."""


ALLOWED_TAGS = frozenset(
    {
        "a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins",
        "tg-spoiler", "tg-emoji", "span", "pre", "code", "blockquote",
    }
)

_SPACE = frozenset(b" \t\r\n\f\v")
_NAMED = {b"lt": 0x3C, b"gt": 0x3E, b"amp": 0x26, b"quot": 0x22}


def _decode_entity(b: bytes, pos: int) -> tuple[int, int] | None:
    """Decode an HTML entity at ``b[pos] == '&'``: (code point, new pos) or None."""
    n = len(b)

    def at(i: int) -> int:
        return b[i] if i < n else 0

    end = pos + 1
    res = 0
    if at(pos + 1) == 0x23:  # '#'
        end += 1
        if at(pos + 2) == 0x78:  # 'x'
            end += 1
            while chr(at(end)) in "0123456789abcdefABCDEF" and at(end):
                res = res * 16 + int(chr(at(end)), 16)
                end += 1
                if res >= 0x10FFFF:
                    return None
        else:
            while 0x30 <= at(end) <= 0x39:
                res = res * 10 + at(end) - 0x30
                end += 1
                if res >= 0x10FFFF:
                    return None
        if res == 0 or res >= 0x10FFFF or end - pos >= 10:
            return None
    else:
        while (0x41 <= at(end) <= 0x5A) or (0x61 <= at(end) <= 0x7A):
            end += 1
        name = b[pos + 1 : end]
        if name not in _NAMED:
            return None
        res = _NAMED[name]
    if at(end) == 0x3B:  # ';'
        end += 1
    return res, end


def _utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def parse_html(text: str, *, strict_ampersand: bool = True) -> tuple[str, list[dict]]:
    """Parse Telegram HTML. Returns (plain_text, entities) or raises HtmlParseError."""
    b = text.encode("utf-8")
    n = len(b)

    def at(i: int) -> int:
        return b[i] if i < n else 0

    out = bytearray()
    entities: list[dict] = []
    stack: list[tuple[str, str, int, dict]] = []  # (tag, argument, out_pos, extra)
    i = 0
    while i < n:
        c = b[i]
        if c == 0x26:  # '&'
            dec = _decode_entity(b, i)
            if dec is not None:
                cp, i = dec
                if 0xD800 <= cp <= 0xDFFF:
                    raise HtmlParseError(
                        "Text contains invalid Unicode characters after decoding HTML entities, "
                        "check for unmatched surrogate code units"
                    )
                out += chr(cp).encode("utf-8")
                continue
            if strict_ampersand:
                raise HtmlParseError(
                    f"Character '&' at byte offset {i} does not start a valid HTML entity "
                    "(only &lt; &gt; &amp; &quot; and numeric entities are supported; escape it as &amp;)"
                )
        if c != 0x3C:  # not '<'
            out.append(c)
            i += 1
            continue

        begin = i
        i += 1
        if at(i) != 0x2F:  # start tag
            while at(i) and at(i) not in _SPACE and at(i) != 0x3E:
                i += 1
            if at(i) == 0:
                raise HtmlParseError(f"Unclosed start tag at byte offset {begin}")
            tag = b[begin + 1 : i].decode("utf-8", "replace").lower()
            if tag not in ALLOWED_TAGS:
                raise HtmlParseError(f'Unsupported start tag "{tag}" at byte offset {begin}')
            argument = ""
            extra: dict = {}
            while at(i) != 0x3E:
                while at(i) and at(i) in _SPACE:
                    i += 1
                if at(i) == 0x3E:
                    break
                attr_begin = i
                while at(i) and at(i) not in _SPACE and at(i) not in (0x3D, 0x3E):
                    i += 1
                attr = b[attr_begin:i].decode("utf-8", "replace")
                if not attr:
                    raise HtmlParseError(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
                while at(i) and at(i) in _SPACE:
                    i += 1
                if at(i) != 0x3D:  # '='
                    if tag == "blockquote" and attr == "expandable":
                        extra["expandable"] = True
                        continue
                    if at(i) == 0:
                        raise HtmlParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                    raise HtmlParseError(
                        "Expected equal sign in declaration of an attribute of the tag "
                        f'"{tag}" at byte offset {begin}'
                    )
                i += 1
                while at(i) and at(i) in _SPACE:
                    i += 1
                if at(i) == 0:
                    raise HtmlParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if at(i) not in (0x22, 0x27):
                    tok_begin = i
                    while at(i) and (chr(at(i)).isalnum() and at(i) < 0x80 or at(i) in (0x2E, 0x2D)):
                        i += 1
                    value = b[tok_begin:i].decode("utf-8", "replace").lower()
                    if at(i) not in _SPACE and at(i) != 0x3E:
                        raise HtmlParseError(f"Unexpected end of name token at byte offset {tok_begin}")
                else:
                    quote = at(i)
                    i += 1
                    vb = bytearray()
                    while at(i) and at(i) != quote:
                        if at(i) == 0x26:
                            dec = _decode_entity(b, i)
                            if dec is not None:
                                vb += chr(dec[0]).encode("utf-8")
                                i = dec[1]
                                continue
                        vb.append(at(i))
                        i += 1
                    if at(i) == quote:
                        i += 1
                    value = vb.decode("utf-8", "replace")
                if at(i) == 0:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {begin}")
                if tag == "a" and attr == "href":
                    argument = value
                elif tag == "code" and attr == "class" and value.startswith("language-"):
                    argument = value[len("language-"):]
                elif tag == "span" and attr == "class" and value.startswith("tg-"):
                    argument = value[len("tg-"):]
                elif tag == "tg-emoji" and attr == "emoji-id":
                    argument = value
                elif tag == "blockquote" and attr == "expandable":
                    extra["expandable"] = True
            if tag == "span" and argument != "spoiler":
                raise HtmlParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
            if tag == "tg-emoji" and not argument.isdigit():
                raise HtmlParseError(f'Custom emoji entity must have a valid emoji-id at byte offset {begin}')
            stack.append((tag, argument, len(out), extra))
            i += 1  # skip '>'
        else:  # end tag
            if not stack:
                raise HtmlParseError(f"Unexpected end tag at byte offset {begin}")
            while at(i) and at(i) not in _SPACE and at(i) != 0x3E:
                i += 1
            end_name = b[begin + 2 : i].decode("utf-8", "replace").lower()
            while at(i) and at(i) in _SPACE:
                i += 1
            if at(i) != 0x3E:
                raise HtmlParseError(f"Unclosed end tag at byte offset {begin}")
            tag, argument, start, extra = stack.pop()
            if end_name and end_name != tag:
                raise HtmlParseError(
                    f'Unmatched end tag at byte offset {begin}, expected "</{tag}>", found "</{end_name}>"'
                )
            i += 1
            _emit(entities, tag, argument, extra, bytes(out[:start]), bytes(out[start:]))
    if stack:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    plain = out.decode("utf-8", "replace")
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return plain, entities


_SIMPLE = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "tg-spoiler": "spoiler", "span": "spoiler", "code": "code",
}


def _emit(entities: list[dict], tag: str, argument: str, extra: dict, before: bytes, inner: bytes) -> None:
    offset = _utf16_len(before.decode("utf-8", "replace"))
    inner_s = inner.decode("utf-8", "replace")
    length = _utf16_len(inner_s)
    if length == 0:
        return
    if tag in _SIMPLE:
        entities.append({"type": _SIMPLE[tag], "offset": offset, "length": length})
    elif tag == "a":
        url = argument or inner_s
        if url.startswith("tg://user?id="):
            entities.append({"type": "text_mention", "offset": offset, "length": length,
                             "user": {"id": int(url.split("=", 1)[1] or 0), "is_bot": False, "first_name": ""}})
        elif "." in url or url.startswith("tg://"):
            if "://" not in url:
                url = "http://" + url + ("/" if "/" not in url else "")
            entities.append({"type": "text_link", "offset": offset, "length": length, "url": url})
    elif tag == "pre":
        ent = {"type": "pre", "offset": offset, "length": length}
        # merge an inner <code class="language-..."> spanning the whole pre
        for e in list(entities):
            if e["type"] == "code" and e["offset"] == offset and e["length"] == length and e.get("_lang"):
                entities.remove(e)
                ent["language"] = e["_lang"]
        entities.append(ent)
    elif tag == "blockquote":
        entities.append({"type": "expandable_blockquote" if extra.get("expandable") else "blockquote",
                         "offset": offset, "length": length})
    elif tag == "tg-emoji":
        entities.append({"type": "custom_emoji", "offset": offset, "length": length, "custom_emoji_id": argument})
    if tag == "code" and argument:
        entities[-1]["_lang"] = argument


def finalize_entities(entities: list[dict]) -> list[dict]:
    """Drop internal keys (code language hints not merged into a pre)."""
    return [{k: v for k, v in e.items() if not k.startswith("_")} for e in entities]


def strip_text(text: str, entities: list[dict]) -> tuple[str, list[dict]]:
    """Trim leading/trailing whitespace like Telegram, shifting/clipping entities."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = _utf16_len(text[: len(text) - len(text.lstrip())])
    total = _utf16_len(stripped)
    out = []
    for e in entities:
        start = max(0, e["offset"] - lead)
        end = min(total, e["offset"] + e["length"] - lead)
        if end > start:
            out.append({**e, "offset": start, "length": end - start})
    return stripped, out


# =============================================================================
# The server
# =============================================================================

_METHODS: dict[str, tuple[str, Callable]] = {}


def _method(name: str):
    def deco(fn):
        _METHODS[name.lower()] = (name, fn)
        return fn

    return deco


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return w, h
    if data[:2] == b"\xff\xd8":  # JPEG: scan SOF markers
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xC0, 0xC1, 0xC2):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return w, h
            seg = struct.unpack(">H", data[i + 2 : i + 4])[0]
            i += 2 + seg
    return None


class FakeBotAPI:
    """Fake Telegram Bot API server (aiohttp) for one bot token."""

    def __init__(
        self,
        token: str = "123456789:TEST-fake-token",
        *,
        bot_username: str = "gridbot_test_bot",
        bot_first_name: str = "GridBot",
        strict_ampersand: bool = True,
        strict_file_ids: bool = True,
        min_media_group: int = 2,
    ):
        self.token = token
        self.strict_ampersand = strict_ampersand
        self.strict_file_ids = strict_file_ids
        self.min_media_group = min_media_group
        try:
            bot_id = int(token.split(":", 1)[0])
        except ValueError:
            bot_id = 123456789
        self.bot_user: dict = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        self.app = web.Application(client_max_size=60 * 1024 * 1024)
        self.app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self.app.router.add_route("*", "/file/bot{token}/{path:.+}", self._handle_file)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._closing: asyncio.Event | None = None  # created in start()

        self.calls: list[Call] = []
        self.rules: list[FaultRule] = []
        self.messages: dict[int, dict[int, dict]] = defaultdict(dict)  # bot-sent, current state
        self.incoming: dict[int, dict[int, dict]] = defaultdict(dict)  # pushed by users
        self.chats: dict[int, dict] = {}
        self.commands: dict[tuple[str, str], list[dict]] = {}
        self.webhook: dict | None = None
        self.allowed_updates: list[str] | None = None
        self.files: dict[str, _StoredFile] = {}
        self.internal_errors: list[BaseException] = []
        self.abandoned: list[Call] = []  # held by a latency rule until their client was gone

        self._updates: list[dict] = []
        self._next_update_id = 1
        self._next_message_id: dict[int, int] = defaultdict(lambda: 1)
        self._open_callbacks: set[str] = set()
        self._media_group_seq = itertools.count(13_000_000_000_000_001)
        self._file_seq = itertools.count(1)
        self._poll_owner: object | None = None
        self._update_event: asyncio.Event | None = None
        self._call_event: asyncio.Event | None = None

    # ------------------------------------------------------------- lifecycle
    async def start(self, port: int = 0) -> "FakeBotAPI":
        self._closing = asyncio.Event()
        self._update_event = asyncio.Event()
        self._call_event = asyncio.Event()
        self._runner = web.AppRunner(self.app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self._port = sock.getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()
        self._notify_updates()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeBotAPI":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeBotAPI not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ chat state
    def add_chat(
        self,
        chat_id: int,
        type: str = "private",
        title: str | None = None,
        *,
        username: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        is_forum: bool | None = None,
    ) -> dict:
        """Make a chat known (sending to unknown chats is 'chat not found')."""
        chat: dict[str, Any] = {"id": int(chat_id), "type": type}
        if type == "private":
            chat["first_name"] = first_name or f"User{chat_id}"
            if last_name:
                chat["last_name"] = last_name
        else:
            chat["title"] = title or f"Chat {chat_id}"
        if username:
            chat["username"] = username
        if is_forum:
            chat["is_forum"] = True
        self.chats[int(chat_id)] = chat
        return chat

    def add_user(self, user: Any) -> dict:
        """Make a TgUser's private chat known."""
        return self.add_chat(user.id, "private", username=user.username, first_name=user.first_name,
                             last_name=getattr(user, "last_name", None))

    def _register_chat(self, chat: dict) -> None:
        if isinstance(chat, dict) and "id" in chat and chat["id"] not in self.chats:
            self.chats[int(chat["id"])] = {k: v for k, v in chat.items()}

    def _resolve_chat(self, chat_id: Any) -> dict:
        if chat_id is None or chat_id == "":
            raise _bad("chat_id is empty")
        if isinstance(chat_id, int):
            chat = self.chats.get(chat_id)
            if chat is None:
                raise _bad("chat not found")
            return chat
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            for chat in self.chats.values():
                if chat.get("username", "").lower() == chat_id[1:].lower():
                    return chat
        raise _bad("chat not found")

    # ------------------------------------------------------------ fault rules
    def add_rule(self, rule: FaultRule) -> FaultRule:
        self.rules.append(rule)
        return rule

    def remove_rule(self, rule: FaultRule) -> None:
        if rule in self.rules:
            self.rules.remove(rule)

    def fail_next(
        self,
        method: str | Iterable[str] = "*",
        times: int | None = 1,
        status: int = 429,
        retry_after: int | None = 3,
        *,
        description: str | None = None,
        chat_id: int | str | None = None,
        migrate_to_chat_id: int | None = None,
        body: str | None = None,
    ) -> FaultRule:
        """Make the next ``times`` calls of ``method`` (fnmatch pattern, "*" = any) fail.

        status 429 -> "Too Many Requests: retry after N" + parameters.retry_after;
        403 -> "Forbidden: bot was blocked by the user"; 400 -> "Bad Request: chat not found"
        (or, with migrate_to_chat_id, the supergroup migration error); 500 -> JSON
        "Internal Server Error"; 502/503/504 -> an nginx-style HTML body (body="json" for JSON).
        ``times=None`` keeps failing until ``remove_rule``/``clear_rules``.
        """
        if not isinstance(method, str):
            method = tuple(method)
        return self.add_rule(FaultRule(
            method=method, times=times, status=status,
            retry_after=retry_after if status == 429 else None,
            description=description, chat_id=chat_id, migrate_to_chat_id=migrate_to_chat_id, body=body,
            name="fail_next",
        ))

    def block_chat(self, chat_id: int, description: str | None = None) -> FaultRule:
        """Every send/edit/forward/copy/chat action to ``chat_id`` answers 403 until unblocked."""
        self.unblock_chat(chat_id)
        if description is None:
            ctype = self.chats.get(int(chat_id), {}).get("type", "private")
            description = {
                "private": "Forbidden: bot was blocked by the user",
                "group": "Forbidden: bot was kicked from the group chat",
                "supergroup": "Forbidden: bot was kicked from the supergroup chat",
                "channel": "Forbidden: bot is not a member of the channel chat",
            }.get(ctype, "Forbidden: bot was blocked by the user")
        return self.add_rule(FaultRule(
            method=("send*", "edit*", "forward*", "copy*"), times=None, status=403,
            description=description, chat_id=int(chat_id), name=f"block:{int(chat_id)}",
        ))

    def unblock_chat(self, chat_id: int) -> None:
        self.rules = [r for r in self.rules if r.name != f"block:{int(chat_id)}"]

    def is_blocked(self, chat_id: int) -> bool:
        return any(r.name == f"block:{int(chat_id)}" for r in self.rules)

    def set_latency(self, seconds: float, method: str = "*") -> None:
        """Delay every answer (to ``method``, fnmatch pattern) by ``seconds``; 0 removes it."""
        self.rules = [r for r in self.rules if not (r.name == "latency" and r.method == method)]
        if seconds > 0:
            self.rules.insert(0, FaultRule(method=method, times=None, status=0, latency=seconds, name="latency"))

    def set_outage(self, on: bool = True, status: int = 502, *, include_get_updates: bool = False,
                   body: str | None = None) -> FaultRule | None:
        """Every method (except getUpdates unless include_get_updates) answers ``status``."""
        self.rules = [r for r in self.rules if r.name != "outage"]
        if not on:
            return None
        rule = FaultRule(
            method="*", times=None, status=status, body=body, name="outage",
            retry_after=5 if status == 429 else None,
            except_methods=frozenset() if include_get_updates else frozenset({"getUpdates"}),
        )
        self.rules.append(rule)
        return rule

    def outage(self, status: int = 502, *, include_get_updates: bool = False, body: str | None = None) -> _Outage:
        """``with api.outage(502): ...`` (or ``async with``) — set_outage for the block."""
        rule = self.set_outage(True, status, include_get_updates=include_get_updates, body=body)
        assert rule is not None
        return _Outage(self, rule)

    def clear_rules(self) -> None:
        self.rules.clear()

    def _fault_response(self, rule: FaultRule) -> tuple[ApiError | None, web.Response]:
        status = rule.status
        reason = _REASONS.get(status, "Error")
        body = rule.body or ("html" if status in (502, 503, 504) else "json")
        if body in ("html", "text"):
            text = _NGINX_502.format(code=status, reason=reason) if body == "html" else f"{status} {reason}\n"
            resp = web.Response(status=status, text=text,
                                content_type="text/html" if body == "html" else "text/plain")
            return ApiError(status, f"{status} {reason} ({body} body)"), resp
        params = None
        if status == 429:
            ra = rule.retry_after if rule.retry_after is not None else 3
            desc = rule.description or f"Too Many Requests: retry after {ra}"
            params = {"retry_after": ra}
        elif rule.migrate_to_chat_id is not None:
            desc = rule.description or "Bad Request: group chat was upgraded to a supergroup chat"
            params = {"migrate_to_chat_id": rule.migrate_to_chat_id}
        else:
            desc = rule.description or {
                400: "Bad Request: chat not found",
                401: "Unauthorized",
                403: "Forbidden: bot was blocked by the user",
                404: "Not Found",
                409: DESC_GETUPDATES_CONFLICT,
                500: "Internal Server Error",
            }.get(status, reason)
        err = ApiError(status, desc, params)
        return err, web.json_response(err.to_dict(), status=status)

    # ------------------------------------------------------------- updates
    def push_update(self, update: dict) -> dict:
        """Queue an update for getUpdates. Assigns update_id (and message ids) when missing.

        Registers the chats/users it mentions, makes callback_query ids answerable once,
        registers file_ids it contains, and a my_chat_member "kicked"/"left" blocks the chat
        (a later "member"/"administrator" unblocks it), as Telegram does.
        """
        update = copy.deepcopy(update)
        if "update_id" not in update or update["update_id"] is None:
            update["update_id"] = self._next_update_id
        self._next_update_id = max(self._next_update_id, int(update["update_id"]) + 1)

        for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
            msg = update.get(key)
            if isinstance(msg, dict):
                self._ingest_message(msg, edited=key.startswith("edited"))
        cq = update.get("callback_query")
        if isinstance(cq, dict):
            if cq.get("id") is None:
                cq["id"] = str(secrets.randbits(62))
            self._open_callbacks.add(str(cq["id"]))
            if isinstance(cq.get("message"), dict):
                self._register_chat(cq["message"].get("chat"))
        for key in ("my_chat_member", "chat_member"):
            cm = update.get(key)
            if isinstance(cm, dict):
                self._register_chat(cm.get("chat"))
                for part in ("old_chat_member", "new_chat_member"):
                    if isinstance(cm.get(part), dict) and cm[part].get("user") is None:
                        cm[part]["user"] = dict(self.bot_user)
                if key == "my_chat_member" and isinstance(cm.get("chat"), dict):
                    new = (cm.get("new_chat_member") or {}).get("status")
                    cid = cm["chat"]["id"]
                    if new in ("kicked", "left"):
                        self.block_chat(cid)
                    elif new in ("member", "administrator", "creator", "restricted"):
                        self.unblock_chat(cid)
        self._updates.append(update)
        self._notify_updates()
        return update

    def _ingest_message(self, msg: dict, edited: bool) -> None:
        chat = msg.get("chat")
        self._register_chat(chat)
        if not isinstance(chat, dict):
            return
        cid = int(chat["id"])
        if msg.get("message_id") is None:
            msg["message_id"] = self._alloc_message_id(cid)
        else:
            nxt = self._next_message_id[cid]
            self._next_message_id[cid] = max(nxt, int(msg["message_id"]) + 1)
        msg.setdefault("date", int(time.time()))
        for ps in msg.get("photo") or []:
            self._register_file_id(ps.get("file_id"), ps.get("file_unique_id"))
        for k in ("document", "video", "audio", "voice", "animation", "sticker"):
            if isinstance(msg.get(k), dict):
                self._register_file_id(msg[k].get("file_id"), msg[k].get("file_unique_id"))
        self.incoming[cid][int(msg["message_id"])] = msg

    def _register_file_id(self, file_id: str | None, unique: str | None) -> None:
        if file_id and file_id not in self.files:
            self.files[file_id] = _StoredFile(file_id, unique or file_id[-12:], b"\xff\xd8fakejpeg" * 100)

    def pending_updates(self) -> list[dict]:
        """Updates queued and not yet confirmed by a getUpdates offset."""
        return list(self._updates)

    def _notify_updates(self) -> None:
        if self._update_event is not None:
            self._update_event.set()
            self._update_event = asyncio.Event()

    def _notify_call(self) -> None:
        if self._call_event is not None:
            self._call_event.set()
            self._call_event = asyncio.Event()

    # ------------------------------------------------------------- queries
    def mark(self) -> int:
        """Current number of recorded calls (use as ``since=``)."""
        return len(self.calls)

    def calls_of(self, method: str, *, ok: bool | None = None, since: int = 0) -> list[Call]:
        m = method.lower()
        return [c for c in self.calls[since:] if c.method.lower() == m and (ok is None or c.ok == ok)]

    @staticmethod
    def _is_to(call: Call, chat_id: int | str | None) -> bool:
        if chat_id is None:
            return True
        if str(call.params.get("chat_id")) == str(chat_id):
            return True
        return any(str(m.get("chat", {}).get("id")) == str(chat_id) for m in call.messages)

    def sent(self, chat_id: int | str | None = None, *, since: int = 0) -> list[Call]:
        """Successful send calls (sendMessage/Photo/MediaGroup/Location/Document), in order."""
        return [c for c in self.calls[since:] if c.ok and c.method in SEND_METHODS and self._is_to(c, chat_id)]

    async def wait_for(self, predicate: Callable[[Call], bool], timeout: float = 5, since: int | None = None) -> Call:
        """First recorded call (index >= since, default 0) matching predicate; waits for it."""
        start = since or 0
        deadline = time.monotonic() + timeout
        checked = start
        while True:
            while checked < len(self.calls):
                c = self.calls[checked]
                checked += 1
                if predicate(c):
                    return c
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"FakeBotAPI.wait_for: no matching call within {timeout}s; "
                    f"calls since {start}: {self._summary(start)}"
                )
            ev = self._call_event
            assert ev is not None, "FakeBotAPI not started"
            try:
                await asyncio.wait_for(ev.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def wait_sent(self, chat_id: int | str, count: int = 1, timeout: float = 5,
                        since: int | None = None) -> list[Call]:
        """Wait until ``count`` successful send calls to ``chat_id`` (since index) exist; return them all."""
        start = since or 0
        deadline = time.monotonic() + timeout
        while True:
            got = self.sent(chat_id, since=start)
            if len(got) >= count:
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"FakeBotAPI.wait_sent: {len(got)}/{count} messages to chat {chat_id} within {timeout}s; "
                    f"calls since {start}: {self._summary(start)}"
                )
            ev = self._call_event
            assert ev is not None, "FakeBotAPI not started"
            try:
                await asyncio.wait_for(ev.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def _summary(self, start: int, limit: int = 15) -> str:
        parts = []
        for c in self.calls[start:][-limit:]:
            if c.method == "getUpdates" and c.ok:
                continue
            s = f"{c.method}(chat_id={c.params.get('chat_id')!r})"
            s += " ok" if c.ok else f" -> {c.status} {c.description!r}"
            parts.append(s)
        return "[" + ", ".join(parts) + "]"

    def max_per_second(self, chat_id: int | str | None = None, *, methods: Iterable[str] = SEND_METHODS,
                       window: float = 1.0) -> int:
        """Max number of successful send calls (globally or to one chat) in any sliding ``window`` s."""
        methods = set(methods)
        times = sorted(c.time for c in self.calls if c.ok and c.method in methods and self._is_to(c, chat_id))
        best = 0
        j = 0
        for i in range(len(times)):
            while times[i] - times[j] >= window:
                j += 1
            best = max(best, i - j + 1)
        return best

    def clear(self) -> None:
        """Forget recorded calls, message state and fault rules (chats, queue, webhook stay)."""
        self.calls.clear()
        self.messages.clear()
        self.incoming.clear()
        self.rules.clear()

    # ------------------------------------------------------------- HTTP layer
    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        path = request.match_info["path"]
        for f in self.files.values():
            if f.file_path == path:
                return web.Response(body=f.data, content_type=f.mime_type or "application/octet-stream")
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        raw_method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            err = ApiError(401, "Unauthorized")
            self._record(Call(raw_method, {}, arrived, ok=False, error=_err_dict(err), status=401))
            return web.json_response(err.to_dict(), status=401)
        entry = _METHODS.get(raw_method.lower())
        if entry is None:
            err = ApiError(404, "Not Found")
            self._record(Call(raw_method, {}, arrived, ok=False, error=_err_dict(err), status=404))
            return web.json_response(err.to_dict(), status=404)
        method, fn = entry
        call = Call(method, {}, arrived)
        try:
            raw, files = await self._read_body(request)
            call.files = files
            call.params = _decode_params(raw)
        except ApiError as err:
            return self._finish(call, err)

        # latency and injected faults
        delayed = False
        for rule in list(self.rules):
            if rule.latency > 0 and rule.matches(method, call.params.get("chat_id")):
                await self._sleep(rule.latency)
                delayed = True
        if delayed and (request.transport is None or request.transport.is_closing()):
            # the client went away (killed) while the request was held: it never reached
            # "Telegram", so nothing is recorded or sent
            self.abandoned.append(call)
            return web.Response(status=499)
        for rule in list(self.rules):
            if rule.status and rule.latency <= 0 and rule.matches(method, call.params.get("chat_id")):
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self.remove_rule(rule)
                err, resp = self._fault_response(rule)
                call.injected = True
                self._finish(call, err)
                return resp
        try:
            result = await fn(self, call.params, files)
        except ApiError as err:
            return self._finish(call, err)
        except Exception as exc:  # a bug in the fake: answer 500 and keep it for inspection
            self.internal_errors.append(exc)
            return self._finish(call, ApiError(500, f"Internal Server Error: fake bug {exc!r}"))
        call.ok = True
        call.result = result
        self._record(call)
        return web.json_response({"ok": True, "result": result}, dumps=_dumps)

    def _finish(self, call: Call, err: ApiError) -> web.Response:
        call.ok = False
        call.status = err.status
        call.error = _err_dict(err)
        self._record(call)
        return web.json_response(err.to_dict(), status=err.status)

    def _record(self, call: Call) -> None:
        call.index = len(self.calls)
        self.calls.append(call)
        self._notify_call()

    async def _sleep(self, seconds: float) -> None:
        assert self._closing is not None
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _read_body(self, request: web.Request) -> tuple[dict, dict[str, UploadedFile]]:
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, UploadedFile] = {}
        if not request.can_read_body:
            return raw, files
        ctype = request.content_type
        if ctype == "application/json":
            body = await request.read()
            if body.strip():
                try:
                    data = json.loads(body)
                except ValueError:
                    raise _bad("can't parse JSON object") from None
                if not isinstance(data, dict):
                    raise _bad("JSON object expected")
                raw.update(data)
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            post = await request.post()
            for key, value in post.items():
                if isinstance(value, web.FileField):
                    data = value.file.read()
                    files[key] = UploadedFile(key, value.filename, value.content_type, len(data), data)
                elif isinstance(value, (bytes, bytearray)):
                    raw[key] = bytes(value).decode("utf-8", "replace")
                else:
                    raw[key] = value
        return raw, files

    # ------------------------------------------------------------- helpers
    def _alloc_message_id(self, chat_id: int) -> int:
        mid = self._next_message_id[chat_id]
        self._next_message_id[chat_id] = mid + 1
        return mid

    def _public_chat(self, chat: dict) -> dict:
        keys = ("id", "type", "title", "username", "first_name", "last_name", "is_forum")
        return {k: chat[k] for k in keys if k in chat}

    def _new_message(self, chat: dict, p: dict, **content: Any) -> dict:
        cid = int(chat["id"])
        msg: dict[str, Any] = {"message_id": self._alloc_message_id(cid)}
        if chat.get("type") == "channel":
            msg["sender_chat"] = self._public_chat(chat)
        else:
            msg["from"] = dict(self.bot_user)
        msg["chat"] = self._public_chat(chat)
        msg["date"] = int(time.time())
        if p.get("message_thread_id") is not None and chat.get("is_forum"):
            msg["message_thread_id"] = p["message_thread_id"]
            msg["is_topic_message"] = True
        reply = self._reply_to(chat, p)
        if reply is not None:
            msg["reply_to_message"] = reply
        msg.update({k: v for k, v in content.items() if v is not None})
        return msg

    def _store(self, msg: dict) -> dict:
        self.messages[int(msg["chat"]["id"])][int(msg["message_id"])] = msg
        return msg

    def _find_message(self, chat_id: int, message_id: int) -> dict | None:
        return self.messages.get(chat_id, {}).get(message_id) or self.incoming.get(chat_id, {}).get(message_id)

    def _reply_to(self, chat: dict, p: dict) -> dict | None:
        rp = p.get("reply_parameters")
        mid = None
        allow = bool(p.get("allow_sending_without_reply"))
        if isinstance(rp, dict):
            mid = rp.get("message_id")
            allow = allow or bool(rp.get("allow_sending_without_reply"))
            if rp.get("chat_id") not in (None, chat["id"]):
                return None
        elif p.get("reply_to_message_id") is not None:
            mid = p["reply_to_message_id"]
        if mid is None:
            return None
        try:
            mid = int(mid)
        except (TypeError, ValueError):
            raise _bad("invalid reply_to_message_id") from None
        found = self._find_message(int(chat["id"]), mid)
        if found is None:
            if allow:
                return None
            raise _bad("message to be replied not found")
        reply = {k: v for k, v in found.items() if k != "reply_to_message"}
        return reply

    def _format(self, text: Any, parse_mode: Any, entities: Any, *, caption: bool) -> tuple[str | None, list | None]:
        if text is None or text == "":
            if caption:
                return None, None
            raise _bad("message text is empty")
        if not isinstance(text, str):
            text = str(text)
        ents: list[dict] = []
        if entities is not None:
            if not isinstance(entities, list) or not all(
                isinstance(e, dict) and "type" in e and "offset" in e and "length" in e for e in entities
            ):
                raise _bad("can't parse entities JSON object")
            ents = [dict(e) for e in entities]
        elif parse_mode:
            pm = str(parse_mode).lower()
            if pm == "html":
                try:
                    text, ents = parse_html(text, strict_ampersand=self.strict_ampersand)
                except HtmlParseError as e:
                    raise _bad(f"can't parse entities: {e}") from None
                ents = finalize_entities(ents)
            elif pm not in ("markdown", "markdownv2"):  # Markdown is accepted unchecked: gridbot sends HTML
                raise _bad("unsupported parse_mode")
        text, ents = strip_text(text, ents)
        if caption:
            if len(text) > MAX_CAPTION:
                raise _bad("message caption is too long")
            return (text or None), (ents or None)
        if not text:
            raise _bad("message text is empty")
        if len(text) > MAX_TEXT:
            raise _bad("message is too long")
        return text, (ents or None)

    def _check_markup(self, rm: Any) -> dict | None:
        """Validate reply_markup; return what Telegram echoes in the Message (inline keyboards only)."""
        if rm is None:
            return None
        if not isinstance(rm, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in rm:
            rows = rm["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad("field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array of Arrays")
            count = 0
            for row in rows:
                for btn in row:
                    count += 1
                    self._check_inline_button(btn)
            if count > 100:
                raise _bad("reply markup is too long")
            return {"inline_keyboard": [[dict(b) for b in row] for row in rows]}
        if "keyboard" in rm:
            rows = rm["keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad("field \"keyboard\" of the ReplyKeyboardMarkup must be an Array of Arrays")
            for row in rows:
                for btn in row:
                    if isinstance(btn, str):
                        continue
                    if not isinstance(btn, dict) or not isinstance(btn.get("text"), str):
                        raise _bad("can't parse keyboard button: Field \"text\" must be of type String")
            return None
        if rm.get("remove_keyboard") or rm.get("force_reply"):
            return None
        raise _bad("can't parse reply keyboard markup JSON object")

    @staticmethod
    def _check_inline_button(btn: Any) -> None:
        prefix = "can't parse inline keyboard button: "
        if not isinstance(btn, dict):
            raise _bad(prefix + "InlineKeyboardButton must be an Object")
        if not isinstance(btn.get("text"), str):
            raise _bad(prefix + "Field \"text\" must be of type String")
        actions = ("url", "callback_data", "web_app", "login_url", "switch_inline_query",
                   "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
                   "callback_game", "pay")
        if not any(k in btn for k in actions):
            raise _bad(prefix + "Text buttons are unallowed in the inline keyboard")
        if "callback_data" in btn:
            data = btn["callback_data"]
            if not isinstance(data, str):
                raise _bad(prefix + "Field \"callback_data\" must be of type String")
            if not data or len(data.encode("utf-8")) > MAX_CALLBACK_DATA:
                raise _bad("BUTTON_DATA_INVALID")
        if "url" in btn:
            url = btn["url"]
            if not isinstance(url, str):
                raise _bad(prefix + "Field \"url\" must be of type String")
            if not re.match(r"^(https?|tg)://\S+$", url) and not re.match(r"^[\w.-]+\.[a-z]{2,}(/\S*)?$", url):
                raise _bad(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")

    def _new_file(self, data: bytes, *, kind: str, file_name: str | None = None,
                  mime_type: str | None = None) -> _StoredFile:
        n = next(self._file_seq)
        prefix = {"photo": "AgACAgIAAxkDAAI", "document": "BQACAgIAAxkDAAI", "video": "BAACAgIAAxkDAAI",
                  "audio": "CQACAgIAAxkDAAI"}.get(kind, "BQACAgIAAxkDAAI")
        fid = f"{prefix}{n:06d}{secrets.token_urlsafe(24)}"
        ext = {"photo": "jpg"}.get(kind) or (file_name.rsplit(".", 1)[-1] if file_name and "." in file_name else "bin")
        sf = _StoredFile(fid, f"AQAD{n:06d}{secrets.token_hex(3)}", data, file_name, mime_type,
                         f"{kind}s/file_{n}.{ext}")
        self.files[fid] = sf
        return sf

    def _input_file(self, value: Any, files: dict[str, UploadedFile], field_name: str, kind: str,
                    *, in_media: bool = False) -> tuple[bytes, str | None, str | None, _StoredFile | None]:
        """Resolve an InputFile reference -> (data, filename, mime, existing stored file or None)."""
        up: UploadedFile | None = None
        if value is None and field_name in files:
            up = files[field_name]
        elif isinstance(value, str) and value.startswith("attach://"):
            up = files.get(value[len("attach://"):])
            if up is None:
                if in_media:
                    raise _bad("can't parse InputMedia: media not found")
                raise _bad("wrong file identifier/HTTP URL specified")
        elif isinstance(value, str) and value.startswith(("http://", "https://")):
            return b"\xff\xd8fake-remote" * 512, value.rsplit("/", 1)[-1] or None, None, None
        elif isinstance(value, str) and value:
            known = self.files.get(value)
            if known is None:
                if self.strict_file_ids:
                    raise _bad("wrong file identifier/HTTP URL specified")
                known = _StoredFile(value, value[-12:], b"\xff\xd8fake" * 100)
            return known.data, known.file_name, known.mime_type, known
        if up is None:
            raise _bad(f"there is no {kind} in the request")
        if up.size == 0:
            raise _bad("file must be non-empty")
        return up.data, up.filename, up.content_type, None

    def _photo_sizes(self, data: bytes, existing: _StoredFile | None) -> list[dict]:
        w, h = _png_size(data) or (1280, 960)
        sizes = []
        for target in (90, 320, 800, 1280):
            scale = min(1.0, target / max(w, h))
            sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
            if sizes and (sw, sh) == (sizes[-1]["width"], sizes[-1]["height"]):
                continue
            fsize = max(1, int(len(data) * scale * scale)) if scale < 1 else len(data)
            sf = self._new_file(data, kind="photo", mime_type="image/jpeg")
            sizes.append({"file_id": sf.file_id, "file_unique_id": sf.file_unique_id,
                          "file_size": fsize, "width": sw, "height": sh})
        return sizes

    def _document(self, data: bytes, filename: str | None, mime: str | None, existing: _StoredFile | None,
                  kind: str = "document") -> dict:
        sf = existing or self._new_file(data, kind=kind, file_name=filename, mime_type=mime)
        d: dict[str, Any] = {"file_id": sf.file_id, "file_unique_id": sf.file_unique_id, "file_size": len(sf.data)}
        if kind == "document":
            if sf.file_name or filename:
                d["file_name"] = sf.file_name or filename
            d["mime_type"] = sf.mime_type or mime or "application/octet-stream"
        elif kind == "video":
            d.update({"width": 640, "height": 360, "duration": 1, "mime_type": "video/mp4"})
        elif kind == "audio":
            d.update({"duration": 1, "mime_type": mime or "audio/mpeg"})
        return d

    def _resolve_edit_target(self, p: dict) -> tuple[dict, dict] | None:
        if p.get("inline_message_id"):
            return None
        chat = self._resolve_chat(p.get("chat_id"))
        mid = p.get("message_id")
        if mid is None:
            raise _bad("message identifier is not specified")
        if not isinstance(mid, int):
            raise _bad("message to edit not found")
        cid = int(chat["id"])
        msg = self.messages.get(cid, {}).get(mid)
        if msg is None:
            if mid in self.incoming.get(cid, {}):
                raise _bad("message can't be edited")
            raise _bad("message to edit not found")
        return chat, msg

    def _replace(self, old: dict, changes: dict, drop: Iterable[str] = ()) -> dict:
        new = {k: v for k, v in old.items() if k not in drop}
        new.update({k: v for k, v in changes.items() if v is not None})
        for k, v in changes.items():
            if v is None:
                new.pop(k, None)
        new["edit_date"] = int(time.time())
        self._store(new)
        return new


def _err_dict(err: ApiError) -> dict:
    d = {"error_code": err.status, "description": err.description}
    if err.parameters:
        d["parameters"] = err.parameters
    return d


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _decode_params(raw: dict) -> dict:
    """Decode form/JSON params: nested JSON fields parsed, numbers/bools converted."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _JSON_FIELDS:
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    raise _bad(f"can't parse {_JSON_FIELDS[key]} JSON object") from None
        elif key == "chat_id" or key == "from_chat_id":
            if isinstance(value, str) and _INT_RE.match(value.strip()):
                value = int(value.strip())
        elif key in _INT_FIELDS:
            if isinstance(value, str) and _INT_RE.match(value.strip()):
                value = int(value.strip())
        elif key in _FLOAT_FIELDS:
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    pass
        elif key not in _STRING_FIELDS and isinstance(value, str) and value in ("true", "false"):
            value = value == "true"
        out[key] = value
    return out


def _int_param(p: dict, name: str, default: int | None = None) -> int | None:
    v = p.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return int(v)
    if isinstance(v, str) and _INT_RE.match(v):
        return int(v)
    raise _bad(f"invalid {name} specified")


# =============================================================================
# Methods
# =============================================================================

@_method("getMe")
async def _get_me(api: FakeBotAPI, p: dict, files: dict) -> dict:
    return {
        **api.bot_user,
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }


@_method("logOut")
async def _log_out(api: FakeBotAPI, p: dict, files: dict) -> bool:
    return True


@_method("close")
async def _close(api: FakeBotAPI, p: dict, files: dict) -> bool:
    return True


@_method("getUpdates")
async def _get_updates(api: FakeBotAPI, p: dict, files: dict) -> list:
    if api.webhook is not None:
        raise ApiError(409, DESC_WEBHOOK_CONFLICT)
    offset = _int_param(p, "offset")
    limit = _int_param(p, "limit", 100) or 100
    limit = max(1, min(100, limit))
    timeout = max(0, _int_param(p, "timeout", 0) or 0)
    allowed = p.get("allowed_updates")
    if isinstance(allowed, list):
        api.allowed_updates = [str(a) for a in allowed] or None

    # a newer getUpdates terminates an older long poll, like Telegram
    owner = object()
    api._poll_owner = owner
    api._notify_updates()

    if offset is not None:
        if offset < 0:
            api._updates = api._updates[offset:]
        elif offset > 0:
            api._updates = [u for u in api._updates if u["update_id"] >= offset]

    def select() -> list:
        allowed_set = api.allowed_updates
        out = []
        for u in api._updates:
            kinds = [k for k in u if k != "update_id"]
            kind = kinds[0] if kinds else ""
            if allowed_set is None:
                if kind in ("chat_member", "message_reaction", "message_reaction_count"):
                    continue
            elif kind not in allowed_set:
                continue
            out.append(u)
            if len(out) >= limit:
                break
        return out

    deadline = time.monotonic() + timeout
    while True:
        ev = api._update_event
        got = select()
        if got or timeout == 0 or (api._closing is not None and api._closing.is_set()):
            return got
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return []
        assert ev is not None
        try:
            await asyncio.wait_for(ev.wait(), remaining)
        except asyncio.TimeoutError:
            return select()
        if api._poll_owner is not owner:
            raise ApiError(409, DESC_GETUPDATES_CONFLICT)


@_method("setWebhook")
async def _set_webhook(api: FakeBotAPI, p: dict, files: dict) -> bool:
    url = p.get("url") or ""
    if not url:
        api.webhook = None
        return True
    if not url.startswith("https://"):
        raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
    if p.get("drop_pending_updates"):
        api._updates.clear()
    api.webhook = {
        "url": url,
        "max_connections": _int_param(p, "max_connections", 40),
        "secret_token": p.get("secret_token"),
        "allowed_updates": p.get("allowed_updates"),
        "has_custom_certificate": "certificate" in files,
        "ip_address": p.get("ip_address"),
    }
    return True


@_method("deleteWebhook")
async def _delete_webhook(api: FakeBotAPI, p: dict, files: dict) -> bool:
    api.webhook = None
    if p.get("drop_pending_updates"):
        api._updates.clear()
    return True


@_method("getWebhookInfo")
async def _get_webhook_info(api: FakeBotAPI, p: dict, files: dict) -> dict:
    wh = api.webhook
    info: dict[str, Any] = {
        "url": wh["url"] if wh else "",
        "has_custom_certificate": bool(wh and wh["has_custom_certificate"]),
        "pending_update_count": len(api._updates),
    }
    if wh:
        info["max_connections"] = wh["max_connections"]
        if wh.get("allowed_updates"):
            info["allowed_updates"] = wh["allowed_updates"]
        if wh.get("ip_address"):
            info["ip_address"] = wh["ip_address"]
    return info


@_method("sendMessage")
async def _send_message(api: FakeBotAPI, p: dict, files: dict) -> dict:
    chat = api._resolve_chat(p.get("chat_id"))
    text, ents = api._format(p.get("text"), p.get("parse_mode"), p.get("entities"), caption=False)
    markup = api._check_markup(p.get("reply_markup"))
    lpo = p.get("link_preview_options")
    if lpo is not None and not isinstance(lpo, dict):
        raise _bad("can't parse link preview options JSON object")
    msg = api._new_message(chat, p, text=text, entities=ents, reply_markup=markup)
    return api._store(msg)


@_method("sendPhoto")
async def _send_photo(api: FakeBotAPI, p: dict, files: dict) -> dict:
    chat = api._resolve_chat(p.get("chat_id"))
    caption, ents = api._format(p.get("caption"), p.get("parse_mode"), p.get("caption_entities"), caption=True)
    markup = api._check_markup(p.get("reply_markup"))
    data, _fn, _mime, existing = api._input_file(p.get("photo"), files, "photo", "photo")
    sizes = api._photo_sizes(data, existing)
    msg = api._new_message(chat, p, photo=sizes, caption=caption, caption_entities=ents, reply_markup=markup,
                           has_media_spoiler=True if p.get("has_spoiler") else None)
    return api._store(msg)


@_method("sendDocument")
async def _send_document(api: FakeBotAPI, p: dict, files: dict) -> dict:
    chat = api._resolve_chat(p.get("chat_id"))
    caption, ents = api._format(p.get("caption"), p.get("parse_mode"), p.get("caption_entities"), caption=True)
    markup = api._check_markup(p.get("reply_markup"))
    data, fn, mime, existing = api._input_file(p.get("document"), files, "document", "document")
    if len(data) > 50 * 1024 * 1024:
        raise ApiError(413, "Request Entity Too Large")
    doc = api._document(data, fn, mime, existing)
    msg = api._new_message(chat, p, document=doc, caption=caption, caption_entities=ents, reply_markup=markup)
    return api._store(msg)


@_method("sendLocation")
async def _send_location(api: FakeBotAPI, p: dict, files: dict) -> dict:
    chat = api._resolve_chat(p.get("chat_id"))
    lat, lon = p.get("latitude"), p.get("longitude")
    if lat is None or lat == "":
        raise _bad("latitude is empty")
    if lon is None or lon == "":
        raise _bad("longitude is empty")
    if not isinstance(lat, (int, float)) or not isinstance(lon, (int, float)):
        raise _bad("wrong location specified")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise _bad("wrong location specified")
    markup = api._check_markup(p.get("reply_markup"))
    loc: dict[str, Any] = {"latitude": float(lat), "longitude": float(lon)}
    if p.get("horizontal_accuracy") is not None:
        loc["horizontal_accuracy"] = p["horizontal_accuracy"]
    if p.get("live_period") is not None:
        loc["live_period"] = p["live_period"]
    msg = api._new_message(chat, p, location=loc, reply_markup=markup)
    return api._store(msg)


@_method("sendMediaGroup")
async def _send_media_group(api: FakeBotAPI, p: dict, files: dict) -> list:
    chat = api._resolve_chat(p.get("chat_id"))
    media = p.get("media")
    if media is None:
        raise _bad("parameter \"media\" is required")
    if not isinstance(media, list):
        raise _bad("can't parse media JSON object")
    if len(media) > 10:
        raise _bad("too much messages to send as an album")
    if len(media) < api.min_media_group:
        raise _bad("media group must contain 2-10 items")
    prepared = []
    kinds = set()
    for item in media:
        if not isinstance(item, dict) or item.get("type") not in ("photo", "video", "document", "audio"):
            raise _bad("can't parse InputMedia: unsupported media type")
        kind = item["type"]
        kinds.add("document" if kind == "document" else "audio" if kind == "audio" else "visual")
        caption, ents = api._format(item.get("caption"), item.get("parse_mode"), item.get("caption_entities"),
                                    caption=True)
        data, fn, mime, existing = api._input_file(item.get("media"), files, "", kind, in_media=True)
        prepared.append((kind, caption, ents, data, fn, mime, existing, item))
    if len(kinds) > 1:
        raise _bad("document can't be mixed with other media types" if "document" in kinds
                   else "audio can't be mixed with other media types")
    group_id = str(next(api._media_group_seq))
    out = []
    for idx, (kind, caption, ents, data, fn, mime, existing, item) in enumerate(prepared):
        content: dict[str, Any] = {"media_group_id": group_id, "caption": caption, "caption_entities": ents}
        if kind == "photo":
            content["photo"] = api._photo_sizes(data, existing)
        else:
            content[kind] = api._document(data, fn, mime, existing, kind=kind)
        if item.get("has_spoiler"):
            content["has_media_spoiler"] = True
        msg = api._new_message(chat, p, **content)
        out.append(api._store(msg))
    return out


@_method("editMessageText")
async def _edit_message_text(api: FakeBotAPI, p: dict, files: dict) -> Any:
    text, ents = api._format(p.get("text"), p.get("parse_mode"), p.get("entities"), caption=False)
    markup = api._check_markup(p.get("reply_markup"))
    target = api._resolve_edit_target(p)
    if target is None:
        return True
    chat, old = target
    if "text" not in old:
        raise _bad("there is no text in the message to edit")
    if old.get("text") == text and old.get("entities") == ents and old.get("reply_markup") == markup:
        raise _bad(DESC_NOT_MODIFIED[len("Bad Request: "):])
    return api._replace(old, {"text": text, "entities": ents, "reply_markup": markup})


@_method("editMessageCaption")
async def _edit_message_caption(api: FakeBotAPI, p: dict, files: dict) -> Any:
    caption, ents = api._format(p.get("caption"), p.get("parse_mode"), p.get("caption_entities"), caption=True)
    markup = api._check_markup(p.get("reply_markup"))
    target = api._resolve_edit_target(p)
    if target is None:
        return True
    chat, old = target
    if "text" in old or "location" in old:
        raise _bad("there is no caption in the message to edit")
    if old.get("caption") == caption and old.get("caption_entities") == ents and old.get("reply_markup") == markup:
        raise _bad(DESC_NOT_MODIFIED[len("Bad Request: "):])
    return api._replace(old, {"caption": caption, "caption_entities": ents, "reply_markup": markup})


@_method("editMessageReplyMarkup")
async def _edit_message_reply_markup(api: FakeBotAPI, p: dict, files: dict) -> Any:
    markup = api._check_markup(p.get("reply_markup"))
    target = api._resolve_edit_target(p)
    if target is None:
        return True
    chat, old = target
    if old.get("reply_markup") == markup:
        raise _bad(DESC_NOT_MODIFIED[len("Bad Request: "):])
    return api._replace(old, {"reply_markup": markup})


@_method("deleteMessage")
async def _delete_message(api: FakeBotAPI, p: dict, files: dict) -> bool:
    chat = api._resolve_chat(p.get("chat_id"))
    mid = p.get("message_id")
    cid = int(chat["id"])
    if isinstance(mid, int) and mid in api.messages.get(cid, {}):
        del api.messages[cid][mid]
        return True
    if isinstance(mid, int) and mid in api.incoming.get(cid, {}):
        del api.incoming[cid][mid]
        return True
    raise _bad("message to delete not found")


@_method("deleteMessages")
async def _delete_messages(api: FakeBotAPI, p: dict, files: dict) -> bool:
    chat = api._resolve_chat(p.get("chat_id"))
    ids = p.get("message_ids")
    if not isinstance(ids, list) or not ids:
        raise _bad("message identifiers are not specified")
    cid = int(chat["id"])
    for mid in ids:
        api.messages.get(cid, {}).pop(int(mid), None)
        api.incoming.get(cid, {}).pop(int(mid), None)
    return True


@_method("answerCallbackQuery")
async def _answer_callback_query(api: FakeBotAPI, p: dict, files: dict) -> bool:
    qid = p.get("callback_query_id")
    if qid is None or str(qid) not in api._open_callbacks:
        raise _bad(DESC_QUERY_TOO_OLD[len("Bad Request: "):])
    text = p.get("text")
    if isinstance(text, str) and len(text) > 200:
        raise _bad("MESSAGE_TOO_LONG")
    api._open_callbacks.discard(str(qid))
    return True


def _commands_key(p: dict) -> tuple[str, str]:
    scope = p.get("scope")
    skey = json.dumps(scope, sort_keys=True) if isinstance(scope, dict) and scope.get("type") != "default" else "default"
    return skey, str(p.get("language_code") or "")


@_method("setMyCommands")
async def _set_my_commands(api: FakeBotAPI, p: dict, files: dict) -> bool:
    cmds = p.get("commands")
    if not isinstance(cmds, list):
        raise _bad("can't parse commands JSON object" if cmds is not None else "parameter \"commands\" is required")
    if len(cmds) > 100:
        raise _bad("BOT_COMMANDS_TOO_MUCH")
    out = []
    for c in cmds:
        if not isinstance(c, dict):
            raise _bad("can't parse BotCommand: BotCommand must be an Object")
        name, desc = c.get("command"), c.get("description")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,32}", name.lstrip("/")):
            raise _bad("BOT_COMMAND_INVALID")
        if not isinstance(desc, str) or not (1 <= len(desc.strip()) <= 256):
            raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        out.append({"command": name.lstrip("/"), "description": desc})
    api.commands[_commands_key(p)] = out
    return True


@_method("getMyCommands")
async def _get_my_commands(api: FakeBotAPI, p: dict, files: dict) -> list:
    return list(api.commands.get(_commands_key(p), []))


@_method("deleteMyCommands")
async def _delete_my_commands(api: FakeBotAPI, p: dict, files: dict) -> bool:
    api.commands.pop(_commands_key(p), None)
    return True


@_method("getChat")
async def _get_chat(api: FakeBotAPI, p: dict, files: dict) -> dict:
    chat = api._resolve_chat(p.get("chat_id"))
    info = dict(api._public_chat(chat))
    info.update({
        "accent_color_id": 0,
        "max_reaction_count": 11,
        "accepted_gift_types": {"unlimited_gifts": True, "limited_gifts": True, "unique_gifts": True,
                                "premium_subscription": True, "gifts_from_channels": True},
    })
    return info


@_method("getFile")
async def _get_file(api: FakeBotAPI, p: dict, files: dict) -> dict:
    fid = p.get("file_id")
    if not fid:
        raise _bad("file_id not specified")
    sf = api.files.get(str(fid))
    if sf is None:
        raise _bad("invalid file_id")
    if sf.file_path is None:
        sf.file_path = f"documents/file_{next(api._file_seq)}"
    return {"file_id": sf.file_id, "file_unique_id": sf.file_unique_id, "file_size": len(sf.data),
            "file_path": sf.file_path}


_CHAT_ACTIONS = {
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note",
}


@_method("sendChatAction")
async def _send_chat_action(api: FakeBotAPI, p: dict, files: dict) -> bool:
    api._resolve_chat(p.get("chat_id"))
    if p.get("action") not in _CHAT_ACTIONS:
        raise _bad("wrong parameter action in request")
    return True


for _name in ("setMyDescription", "setMyShortDescription", "setMyName", "setChatMenuButton",
              "setMyDefaultAdministratorRights"):
    async def _ok(api: FakeBotAPI, p: dict, files: dict) -> bool:
        return True

    _method(_name)(_ok)
