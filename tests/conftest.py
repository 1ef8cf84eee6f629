"""The fixed cast and the shared fixtures.

The cast: one name and one id per person in every test file (workers' ids are those of
bot/areas/sample_grid.yaml). Each is a Telegram user the fake Bot API can speak as.
- wang   resident                                              9001
- liu    a second resident                                     9002
- li     captain of 香港中路双号段 (xianggang-even), where 香港中路12号 is   1002
- zhao   supervisor of 浮山湾社区, above li                      2001
- song   supervisor of 海滨街道, above zhao                      3001
- chen   captain of 燕儿岛路南段 in another community (the outsider)  1006
- gao    supervisor of 观海社区, above chen                       2002
- sun    admin                                                 9100
- alice  a resident who speaks English                         9050

`bot` is the real bot (aiogram and python-telegram-bot in turn) behind the fake Bot API, with the
staff's chats open; a module changes its settings by overriding `bot_settings`.

Databases: SQLite in a temporary file always; PostgreSQL too when GRIDBOT_TEST_POSTGRES_URL is
set (`.ci/run` starts a server and sets it): the `db_url` fixture is parametrized over both.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest
import pytest_asyncio
from sqlalchemy import text

from bot.app import Core
from bot.db import Base, make_engine
from bot.models import import_all_models
from bot.runner import prepare_database
from bot.settings import load_settings
from bot.transport.base import Outgoing
from tests.fakebotapi.updates import TgUser
from tests.harness import BotHarness

PG_URL = os.environ.get("GRIDBOT_TEST_POSTGRES_URL", "")


def afternoon_zone(now: datetime | None = None) -> str:
    """A fixed-offset time zone in which it is now 14:00-14:59. A `gridbot run` started by a test
    with it neither reaches the morning digest (08:30) nor Monday's 09:00 list for the next 17
    hours, and a digest whose time passed before the first start is not sent: so the warning
    lines and messages a test counts do not depend on the hour CI happens to run at."""
    hour = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).hour
    offset = next(o for o in range(-12, 15) if (hour + o) % 24 == 14)
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # POSIX signs: Etc/GMT-8 is UTC+8


CHILD_TIMEZONE = afternoon_zone()  # once per test session: a restarted bot keeps its zone


def child_env(**env: str) -> dict[str, str]:
    """The environment of a gridbot process a test starts: this one's, without its GRIDBOT_
    settings, in the afternoon zone unless `env` names another, then `env`."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")}
    out["GRIDBOT_TIMEZONE"] = CHILD_TIMEZONE
    out.update(env)
    return out
BACKENDS = ["sqlite"] + (["postgres"] if PG_URL else [])
TOKEN = "123456:TEST-token_for-gridbot"


wang = TgUser(9001, "王芳", username="wangfang")
liu = TgUser(9002, "刘强")
li = TgUser(1002, "王秀英")
zhao = TgUser(2001, "何文斌")
song = TgUser(3001, "宋卫东")
chen = TgUser(1006, "陈海涛")
gao = TgUser(2002, "高淑珍")
sun = TgUser(9100, "孙敏")
alice = TgUser(9050, "Alice", language_code="en")
STAFF = (li, zhao, song, chen, gao, sun)
# the older upper-case spelling, for tests that only need an id
WANG, LIU, SUN = wang, liu, sun


async def reset_postgres(url: str) -> None:
    engine = make_engine(url)
    import_all_models()
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    await engine.dispose()


@pytest.fixture(params=["aiogram", "ptb"])
def framework(request) -> str:
    return request.param


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


@pytest.fixture
def bot_settings() -> dict:
    """Extra settings for the `bot` fixture (a module overrides this fixture to change them)."""
    return {}


@pytest_asyncio.fixture
async def bot(framework, db_url, settings_for, bot_settings):
    """The real bot behind the fake Bot API; the staff have started it before."""
    async with BotHarness(framework, db_url, settings_for, **bot_settings) as h:
        for person in STAFF:
            h.api.add_chat(person.id)
        yield h
