"""What every real transport shares: composing a delivery from the Bot API's primitives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from bot.transport.base import Keyboard, Outgoing

CAPTION_LIMIT = 1024


class BaseMessenger(ABC):
    """Turns one Outgoing into Bot API calls; subclasses make the calls with their library."""

    @abstractmethod
    async def send_text(self, chat_id: int, text: str, buttons: Keyboard | None, html: bool) -> int: ...

    @abstractmethod
    async def send_photo(self, chat_id: int, photo: str, caption: str, buttons: Keyboard | None) -> int: ...

    @abstractmethod
    async def send_album(self, chat_id: int, photos: list[str], caption: str) -> int: ...

    @abstractmethod
    async def send_location(self, chat_id: int, lat: float, lon: float) -> int: ...

    @abstractmethod
    async def edit_text(self, chat_id: int, message_id: int, text: str, buttons: Keyboard | None) -> None: ...

    async def deliver(self, msg: Outgoing) -> int | None:
        if msg.method == "edit" and msg.message_id is not None:
            await self.edit_text(msg.chat_id, msg.message_id, msg.text, msg.buttons)
            return msg.message_id
        if msg.method == "location" and msg.location is not None:
            first = await self.send_location(msg.chat_id, msg.location.lat, msg.location.lon)
            if msg.text:
                return await self.send_text(msg.chat_id, msg.text, msg.buttons, msg.html)
            return first
        photos = msg.photos
        if len(photos) == 1:
            if len(msg.text) <= CAPTION_LIMIT:
                return await self.send_photo(msg.chat_id, photos[0], msg.text, msg.buttons)
            await self.send_photo(msg.chat_id, photos[0], "", None)
        elif len(photos) > 1:
            # an album cannot carry buttons: the text with its buttons follows it
            await self.send_album(msg.chat_id, photos[:10], "")
        return await self.send_text(msg.chat_id, msg.text, msg.buttons, msg.html)


def keyboard_json(buttons: Keyboard | None) -> dict[str, Any] | None:
    if not buttons:
        return None
    return {"inline_keyboard": [[({"text": b.text, "url": b.url} if b.url else {"text": b.text, "callback_data": b.data})
                                 for b in row] for row in buttons]}
