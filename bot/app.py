"""The core every transport drives: inbox, per-chat ordering, one transaction per update.

An update's life: `receive` stores it in the inbox (before Telegram is told it arrived),
`submit` queues it behind earlier updates of the same chat, the transport runs it through its
framework's dispatcher, which hands it back to `process`: one transaction that claims the
inbox row, runs the handler and writes its replies to the outbox. The outbox dispatcher sends
them after commit.

The common case is shorter (`take`): the updates of a `getUpdates` batch whose chats nobody
is busy with are stored and handled straight from the batch, up to TAKE_CHUNK of them in one
transaction (inbox rows, chat leases, handlers, outbox rows), their FAQ questions matched
before it begins, and their replies go to the outbox dispatcher at commit, already claimed
for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import BigInteger, cast, delete, event, func, literal, select, union_all, update
from sqlalchemy import update as sa_update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from bot.broadcasts.flows import progress_tick
from bot.clock import utcnow
from bot.core_models import InboxUpdate
from bot.db import DbHealth, is_passing, make_engine, make_sessionmaker
from bot.i18n import Texts
from bot.leases import holder_name
from bot.logonce import ErrorLog
from bot.notify import language_of
from bot.outbox.dispatcher import OutboxDispatcher
from bot.outbox.kinds import MessageKind
from bot.outbox.models import OutboxMessage
from bot.outbox.ratelimit import Limits, RateLimiter
from bot.outbox.service import enqueue
from bot.people.service import mark_gone, seen, seen_group
from bot.settings import Settings
from bot.sql import insert_ignore
from bot.transport.base import Messenger, Outgoing
from bot.updates import chat_of, to_incoming

log = logging.getLogger("gridbot")

# a chat's lease: renewed while its updates are handled, free again this long after its holder died
CHAT_LEASE = timedelta(seconds=6)
RETRIES = 4  # a passing database fault (no free connection, a deadlock) is retried this often
# the updates of a getUpdates batch are stored and handled in transactions of at most this many
# (Core.take): fewer commits under a backlog, a short hold of SQLite's one writer
TAKE_CHUNK = 32
MATCH_MEMO = 2048  # questions whose matches are kept (Core.match)

Feed = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class _InHand:
    """An update being stored and handled in one transaction (Core.take)."""

    update_id: int
    session: Any = None
    after: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # once committed
    claimed: bool = False  # its inbox row was stored as handled
    processed: bool = False  # the handler ran (or the update was marked failed)
    abort: BaseException | None = None  # what made it give up: the update goes the usual way


_QUEUED = ("pending", "in_flight", "sending")  # outbox rows not done with
REHEARSAL_USER = 777_000  # the made-up resident of Core._rehearse (nothing of it is kept)


class _Rehearsed(Exception):
    """Raised at the end of a rehearsal's transaction, to roll it back."""
_NEW_OUTBOX = "gridbot_new_outbox"  # session.info key: outbox rows added in the session (take)
_BULK_OUTBOX = "gridbot_bulk_outbox"  # session.info key: an INSERT statement into the outbox ran (take)


@event.listens_for(Session, "transient_to_pending")
def _note_outbox_row(session, obj) -> None:
    rows = session.info.get(_NEW_OUTBOX)
    if rows is not None and type(obj).__name__ == "OutboxMessage":
        rows.append(obj)


@event.listens_for(Session, "do_orm_execute")
def _note_outbox_insert(state) -> None:
    if state.is_insert and _NEW_OUTBOX in state.session.info:
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) == "outbox":
            state.session.info[_BULK_OUTBOX] = True


_IN_HAND: contextvars.ContextVar[_InHand | None] = contextvars.ContextVar("gridbot_in_hand", default=None)


