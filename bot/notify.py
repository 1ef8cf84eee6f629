"""Rendering a message in its recipient's language and putting it in the outbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import Texts, pick_language
from bot.outbox.kinds import MessageKind
from bot.outbox.service import enqueue
from bot.people.models import Person
from bot.transport.base import Keyboard, Location, Outgoing

Render = Callable[[Texts], str]
Buttons = Callable[[Texts], Keyboard | None]


def language_of(person: Person | None) -> str:
    if person is None:
        return "zh"
    return person.language or pick_language(person.tg_language)


async def texts_for(session: AsyncSession, user_id: int) -> Texts:
    return Texts(language_of(await session.get(Person, user_id)))


async def notify(
    *,
    session: AsyncSession,
    now: datetime,
    chat_id: int,
    kind: MessageKind,
    render: Render,
    buttons: Buttons | None = None,
    photos: list[str] | None = None,
    location: Location | None = None,
    dedupe_key: str | None = None,
    remember_as: str | None = None,
    lang: str | None = None,
) -> bool:
    """Queue one message to a person or group chat, rendered in their language.

    Returns False if a message with this dedupe_key was queued before.
    """
    t = Texts(lang) if lang else await texts_for(session, chat_id) if chat_id > 0 else Texts("zh")
    photos = list(photos or [])
    method = "album" if len(photos) > 1 else "photo" if photos else "location" if location else "send"
    msg = Outgoing(chat_id=chat_id, method=method, text=render(t), buttons=buttons(t) if buttons else None,
                   photos=photos, location=location)
    return await enqueue(session=session, msg=msg, kind=kind, now=now, dedupe_key=dedupe_key, remember_as=remember_as)
