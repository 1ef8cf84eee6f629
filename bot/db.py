"""Database: one metadata, the async engine, a session per update or job, and migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, MetaData, event, inspect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


def is_sqlite(url_or_engine: Any) -> bool:
    url = str(getattr(url_or_engine, "url", url_or_engine))
    return url.startswith("sqlite")


def make_engine(url: str, **kw: Any) -> AsyncEngine:
    if is_sqlite(url):
        from bot.sqlite_cursor import fuse

        kw.setdefault("connect_args", {"timeout": 30})
        engine = create_async_engine(url, **kw)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            fuse(dbapi_conn)  # one trip to aiosqlite's thread per statement
            dbapi_conn.isolation_level = None  # BEGIN is ours (below), not pysqlite's
            cur = dbapi_conn.cursor()
            # WAL lets the outbox dispatcher read while a handler writes; busy_timeout makes
            # concurrent writers wait instead of failing with "database is locked".
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        # Let the dialect's begin emit BEGIN itself (pysqlite's own handling is off): BEGIN
        # IMMEDIATE takes the write lock up front, so two transactions never deadlock upgrading
        # read locks; SQLite serialises writers anyway. Within the process the transactions
        # queue for it on an asyncio lock first (see _SqliteWriter).
        _SqliteWriter(engine, float(kw["connect_args"].get("timeout", 30)))
        return engine
    kw.setdefault("pool_size", 10)
    kw.setdefault("max_overflow", 20)
    # the connection used last is handed out first: a few connections stay busy (their
    # prepared statements warm), the others idle and are pinged when next used
    kw.setdefault("pool_use_lifo", True)
    # a server that does not answer is an outage to wait out, not a minute-long hang per attempt
    kw.setdefault("pool_timeout", 10)
    if "asyncpg" in url:
        kw.setdefault("connect_args", {"timeout": 5})
    ping = kw.pop("pool_pre_ping", None)
    engine = create_async_engine(url, pool_pre_ping=bool(ping), **kw)
    if ping is None:
        _ping_when_idle(engine)
    return engine


PING_IDLE = 2.0  # seconds a pooled connection may rest before it is pinged on its next checkout
_USED = "gridbot_used"  # connection record info: time.monotonic() of its last checkin or connect


def _ping_when_idle(engine: AsyncEngine) -> None:
    """SQLAlchemy's pre-ping, for connections that have rested: a connection back in the pool
    less than PING_IDLE ago goes out unpinged (under load that is every checkout: a round trip
    fewer per transaction); one that rested longer is pinged, and if the server dropped it (a
    restart, an idle timeout) the pool replaces it before anyone uses it. A server that goes
    away within those seconds fails the next statement on that connection instead, as a fault
    the caller's retry already handles, and the pool drops that connection."""
    import time

    from sqlalchemy import exc

    sync = engine.sync_engine
    dialect = sync.dialect

    @event.listens_for(sync, "connect")
    def _connected(dbapi_conn, record) -> None:
        record.info[_USED] = time.monotonic()

    @event.listens_for(sync, "checkin")
    def _back(dbapi_conn, record) -> None:
        if record is not None:
            record.info[_USED] = time.monotonic()

    @event.listens_for(sync, "checkout")
    def _out(dbapi_conn, record, proxy) -> None:
        if time.monotonic() - record.info.get(_USED, 0.0) < PING_IDLE:
            return
        try:
            alive = dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as e:
            if not dialect.is_disconnect(e, dbapi_conn, None):
                raise
            alive = False
        if not alive:
            # as SQLAlchemy's pre-ping does: every connection pooled before now is replaced on
            # its next checkout, this one at once (or the checkout fails to connect)
            raise exc.InvalidatePoolError("the server closed a pooled connection")


class WriterReentryError(RuntimeError):
    """A transaction would wait for SQLite's writer while the task that holds it waits for this
    one: the task (or a task it awaits) opened a second session while its first transaction is
    open. It would never get the writer (SQLite's busy handler cannot succeed either: the other
    connection holds SQLite's write lock), so it fails at once instead of after the busy timeout."""


