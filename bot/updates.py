"""Telegram update JSON → the neutral Incoming. One parser for every transport."""

from __future__ import annotations

from typing import Any

from bot.transport.base import Chat, Incoming, Location, User

UNSUPPORTED = ("voice", "video", "video_note", "audio", "document", "sticker", "animation", "contact", "poll",
               "dice", "game", "venue_only")


def _user(d: dict[str, Any] | None) -> User:
    d = d or {}
    return User(
        id=int(d.get("id", 0)),
        first_name=d.get("first_name", "") or "",
        last_name=d.get("last_name", "") or "",
        username=d.get("username"),
        language_code=d.get("language_code"),
    )


def _chat(d: dict[str, Any] | None, fallback_user: User) -> Chat:
    if not d:
        return Chat(id=fallback_user.id, type="private")
    return Chat(id=int(d["id"]), type=d.get("type", "private"), title=d.get("title"))


def parse_command(text: str, bot_username: str | None) -> tuple[str | None, str, bool]:
    """'/report@gridbot 香港路 灯坏了' → ('report', '香港路 灯坏了', addressed_to_us)."""
    if not text.startswith("/"):
        return None, text, False
    head, _, rest = text.partition(" ")
    name, _, target = head[1:].partition("@")
    if target and bot_username and target.lower() != bot_username.lower():
        return None, text, False  # a command for another bot in the group
    if not name:
        return None, text, False
    return name.lower(), rest.strip(), bool(target)


def to_incoming(update: dict[str, Any], *, bot_id: int | None = None, bot_username: str | None = None) -> Incoming | None:
    uid = int(update.get("update_id", 0))
    if "callback_query" in update:
        cq = update["callback_query"]
        user = _user(cq.get("from"))
        msg = cq.get("message") or {}
        chat = _chat(msg.get("chat"), user)
        return Incoming(update_id=uid, user=user, chat=chat, kind="callback", callback_id=cq.get("id"),
                        callback_data=cq.get("data"), message_id=msg.get("message_id"),
                        on_media=bool(msg.get("photo") or msg.get("document") or msg.get("video")))
    kind = "message"
    msg = update.get("message")
    if msg is None and "edited_message" in update:
        msg, kind = update["edited_message"], "edited"
    if msg is None:
        member = update.get("my_chat_member")
        if member:
            user = _user(member.get("from"))
            chat = _chat(member.get("chat"), user)
            new = (member.get("new_chat_member") or {}).get("status")
            return Incoming(update_id=uid, user=user, chat=chat, kind="member",
                            bot_added=new in ("member", "administrator"),
                            unsupported=None if new in ("member", "administrator") else "left")
        return None  # channel posts, polls, …: nothing for us
    user = _user(msg.get("from"))
    chat = _chat(msg.get("chat"), user)
    text = msg.get("text") or msg.get("caption") or ""
    command, args, _ = parse_command(text, bot_username) if msg.get("text") or msg.get("caption") else (None, "", False)
    photos: tuple[str, ...] = ()
    if msg.get("photo"):
        # sizes come smallest first; keep the largest
        photos = (msg["photo"][-1]["file_id"],)
    location = None
    if msg.get("location"):
        location = Location(float(msg["location"]["latitude"]), float(msg["location"]["longitude"]))
    unsupported = None
    for key in UNSUPPORTED:
        if key in msg:
            unsupported = key
            break
    reply = msg.get("reply_to_message") or {}
    reply_to_bot = bool(bot_id and (reply.get("from") or {}).get("id") == bot_id)
    mentions = bool(bot_username and f"@{bot_username}".lower() in text.lower())
    return Incoming(
        update_id=uid, user=user, chat=chat, kind=kind, text=text if command is None else text,
        command=command, args=args if command else "", photos=photos, media_group_id=msg.get("media_group_id"),
        location=location, message_id=msg.get("message_id"), reply_to_bot=reply_to_bot, mentions_bot=mentions,
        unsupported=unsupported, new_chat_title=msg.get("new_chat_title"),
        bot_added=any((m or {}).get("id") == bot_id for m in msg.get("new_chat_members") or []) if bot_id else False,
        migrate_to_chat_id=msg.get("migrate_to_chat_id"),
    )


BIGINT = 2**63


def chat_of(update: dict[str, Any]) -> int | None:
    """The chat an update belongs to, or None (none, or too malformed to say)."""
    try:
        chat = None
        for key in ("message", "edited_message", "my_chat_member", "channel_post"):
            if key in update:
                chat = int(update[key]["chat"]["id"])
                break
        else:
            if "callback_query" in update:
                cq = update["callback_query"]
                chat = int(cq["message"]["chat"]["id"]) if cq.get("message") else int(cq["from"]["id"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return chat if chat is not None and -BIGINT <= chat < BIGINT else None


def valid_update_id(update: Any) -> int | None:
    """The update_id of something that is an update at all (a dict with an integer id), else None."""
    if not isinstance(update, dict):
        return None
    uid = update.get("update_id")
    if isinstance(uid, bool) or not isinstance(uid, int):
        return None
    return uid
