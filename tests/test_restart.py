"""Nothing received is lost: a real `gridbot run` process killed with updates in hand."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.core_models import InboxUpdate
from bot.db import make_engine, make_sessionmaker
from tests.conftest import TOKEN, child_env
from tests.fakebotapi import FakeBotAPI
from tests.fakebotapi import updates as U

ROOT = Path(__file__).resolve().parent.parent
USERS = [U.TgUser(20_000 + i, f"居民{i}") for i in range(60)]


async def start_bot(api: FakeBotAPI, db_url: str, framework: str, **env) -> asyncio.subprocess.Process:
    environ = child_env(GRIDBOT_BOT_TOKEN=TOKEN, GRIDBOT_TELEGRAM_API_BASE=api.base_url, GRIDBOT_DATABASE_URL=db_url,
                        GRIDBOT_FRAMEWORK=framework, GRIDBOT_MAX_CONCURRENT_CHATS="1", **env)
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "run", "--sample-grid", cwd=str(ROOT), env=environ,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


async def wait_until(predicate, timeout: float, what: str) -> None:
    for _ in range(int(timeout * 20)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(what)


async def inbox_counts(db_url: str) -> tuple[int, int, int]:
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as s:
            total, unhandled, retried = (await s.execute(select(
                func.count(), func.count(InboxUpdate.update_id).filter(InboxUpdate.handled_at.is_(None)),
                func.count(InboxUpdate.update_id).filter(InboxUpdate.attempts > 1)))).one()
            return total, unhandled, retried
    finally:
        await engine.dispose()


@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_sigkill_with_updates_in_hand_loses_nothing_and_repeats_nothing(framework, db_url):
    async with FakeBotAPI(token=TOKEN) as api:
        proc = await start_bot(api, db_url, framework)
        try:
            await api.wait_for(lambda c: c.method == "getUpdates", timeout=60)
            # replies cannot go out yet, so they pile up in the outbox, not in flight
            api.set_outage(True, 502)
            for u in USERS:
                api.push_update(U.message(u, text="/start"))

            async def confirmed():
                return not api.pending_updates()

            # as soon as Telegram has been told "received" (the next getUpdates offset)
            await wait_until(confirmed, 30, "updates were not confirmed")
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        total, unhandled, _ = await inbox_counts(db_url)
        assert total == len(USERS), "every confirmed update was recorded before the confirmation"
        print(f"\n[{framework}] killed with {unhandled} of {total} updates recorded but not yet handled")

        api.set_outage(False)
        proc = await start_bot(api, db_url, framework)
        try:
            async def all_answered():
                return all(api.sent(u.id) for u in USERS)

            await wait_until(all_answered, 60, "not every update was answered after the restart")
            await asyncio.sleep(1.0)  # anything sent twice would show up now
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
        for u in USERS:
            assert len(api.sent(u.id)) == 1, f"user {u.id} got {len(api.sent(u.id))} replies"
        total, unhandled, retried = await inbox_counts(db_url)
        assert (total, unhandled, retried) == (len(USERS), 0, 0)
        assert api.calls_of("deleteWebhook") == []


@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_sigterm_drains_the_updates_in_hand(framework, db_url):
    async with FakeBotAPI(token=TOKEN) as api:
        proc = await start_bot(api, db_url, framework)
        try:
            await api.wait_for(lambda c: c.method == "getUpdates", timeout=60)
            api.set_latency(0.05, "sendMessage")
            for u in USERS[:20]:
                api.push_update(U.message(u, text="/start"))

            async def confirmed():
                return not api.pending_updates()

            await wait_until(confirmed, 30, "updates were not confirmed")
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert rc == 0, (await proc.stderr.read()).decode()[-2000:]
        total, unhandled, _ = await inbox_counts(db_url)
        assert (total, unhandled) == (20, 0)
        assert all(len(api.sent(u.id)) == 1 for u in USERS[:20])
