"""The scheduled jobs: the chase (reminders, overdue, escalation), digests, the weekly
overdue list, and auto-closing resolved cases nobody confirmed.

Each job is `async def job(core, now, **options) -> dict` (counts); it reads no clock but `now`.
The loops live here; which rungs of the chase are due is bot/cases/chase.py, every text is
bot/cases/messages.py, and a case's state changes are bot/cases/flows.py.
Work is done in batches, one transaction each: the case's new chase state, its history row
and its outbox rows commit together. Every message has a dedupe key, so a job run twice, a
job interrupted and run again, or two replicas running at once send each message once.
On PostgreSQL the due cases are locked with FOR UPDATE SKIP LOCKED; SQLite serialises
writers (BEGIN IMMEDIATE), so a second sweep sees the first one's result.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import stats
from bot.areas.models import Category
from bot.areas.service import load_tree
from bot.areas.tree import AreaTree
from bot.cases import flows, messages
from bot.cases.chase import Ladder, escalation_groups, next_steps
from bot.cases.deadlines import reminder_at
from bot.cases.models import Case, CaseEvent
from bot.cases.transitions import OPEN
from bot.core_models import JobRun
from bot.db import make_sessionmaker
from bot.i18n import Texts, pick_language
from bot.notify import Letters, language_of
from bot.outbox.kinds import MessageKind
from bot.people.models import Person
from bot.sql import insert_ignore

log = logging.getLogger("gridbot.jobs")

BATCH = 200  # cases or recipients per transaction
MAX_BATCHES = 10_000  # a bound on one run; never reached in practice
WORKER_TASKS = 10  # tasks listed in a worker's digest
WEEKLY_LINES = 60
WEEKLY_AT = time(9, 0)  # Monday, local time


# --- small helpers -----------------------------------------------------------------------------


def key_time(dt: datetime) -> str:
    """A deadline as it appears in dedupe keys: a reset chase (new deadline) gets new keys."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_day_bounds(d: date, tz) -> tuple[datetime, datetime]:
    start = datetime.combine(d, time(0), tzinfo=tz)
    return start.astimezone(timezone.utc), (start + timedelta(days=1)).astimezone(timezone.utc)


async def admin_ids(session: AsyncSession, settings) -> list[int]:
    """GRIDBOT_ADMIN_IDS and admins granted in chat."""
    granted = (await session.execute(select(Person.id).where(Person.is_admin.is_(True)))).scalars().all()
    return sorted(set(settings.admin_ids) | set(granted))


async def preload_people(session: AsyncSession, ids) -> dict[int, Person]:
    """Load people in one query, so notify()'s language look-ups hit the identity map."""
    ids = [i for i in set(ids) if i is not None]
    if not ids:
        return {}
    rows = (await session.execute(select(Person).where(Person.id.in_(ids)))).scalars().all()
    return {p.id: p for p in rows}


def kick(core) -> None:
    if getattr(core, "dispatcher", None) is not None:
        core.dispatcher.kick()


# --- the chase -------------------------------------------------------------------------------------


class _Due:
    """A due case as the sweep reads it: the columns the chase needs, as a plain object rather
    than an ORM one (nothing to track, nothing to flush); its new chase state is written with one
    UPDATE per batch (`_Chase.write`)."""

    COLUMNS = ("id", "status", "category_id", "description", "address", "area_id", "assignee_id", "share_contact",
               "created_at", "assigned_at", "deadline_at", "next_check_at", "chase_level", "was_overdue",
               "reopen_count")
    __slots__ = COLUMNS

    def __init__(self, row) -> None:
        for name, value in zip(self.COLUMNS, row):
            setattr(self, name, value)

    @property
    def ref(self) -> str:
        return f"#{self.id}"


