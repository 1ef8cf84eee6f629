"""The neutral types every transport speaks, and the Messenger port in front of Telegram.

Handlers see `Incoming` and produce `Outgoing` messages (through the outbox); the aiogram,
python-telegram-bot and console adapters translate to and from these. Nothing here imports a
bot framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class User:
    id: int
    first_name: str = ""
    last_name: str = ""
    username: str | None = None
    language_code: str | None = None

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or (self.username or str(self.id))


@dataclass(frozen=True, slots=True)
class Chat:
    id: int
    type: str = "private"  # private | group | supergroup | channel
    title: str | None = None

    @property
    def is_private(self) -> bool:
        return self.type == "private"


@dataclass(frozen=True, slots=True)
class Location:
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Incoming:
    """One update from a user, whatever transport carried it."""

    update_id: int
    user: User
    chat: Chat
    kind: str  # message | callback | edited | member | other
    text: str = ""
    command: str | None = None  # without the slash and the @botname
    args: str = ""
    photos: tuple[str, ...] = ()  # file ids, the largest size of each photo
    media_group_id: str | None = None
    location: Location | None = None
    callback_id: str | None = None
    callback_data: str | None = None
    message_id: int | None = None  # the message itself, or the one whose button was pressed
    reply_to_bot: bool = False
    mentions_bot: bool = False
    unsupported: str | None = None  # e.g. "voice", "sticker", "document"
    new_chat_title: str | None = None
    bot_added: bool = False
    migrate_to_chat_id: int | None = None

    @property
    def is_private(self) -> bool:
        return self.chat.is_private


@dataclass(frozen=True, slots=True)
class Button:
    text: str
    data: str | None = None  # callback data, at most 64 bytes
    url: str | None = None


Keyboard = list[list[Button]]


@dataclass(slots=True)
class Outgoing:
    """One message to deliver: what the outbox stores and the Messenger sends.

    method is one of: send (text), photo (one photo, caption), album (several photos, then
    the text as a separate message if it has buttons), location, edit (text of message_id).
    """

    chat_id: int
    method: str = "send"
    text: str = ""
    buttons: Keyboard | None = None
    photos: list[str] = field(default_factory=list)
    location: Location | None = None
    message_id: int | None = None
    html: bool = True
    disable_preview: bool = True

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"chat_id": self.chat_id, "method": self.method, "text": self.text}
        if self.buttons:
            d["buttons"] = [[{"text": b.text, "data": b.data, "url": b.url} for b in row] for row in self.buttons]
        if self.photos:
            d["photos"] = list(self.photos)
        if self.location:
            d["location"] = [self.location.lat, self.location.lon]
        if self.message_id is not None:
            d["message_id"] = self.message_id
        if not self.html:
            d["html"] = False
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Outgoing:
        buttons = None
        if d.get("buttons"):
            buttons = [[Button(b["text"], b.get("data"), b.get("url")) for b in row] for row in d["buttons"]]
        loc = d.get("location")
        return cls(
            chat_id=int(d["chat_id"]),
            method=d.get("method", "send"),
            text=d.get("text", ""),
            buttons=buttons,
            photos=list(d.get("photos") or []),
            location=Location(loc[0], loc[1]) if loc else None,
            message_id=d.get("message_id"),
            html=d.get("html", True),
        )


# --- errors a Messenger raises, classified by what to do next --------------------------


class DeliveryError(Exception):
    """Base class: something went wrong sending one message."""


class PermanentError(DeliveryError):
    """Never retry this message (bad request we cannot fix by waiting)."""


class RecipientGone(PermanentError):
    """The bot was blocked, the user deactivated, the chat is gone: mark the chat inactive."""


class NotModified(PermanentError):
    """An edit that changes nothing; harmless, counts as delivered."""


class RetryAfter(DeliveryError):
    def __init__(self, seconds: float, message: str = "") -> None:
        super().__init__(message or f"retry after {seconds}s")
        self.seconds = float(seconds)


class ChatMigrated(DeliveryError):
    def __init__(self, new_chat_id: int) -> None:
        super().__init__(f"chat migrated to {new_chat_id}")
        self.new_chat_id = int(new_chat_id)


class TransientError(DeliveryError):
    """Network trouble or a 5xx: retry with backoff."""


class Messenger(Protocol):
    """What gridbot needs from Telegram (or the console)."""

    async def deliver(self, msg: Outgoing) -> int | None:
        """Send or edit one message; returns the id of the (first) message sent."""

    async def answer_callback(self, callback_id: str, text: str | None = None, alert: bool = False) -> None: ...

    async def set_commands(self, commands: dict[str, list[tuple[str, str]]]) -> None:
        """commands: language code ('' for default) -> [(command, description)]."""
