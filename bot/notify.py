"""Rendering a message in its recipient's language and putting it in the outbox."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import Texts, pick_language
from bot.outbox.kinds import MessageKind
from bot.outbox.models import OutboxMessage
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


class Letters:
    """Messages with dedupe keys gathered during a batch of scheduled work and written with one
    INSERT … ON CONFLICT DO NOTHING (the rows of one statement, not one round trip each)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.rows: list[dict] = []

    def add(self, *, chat_id: int, kind: MessageKind, text: str, dedupe_key: str,
            buttons: Keyboard | None = None) -> None:
        msg = Outgoing(chat_id=chat_id, text=text, buttons=buttons)
        self.rows.append(dict(dedupe_key=dedupe_key, kind=str(kind), chat_id=chat_id, payload=msg.to_json(),
                              status="pending", attempts=0, next_attempt_at=self.now, created_at=self.now,
                              broadcast_id=None, remember_as=None))

    async def write(self, session: AsyncSession) -> Counter:
        """Insert what was gathered; counts by kind of the rows written, and `already_sent` for
        keys that were in the outbox before (sent once already, or about to be)."""
        rows, self.rows = self.rows, []
        counts: Counter = Counter()
        if not rows:
            return counts
        table = OutboxMessage.__table__
        ins = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        stmt = ins(table).on_conflict_do_nothing().returning(table.c.dedupe_key)
        written = set((await session.execute(stmt, rows)).scalars().all())
        for r in rows:
            if r["dedupe_key"] in written:
                counts[r["kind"]] += 1
                written.discard(r["dedupe_key"])  # the same key twice in one batch counts once
            else:
                counts["already_sent"] += 1
        return counts