_DUE_COLUMNS = tuple(getattr(Case.__table__.c, name) for name in _Due.COLUMNS)
_SET_CHASE = (update(Case.__table__).where(Case.__table__.c.id == bindparam("b_id"))
              .values(next_check_at=bindparam("b_next"), chase_level=bindparam("b_level"),
                      was_overdue=bindparam("b_overdue")))


class _BatchTexts(Texts):
    """One language's texts for a sweep batch: entries without parameters (button labels …)
    rendered once, not once per message."""

    def __init__(self, lang: str) -> None:
        super().__init__(lang)
        self._plain: dict[str, str] = {}

    def t(self, key: str, /, **params) -> str:
        if params:
            return super().t(key, **params)
        text = self._plain.get(key)
        if text is None:
            text = self._plain[key] = super().t(key)
        return text


@dataclass
class _Chase:
    """What one sweep batch knows: looked up once per batch, not per case. Holding the areas
    and people here also keeps them in the session's identity map (it holds weak references),
    so the per-case look-ups below never go back to the database."""

    session: AsyncSession
    settings: object
    now: datetime
    categories: dict[str, Category]
    tree: AreaTree
    people: dict[int, Person]
    admins: list[int]
    reopened_at: dict[int, datetime] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    # what the batch writes, in one statement each at its end (set-based, not row by row)
    letters: Letters | None = None
    events: list[dict] = field(default_factory=list)
    lines: dict[tuple[int, str], list[str]] = field(default_factory=dict)
    by_lang: dict[str, Texts] = field(default_factory=dict)

    @classmethod
    async def load(cls, session: AsyncSession, settings, now: datetime, cases: list[_Due],
                   before: _Chase | None = None) -> _Chase:
        """What the batch needs; the areas, categories, admins and people an earlier batch of
        the same run loaded are kept (the sessions do not expire them at commit): only the
        people new to this batch are read."""
        if before is None:
            tree = await load_tree(session=session)
            admins = await admin_ids(session, settings)
            categories = {c.id: c for c in (await session.execute(select(Category))).scalars()}
            people: dict[int, Person] = {}
            wanted = {n.supervisor for n in tree.nodes.values()} | set(admins)
        else:
            tree, admins, categories, people = before.tree, before.admins, before.categories, before.people
            wanted = set()
        wanted |= {c.assignee_id for c in cases}
        people = {**people, **await preload_people(session, wanted - people.keys())}
        return cls(session=session, settings=settings, now=now, categories=categories, tree=tree, people=people,
                   admins=admins, reopened_at=await _reopen_times(session, cases), letters=Letters(now))

    def record(self, action: str, c: _Due) -> None:
        """The case's history row for a chase step (no change of status)."""
        self.events.append(dict(case_id=c.id, at=self.now, actor_id=None, action=action, from_status=c.status,
                                to_status=c.status, note=""))

    async def write(self, cases: list[_Due]) -> None:
        """The batch's new chase states (one UPDATE, executed for each case), history rows and
        messages (one INSERT each)."""
        await self.session.execute(_SET_CHASE, [dict(b_id=c.id, b_next=c.next_check_at, b_level=c.chase_level,
                                                     b_overdue=c.was_overdue) for c in cases])
        if self.events:
            await self.session.execute(insert(CaseEvent.__table__), self.events)
            self.events = []
        self.counts.update(await self.letters.write(self.session))

    def texts(self, uid: int) -> Texts:
        lang = language_of(self.people.get(uid))
        t = self.by_lang.get(lang)
        if t is None:
            t = self.by_lang[lang] = _BatchTexts(lang)
        return t

    def start_of(self, c: _Due) -> datetime:
        """When the current chase began: assignment, or the last reopen (which resets the deadline)."""
        start = c.assigned_at or c.created_at
        r = self.reopened_at.get(c.id)
        return max(start, r) if r else start

    def ladder(self, c: _Due) -> Ladder:
        # the reminder time is only needed before the first rung (a working-time SLA makes it dearer)
        remind_at = (reminder_at(self.start_of(c), c.deadline_at, self.categories.get(c.category_id),
                                 self.settings.tz) if not c.chase_level else c.deadline_at)
        groups = escalation_groups(self.tree.supervisors_above(c.area_id), self.admins, c.assignee_id)
        return Ladder(remind_at=remind_at, due=c.deadline_at, groups=groups)


