"""The fixed cast and the shared fixtures.

The cast (ids from bot/areas/sample_grid.yaml where they are workers):
- wang   resident                       9001
- liu    a second resident              9002
- li     captain of the micro-grid where 香港中路12号 is (looked up from the sample grid)
- chen   captain of another micro-grid (the outsider)
- zhao   supervisor above li
- sun    admin                          9100

Databases: SQLite in a temporary file always; PostgreSQL too when GRIDBOT_TEST_POSTGRES_URL is
set (`.ci/run` starts a server and sets it): the `db_url` fixture is parametrized over both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
import pytest_asyncio
from sqlalchemy import text

from bot.app import Core
from bot.db import Base, import_all_models, make_engine
from bot.runner import prepare_database
from bot.settings import load_settings
from bot.transport.base import Outgoing

PG_URL = os.environ.get("GRIDBOT_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite"] + (["postgres"] if PG_URL else [])
TOKEN = "123456:TEST-token_for-gridbot"


@dataclass(frozen=True)
class Person:
    id: int
    name: str
    language_code: str = "zh-hans"


WANG = Person(9001, "王芳")
LIU = Person(9002, "刘强")
SUN = Person(9100, "孙敏")


async def reset_postgres(url: str) -> None:
    engine = make_engine(url)
    import_all_models()
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    await engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest_asyncio.fixture
async def db_url(backend, tmp_path) -> str:
    if backend == "postgres":
        await reset_postgres(PG_URL)
        return PG_URL
    return f"sqlite+aiosqlite:///{tmp_path / 'gridbot.db'}"


@pytest.fixture
def settings_for(tmp_path):
    def make(db_url: str, **kw):
        kw.setdefault("admin_ids", str(SUN.id))
        kw.setdefault("bot_token", TOKEN)
        return load_settings(database_url=db_url, **kw)

    return make


class RecordingMessenger:
    """A Messenger that keeps what it was given (for tests below the transport level)."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []
        self.answers: list[tuple[str, str | None]] = []
        self._next = 1

    async def deliver(self, msg: Outgoing) -> int:
        self.sent.append(msg)
        self._next += 1
        return self._next

    async def answer_callback(self, callback_id, text=None, alert=False) -> None:
        self.answers.append((callback_id, text))

    async def set_commands(self, commands) -> None:
        return None

    def to(self, chat_id: int) -> list[Outgoing]:
        return [m for m in self.sent if m.chat_id == chat_id]


class Clock:
    """A settable clock for the core and jobs."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> None:
        from datetime import timedelta

        self.now = self.now + timedelta(**kw)


@pytest.fixture
def clock() -> Clock:
    # a Monday morning in Shanghai (01:00 UTC = 09:00 CST)
    return Clock(datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc))


@pytest_asyncio.fixture
async def core(db_url, settings_for, clock):
    """A core on a migrated database with the sample grid, delivering to a RecordingMessenger."""
    settings = settings_for(db_url)
    engine = await prepare_database(settings)
    c = Core(settings, engine=engine, clock=clock)
    await c.reload_router()
    c.bot_id, c.bot_username = 1, "gridbot_test"
    c.attach(RecordingMessenger())
    yield c
    await engine.dispose()
