"""What each case change tells whom: the texts and buttons of case messages, rendered into the outbox.

The use cases (bot/cases/flows.py) and scheduled jobs call these inside their transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot import stats
from bot.areas.models import Area, Category
from bot.areas.tree import AreaTree
from bot.cases import service
from bot.cases.models import Case
from bot.i18n import Safe, Texts, escape
from bot.notify import language_of, notify
from bot.outbox.kinds import MessageKind
from bot.people.models import Person
from bot.transport.base import Button, Location


def fmt_time(dt: datetime | None, tz) -> str:
    if not dt:
        return "—"
    d = dt.astimezone(tz)
    return f"{d.month:02d}-{d.day:02d} {d.hour:02d}:{d.minute:02d}"  # strftime("%m-%d %H:%M"), faster


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


# --- the chase, the daily digest and the weekly list ---------------------------------------------


MAX_TEXT = 4000  # Telegram's limit is 4096 characters; leave room for the "… and N more" line
OLDEST = 5  # overdue cases listed in a supervisor's digest
UNREACHABLE_LISTED = 10


def duration(t: Texts, d: timedelta) -> str:
    minutes = max(int(d.total_seconds() // 60), 0)
    if minutes < 60:
        return t("sched.duration_minutes", m=minutes)
    hours = minutes // 60
    if hours < 48:
        return t("sched.duration_hours", h=hours)
    return t("sched.duration_days", d=hours // 24, h=hours % 24)


def short(text: str, n: int = 40) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def fit(t: Texts, head: list[str], lines: list[str], tail: list[str] | None = None, total: int | None = None,
        limit: int = MAX_TEXT) -> str:
    """head + as many lines as fit + "… and N more" + tail, under `limit` characters.
    `total` is how many lines there are in all when `lines` is already a prefix."""
    tail = tail or []
    total = len(lines) if total is None else total
    budget = limit - sum(len(x) + 1 for x in head + tail) - 40
    shown: list[str] = []
    for line in lines:
        if budget - len(line) - 1 < 0:
            break
        shown.append(line)
        budget -= len(line) + 1
    if total > len(shown):
        shown.append(t("sched.more", n=total - len(shown)))
    return "\n".join(head + shown + tail)[:limit]


def case_lines(t: Texts, c: Case, cat: Category | None, area, tz) -> list[str]:
    """The lines under a reminder, an overdue notice or an escalation."""
    return [t("cases.field_category", value=category_name(t, cat)),
            t("cases.field_place", value=place_text(c, area)),
            t("cases.field_description", value=short(c.description, 200) or "—"),
            t("cases.field_deadline", value=fmt_time(c.deadline_at, tz))]


def reminder_text(t: Texts, c: Case, due: datetime, now: datetime, tz, body: list[str]) -> str:
    return "\n".join([t("sched.remind", ref=c.ref, deadline=fmt_time(due, tz), left=duration(t, due - now)), *body])


def overdue_text(t: Texts, c: Case, due: datetime, tz, body: list[str]) -> str:
    return "\n".join([t("sched.overdue", ref=c.ref, deadline=fmt_time(due, tz)), *body])


def escalation_text(t: Texts, c: Case, due: datetime, now: datetime, step: int, assignee: str,
                    body: list[str]) -> str:
    return "\n".join([t("sched.escalate", level=step, ref=c.ref, late=duration(t, now - due), assignee=assignee),
                      *body])


@dataclass
class Names:
    """What a digest or the weekly list names: areas, categories, people (looked up once)."""

    tree: AreaTree
    categories: dict[str, Category]
    people: dict[int, Person]
    # escaped names and places, by language: a digest run writes ten thousand task lines
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    def category(self, t: Texts, cid: str) -> str:
        return category_name(t, self.categories.get(cid))

    def place(self, item: stats.Item) -> str:
        return place_text(item, self.tree.areas.get(item.area_id) if item.area_id else None)

    def person(self, t: Texts, uid: int | None) -> str:
        if uid is None:
            return t("sched.unassigned")
        p = self.people.get(uid)
        return (p.name or str(uid)) if p else str(uid)


def _task_lines(t: Texts, names: Names, tasks: list[stats.Item], now: datetime, tz) -> list[str]:
    """A worker's task lines: what t("sched.task_line", …) renders, with the template, the
    overdue flag and each category's and place's escaped text looked up once per language
    rather than once per line."""
    if t.lang == "zh-hant":  # converted to Traditional after formatting: line by line
        return [t("sched.task_line", ref=i.ref, category=names.category(t, i.category_id), place=names.place(i),
                  deadline=fmt_time(i.deadline_at, tz),
                  flag=Safe(t("sched.overdue_flag")) if i.deadline_at and i.deadline_at < now else "")
                for i in tasks]
    memo = names.memo.get(t.lang)
    if memo is None:
        memo = names.memo[t.lang] = {"template": t.template("sched.task_line"), "flag": t("sched.overdue_flag"),
                                     "category": {}, "place": {}}
    template, flag, cats, places = memo["template"], memo["flag"], memo["category"], memo["place"]
    lines = []
    for i in tasks:
        cat = cats.get(i.category_id)
        if cat is None:
            cat = cats[i.category_id] = escape(names.category(t, i.category_id))
        where = places.get((i.area_id, i.address))
        if where is None:
            where = places[(i.area_id, i.address)] = escape(names.place(i))
        lines.append(template.format(ref=escape(i.ref), category=cat, place=where, deadline=fmt_time(i.deadline_at, tz),
                                     flag=flag if i.deadline_at and i.deadline_at < now else ""))
    return lines


def _worker_section(t: Texts, names: Names, load: stats.Load, now: datetime, tz, day: date) -> list[str]:
    head = [t("sched.digest.worker_header", date=day.isoformat(), open=load.open, overdue=load.overdue)]
    lines = _task_lines(t, names, load.tasks, now, tz)
    if load.open > len(lines):
        lines.append(t("sched.more", n=load.open - len(lines)))
    return head + lines + [t("sched.digest.worker_footer")]


def _figures_lines(t: Texts, f: stats.Figures) -> list[str]:
    return [t("sched.digest.period", new=f.new, accepted=f.accepted, resolved=f.resolved, due=f.due,
              overdue=f.overdue),
            t("sched.digest.state", open=f.open, overdue_open=f.overdue_open),
            t("sched.digest.rates", rectification=stats.percent(f.rectification_rate),
              response=stats.percent(f.response_rate), resolution=stats.percent(f.resolution_rate),
              satisfaction=stats.percent(f.satisfaction_rate))]


def _area_section(t: Texts, names: Names, per_area: dict, overdue: dict, root: str | None, now: datetime,
                  day: date) -> list[str]:
    tree = names.tree
    scope = tree.subtree(root) if root is not None else None
    total = stats.rollup(per_area, scope)
    if root is None:
        head = [t("sched.digest.admin_header", date=day.isoformat())]
        rows, rows_title = tree.rows_for(None, stats.GRID_LEVEL - 1), "sched.digest.breakdown_communities"
    else:
        head = [t("sched.digest.supervisor_header", area=tree.name(root), date=day.isoformat())]
        rows, rows_title = tree.rows_for(root, stats.GRID_LEVEL), "sched.digest.breakdown_grids"
    lines = head + _figures_lines(t, total)
    if rows and rows != [root]:
        lines.append(t(rows_title))
        for a in rows:
            f = stats.rollup(per_area, tree.subtree(a))
            lines.append(t("sched.digest.breakdown_line", area=tree.name(a), new=f.new, resolved=f.resolved,
                           open=f.open, overdue_open=f.overdue_open, rate=stats.percent(f.rectification_rate)))
    worst = stats.oldest(overdue, scope, OLDEST)
    lines.append(t("sched.digest.oldest_header") if worst else t("sched.digest.none_overdue"))
    for i in worst:
        lines.append(t("sched.digest.oldest_line", ref=i.ref, category=names.category(t, i.category_id),
                       place=short(names.place(i), 30), late=duration(t, now - i.deadline_at),
                       assignee=names.person(t, i.assignee_id)))
    return lines


def digest_text(t: Texts, names: Names, *, load: stats.Load | None, supervised: list[str], admin: bool,
                per_area: dict, overdue: dict, unreachable: list[tuple[int, str]], now: datetime, tz,
                day: date) -> str:
    """One person's morning digest: their tasks, their areas' figures, the district's for an admin."""
    sections: list[list[str]] = []
    if load is not None and load.open:
        sections.append(_worker_section(t, names, load, now, tz, day))
    for root in supervised:
        sections.append(_area_section(t, names, per_area, overdue, root, now, day))
    if admin:
        sections.append(_area_section(t, names, per_area, overdue, None, now, day))
        if unreachable:
            # captains and supervisors the bot cannot reach: their tasks would go nowhere
            sections.append([t("sched.digest.unreachable", n=len(unreachable),
                               who="、".join(f"{name}（{uid_}）" if name else str(uid_)
                                            for uid_, name in unreachable[:UNREACHABLE_LISTED])
                               + ("…" if len(unreachable) > UNREACHABLE_LISTED else ""))])
    lines = [x for sec in sections for x in (*sec, "")][:-1]
    return fit(t, [], lines)


def weekly_text(t: Texts, names: Names, *, roots: list[str] | None, items: list, n: int, week: str,
                now: datetime, tz) -> str:
    """限期未完成整改问题清单 for a supervisor's areas (the district for roots=None)."""
    sep = ", " if t.lang == "en" else "、"
    where = t("sched.weekly.district") if roots is None else sep.join(names.tree.name(r) for r in roots)
    if n == 0:
        return t("sched.weekly.none", week=week, scope=where)
    head = [t("sched.weekly.header", week=week, scope=where, n=n)]
    lines = [t("sched.weekly.line", i=k, ref=i.ref, category=names.category(t, i.category_id),
               place=short(names.place(i), 30), deadline=fmt_time(i.deadline_at, tz),
               late=duration(t, now - i.deadline_at), assignee=names.person(t, i.assignee_id))
             for k, i in enumerate(items, 1)]
    return fit(t, head, lines, total=n)