async def _reopen_times(session: AsyncSession, cases: list[_Due]) -> dict[int, datetime]:
    ids = [c.id for c in cases if c.reopen_count]
    if not ids:
        return {}
    q = (select(CaseEvent.case_id, func.max(CaseEvent.at)).where(CaseEvent.case_id.in_(ids),
                                                                  CaseEvent.action == "reopen")
         .group_by(CaseEvent.case_id))
    # defensive: a driver may hand max() of a datetime back as text or without a zone
    out = {}
    for cid, at in (await session.execute(q)).all():
        if isinstance(at, str):
            at = datetime.fromisoformat(at)
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)
        out[cid] = at
    return out


async def _case_lines(ch: _Chase, t: Texts, c: _Due) -> list[str]:
    key = (c.id, t.lang)  # the assignee's and the supervisors' messages share these lines
    if key not in ch.lines:
        ch.lines[key] = _render_case_lines(ch, t, c)
    return ch.lines[key]


def _render_case_lines(ch: _Chase, t: Texts, c: _Due) -> list[str]:
    area = ch.tree.areas.get(c.area_id) if c.area_id else None
    return messages.case_lines(t, c, ch.categories.get(c.category_id), area, ch.settings.tz)


async def _send(ch: _Chase, t: Texts, chat_id: int, kind: MessageKind, key: str, text: str, buttons=None) -> None:
    """Queued with the batch's other messages (written at its end; a key seen before is skipped)."""
    ch.letters.add(chat_id=chat_id, kind=kind, text=text, dedupe_key=key, buttons=buttons(t) if buttons else None)


async def _remind(ch: _Chase, c: _Due, due: datetime) -> None:
    ch.record("remind", c)
    if c.assignee_id is None:
        return
    t = ch.texts(c.assignee_id)
    body = await _case_lines(ch, t, c)
    text = messages.reminder_text(t, c, due, ch.now, ch.settings.tz, body)
    await _send(ch, t, c.assignee_id, MessageKind.SLA_REMINDER, f"remind:{c.id}:1:{key_time(due)}", text,
                lambda _t: messages.task_buttons(t, c))


async def _overdue(ch: _Chase, c: _Due, due: datetime) -> None:
    c.was_overdue = True
    ch.record("overdue", c)
    if c.assignee_id is None:
        return
    t = ch.texts(c.assignee_id)
    body = await _case_lines(ch, t, c)
    text = messages.overdue_text(t, c, due, ch.settings.tz, body)
    await _send(ch, t, c.assignee_id, MessageKind.OVERDUE_ASSIGNEE, f"overdue:{c.id}:{key_time(due)}", text,
                lambda _t: messages.task_buttons(t, c))


async def _escalate(ch: _Chase, c: _Due, due: datetime, level: int, group: list[int], step: int) -> None:
    """`level` is the chase level this escalation reaches (2 = the first supervisor);
    `step` the escalation's number as people see it (1 = the first supervisor)."""
    ch.record("escalate", c)
    assignee = ch.people.get(c.assignee_id) if c.assignee_id else None
    for uid in group:
        t = ch.texts(uid)
        who = (assignee.name or str(assignee.id)) if assignee else str(c.assignee_id or t("sched.unassigned"))
        body = await _case_lines(ch, t, c)
        text = messages.escalation_text(t, c, due, ch.now, step, who, body)
        await _send(ch, t, uid, MessageKind.ESCALATION, f"escalate:{c.id}:{level}:{uid}:{key_time(due)}", text)