class _Queue:
    """One event loop's writer lock and the task that took it."""

    __slots__ = ("loop", "lock", "owner")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.lock, self.owner = loop, asyncio.Lock(), None


def _awaited_by(task: Any) -> list[Any]:
    """What wakes up when `task` (or a future) completes: the tasks and futures waiting for it
    (a task awaiting it, gather(), wait(), wait_for(), shield(), a TaskGroup's exit), read from
    its done callbacks."""
    import functools

    found: list[Any] = []
    for cb, *_ in getattr(task, "_callbacks", None) or ():
        owner = getattr(cb, "__self__", None)
        if isinstance(owner, asyncio.Future):
            found.append(owner)  # a task's wakeup: it awaits this one directly
        elif owner is not None and isinstance(getattr(owner, "_on_completed_fut", None), asyncio.Future):
            found.append(owner._on_completed_fut)  # noqa: SLF001 (a TaskGroup in its exit)
        if isinstance(cb, functools.partial):
            found += [a for a in cb.args if isinstance(a, asyncio.Future)]
        for cell in getattr(cb, "__closure__", None) or ():
            try:
                v = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if isinstance(v, asyncio.Future) and v is not task:
                found.append(v)
    return found


def _waits_for(holder: Any, task: Any) -> bool:
    """Is `holder` the task itself, or waiting (through any chain of awaits) for it to finish?"""
    seen: set[int] = set()
    todo = [task]
    while todo and len(seen) < 10_000:
        f = todo.pop()
        if f is holder:
            return True
        if id(f) not in seen:
            seen.add(id(f))
            todo += _awaited_by(f)
    return False


