"""Broadcasts: who is in an audience, the draft → sending → done life, the delivery counts.

Services never commit and never send: flows.py builds the outbox rows, the caller commits.

Audiences (Broadcast.audience):
- all         everyone who has chatted with the bot and not blocked it
- residents   those of them who are not workers
- workers     captains and supervisors of areas that are not retired (who have chatted)
- area:<id>   that area's subtree: its captains and supervisors, the residents who reported a
              case there, and the group chats linked to its areas
- groups      the active group chats
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, union, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.areas.models import Area
from bot.areas.service import load_tree
from bot.broadcasts.models import Broadcast
from bot.cases.models import Case
from bot.outbox.kinds import MessageKind
from bot.outbox.models import OutboxMessage
from bot.people.models import GroupChat, Person

AUDIENCES = ("all", "residents", "workers", "groups")  # plus area:<id>
MAX_TEXT = 3500  # Telegram's 4096 less the header and the margin for escaping


def _workers():
    live = Area.retired.is_(False)
    return union(select(Area.captain_id.label("id")).where(live, Area.captain_id.is_not(None)),
                 select(Area.supervisor_id.label("id")).where(live, Area.supervisor_id.is_not(None))).subquery()


async def recipients(*, session: AsyncSession, audience: str) -> list[tuple[int, str | None]]:
    """(chat id, language) of everyone the audience reaches now, in a stable order.

    Only reachable chats: people who have chatted and not blocked the bot, active groups."""
    people = select(Person.id, func.coalesce(Person.language, Person.tg_language)).where(
        Person.has_chatted.is_(True), Person.is_active.is_(True))
    groups = select(GroupChat.id).where(GroupChat.is_active.is_(True), GroupChat.type.in_(("group", "supergroup")))
    out: list[tuple[int, str | None]] = []
    if audience in ("all", "residents", "workers"):
        w = _workers()
        if audience == "residents":
            people = people.where(Person.id.not_in(select(w.c.id)))
        elif audience == "workers":
            people = people.where(Person.id.in_(select(w.c.id)))
        out = [(int(i), lang) for i, lang in (await session.execute(people.order_by(Person.id))).all()]
    elif audience == "groups":
        out = [(int(i), None) for i in (await session.execute(groups.order_by(GroupChat.id))).scalars()]
    elif audience.startswith("area:"):
        ids = (await load_tree(session=session, include_retired=False)).subtree(audience[5:])
        if not ids:
            return []
        staff = select(Area.captain_id).where(Area.id.in_(ids), Area.captain_id.is_not(None)).union(
            select(Area.supervisor_id).where(Area.id.in_(ids), Area.supervisor_id.is_not(None)),
            select(Case.reporter_id).where(Case.area_id.in_(ids)))
        q = people.where(Person.id.in_(staff)).order_by(Person.id)
        out = [(int(i), lang) for i, lang in (await session.execute(q)).all()]
        out += [(int(i), None) for i in (await session.execute(
            groups.where(GroupChat.area_id.in_(ids)).order_by(GroupChat.id))).scalars()]
    return out


async def count(*, session: AsyncSession, audience: str) -> int:
    return len(await recipients(session=session, audience=audience))


async def create_draft(*, session: AsyncSession, author_id: int, text: str, photo: str | None, audience: str,
                       total: int, now: datetime) -> Broadcast:
    bc = Broadcast(author_id=author_id, text=text, photo=photo, audience=audience, status="draft", total=total,
                   created_at=now)
    session.add(bc)
    await session.flush()
    return bc


async def start(*, session: AsyncSession, broadcast_id: int, author_id: int, chat_id: int,
                now: datetime) -> Broadcast | None:
    """draft → sending, once: a second confirm (a double press, another replica) gets None."""
    res = await session.execute(update(Broadcast).where(
        Broadcast.id == broadcast_id, Broadcast.author_id == author_id, Broadcast.status == "draft")
        .values(status="sending", started_at=now, progress_chat_id=chat_id))
    if res.rowcount != 1:
        return None
    return await session.get(Broadcast, broadcast_id, populate_existing=True)


async def cancel(*, session: AsyncSession, broadcast_id: int, author_id: int) -> bool:
    res = await session.execute(update(Broadcast).where(
        Broadcast.id == broadcast_id, Broadcast.author_id == author_id, Broadcast.status == "draft")
        .values(status="cancelled"))
    return res.rowcount == 1


async def finish(*, session: AsyncSession, broadcast_id: int, now: datetime) -> bool:
    """sending → done, once (whichever process sees the last row written)."""
    res = await session.execute(update(Broadcast).where(Broadcast.id == broadcast_id, Broadcast.status == "sending")
                                .values(status="done", finished_at=now))
    return res.rowcount == 1


async def sending_ids(*, session: AsyncSession) -> list[int]:
    return list((await session.execute(select(Broadcast.id).where(Broadcast.status == "sending"))).scalars())


async def delivery_counts(*, session: AsyncSession, broadcast_id: int) -> dict[str, int]:
    """Outbox rows of a broadcast by status (index ix_outbox_broadcast)."""
    rows = (await session.execute(select(OutboxMessage.status, func.count()).where(
        OutboxMessage.broadcast_id == broadcast_id).group_by(OutboxMessage.status))).all()
    return {s: int(n) for s, n in rows}


async def progress_edit_waiting(*, session: AsyncSession, chat_id: int, ref: str) -> bool:
    """Is an earlier progress edit still waiting to go out (then a new one would pile up)?"""
    q = select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.chat_id == chat_id, OutboxMessage.kind == MessageKind.BC_PROGRESS,
        OutboxMessage.status.in_(("pending", "in_flight", "sending")))
    return (await session.execute(q)).scalar_one() > 0