async def chase(ch: _Chase, c: _Due) -> None:
    """Take one case as far along its ladder as `now` allows (bot/cases/chase.py decides which
    rungs); leave next_check_at at the next rung or NULL when nothing is left to do."""
    if c.deadline_at is None:
        c.next_check_at = None
        return
    plan = next_steps(c.chase_level or 0, ch.ladder(c), ch.now)
    for step in plan.steps:
        if step.action == "remind":
            await _remind(ch, c, c.deadline_at)
        elif step.action == "overdue":
            await _overdue(ch, c, c.deadline_at)
        else:
            await _escalate(ch, c, c.deadline_at, step.level, list(step.group), step.number)
    c.chase_level, c.next_check_at = plan.level, plan.next_check_at


async def sweep(core, now: datetime, *, batch: int = BATCH, max_batches: int = MAX_BATCHES) -> dict:
    """Reminders, overdue and escalation for every open case that is due a look."""
    counts: Counter = Counter()
    checked = 0
    ch = None
    for _ in range(max_batches):
        async with core.sessionmaker() as s, s.begin():
            q = (select(*_DUE_COLUMNS).where(Case.status.in_(OPEN), Case.next_check_at <= now)
                 .order_by(Case.next_check_at, Case.id).limit(batch)
                 .with_for_update(skip_locked=True, of=Case.__table__))
            cases = [_Due(row) for row in (await s.execute(q)).all()]
            if not cases:
                break
            ch = await _Chase.load(s, core.settings, now, cases, ch)
            for c in cases:
                await chase(ch, c)
            await ch.write(cases)
            counts.update(ch.counts)
            checked += len(cases)
        if len(cases) < batch:
            break
    kick(core)
    return {"checked": checked, "reminded": counts[MessageKind.SLA_REMINDER],
            "overdue": counts[MessageKind.OVERDUE_ASSIGNEE], "escalated": counts[MessageKind.ESCALATION]}


# --- auto-close -------------------------------------------------------------------------------------


async def autoclose(core, now: datetime, *, batch: int = BATCH, max_batches: int = MAX_BATCHES) -> dict:
    """Resolved cases neither confirmed nor reopened within auto_close_days are closed."""
    days = core.settings.auto_close_days
    cutoff = now - timedelta(days=days)
    closed = told = 0
    for _ in range(max_batches):
        async with core.sessionmaker() as s, s.begin():
            q = (select(Case).where(Case.status == "resolved", Case.resolved_at <= cutoff)
                 .order_by(Case.resolved_at, Case.id).limit(batch).with_for_update(skip_locked=True, of=Case))
            cases = list((await s.execute(q)).scalars())
            for c in cases:
                told += await flows.auto_close(session=s, case=c, now=now, days=days)
                closed += 1
        if len(cases) < batch:
            break
    kick(core)
    return {"closed": closed, "told": told}


# --- runs once per period ---------------------------------------------------------------------------


INSTALL = ("install", "-")  # a JobRun row whose started_at is the first `gridbot run`


async def mark_installed(engine, now: datetime) -> None:
    """Remember the first start (kept from then on): periods that began before it are not sent."""
    async with make_sessionmaker(engine)() as s, s.begin():
        await s.execute(insert_ignore(s, JobRun).values(job=INSTALL[0], period=INSTALL[1], started_at=now,
                                                        finished_at=now, detail="first start"))


async def began_before_install(core, period_start: datetime) -> bool:
    """A digest or weekly period that began before the bot was first started is nobody's news."""
    async with core.sessionmaker() as s:
        run = await s.get(JobRun, INSTALL)
    return run is not None and period_start < run.started_at


async def _begin_period(core, job: str, period: str, now: datetime, force: bool) -> bool:
    """Record that the run for `period` started; False if it finished before (and not forced)."""
    async with core.sessionmaker() as s, s.begin():
        await s.execute(insert_ignore(s, JobRun).values(job=job, period=period, started_at=now, finished_at=None,
                                                        detail=""))
        run = await s.get(JobRun, (job, period))
        return force or run.finished_at is None


