"""Builders for incoming Telegram updates, to feed ``FakeBotAPI.push_update``.

The builders return plain ``{"message": {...}}``-style dicts without an
``update_id`` (push_update assigns it) and, for new messages, without a
``message_id`` (push_update takes the next id of the chat, shared with the
bot's own messages, like Telegram).

    alice = TgUser(1001, "Alice")
    api.push_update(message(alice, text="/start"))
    [sent] = await api.wait_sent(alice.id)
    api.push_update(callback(alice, sent.result, "menu:1"))
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass
from typing import Any

__all__ = [
    "TgUser",
    "private_chat",
    "group_chat",
    "message",
    "edited_message",
    "callback",
    "my_chat_member",
    "photo_sizes",
]

_callback_seq = itertools.count(1)
_file_seq = itertools.count(1)


@dataclass(frozen=True)
class TgUser:
    id: int
    first_name: str
    language_code: str | None = "zh-hans"
    username: str | None = None
    last_name: str | None = None
    is_bot: bool = False

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.last_name:
            d["last_name"] = self.last_name
        if self.username:
            d["username"] = self.username
        if self.language_code:
            d["language_code"] = self.language_code
        return d

    @property
    def chat(self) -> dict:
        return private_chat(self)


def private_chat(user: TgUser) -> dict:
    d: dict[str, Any] = {"id": user.id, "type": "private", "first_name": user.first_name}
    if user.last_name:
        d["last_name"] = user.last_name
    if user.username:
        d["username"] = user.username
    return d


def group_chat(chat_id: int, title: str = "Test group", type: str | None = None, *,
               username: str | None = None, is_forum: bool | None = None) -> dict:
    """Group chat dict; type defaults to "supergroup" for -100… ids, else "group"."""
    if type is None:
        type = "supergroup" if str(chat_id).startswith("-100") else "group"
    d: dict[str, Any] = {"id": chat_id, "type": type, "title": title}
    if username:
        d["username"] = username
    if is_forum:
        d["is_forum"] = True
    return d


def _chat_of(user: TgUser, chat: Any) -> dict:
    if chat is None:
        return private_chat(user)
    if isinstance(chat, dict):
        return dict(chat)
    if isinstance(chat, int):
        return private_chat(user) if chat == user.id else group_chat(chat)
    raise TypeError(f"chat must be None, an int id or a Chat dict, not {chat!r}")


def _utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _command_entities(text: str) -> list[dict]:
    if not text.startswith("/"):
        return []
    first = text.split(maxsplit=1)[0] if text.strip() else text
    if len(first) < 2:
        return []
    return [{"type": "bot_command", "offset": 0, "length": _utf16_len(first)}]


def photo_sizes(file_id: str | None = None, width: int = 1280, height: int = 960) -> list[dict]:
    """A realistic PhotoSize array (thumbnail .. full size) for an incoming photo."""
    n = next(_file_seq)
    base = file_id or f"AgACAgUAAxkBAAI{n:06d}{secrets.token_urlsafe(20)}"
    out = []
    for i, target in enumerate((90, 320, 800, 1280)):
        scale = min(1.0, target / max(width, height))
        out.append({
            "file_id": base if target == 1280 else f"{base}_{i}",
            "file_unique_id": f"AQADu{n:05d}{i}",
            "file_size": int(200_000 * scale * scale) + 1000,
            "width": max(1, round(width * scale)),
            "height": max(1, round(height * scale)),
        })
    return out


def _message_body(user: TgUser, chat: Any, *, text: str | None, photo: Any, location: Any,
                  media_group_id: str | None, reply_to: dict | None, entities: list | None,
                  caption: str | None, message_id: int | None, date: int | None,
                  document: dict | None, contact: dict | None, message_thread_id: int | None) -> dict:
    msg: dict[str, Any] = {}
    if message_id is not None:
        msg["message_id"] = message_id
    msg["from"] = user.to_dict()
    msg["chat"] = _chat_of(user, chat)
    msg["date"] = int(date if date is not None else time.time())
    if message_thread_id is not None:
        msg["message_thread_id"] = message_thread_id
        msg["is_topic_message"] = True
    if reply_to is not None:
        reply_to = getattr(reply_to, "result", reply_to)  # accept a Call
        if isinstance(reply_to, list):
            reply_to = reply_to[0]
        msg["reply_to_message"] = {k: v for k, v in reply_to.items() if k != "reply_to_message"}
    if media_group_id is not None:
        msg["media_group_id"] = str(media_group_id)
    if text is not None:
        msg["text"] = text
        ents = entities if entities is not None else _command_entities(text)
        if ents:
            msg["entities"] = ents
    if photo is not None:
        if photo is True:
            photo = photo_sizes()
        elif isinstance(photo, str):
            photo = photo_sizes(photo)
        msg["photo"] = photo
    if caption is not None:
        msg["caption"] = caption
        ents = _command_entities(caption)
        if ents:
            msg["caption_entities"] = ents
    if location is not None:
        if isinstance(location, (tuple, list)):
            location = {"latitude": float(location[0]), "longitude": float(location[1])}
        msg["location"] = location
    if document is not None:
        msg["document"] = document
    if contact is not None:
        msg["contact"] = contact
    return msg


def message(
    user: TgUser,
    chat: Any = None,
    text: str | None = None,
    *,
    photo: Any = None,
    location: Any = None,
    media_group_id: str | None = None,
    reply_to: dict | None = None,
    entities: list | None = None,
    caption: str | None = None,
    message_id: int | None = None,
    date: int | None = None,
    document: dict | None = None,
    contact: dict | None = None,
    message_thread_id: int | None = None,
) -> dict:
    """``{"message": Message}`` from ``user``.

    chat: None -> the user's private chat; an int -> private if == user.id else a group
    (supergroup for -100… ids); or a Chat dict (see group_chat).
    photo: True (auto PhotoSize list), a file_id string, or a PhotoSize list.
    location: (lat, lon) or a Location dict.  reply_to: a Message dict (or a Call).
    A leading /command gets a bot_command entity automatically.
    """
    return {"message": _message_body(
        user, chat, text=text, photo=photo, location=location, media_group_id=media_group_id,
        reply_to=reply_to, entities=entities, caption=caption, message_id=message_id, date=date,
        document=document, contact=contact, message_thread_id=message_thread_id)}


def edited_message(
    user: TgUser,
    original: dict | None = None,
    text: str | None = None,
    *,
    chat: Any = None,
    message_id: int | None = None,
    caption: str | None = None,
    location: Any = None,
    edit_date: int | None = None,
) -> dict:
    """``{"edited_message": Message}``: ``original`` is the pushed message (update or Message dict),
    or give chat + message_id. ``edit_date`` defaults to now."""
    if original is not None:
        original = original.get("message", original)
        chat = original["chat"] if chat is None else chat
        message_id = original.get("message_id") if message_id is None else message_id
        date = original.get("date")
    else:
        date = None
    if message_id is None:
        raise ValueError("edited_message needs the original message (with message_id) or message_id=")
    body = _message_body(user, chat, text=text, photo=None, location=location, media_group_id=None,
                         reply_to=None, entities=None, caption=caption, message_id=message_id, date=date,
                         document=None, contact=None, message_thread_id=None)
    body["edit_date"] = int(edit_date if edit_date is not None else time.time())
    return {"edited_message": body}


def callback(user: TgUser, message: Any, data: str, *, id: str | None = None,
             chat_instance: str | None = None) -> dict:
    """``{"callback_query": CallbackQuery}`` for a button press on ``message``.

    ``message``: a Message dict the bot sent (e.g. ``call.result`` or ``api.messages[chat][mid]``),
    or a Call from ``api.sent()`` (its first message is used).
    """
    message = getattr(message, "result", message)
    if isinstance(message, list):
        message = message[0]
    if not isinstance(message, dict) or "message_id" not in message:
        raise TypeError("callback() needs the Message dict (or Call) the button belongs to")
    cq: dict[str, Any] = {
        "id": id or f"{user.id}{next(_callback_seq):08d}",
        "from": user.to_dict(),
        "message": message,
        "chat_instance": chat_instance or str(abs(hash(("ci", message["chat"]["id"]))) % 10**18),
        "data": data,
    }
    return {"callback_query": cq}


_ADMIN_RIGHTS = {
    "can_be_edited": False, "is_anonymous": False, "can_manage_chat": True, "can_delete_messages": True,
    "can_manage_video_chats": True, "can_restrict_members": True, "can_promote_members": False,
    "can_change_info": True, "can_invite_users": True, "can_post_stories": False, "can_edit_stories": False,
    "can_delete_stories": False, "can_pin_messages": True,
}


def _member(status: str, who: dict | None) -> dict:
    m: dict[str, Any] = {"user": who, "status": status}
    if status == "kicked":
        m["until_date"] = 0
    elif status == "administrator":
        m.update(_ADMIN_RIGHTS)
    return m


def my_chat_member(
    user: TgUser,
    chat: Any = None,
    old_status: str = "member",
    new_status: str = "kicked",
    *,
    bot: dict | None = None,
    date: int | None = None,
) -> dict:
    """``{"my_chat_member": ChatMemberUpdated}``: ``user`` changed the bot's status in ``chat``.

    Private chat + new_status "kicked" = the user blocked the bot; "member" = (re)started.
    ``bot`` (User dict) defaults to the fake's bot user (filled in by push_update).
    """
    return {"my_chat_member": {
        "chat": _chat_of(user, chat),
        "from": user.to_dict(),
        "date": int(date if date is not None else time.time()),
        "old_chat_member": _member(old_status, bot),
        "new_chat_member": _member(new_status, bot),
    }}