class _SqliteWriter:
    """SQLite has one writer; every transaction here is BEGIN IMMEDIATE, so each takes it. When
    several connections of one process want it at once, the losers sleep in SQLite's busy
    handler, which polls with growing sleeps (1, 2, 5, 10 … 100 ms) and so sees the lock free
    tens of milliseconds late: those sleeps were the 100-500 ms spikes of update → reply latency
    at a steady 20 updates/s. So the transactions of this process queue on an asyncio lock
    (per event loop), taken when a transaction begins and handed on the moment it commits or
    rolls back, in arrival order. Other processes on the same file still meet in the busy
    handler. A transaction waiting longer than the busy timeout goes on without the lock and
    lets SQLite decide (as before). The dialect's begin, commit and rollback are wrapped (not
    engine events: a transaction waits for the lock there, and SQLAlchemy must not be iterating
    its listeners meanwhile).

    A transaction that would wait for the lock held by its own task, or by a task that awaits
    it (a child task awaited inside a transaction), raises WriterReentryError at once, when it
    starts waiting or later while it waits: it could never get it."""

    def __init__(self, engine: AsyncEngine, timeout: float) -> None:
        from sqlalchemy.util.concurrency import await_only, in_greenlet

        self._await, self._in_greenlet = await_only, in_greenlet
        self.timeout = timeout
        self._queues: dict[int, _Queue] = {}  # id(loop) -> its lock
        self._held: dict[int, _Queue] = {}  # id(DBAPI connection) -> the lock it holds
        dialect = engine.sync_engine.dialect
        commit, rollback = dialect.do_commit, dialect.do_rollback

        def do_begin(dbapi_connection) -> None:
            token = dbapi_connection.dbapi_connection
            self.take(token)
            try:
                cursor = dbapi_connection.cursor()
                try:
                    cursor.execute("BEGIN IMMEDIATE")
                finally:
                    cursor.close()
            except BaseException:
                self.give(token)
                raise

        def do_commit(dbapi_connection) -> None:
            try:
                commit(dbapi_connection)
            finally:
                self.give(dbapi_connection.dbapi_connection)

        def do_rollback(dbapi_connection) -> None:
            try:
                rollback(dbapi_connection)
            finally:
                self.give(dbapi_connection.dbapi_connection)

        dialect.do_begin, dialect.do_commit, dialect.do_rollback = do_begin, do_commit, do_rollback
        for name in ("invalidate", "soft_invalidate", "close", "close_detached", "checkin"):
            event.listen(engine.sync_engine.pool, name, lambda dbapi_connection, *a: self.give(dbapi_connection))

    def take(self, token: Any) -> None:
        if token is None or id(token) in self._held or not self._in_greenlet():
            return
        loop = asyncio.get_running_loop()
        q = self._queues.get(id(loop))
        if q is None or q.loop is not loop:
            q = self._queues[id(loop)] = _Queue(loop)
        me = asyncio.current_task()
        if q.lock.locked() or q.lock._waiters:  # noqa: SLF001 (fast path: nothing to wait for)
            self._check(q, me)
            if not self._await(self._wait(q, me)):
                return  # stuck behind a transaction that waits on this one: SQLite decides
        else:
            self._await(q.lock.acquire())
        q.owner = me
        self._held[id(token)] = q

    @staticmethod
    def _check(q: _Queue, me: Any) -> None:
        holder = q.owner
        if holder is None or me is None or not q.lock.locked() or not _waits_for(holder, me):
            return
        who = "this task" if holder is me else f"task {holder.get_name()!r}, which awaits this one,"
        raise WriterReentryError(
            f"a second transaction would wait for SQLite's writer, which {who} holds through another "
            "connection (an open transaction): it could never get it. Use the open session, or open "
            "this one after that transaction ends.")

    async def _wait(self, q: _Queue, me: Any) -> bool:
        """Wait in line for the lock: True once taken, False after the busy timeout. Looks again
        now and then whether the holder has come to wait for this task (it raises then)."""
        acquire = asyncio.ensure_future(q.lock.acquire())
        deadline = q.loop.time() + self.timeout
        step, got = 0.05, False
        try:
            while True:
                left = deadline - q.loop.time()
                if left <= 0:
                    return False
                await asyncio.wait((acquire,), timeout=min(step, left))
                if acquire.done():
                    got = not acquire.cancelled() and acquire.exception() is None
                    return got
                self._check(q, me)
                step = min(step * 2, 1.0)
        finally:
            # taken: the caller records it; otherwise this waiter leaves the line
            if not got and not acquire.done():
                acquire.cancel()  # (a lock handed to it meanwhile goes on to the next)
            elif not got and not acquire.cancelled() and acquire.exception() is None:
                q.lock.release()  # taken just as this waiter gave up (cancelled)

    def give(self, token: Any) -> None:
        q = self._held.pop(id(token), None) if token is not None else None
        if q is not None and q.lock.locked():
            q.owner = None
            q.lock.release()


# --- outages -------------------------------------------------------------------------------

_OUTAGE_NAMES = {"ConnectionDoesNotExistError", "CannotConnectNowError", "ConnectionFailureError",
                 "AdminShutdownError", "CrashShutdownError", "TooManyConnectionsError", "InterfaceError"}


def is_outage(exc: BaseException) -> bool:
    """Could this error mean the database is unreachable (rather than a bug or bad data)?"""
    from sqlalchemy import exc as sa_exc

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (OSError, ConnectionError, TimeoutError, asyncio.TimeoutError, sa_exc.TimeoutError)):
            return True
        if isinstance(e, sa_exc.DBAPIError) and (e.connection_invalidated or isinstance(
                e, (sa_exc.OperationalError, sa_exc.InterfaceError))):
            return True
        if type(e).__name__ in _OUTAGE_NAMES:
            return True
        e = e.__cause__ or e.__context__
    return False