async def _finish_period(core, job: str, period: str, now: datetime, detail: str) -> None:
    async with core.sessionmaker() as s, s.begin():
        run = await s.get(JobRun, (job, period))
        run.finished_at = now
        run.detail = detail[:2000]


async def _deliver(core, now: datetime, letters: list[tuple[int, str, str, Callable[[Texts], str]]],
                   batch: int) -> Counter:
    """Queue (chat, kind, dedupe key, render) letters in batches, one transaction and one INSERT
    each."""
    counts: Counter = Counter()
    unknown = language_of(None)
    for i in range(0, len(letters), batch):
        chunk = letters[i:i + batch]
        async with core.sessionmaker() as s, s.begin():
            # each recipient's language (language_of), from two columns rather than whole people
            q = select(Person.id, Person.language, Person.tg_language).where(Person.id.in_([c for c, *_ in chunk]))
            langs = {uid: lang or pick_language(tg) for uid, lang, tg in (await s.execute(q)).all()}
            out = Letters(now)

            def render_all() -> None:
                for chat_id, kind, key, render in chunk:
                    out.add(chat_id=chat_id, kind=kind, text=render(Texts(langs.get(chat_id, unknown))),
                            dedupe_key=key)

            # rendering a batch of digests is tens of milliseconds of Python: not on the event loop
            await asyncio.to_thread(render_all)
            counts.update(await out.write(s))
        kick(core)
    return counts


# --- the daily digest ---------------------------------------------------------------------------------


async def _names(session: AsyncSession, tree: AreaTree, people: set[int]) -> messages.Names:
    cats = {c.id: c for c in (await session.execute(select(Category))).scalars()}
    return messages.Names(tree, cats, await preload_people(session, people))


async def unreachable_workers(session: AsyncSession, tree) -> list[tuple[int, str]]:
    """Captains and supervisors of the grid who never started the bot or blocked it: (id, name)."""
    ids = {n.captain for n in tree.nodes.values() if n.captain and not n.retired}
    ids |= {n.supervisor for n in tree.nodes.values() if n.supervisor and not n.retired}
    if not ids:
        return []
    people = {p.id: p for p in (await session.execute(select(Person).where(Person.id.in_(ids)))).scalars()}
    return [(i, people[i].name if i in people else "") for i in sorted(ids)
            if i not in people or not people[i].has_chatted or not people[i].is_active]


async def digest(core, now: datetime, *, force: bool = False, batch: int = BATCH) -> dict:
    """The morning digest for today's local date, once: at or after GRIDBOT_DIGEST_TIME, the
    same day only (a digest missed while the bot was down goes out when it is back, unless
    that is already the next day). One message per person: their tasks (if any), their
    areas' figures if they supervise, the district's if they are an admin."""
    settings = core.settings
    tz = settings.tz
    local = now.astimezone(tz)
    day = local.date()
    period = day.isoformat()
    if not force and local.time() < settings.digest_at:
        return {"skipped": "before digest time", "period": period}
    if not force and await began_before_install(core, datetime.combine(day, settings.digest_at, tz)):
        return {"skipped": "period began before the first start", "period": period}
    if not await _begin_period(core, "digest", period, now, force):
        return {"skipped": "done", "period": period}
    start, end = local_day_bounds(day - timedelta(days=1), tz)  # yesterday, local time
    async with core.sessionmaker() as s:
        tree = await load_tree(session=s)
        loads = await stats.workloads(session=s, now=now, per_worker=WORKER_TASKS)
        per_area = await stats.breakdown(session=s, area_ids=None, start=start, end=end, now=now)
        overdue = await stats.overdue_by_area(session=s, now=now, per_area=messages.OLDEST)
        admins = await admin_ids(s, settings)
        sups = tree.supervised()
        people = {i.assignee_id for items in overdue.values() for i in items}
        names = await _names(s, tree, people)
        unreachable = await unreachable_workers(s, tree)
    recipients = sorted(set(loads) | set(sups) | set(admins))
    letters = []
    for uid in recipients:
        load = loads.get(uid)
        kind = (MessageKind.DIGEST_ADMIN if uid in admins else MessageKind.DIGEST_SUPERVISOR if uid in sups
                else MessageKind.DIGEST_WORKER)
        if kind == MessageKind.DIGEST_WORKER and (load is None or load.open == 0):
            continue

        def render(t: Texts, uid=uid, load=load) -> str:
            return messages.digest_text(t, names, load=load, supervised=sups.get(uid, []), admin=uid in admins,
                                        per_area=per_area, overdue=overdue, unreachable=unreachable, now=now,
                                        tz=tz, day=day)

        letters.append((uid, kind, f"digest:{uid}:{period}", render))
    counts = await _deliver(core, now, letters, batch)
    result = {"period": period, "workers": counts[MessageKind.DIGEST_WORKER],
              "supervisors": counts[MessageKind.DIGEST_SUPERVISOR], "admins": counts[MessageKind.DIGEST_ADMIN],
              "already_sent": counts["already_sent"]}
    await _finish_period(core, "digest", period, now, str(result))
    return result


