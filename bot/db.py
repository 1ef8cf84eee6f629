"""Database: one metadata, the async engine, a session per update or job, and migrations."""

from __future__ import annotations

import asyncio
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
        kw.setdefault("connect_args", {"timeout": 30})
        engine = create_async_engine(url, **kw)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own handling is off).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            # WAL lets the outbox dispatcher read while a handler writes; busy_timeout makes
            # concurrent writers wait instead of failing with "database is locked".
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn) -> None:  # pragma: no cover - trivial
            # BEGIN IMMEDIATE takes the write lock up front, so two transactions never
            # deadlock upgrading read locks; SQLite serialises writers anyway.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kw.setdefault("pool_size", 10)
    kw.setdefault("max_overflow", 20)
    kw.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kw)


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


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        def _rev(sync_conn):
            if not inspect(sync_conn).has_table("alembic_version"):
                return None
            return sync_conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

        return await conn.run_sync(_rev)


def import_all_models() -> None:
    """Import every model module so Base.metadata is complete (for Alembic and tests)."""
    import bot.areas.models  # noqa: F401
    import bot.broadcasts.models  # noqa: F401
    import bot.cases.models  # noqa: F401
    import bot.core_models  # noqa: F401
    import bot.outbox.models  # noqa: F401
    import bot.people.models  # noqa: F401