def is_passing(exc: BaseException) -> bool:
    """A fault worth trying again at once: no free connection in the pool, a deadlock, a
    serialization failure (the database itself answers)."""
    from sqlalchemy import exc as sa_exc

    e: BaseException | None = exc
    for _ in range(10):
        if e is None:
            return False
        if isinstance(e, sa_exc.TimeoutError):
            return True
        if type(e).__name__ in ("DeadlockDetectedError", "SerializationError"):
            return True
        if "deadlock detected" in str(e) or "database is locked" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


class DbHealth:
    """Waits out database outages, and says so twice: when one starts and when it ends.

    Whoever hits an error that may be an outage calls `down(error)`: if a `SELECT 1` fails too,
    the database is down, `down` logs (once per outage) and returns True, and the caller waits
    with `wait_up()` before trying the same work again. `held` counts what was held back.
    """

    def __init__(self, engine: AsyncEngine, logger=None, *, max_delay: float = 2.0) -> None:
        import logging

        self.engine = engine
        self.log = logger or logging.getLogger("gridbot")
        self.max_delay = max_delay
        self.down_since: float | None = None
        self.held = 0  # updates held back during the current outage
        self.held_total = 0
        self.outages = 0
        self._probe: asyncio.Task | None = None

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False

    async def down(self, error: BaseException, held: int = 0) -> bool:
        """True if `error` came from an outage (now recorded), False if the database answers."""
        if not is_outage(error):
            return False
        if self.down_since is None and await self.ping():
            return False
        self.hold(held)
        if self.down_since is None:
            import time

            self.down_since = time.monotonic()
            self.outages += 1
            self.log.warning("database unavailable (%s: %s); holding updates until it is back",
                             type(error).__name__, str(error).splitlines()[0][:200] if str(error) else "")
        return True

    def hold(self, n: int) -> None:
        self.held += n
        self.held_total += n

    async def wait_up(self) -> None:
        """Return once the database answers again (one probe loop, shared by every waiter)."""
        if self.down_since is None:
            return
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._wait())
        await asyncio.shield(self._probe)

    async def _wait(self) -> None:
        import time

        delay = 0.25
        while not await self.ping():
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)
        if self.down_since is not None:
            self.log.warning("database back after %.0f s; %d update deliveries were held back meanwhile",
                             time.monotonic() - self.down_since, self.held)
            self.down_since, self.held = None, 0


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def ensure_sqlite_dir(url: str) -> None:
    if is_sqlite(url) and ":///" in url:
        path = url.split(":///", 1)[1].split("?", 1)[0]
        if path and path != ":memory:":
            Path(path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# Alembic's context is process-global: one migration at a time per process (one lock per loop)
_MIGRATING: dict[int, asyncio.Lock] = {}
MIGRATION_LOCK_ID = 0x67726964  # replicas starting together on PostgreSQL migrate one after another


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply migrations on this engine (what `gridbot db upgrade`, `run` and `demo` call)."""
    from alembic import command

    cfg = _alembic_config(str(engine.url.render_as_string(hide_password=False)))

    def _run(sync_conn) -> None:
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    lock = _MIGRATING.setdefault(id(asyncio.get_running_loop()), asyncio.Lock())
    async with lock, engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
        await conn.run_sync(_run)


STARTUP_LOCK_ID = 0x67726973  # migrations and the first grid import, one replica at a time


@asynccontextmanager
async def startup_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """On PostgreSQL, a session advisory lock held across migrating and importing the grid (its
    own connection: the migration takes a transaction lock of another id on another one)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    async with engine.connect() as conn:
        await conn.exec_driver_sql(f"SELECT pg_advisory_lock({STARTUP_LOCK_ID})")
        await conn.commit()
        try:
            yield
        finally:
            try:
                await conn.exec_driver_sql(f"SELECT pg_advisory_unlock({STARTUP_LOCK_ID})")
                await conn.commit()
            except Exception:  # the connection is gone, and the lock with it
                pass


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        def _rev(sync_conn):
            if not inspect(sync_conn).has_table("alembic_version"):
                return None
            return sync_conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

        return await conn.run_sync(_rev)