# --- the weekly overdue list ---------------------------------------------------------------------------


def iso_week(d: date) -> str:
    y, w, _ = d.isocalendar()
    return f"{y}-W{w:02d}"


async def weekly(core, now: datetime, *, force: bool = False, batch: int = BATCH) -> dict:
    """限期未完成整改问题清单: every open case past its deadline, to each supervisor (their
    areas) and the admins (the district), on Monday from 09:00 local time, once a week."""
    settings = core.settings
    tz = settings.tz
    local = now.astimezone(tz)
    week = iso_week(local.date())
    if not force and (local.weekday() != 0 or local.time() < WEEKLY_AT):
        return {"skipped": "not Monday morning yet", "period": week}
    if not force and await began_before_install(core, datetime.combine(local.date(), WEEKLY_AT, tz)):
        return {"skipped": "period began before the first start", "period": week}
    if not await _begin_period(core, "weekly", week, now, force):
        return {"skipped": "done", "period": week}
    async with core.sessionmaker() as s:
        tree = await load_tree(session=s)
        admins = await admin_ids(s, settings)
        sups = tree.supervised()
        # the longest-overdue WEEKLY_LINES of each area: enough for any subtree's message
        per_area = await stats.overdue_by_area(session=s, now=now, per_area=WEEKLY_LINES)
        counts_q = (select(Case.area_id, func.count())
                    .where(stats.literal_in(Case.status, OPEN), Case.deadline_at < now).group_by(Case.area_id))
        totals = {a: int(n) for a, n in (await s.execute(counts_q)).all()}
        names = await _names(s, tree, {i.assignee_id for items in per_area.values() for i in items})

    def letter(uid: int, roots: list[str] | None):
        scope = None if roots is None else [a for r in roots for a in tree.subtree(r)]
        items = stats.oldest(per_area, scope, WEEKLY_LINES)
        n = sum(totals.values()) if scope is None else sum(totals.get(a, 0) for a in scope)

        def render(t: Texts) -> str:
            return messages.weekly_text(t, names, roots=roots, items=items, n=n, week=week, now=now, tz=tz)

        return (uid, MessageKind.WEEKLY_OVERDUE, f"weekly:{uid}:{week}", render)

    letters = [letter(uid, None if uid in admins else sups[uid]) for uid in sorted(set(sups) | set(admins))]
    counts = await _deliver(core, now, letters, batch)
    result = {"period": week, "sent": counts[MessageKind.WEEKLY_OVERDUE], "already_sent": counts["already_sent"],
              "overdue": sum(totals.values())}
    await _finish_period(core, "weekly", week, now, str(result))
    return result
