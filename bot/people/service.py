"""People and their roles. Roles come from the grid (captain/supervisor of areas) and admin ids."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.areas.models import Area
from bot.people.models import GroupChat, Person
from bot.transport.base import Chat, User


@dataclass(frozen=True)
class Roles:
    admin: bool
    captain_of: tuple[str, ...]
    supervisor_of: tuple[str, ...]

    @property
    def worker(self) -> bool:
        return bool(self.captain_of or self.supervisor_of)

    @property
    def name(self) -> str:
        if self.admin:
            return "admin"
        if self.supervisor_of:
            return "supervisor"
        if self.captain_of:
            return "captain"
        return "resident"


async def roles_of(*, session: AsyncSession, person: Person, settings) -> Roles:
    rows = (await session.execute(select(Area.id, Area.captain_id, Area.supervisor_id).where(
        or_(Area.captain_id == person.id, Area.supervisor_id == person.id), Area.retired.is_(False)))).all()
    return Roles(
        admin=person.id in settings.admin_ids or bool(person.is_admin),
        captain_of=tuple(r.id for r in rows if r.captain_id == person.id),
        supervisor_of=tuple(r.id for r in rows if r.supervisor_id == person.id),
    )


SEEN_EVERY = timedelta(hours=1)
# session.info key: ids of users known to have no person row in this transaction (looked up for
# several updates at once, Core.take): their first contact needs no query
NO_PERSON = "gridbot_no_person"


async def seen(*, session: AsyncSession, user: User, now: datetime, private: bool) -> Person:
    """The person behind an update, created on first contact, refreshed on every one. Fields are
    assigned their current values, so the row is written only when something changed (the ORM
    compares with what it loaded), and last_seen_at moves on at most once an hour."""
    # cut to the columns: Telegram's own limits are shorter, but nothing checks what arrives
    name, username = user.full_name[:200], (user.username or "")[:64] or None
    language = (user.language_code or "")[:16] or None
    unknown = session.info.get(NO_PERSON, ())
    p = None if user.id in unknown else await session.get(Person, user.id)
    if p is None:
        if unknown:
            unknown.discard(user.id)  # added now: found in the session from here on
        p = Person(id=user.id, name=name, username=username, tg_language=language,
                   created_at=now, is_active=True, has_chatted=private, is_admin=False)
        session.add(p)
    else:
        if user.first_name or user.last_name:
            p.name = name
        p.username = username
        if language:
            p.tg_language = language
        if private:
            # writing to the bot again means they unblocked it
            p.is_active = True
            p.has_chatted = True
    if p.last_seen_at is None or now - p.last_seen_at >= SEEN_EVERY or now < p.last_seen_at:
        # to the hour: writing it on every update would make every update write the person row
        p.last_seen_at = now
    return p


async def seen_group(*, session: AsyncSession, chat: Chat, now: datetime, active: bool = True) -> GroupChat:
    g = await session.get(GroupChat, chat.id)
    if g is None:
        g = GroupChat(id=chat.id, type=chat.type[:16], title=(chat.title or "")[:255], created_at=now,
                      is_active=active)
        session.add(g)
    else:
        g.title = (chat.title or "")[:255] or g.title
        g.is_active = active
    return g


async def mark_gone(session: AsyncSession, chat_id: int) -> None:
    """The recipient blocked the bot or the chat is gone: stop sending to it."""
    if chat_id > 0:
        await session.execute(update(Person).where(Person.id == chat_id).values(is_active=False))
    else:
        await session.execute(update(GroupChat).where(GroupChat.id == chat_id).values(is_active=False))


async def ensure_person(*, session: AsyncSession, user_id: int, name: str, now: datetime) -> Person:
    p = await session.get(Person, user_id)
    if p is None:
        p = Person(id=user_id, name=name, created_at=now, is_active=True, has_chatted=False, is_admin=False)
        session.add(p)
    elif name and not p.name:
        p.name = name
    return p