_MATCHERS: dict = {}  # built matchers by knowledge base (path and file stamps): one per process
@functools.cache
def _take_sql() -> SimpleNamespace:
    """The statements of the update path (Core._take_many), built once with bound parameters:
    building one and computing its cache key took about as long as running it (0.5–1 ms each)."""
    from sqlalchemy import String, bindparam, literal_column, or_
    from sqlalchemy.dialects.postgresql import ARRAY
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from bot.core_models import Conversation, Lease
    from bot.people.models import Person

    chats, uids, names = (bindparam(k, expanding=True) for k in ("chats", "uids", "names"))
    # one look: chats with an update waiting in the inbox (handled in their turn, after it),
    # updates of these stored before (sent again: their chats too), chats with messages queued
    # or under way (a reply behind them is left to the dispatcher: _claim_replies), and on
    # SQLite the chats another replica holds
    looks = [select(literal(0), InboxUpdate.chat_id).where(InboxUpdate.chat_id.in_(chats),
                                                           InboxUpdate.handled_at.is_(None)),
             select(literal(1), InboxUpdate.update_id).where(InboxUpdate.update_id.in_(uids)),
             select(literal(3), OutboxMessage.chat_id).where(OutboxMessage.chat_id.in_(chats),
                                                             OutboxMessage.status.in_(_QUEUED))]
    held = select(literal(2), cast(func.substr(Lease.name, 6), BigInteger)).where(
        Lease.name.in_(names), Lease.holder != bindparam("holder"), Lease.expires_at > bindparam("now"))
    # PostgreSQL: a chat's lease row locked for this transaction and left free (no holder, lapsed
    # since `free`) for when it commits, returning its name if it was ours to take (free, lapsed
    # or ours). Another replica's claim waits for the row lock, then finds it free: no DELETE
    # to give it back
    take = pg_insert(Lease).values(name=bindparam("name"), holder=literal_column("''"), expires_at=bindparam("free"))
    take = take.on_conflict_do_update(
        index_elements=[Lease.name], set_=dict(holder=take.excluded.holder, expires_at=take.excluded.expires_at),
        where=or_(Lease.expires_at <= bindparam("now"), Lease.holder == bindparam("holder"))).returning(Lease.name)
    # the leases of many chats, from an array: one statement whatever their number (a VALUES list
    # of n rows would be a statement of its own, built and compiled for each n)
    leases = Lease.__table__  # a Core statement: the ORM's INSERT cannot take ON CONFLICT with a SELECT
    many = pg_insert(leases).from_select(["name", "holder", "expires_at"], select(
        func.unnest(bindparam("names_array", type_=ARRAY(String))), literal("", String),
        bindparam("free", type_=Lease.expires_at.type)))
    many = many.on_conflict_do_update(
        index_elements=[leases.c.name], set_=dict(holder=many.excluded.holder, expires_at=many.excluded.expires_at),
        where=or_(leases.c.expires_at <= bindparam("now"), leases.c.holder == bindparam("holder"))
    ).returning(leases.c.name)
    return SimpleNamespace(
        look=union_all(*looks), look_sqlite=union_all(*looks, held), take_lease=take, take_leases=many,
        store=pg_insert(InboxUpdate).on_conflict_do_nothing(),
        store_sqlite=sqlite_insert(InboxUpdate).on_conflict_do_nothing(),
        people=select(Person).where(Person.id.in_(bindparam("ids", expanding=True))),
        states=select(Conversation).where(Conversation.chat_id.in_(chats),
                                          Conversation.user_id.in_(bindparam("users", expanding=True))))


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
        self._chains: dict[int, asyncio.Task] = {}  # chat -> the task handling its updates
        self._loose: set[asyncio.Task] = set()  # updates of no chat
        self._again: set[int] = set()  # chats with an update submitted while being drained
        self._arriving: dict[int, int] = {}  # chat -> updates being stored right now (webhook)
        self.holder = holder_name(self)
        self._renewer: asyncio.Task | None = None
        self._slots = asyncio.Semaphore(settings.max_concurrent_chats)
        self._router = None
        self._matcher = None
        self._premade: dict[str, tuple[Any, Any]] = {}  # text -> (matcher, its match): Core._prematch
        # the latest questions' matches (a matcher gives the same answer to the same text; residents
        # ask the same few things at once: a water cut, a notice); emptied when the matcher changes
        self._memo: dict[str, Any] = {}
        self._memo_for = None
        self.faq_extra: dict[str, list[str]] = {}  # admins' links {entry id: [wording, …]} (faq_alternates)
        self._learning: asyncio.Task | None = None  # reading faq_extra after a lazy build (match)
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

    async def load_faq_alternates(self) -> bool:
        """The wordings admins linked to entries (kept in the database) — before the index is built.
        False when they could not be read (no schema yet)."""
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
            return False
        self.faq_extra = extra
        return True

    async def warm(self) -> None:
        """Build the knowledge index and its rankers before the first update, off the event loop:
        built lazily, the first question would hold the loop for a second or two."""
        def build() -> None:
            import handlers  # noqa: F401  (imported by the first update otherwise)

            self._matcher = _built_matcher(self.settings.kb_path, self.faq_extra)

        await self.load_faq_alternates()
        await _off_loop(build)
        await self._rehearse()

    async def _rehearse(self) -> None:
        """A made-up question from a made-up resident, stored and handled the way a real one is
        (the framework's parsing, the transaction's statements, the matcher, the handler, the
        reply) and then rolled back: the first statement of each kind is compiled and prepared
        here, not in the first resident's update (it took 30 ms where the next took 10). Only
        with a transport attached (its feed), before the dispatcher starts. Its update_id is 0."""
        if self.feed == self.process or self._matcher is None:  # no transport: nothing to warm there
            return
        entries = getattr(self._matcher, "entries", None)
        text = entries[0].question if entries else "路灯不亮了找谁？"
        who = {"id": REHEARSAL_USER, "is_bot": False, "first_name": "rehearsal"}
        update = {"update_id": 0, "message": {"message_id": 1, "date": int(self.clock().timestamp()), "from": who,
                                                "chat": {"id": REHEARSAL_USER, "type": "private", "first_name": "rehearsal"},
                                                "text": text}}
        try:
            await self._take_many([update], await self._prematch([update]), rehearsal=True)
        except Exception as e:  # a convenience: never a reason not to start
            log.debug("rehearsal failed: %s: %s", type(e).__name__, e)

    async def match(self, text: str):
        """The knowledge base's answer to a question, computed off the event loop."""
        if self._matcher is None:
            # not warmed (tests, the console): the caller is likely a handler in its transaction,
            # where reading the database would open a second one (on SQLite it would wait for the
            # caller's). Built from the wordings already loaded; those in the database are read
            # by a task of its own once the caller's transaction is over, and the index rebuilt
            # if they differ.
            self._matcher = await _off_loop(_built_matcher, self.settings.kb_path, self.faq_extra)
            if self._learning is None:
                self._learning = asyncio.create_task(self._learn_alternates())
        m = self._matcher
        made = self._premade.get(text)
        if made is not None and made[0] is m:
            return made[1]
        memo = self._memo_of(m)
        if text in memo:
            return memo[text]
        result = await _off_loop(m.match, text)
        self._remember(m, text, result)
        return result

    async def _learn_alternates(self) -> None:
        known = {k: list(v) for k, v in self.faq_extra.items()}
        try:
            if not await self.load_faq_alternates():
                return
            for entry_id, texts in known.items():  # linked here meanwhile (not committed yet)
                have = self.faq_extra.setdefault(entry_id, [])
                have += [t for t in texts if t not in have]
            if self.faq_extra != known:
                self._matcher = await _off_loop(_built_matcher, self.settings.kb_path, self.faq_extra)
        except Exception as e:  # the matcher keeps what it had
            log.warning("loading the learned FAQ wordings failed: %s: %s", type(e).__name__, e)

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

    async def take(self, updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """receive(), handling at once what can be: returns the updates still to `submit`.

        The updates of chats this process is not busy with are stored and handled in a few
        transactions of up to TAKE_CHUNK updates each, in update_id order: their chats' leases
        looked at (SQLite: the transaction holds the one writer) or taken and left free in
        the transaction (PostgreSQL), so no replica handles those chats meanwhile, and a chat
        is only handled here if no earlier update of it is waiting in the inbox. The FAQ
        matches of a chunk's questions are computed before its transaction begins. The
        guarantees are receive()'s: when this returns, every update is stored (or stored and
        handled); when it raises, the caller keeps the offset and tries again (an update
        already stored is not stored twice). Anything unusual (the chat is busy, a handler
        failed, a database fault) sends the update the usual way: stored on its own, then
        handled in its chat's turn, where failures are retried, kept and reported. A chunk is
        all or nothing: when one of its updates fails, the chunk is undone and all its updates
        go the usual way.
        """
        if not updates:
            return []
        inline, rest = [], []
        ok = not self.health.is_down
        for u in updates:
            c = chat_of(u)
            if ok and c is not None and c not in self._chains and not self._arriving.get(c):
                inline.append(u)
            else:
                rest.append(u)
        left = await self.receive(rest) if rest else []
        inline.sort(key=lambda u: int(u["update_id"]))
        chunks = [inline[i:i + TAKE_CHUNK] for i in range(0, len(inline), TAKE_CHUNK)]
        # the next chunk's questions are matched (in the matcher's thread) while this chunk's
        # transaction runs (on the event loop and in the database's thread)
        ahead = asyncio.create_task(self._prematch(chunks[0])) if chunks else None
        try:
            for i, chunk in enumerate(chunks):
                premade = await ahead
                ahead = asyncio.create_task(self._prematch(chunks[i + 1])) if i + 1 < len(chunks) else None
                done = await self._take_many(chunk, premade)
                if done is None:  # nothing of it was written
                    left += await self.receive(chunk)
                else:
                    left += [u for u, d in zip(chunk, done) if not d]  # stored, not handled
        finally:
            if ahead is not None:
                ahead.cancel()
        return left

    async def _take_many(self, chunk: list[dict[str, Any]], premade: dict | None = None,
                         rehearsal: bool = False) -> list[bool] | None:
        """Store and handle updates (in update_id order) in one transaction. Per update, True:
        handled; False: stored but not handled (submit it). None: nothing written (store them
        the usual way). `rehearsal`: all of it, then the transaction is rolled back (_rehearse)."""
        from bot.context import NO_STATE
        from bot.core_models import Conversation, UnansweredQuestion
        from bot.people.service import NO_PERSON
        from bot.sql import reserve_ids

        now = self.clock()
        uids = [int(u["update_id"]) for u in chunk]
        chats = sorted({chat_of(u) for u in chunk})
        names = [f"chat:{c}" for c in chats]
        hands: list[_InHand] = []
        done = [False] * len(chunk)
        handed: list = []
        kick = False
        self._premade = premade or {}
        try:
            async with self.sessionmaker() as s, s.begin():
                s.info[_NEW_OUTBOX] = []
                leased: list[str] = []
                sql = _take_sql()
                # one look (_take_sql); on SQLite it also finds the chats another replica holds (the
                # transaction holds SQLite's one writer, BEGIN IMMEDIATE: nobody can take a chat or
                # store an update meanwhile)
                sqlite = self.engine.dialect.name == "sqlite"
                if not sqlite:
                    # the lease rows, taken in this transaction (before the look) and left free for
                    # when it commits, are locked until then: another replica's claim of these chats
                    # waits for it
                    leased = await self._take_leases(s, names, now)
                found = (await s.execute(sql.look_sqlite if sqlite else sql.look, dict(
                    chats=chats, uids=uids, names=names, holder=self.holder, now=now))).all()
                busy = {v for k, v in found if k in (0, 2)} | {c for c, n in zip(chats, names)
                                                               if not sqlite and n not in leased}
                seen_before = {v for k, v in found if k == 1}
                queued = {v for k, v in found if k == 3}
                busy |= {chat_of(u) for u, uid in zip(chunk, uids) if uid in seen_before}
                rows = []
                for u, uid in zip(chunk, uids):
                    if uid in seen_before:
                        continue
                    row = dict(update_id=uid, chat_id=chat_of(u), payload=u, received_at=now, attempts=0,
                               handled_at=None)
                    if chat_of(u) not in busy:
                        row.update(handled_at=now, attempts=1)  # claimed as it is stored
                    rows.append(row)
                if rows:
                    await s.execute(sql.store_sqlite if sqlite else sql.store, rows)
                mine = [k for k, u in enumerate(chunk) if chat_of(u) not in busy]
                # the people of the chunk, loaded at once (the handlers then find them in the session)
                # the people and conversations of the chunk, loaded at once (the handlers find them
                # in the session, or know there is none)
                users = {k: uid for k in mine if (uid := _user_id(chunk[k])) is not None}
                people = list((await s.execute(sql.people, dict(ids=sorted(set(users.values())))))
                              .scalars()) if users else []
                s.info[NO_PERSON] = set(users.values()) - {p.id for p in people}
                pairs = {(chat_of(chunk[k]), uid) for k, uid in users.items()}
                if pairs:
                    people += list((await s.execute(sql.states, dict(
                        chats=sorted({c for c, _ in pairs}), users=sorted({u for _, u in pairs})))).scalars())
                    s.info[NO_STATE] = pairs - {(o.chat_id, o.user_id) for o in people if isinstance(o, Conversation)}
                # ids for the questions' log rows, so that no handler flushes on its own: the
                # chunk's log rows and replies are then written in one INSERT each
                await reserve_ids(s, UnansweredQuestion, sum(1 for k in mine if _question_text(chunk[k])))
                for k in mine:
                    hand = _InHand(uids[k], session=s, claimed=True)
                    hands.append(hand)
                    token = _IN_HAND.set(hand)
                    try:
                        await self.feed(chunk[k])
                    except Exception as e:
                        if hand.abort is not None or hand.processed:
                            raise
                        # the framework could not even parse it: kept as failed, not retried
                        self.errors.exception(e, "update %s failed in the transport", uids[k])
                        await s.execute(sa_update(InboxUpdate).where(InboxUpdate.update_id == uids[k]).values(
                            error=f"transport: {type(e).__name__}: {e}"[:2000]))
                        hand.processed = True
                    finally:
                        _IN_HAND.reset(token)
                    if hand.abort is not None:
                        raise hand.abort
                    if not hand.processed:
                        raise RuntimeError("the framework did not hand the update to the core")
                    done[k] = True
                handed, all_handed = await self._claim_replies(s, now, set(chats), queued) if mine else ([], True)
                # the dispatcher looks for due rows only if this queued some it was not handed
                kick = not all_handed or bool(s.info.get(_BULK_OUTBOX))
                del people
                if rehearsal:
                    raise _Rehearsed
        except _Rehearsed:
            return None
        except Exception as e:
            log.debug("updates %s go the usual way: %s: %s", uids, type(e).__name__, e)
            return None
        finally:
            self._premade = {}
        self.processed += sum(done)
        if handed and self.dispatcher is not None:
            self.dispatcher.hand(handed)
        for hand in hands:
            for then in hand.after:
                kick = True
                await then()
        if kick and self.dispatcher is not None:
            self.dispatcher.kick()
        return done

    async def _take_leases(self, s, names: list[str], now: datetime) -> list[str]:
        """Take (or renew) the chats' leases in the caller's transaction, in name order (two
        replicas lock them in the same order): the names taken."""
        sql = _take_sql()
        # left lapsed since a lease's length ago: free for a replica whose clock is a little behind
        free = now - CHAT_LEASE
        if len(names) == 1:  # an update that came alone
            return list((await s.execute(sql.take_lease, dict(
                name=names[0], holder=self.holder, free=free, now=now))).scalars())
        return list((await s.execute(sql.take_leases, dict(
            names_array=names, holder=self.holder, free=free, now=now))).scalars())

    async def _prematch(self, chunk: list[dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
        """The FAQ matches of the chunk's private questions, computed in one go off the event
        loop before the transaction begins (not while it holds the database): the handler's
        match() then finds them. A text that turns out not to be a question (a step of a
        report) only cost the matching."""
        m = self._matcher
        if m is None:
            return {}
        from handlers.faq import MAX_QUESTION  # longer ones are refused, not matched

        texts = {t for u in chunk if (t := _question_text(u)) and len(t) <= MAX_QUESTION}
        memo = self._memo_of(m)
        known = {t: (m, memo[t]) for t in texts if t in memo}
        texts -= known.keys()
        if texts:
            got = await _off_loop(lambda: {t: m.match(t) for t in texts})
            for t, r in got.items():
                self._remember(m, t, r)
                known[t] = (m, r)
        return known

    def _memo_of(self, m) -> dict:
        if self._memo_for is not m:
            self._memo_for, self._memo = m, {}
        return self._memo

    def _remember(self, m, text: str, result) -> None:
        memo = self._memo_of(m)
        if len(memo) >= MATCH_MEMO:
            del memo[next(iter(memo))]  # the oldest
        memo[text] = result

    async def _claim_replies(self, s, now: datetime, looked: set[int], queued: set[int]) -> tuple[list, bool]:
        """The replies this transaction queued, claimed in it for this process's dispatcher and
        handed to it once committed: no claim transaction, no wait for one. Only when nothing
        else of their chats is queued or under way (the chat's order is the claim's to keep
        then) and the dispatcher is running. And whether every row it added was claimed so.
        `queued`: the chats of those `looked` at before the handlers ran that had messages queued
        or under way then; other chats are looked at here, and all of them if a handler wrote
        outbox rows with an INSERT statement of its own (rows this session does not know)."""
        from bot.outbox import dispatcher as outbox

        d = self.dispatcher
        added = s.info.pop(_NEW_OUTBOX, ())
        rows = [o for o in added if o.broadcast_id is None and o.status == "pending"]
        if not rows or d is None or not d.taking:
            return [], not added
        claim = dict(status="in_flight", locked_by=d.name, locked_until=now + outbox.LEASE)
        for o in rows:
            for k, v in claim.items():
                setattr(o, k, v)
        chats = {o.chat_id for o in rows}
        if s.info.get(_BULK_OUTBOX):
            looked = set()
        busy = chats & looked & queued
        if chats - looked:
            # the query flushes them (claimed), so they have ids and are not "others"
            busy |= set((await s.execute(select(OutboxMessage.chat_id).where(
                OutboxMessage.chat_id.in_(chats - looked), OutboxMessage.status.in_(_QUEUED),
                OutboxMessage.id.not_in([o.id for o in rows])))).scalars())
        if busy:
            for o in rows:
                if o.chat_id in busy:
                    o.status, o.locked_by, o.locked_until = "pending", None, None
        return [o for o in rows if o.chat_id not in busy], not busy and len(rows) == len(added)

    async def recover(self) -> int:
        """Queue what was stored but never handled (the process died with it in hand, or another
        replica did): each such chat is drained by whoever claims it. The number of updates."""
        async with self.sessionmaker() as s:
            rows = (await s.execute(select(InboxUpdate.chat_id, InboxUpdate.payload)
                                    .where(InboxUpdate.handled_at.is_(None))
                                    .order_by(InboxUpdate.update_id))).all()
        for chat, payload in rows:
            if chat is None:
                self.submit(payload)
            elif chat not in self._chains:
                self._start_drain(chat)
        return len(rows)

    # --- ordering -----------------------------------------------------------------------------
    #
    # One chat's updates are handled one at a time, in update_id order, by one replica at a time:
    # whoever holds the chat's lease (a row in `leases`, renewed while it works, lapsing a few
    # seconds after its holder died) reads the chat's unhandled updates from the inbox in
    # update_id order and handles them. The order is the inbox's, not the order the updates
    # arrived in: an update that overtook an earlier one on the way in waits for it.

    def submit(self, update: dict[str, Any]) -> asyncio.Task:
        """Handle after every earlier update of the same chat; other chats run concurrently.
        The update must be in the inbox already."""
        chat = chat_of(update)
        if chat is None:  # belongs to no chat: nothing to keep in order
            return self._track(asyncio.create_task(self._handle(update)))
        return self._start_drain(chat)

    def _track(self, task: asyncio.Task) -> asyncio.Task:
        self._loose.add(task)
        task.add_done_callback(self._loose.discard)
        return task

    def _start_drain(self, chat: int) -> asyncio.Task:
        task = self._chains.get(chat)
        if task is not None and not task.done():
            self._again.add(chat)  # it looks at the inbox once more before it lets go
            return task
        task = asyncio.create_task(self._drain_chat(chat))
        self._chains[chat] = task
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_chats())

        def _forget(t: asyncio.Task, chat: int = chat) -> None:
            if self._chains.get(chat) is t:
                del self._chains[chat]

        task.add_done_callback(_forget)
        return task

    async def _unhandled(self, chat: int, limit: int = 50) -> list[dict[str, Any]]:
        async with self.sessionmaker() as s:
            return list((await s.execute(
                select(InboxUpdate.payload).where(InboxUpdate.chat_id == chat, InboxUpdate.handled_at.is_(None))
                .order_by(InboxUpdate.update_id).limit(limit))).scalars())

    async def _renew_chats(self) -> None:
        """While chats are in hand, renew all their leases in one statement every CHAT_LEASE/3:
        a slow update (a handler waiting for a connection) never lets its chat's lease lapse."""
        from bot.core_models import Lease

        while self._chains:
            await asyncio.sleep(CHAT_LEASE.total_seconds() / 3)
            try:
                async with self.sessionmaker() as s, s.begin():
                    await s.execute(update(Lease).where(Lease.holder == self.holder, Lease.name.like("chat:%"))
                                    .values(expires_at=self.clock() + CHAT_LEASE)
                                    .execution_options(synchronize_session=False))
            except Exception as e:
                if not await self.health.down(e):
                    self.errors.exception(e, "renewing chat leases failed")

    async def _drain_chat(self, chat: int) -> None:
        # one of max_concurrent_chats slots for the whole turn: claiming and reading the chat
        # take database connections too, and a burst of new chats must not exhaust the pool
        async with self._slots:
            await self._drain_chat_in_slot(chat)

    async def _drain_chat_in_slot(self, chat: int) -> None:
        from bot import leases

        name = f"chat:{chat}"
        tried: set[int] = set()  # an update that stays unhandled after its turn is not retried here
        while True:
            self._again.discard(chat)
            try:
                got = await leases.acquire(self.sessionmaker, name, self.holder, CHAT_LEASE, self.clock())
            except Exception as e:
                if await self.health.down(e):
                    await self.health.wait_up()
                    continue
                self.errors.exception(e, "claiming chat %s failed", chat)
                return
            if not got:
                return  # another replica has the chat; it looks again before it lets go
            try:
                while True:
                    # an update of this chat still being stored here may be an earlier one
                    for _ in range(100):
                        if not self._arriving.get(chat):
                            break
                        await asyncio.sleep(0.01)
                    try:
                        batch = [u for u in await self._unhandled(chat) if int(u["update_id"]) not in tried]
                    except Exception as e:
                        if await self.health.down(e):
                            await self.health.wait_up()
                            continue
                        raise
                    if not batch:
                        break
                    for u in batch:
                        tried.add(int(u["update_id"]))
                        await self._handle(u, slot=False)
            except Exception as e:
                self.errors.exception(e, "handling chat %s failed", chat)
            finally:
                try:
                    await leases.release(self.sessionmaker, name, self.holder)
                except Exception as e:  # it lapses by itself
                    if not await self.health.down(e):
                        self.errors.exception(e, "releasing chat %s failed", chat)
            # an update stored after our last look (here or at another replica, which found the
            # chat taken) is ours to handle now
            if chat in self._again:
                continue
            try:
                left = [u for u in await self._unhandled(chat, 5) if int(u["update_id"]) not in tried]
            except Exception:
                left = []
            if not left:
                return

    async def _handle(self, update: dict[str, Any], slot: bool = True) -> None:
        if slot:
            async with self._slots:
                return await self._handle(update, slot=False)
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
        while self._chains or self._loose:
            await asyncio.wait(list(self._chains.values()) + list(self._loose))

    async def sweep(self) -> int:
        """Every few seconds: chats with updates nobody is handling (their replica died, or an
        update arrived while another replica was letting the chat go)."""
        try:
            return await self.recover()
        except Exception as e:
            if not await self.health.down(e):
                self.errors.exception(e, "inbox sweep failed")
            return 0

    # --- one update, one transaction ------------------------------------------------------------

    async def process(self, update: dict[str, Any]) -> None:
        """Handle one update; a database outage is waited out and the update handled after it,
        a passing fault (no free connection, a deadlock) retried a few times."""
        hand = _IN_HAND.get()
        if hand is not None and hand.update_id == update.get("update_id"):
            # being stored and handled in one transaction (take): any failure undoes it all, and
            # the update goes the usual way (nothing raised: a framework would log it)
            try:
                await self._process(update, hand=hand)
                hand.processed = True
            except Exception as e:
                hand.abort = e
            return
        held = 1
        for attempt in range(1000):
            try:
                await self._process(update, last_try=attempt >= RETRIES)
                return
            except Exception as e:  # an outage or a passing fault: nothing was written
                if await self.health.down(e, held):
                    held = 0
                    await self.health.wait_up()
                elif attempt < RETRIES:
                    await asyncio.sleep(0.2 * (attempt + 1))
                else:
                    self.errors.exception(e, "update %s could not be recorded as failed", update.get("update_id"))
                    return

    @asynccontextmanager
    async def _unit(self, hand: _InHand | None) -> AsyncIterator[Any]:
        """The transaction an update is handled in: its own, or the one it is being stored in."""
        if hand is not None:
            yield hand.session
            return
        async with self.sessionmaker() as s, s.begin():
            yield s

    async def _process(self, update: dict[str, Any], last_try: bool = True, hand: _InHand | None = None) -> None:
        from handlers import dispatch

        now = self.clock()
        ctx = ev = None
        try:
            ev = to_incoming(update, bot_id=self.bot_id, bot_username=self.bot_username)
            async with self._unit(hand) as s:
                if hand is None or not hand.claimed:
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
            if hand is not None:
                raise  # undone with the storing: handled again the usual way
            if await self.health.down(e) or not last_try and is_passing(e):
                raise  # nothing was written: handled again (once the database is back)
            self.errors.exception(e, "update %s failed", update.get("update_id"))
            await self._failed(update, ev, e, now)
        else:
            if hand is not None:
                if ctx is not None and ev is not None and ev.callback_id and self.messenger is not None:
                    cb, toast, alert = ev.callback_id, ctx.toast, ctx.toast_alert
                    hand.after.append(lambda: self._answer_callback(cb, toast, alert))
                return  # counted and the dispatcher woken once committed
            self.processed += 1
            if ctx is not None and ev is not None and ev.callback_id and self.messenger is not None:
                await self._answer_callback(ev.callback_id, ctx.toast, ctx.toast_alert)
        if self.dispatcher is not None:
            self.dispatcher.kick()

    async def _failed(self, update: dict[str, Any], ev, error: Exception, now: datetime) -> None:
        """A handler crashed: the update is marked handled (a poison update must not block the
        chat forever), the error kept, and the user told politely."""
        async with self.sessionmaker() as s, s.begin():
            marked = await s.execute(update_(update["update_id"], now, error=f"{type(error).__name__}: {error}"[:2000]))
            if marked.rowcount == 0:
                return  # handled meanwhile (by another replica)
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


def _user_id(update: dict[str, Any]) -> int | None:
    for key in ("message", "edited_message", "callback_query", "channel_post", "my_chat_member", "chat_member"):
        body = update.get(key)
        if isinstance(body, dict):
            user = body.get("from")
            return user.get("id") if isinstance(user, dict) and isinstance(user.get("id"), int) else None
    return None


def _question_text(update: dict[str, Any]) -> str | None:
    """The text of a private message that is not a command: what the FAQ handler would match."""
    m = update.get("message")
    if not isinstance(m, dict) or not isinstance(m.get("text"), str):
        return None
    chat = m.get("chat")
    if not isinstance(chat, dict) or chat.get("type") != "private":
        return None
    text = m["text"].strip()
    return text if text and not text.startswith("/") else None


def update_(update_id: int, now: datetime, error: str | None = None):
    q = update(InboxUpdate).where(InboxUpdate.update_id == int(update_id), InboxUpdate.handled_at.is_(None))
    values: dict[str, Any] = dict(handled_at=now, attempts=InboxUpdate.attempts + 1)
    if error is not None:
        values["error"] = error
    return q.values(**values)
