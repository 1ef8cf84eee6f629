"""The core every transport drives: inbox, per-chat ordering, one transaction per update.

An update's life: `receive` stores it in the inbox (before Telegram is told it arrived),
`submit` queues it behind earlier updates of the same chat, the transport runs it through its
framework's dispatcher, which hands it back to `process`: one transaction that claims the
inbox row, runs the handler and writes its replies to the outbox. The outbox dispatcher sends
them after commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.broadcasts.flows import progress_tick
from bot.clock import utcnow
from bot.core_models import InboxUpdate
from bot.db import DbHealth, make_engine, make_sessionmaker
from bot.i18n import Texts
from bot.logonce import ErrorLog
from bot.notify import language_of
from bot.outbox.dispatcher import OutboxDispatcher
from bot.outbox.kinds import MessageKind
from bot.outbox.ratelimit import Limits, RateLimiter
from bot.outbox.service import enqueue
from bot.people.service import mark_gone, seen, seen_group
from bot.settings import Settings
from bot.sql import insert_ignore
from bot.transport.base import Messenger, Outgoing
from bot.updates import chat_of, to_incoming

log = logging.getLogger("gridbot")

Feed = Callable[[dict[str, Any]], Awaitable[None]]


_MATCHERS: dict = {}  # built matchers by knowledge base (path and file stamps): one per process
_MATCH_THREAD = None


def _kb_stamp(path) -> tuple:
    from pathlib import Path

    p = Path(path).resolve()
    files = sorted(p.glob("*.yaml")) if p.is_dir() else [p]
    return (str(p), tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.exists()))


def _new_matcher(path, extra: dict[str, list[str]]):
    from knowledge.index import Matcher
    from knowledge.learned import merge_alternates
    from knowledge.loader import load_kb

    return Matcher(merge_alternates(load_kb(path), extra))


def _built_matcher(path, extra: dict[str, list[str]], fresh: bool = False):
    """The matcher for a knowledge base (and the wordings admins linked), fully built (jieba,
    the encoder, the entries' vectors: what a first query would otherwise pay for). Built once
    per process and version of both: every bot started in this process (tests, replicas)
    shares it."""
    key = (_kb_stamp(path), tuple((k, tuple(v)) for k, v in sorted(extra.items())))
    m = None if fresh else _MATCHERS.get(key)
    if m is None:
        m = _new_matcher(path, extra)
        if hasattr(m, "build"):
            m.build()
        else:
            m.match("路灯不亮")
        _MATCHERS.clear()
        _MATCHERS[key] = m
    return m


async def _off_loop(fn, *args):
    """CPU-bound work (matching, building the index) in the one matcher thread of the process:
    the event loop keeps serving other chats, and a matcher is only ever used by one thread."""
    global _MATCH_THREAD
    if _MATCH_THREAD is None:
        from concurrent.futures import ThreadPoolExecutor

        _MATCH_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridbot-match")
    return await asyncio.get_running_loop().run_in_executor(_MATCH_THREAD, fn, *args)


class Core:
    def __init__(self, settings: Settings, *, engine: AsyncEngine | None = None, messenger: Messenger | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.database_url)
        self.sessionmaker = make_sessionmaker(self.engine)
        self.clock = clock
        self.messenger = messenger
        self.bot_id: int | None = None
        self.bot_username: str | None = None
        self.feed: Feed = self.process  # a transport replaces this with its framework's dispatch
        self.dispatcher: OutboxDispatcher | None = None
        self._chains: dict[int, asyncio.Task] = {}
        self._slots = asyncio.Semaphore(settings.max_concurrent_chats)
        self._router = None
        self._matcher = None
        self.faq_extra: dict[str, list[str]] = {}  # admins' links {entry id: [wording, …]} (faq_alternates)
        self.processed = 0
        self.health = DbHealth(self.engine, log)
        self.errors = ErrorLog(log)

    # --- services loaded once -----------------------------------------------------------

    @property
    def router(self):
        return self._router

    async def reload_router(self) -> None:
        from bot.areas.service import build_router

        async with self.sessionmaker() as s:
            self._router = await build_router(session=s)

    @property
    def matcher(self):
        if self._matcher is None:  # not warmed (tests, the console): built here, on the loop
            self._matcher = _built_matcher(self.settings.kb_path, self.faq_extra)
        return self._matcher

    def _new_matcher(self):
        return _new_matcher(self.settings.kb_path, self.faq_extra)

    async def load_faq_alternates(self) -> None:
        """The wordings admins linked to entries (kept in the database) — before the index is built."""
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        from bot.core_models import FaqAlternate

        extra: dict[str, list[str]] = {}
        try:
            async with self.sessionmaker() as s:
                for entry_id, text in (await s.execute(
                        select(FaqAlternate.entry_id, FaqAlternate.text).order_by(FaqAlternate.id))).all():
                    extra.setdefault(entry_id, []).append(text)
        except SQLAlchemyError:  # no schema yet (a bare CLI use): nothing was linked
            return
        self.faq_extra = extra

    async def warm(self) -> None:
        """Build the knowledge index and its rankers before the first update, off the event loop:
        built lazily, the first question would hold the loop for a second or two."""
        def build() -> None:
            import handlers  # noqa: F401  (imported by the first update otherwise)

            self._matcher = _built_matcher(self.settings.kb_path, self.faq_extra)

        await self.load_faq_alternates()
        await _off_loop(build)

    async def match(self, text: str):
        """The knowledge base's answer to a question, computed off the event loop."""
        if self._matcher is None:
            await self.warm()
        return await _off_loop(self._matcher.match, text)

    async def rebuild_matcher(self) -> int:
        """reload_matcher() off the event loop (building takes a second or more)."""
        m = await _off_loop(_built_matcher, self.settings.kb_path, self.faq_extra, True)
        self._matcher = m
        return len(m.entries)

    def reload_matcher(self) -> int:
        self._matcher = self._new_matcher()
        return len(self._matcher.entries)

    def attach(self, messenger: Messenger, *, limits: Limits | None = None) -> OutboxDispatcher:
        self.messenger = messenger
        self.dispatcher = OutboxDispatcher(self.sessionmaker, messenger,
                                           limiter=RateLimiter(limits or Limits.from_settings(self.settings)),
                                           workers=self.settings.outbox_workers, clock=self.clock, on_gone=mark_gone,
                                           on_progress=progress_tick, health=self.health)
        return self.dispatcher

    # --- the inbox --------------------------------------------------------------------------

    async def receive(self, updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store updates durably. Only after this returns may they be confirmed to Telegram.

        Returns the updates to handle. One the database will not take as it is (bad data in
        it) is stored as a stub marked failed, so one bad update never holds back the others.
        Raises when the database is unreachable (nothing was stored then).
        """
        if not updates:
            return []
        now = self.clock()
        rows = [dict(update_id=int(u["update_id"]), chat_id=chat_of(u), payload=u, received_at=now, attempts=0)
                for u in updates]
        try:
            async with self.sessionmaker() as s, s.begin():
                await s.execute(insert_ignore(s, InboxUpdate), rows)
            return list(updates)
        except Exception as e:
            if await self.health.down(e):
                raise
        good = []
        for row, u in zip(rows, updates):
            try:
                async with self.sessionmaker() as s, s.begin():
                    await s.execute(insert_ignore(s, InboxUpdate), [row])
                good.append(u)
            except Exception as e:
                if await self.health.down(e):
                    raise
                self.errors.exception(e, "update %s cannot be stored as it is; kept as failed", row["update_id"])
                async with self.sessionmaker() as s, s.begin():
                    await s.execute(insert_ignore(s, InboxUpdate), [dict(
                        row, chat_id=None, payload={"update_id": row["update_id"]}, handled_at=now, attempts=1,
                        error=f"not storable: {type(e).__name__}: {e}"[:2000])])
        return good

    async def recover(self) -> int:
        """Queue what was stored but never handled (the process died with it in hand)."""
        async with self.sessionmaker() as s:
            rows = (await s.execute(select(InboxUpdate.payload).where(InboxUpdate.handled_at.is_(None))
                                    .order_by(InboxUpdate.update_id))).scalars().all()
        for payload in rows:
            self.submit(payload)
        return len(rows)

    # --- ordering -----------------------------------------------------------------------------

    def submit(self, update: dict[str, Any]) -> asyncio.Task:
        """Handle after every earlier update of the same chat; other chats run concurrently."""
        chat = chat_of(update) or 0
        prev = self._chains.get(chat)
        task = asyncio.create_task(self._after(prev, update))
        self._chains[chat] = task

        def _forget(t: asyncio.Task, chat: int = chat) -> None:
            if self._chains.get(chat) is t:
                del self._chains[chat]

        task.add_done_callback(_forget)
        return task

    async def _after(self, prev: asyncio.Task | None, update: dict[str, Any]) -> None:
        if prev is not None:
            await asyncio.wait([prev])
        async with self._slots:
            try:
                await self.feed(update)
            except Exception as e:
                # the framework could not even parse it: keep the error, do not retry it forever
                self.errors.exception(e, "update %s failed in the transport", update.get("update_id"))

                async def mark(s):
                    await s.execute(update_(update.get("update_id", 0), self.clock(),
                                            error=f"transport: {type(e).__name__}: {e}"[:2000]))

                await self.write(mark)

    async def write(self, work: Callable[[Any], Awaitable[Any]], held: int = 0) -> Any:
        """Run `work(session)` in a transaction, waiting out a database outage and retrying."""
        while True:
            try:
                async with self.sessionmaker() as s, s.begin():
                    return await work(s)
            except Exception as e:
                if not await self.health.down(e, held):
                    raise
                held = 0
            await self.health.wait_up()

    async def drain(self) -> None:
        """Wait for every update in hand (SIGTERM, tests)."""
        while self._chains:
            await asyncio.wait(list(self._chains.values()))

    # --- one update, one transaction ------------------------------------------------------------

    async def process(self, update: dict[str, Any]) -> None:
        """Handle one update; a database outage is waited out and the update handled after it."""
        held = 1
        while True:
            try:
                await self._process(update)
                return
            except Exception as e:  # only what `_process` could not even record as failed
                if not await self.health.down(e, held):
                    self.errors.exception(e, "update %s could not be recorded as failed", update.get("update_id"))
                    return
                held = 0
            await self.health.wait_up()

    async def _process(self, update: dict[str, Any]) -> None:
        from handlers import dispatch

        now = self.clock()
        ctx = ev = None
        try:
            ev = to_incoming(update, bot_id=self.bot_id, bot_username=self.bot_username)
            async with self.sessionmaker() as s, s.begin():
                claimed = await s.execute(update_(update["update_id"], now))
                if claimed.rowcount == 0:
                    return  # handled before (a redelivery, or another replica)
                if ev is None:
                    return
                from bot.context import Ctx

                person = await seen(session=s, user=ev.user, now=now, private=ev.is_private)
                if not ev.is_private:
                    await seen_group(session=s, chat=ev.chat, now=now,
                                     active=not (ev.kind == "member" and ev.unsupported == "left"))
                ctx = Ctx(ev=ev, session=s, now=now, core=self, person=person, t=Texts(language_of(person)))
                await dispatch(ctx)
        except Exception as e:
            if await self.health.down(e):
                raise  # nothing was written: handled again once the database is back
            self.errors.exception(e, "update %s failed", update.get("update_id"))
            await self._failed(update, ev, e, now)
        else:
            self.processed += 1
            if ctx is not None and ev is not None and ev.callback_id and self.messenger is not None:
                await self._answer_callback(ev.callback_id, ctx.toast, ctx.toast_alert)
        if self.dispatcher is not None:
            self.dispatcher.kick()

    async def _failed(self, update: dict[str, Any], ev, error: Exception, now: datetime) -> None:
        """A handler crashed: the update is marked handled (a poison update must not block the
        chat forever), the error kept, and the user told politely."""
        async with self.sessionmaker() as s, s.begin():
            await s.execute(update_(update["update_id"], now, error=f"{type(error).__name__}: {error}"[:2000]))
            if ev is not None and ev.user.id:
                from bot.people.models import Person

                t = Texts(language_of(await s.get(Person, ev.user.id)))
                await enqueue(session=s, msg=Outgoing(chat_id=ev.chat.id, text=t("core.error")), kind=MessageKind.ERROR, now=now)
        if ev is not None and ev.callback_id and self.messenger is not None:
            await self._answer_callback(ev.callback_id, None, False)

    async def _answer_callback(self, callback_id: str, text: str | None, alert: bool) -> None:
        try:
            await self.messenger.answer_callback(callback_id, text, alert)
        except Exception as e:  # the spinner stops by itself; nothing to keep
            log.info("answerCallbackQuery failed: %s", e)


def update_(update_id: int, now: datetime, error: str | None = None):
    q = update(InboxUpdate).where(InboxUpdate.update_id == int(update_id))
    if error is None:
        q = q.where(InboxUpdate.handled_at.is_(None))
    values: dict[str, Any] = dict(handled_at=now, attempts=InboxUpdate.attempts + 1)
    if error is not None:
        values["error"] = error
    return q.values(**values)
