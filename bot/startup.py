"""What `gridbot run` meets before it can work: the database, the grid, Telegram.

A fault the operator must fix (a wrong password, a token Telegram rejects, no grid) stops
start-up with one line (`StartupError`); a fault that passes by itself (the database or the
Bot API not answering yet) is logged and retried with backoff until it answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger("gridbot")

T = TypeVar("T")
MAX_DELAY = 60.0

# PostgreSQL SQLSTATEs that pass by themselves: connection trouble, starting up, too many clients
_TRANSIENT_SQLSTATE = ("08", "57P03", "53300", "57P01")


class StartupError(Exception):
    """Start-up cannot go on; `str(e)` is the one line for the operator, `code` the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class NoGridError(StartupError):
    def __init__(self) -> None:
        super().__init__("the database has no grid: import yours with `gridbot grid import FILE` "
                         "(or set GRIDBOT_GRID_FILE); to try the fictional sample grid on purpose, "
                         "`gridbot run --sample-grid` (`gridbot demo` needs no Telegram at all)", 2)


def database_fault_is_transient(e: BaseException) -> bool:
    if isinstance(e, (OSError, asyncio.TimeoutError)):
        return True
    orig = getattr(e, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or ""
    if code and str(code).startswith(_TRANSIENT_SQLSTATE):
        return True
    cause = getattr(orig, "__cause__", None)
    return isinstance(cause, OSError) or type(cause).__name__ in ("CannotConnectNowError", "TooManyConnectionsError")


def one_line(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e
    text = str(orig).strip().splitlines()
    msg = text[0] if text else type(orig).__name__
    if msg.startswith("(") and ") " in msg:  # "(sqlalchemy.dialects…Error) what happened"
        msg = msg.split(") ", 1)[1]
    return msg


def where(url: str) -> str:
    """The database named without its password."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.drivername.startswith("sqlite"):
        return f"SQLite {u.database}"
    return f"PostgreSQL {u.host or 'localhost'}:{u.port or 5432}/{u.database}"


async def _wait(stop: asyncio.Event | None, seconds: float) -> bool:
    """Sleep; True if asked to stop meanwhile."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except asyncio.TimeoutError:
        return False


async def with_database(settings, step: Callable[[], Awaitable[T]], stop: asyncio.Event | None = None) -> T | None:
    """Run `step` (migrations, the grid check), retrying while the database is not reachable."""
    delay = 1.0
    while True:
        try:
            return await step()
        except StartupError:
            raise
        except Exception as e:
            if not database_fault_is_transient(e):
                raise StartupError(f"GRIDBOT_DATABASE_URL ({where(settings.database_url)}): {one_line(e)}", 2) from e
            log.warning("database %s not reachable (%s); retrying in %.0fs", where(settings.database_url),
                        one_line(e), delay)
        if await _wait(stop, delay):
            return None
        delay = min(delay * 2, MAX_DELAY)


async def first_contact(settings, call: Callable[[], Awaitable[T]], what: str,
                        stop: asyncio.Event | None = None) -> T | None:
    """A Bot API call at start-up: a refusal stops start-up with one line, silence is retried."""
    from bot.transport.base import PermanentError, RecipientGone, RetryAfter

    delay = 1.0
    while True:
        try:
            return await call()
        except RetryAfter as e:
            wait = max(float(e.seconds), 1.0)
            log.warning("Telegram asked to wait %.0fs before %s", wait, what)
            if await _wait(stop, wait):
                return None
            continue
        except (PermanentError, RecipientGone) as e:
            text = str(e) or type(e).__name__
            if what == "getMe" and ("unauthorized" in text.lower() or "not found" in text.lower()
                                    or "invalid token" in text.lower() or "was rejected" in text.lower()):
                raise StartupError(f"Telegram rejected GRIDBOT_BOT_TOKEN ({text}): copy the token from @BotFather "
                                   "again (/mybots → API Token)", 1) from e
            if what == "setWebhook":
                raise StartupError(f"Telegram refused GRIDBOT_WEBHOOK_URL ({text}): it must be a public https "
                                   "address on port 443, 80, 88 or 8443", 1) from e
            raise StartupError(f"Telegram refused {what}: {text}", 1) from e
        except Exception as e:  # network, 5xx, a proxy that does not answer
            log.warning("Telegram Bot API at %s does not answer %s (%s); retrying in %.0fs",
                        settings.telegram_api_base, what, one_line(e) or type(e).__name__, delay)
        if await _wait(stop, delay):
            return None
        delay = min(delay * 2, MAX_DELAY)


async def summary(core, *, webhook: bool) -> str:
    """The start-up line: who the bot is, how it receives, what it loaded, who administers it."""
    from sqlalchemy import func, select

    from bot.areas.models import Area
    from bot.people.models import Person

    settings = core.settings
    async with core.sessionmaker() as s:
        areas = (await s.execute(select(func.count()).select_from(Area).where(Area.retired.is_(False)))).scalar_one()
        captains = (await s.execute(select(func.count(func.distinct(Area.captain_id)))
                                    .where(Area.retired.is_(False), Area.captain_id.is_not(None)))).scalar_one()
        admins = list(settings.admin_ids)
        chatted: set[Any] = set()
        if admins:
            chatted = set((await s.execute(select(Person.id).where(Person.id.in_(admins),
                                                                   Person.has_chatted.is_(True)))).scalars())
    try:
        kb = f"{len(core.matcher.entries)} knowledge entries from {settings.kb_path}"
    except Exception as e:  # the bot still runs: questions get "I don't know"
        kb = f"knowledge base NOT loaded ({one_line(e)})"
    mode = (f"webhook {settings.webhook_url.rstrip('/')}{settings.webhook_path} "
            f"(listening on {settings.webhook_host}:{settings.webhook_port})") if webhook else "long polling"
    if admins:
        adm = ", ".join(f"{a}" + ("" if a in chatted else " (has not started the bot)") for a in admins)
    else:
        adm = "none (set GRIDBOT_ADMIN_IDS; send /id to the bot to learn yours)"
    proxy = f", proxy {settings.proxy.split('@')[-1]}" if settings.proxy else ""
    return (f"gridbot started: @{core.bot_username} (id {core.bot_id}), {mode}, {settings.framework}{proxy}, "
            f"{where(settings.database_url)}, grid {areas} areas ({captains} captains), {kb}, admins: {adm}")
