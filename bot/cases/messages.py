"""What each case change tells whom: the texts and buttons of case messages, rendered into the outbox.

The use cases (bot/cases/flows.py) and scheduled jobs call these inside their transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.areas.models import Area, Category
from bot.cases import service
from bot.cases.models import Case
from bot.i18n import Safe, Texts, escape
from bot.notify import language_of, notify
from bot.outbox.kinds import MessageKind
from bot.people.models import Person
from bot.transport.base import Button, Location


def fmt_time(dt: datetime | None, tz) -> str:
    return dt.astimezone(tz).strftime("%m-%d %H:%M") if dt else "—"


async def names(session: AsyncSession, case: Case) -> tuple[Category | None, Area | None]:
    return await session.get(Category, case.category_id), (await session.get(Area, case.area_id) if case.area_id else None)


def category_name(t: Texts, cat: Category | None) -> str:
    if cat is None:
        return "—"
    return (cat.name_en or cat.name) if t.lang == "en" else cat.name


def status_name(t: Texts, case: Case, now: datetime | None = None) -> str:
    key = case.status
    if now is not None and case.status in ("new", "accepted", "reopened") and case.deadline_at and case.deadline_at < now:
        return t(f"status.{key}") + t("status.overdue_suffix")
    return t(f"status.{key}")


def place_text(case: Case, area: Area | None) -> str:
    parts = [area.name if area else ""]
    if case.address and (area is None or case.address != area.name):
        parts.append(case.address)
    return " · ".join(p for p in parts if p) or "—"


def task_buttons(t: Texts, case: Case) -> list[list[Button]]:
    rows = [[Button(t("btn.accept"), f"c:acc:{case.id}"), Button(t("btn.resolve"), f"c:res:{case.id}")],
            [Button(t("btn.transfer"), f"c:tr:{case.id}")]]
    if not case.share_contact:
        rows[1].append(Button(t("btn.message_resident"), f"c:msg:{case.id}"))
    rows[1].append(Button(t("btn.more"), f"c:more:{case.id}"))
    if case.status == "accepted":
        rows[0] = [Button(t("btn.resolve"), f"c:res:{case.id}")]
    return rows


async def task_text(session: AsyncSession, t: Texts, case: Case, tz, header: str, note: str = "") -> str:
    cat, area = await names(session, case)
    contact = t("cases.contact_hidden")
    if case.share_contact:
        rep = await session.get(Person, case.reporter_id)
        if rep is not None:
            handle = f" @{rep.username}" if rep.username else ""
            contact = escape(f"{rep.name}{handle}")
    lines = [t(f"cases.task_header_{header}", ref=case.ref),
             t("cases.field_category", value=category_name(t, cat)),
             t("cases.field_place", value=place_text(case, area)),
             t("cases.field_description", value=case.description or "—"),
             t("cases.field_deadline", value=fmt_time(case.deadline_at, tz)),
             t("cases.field_reporter", value=Safe(contact))]
    if case.reporter_count and case.reporter_count > 1:
        lines.append(t("cases.field_reporter_count", n=case.reporter_count))
    if note:
        lines.append(t("cases.field_note", value=note))
    return "\n".join(lines)


async def push_task(*, session: AsyncSession, now: datetime, case: Case, tz, header: str = "new", note: str = "",
                    to: int | None = None) -> None:
    """The task message to the assignee: photos, the pin, the text with its buttons."""
    chat = to or case.assignee_id
    if chat is None:
        return
    t = Texts((await _lang(session, chat)))
    text = await task_text(session, t, case, tz, header, note)
    photos = await service.photos_of(session=session, case_id=case.id)
    if case.lat is not None and case.lon is not None:
        await notify(session=session, now=now, chat_id=chat, kind=MessageKind.CASE_LOCATION, render=lambda _t: "",
                     location=Location(case.lat, case.lon), lang=t.lang)
    await notify(session=session, now=now, chat_id=chat, kind=MessageKind.task(header), render=lambda _t: text,
                 buttons=lambda _t: task_buttons(t, case), photos=photos, lang=t.lang)


async def _lang(session: AsyncSession, user_id: int) -> str:
    return language_of(await session.get(Person, user_id))


async def tell_followers(*, session: AsyncSession, now: datetime, case: Case, key: str, kind: MessageKind,
                         buttons_for_reporter=None, photos: list[str] | None = None, **params) -> None:
    cat, area = await names(session, case)
    for uid in await service.followers(session=session, case=case):
        await notify(
            session=session, now=now, chat_id=uid, kind=kind,
            render=lambda t: t(key, ref=case.ref, category=category_name(t, cat), place=place_text(case, area),
                               **params),
            buttons=buttons_for_reporter if uid == case.reporter_id else None,
            photos=photos,
        )


def resolved_buttons(case: Case):
    return lambda t: [[Button(t("btn.confirm"), f"c:ok:{case.id}"), Button(t("btn.not_fixed"), f"c:no:{case.id}")]]


def rating_buttons(case: Case):
    return lambda t: [[Button("⭐" * n, f"c:rate:{case.id}:{n}") for n in (1, 2, 3)],
                      [Button("⭐" * n, f"c:rate:{case.id}:{n}") for n in (4, 5)]]
