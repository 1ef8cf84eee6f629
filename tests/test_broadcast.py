"""Broadcasts, through the real aiogram and python-telegram-bot stacks against the fake Bot API.

The delivery rate is raised to RATE messages/s here (Telegram's own is ~30) to keep the
2,000-recipient runs short; what is checked is that the rate, whatever it is, holds.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

import handlers.broadcast  # noqa: F401  (registers /broadcast)
import handlers.reports  # noqa: F401  (registers /stats and /export)
from bot.broadcasts.models import Broadcast
from bot.outbox import dispatcher as dispatcher_module
from bot.outbox.models import OutboxMessage
from bot.outbox.ratelimit import Limits, RateLimiter
from bot.people.models import AuditEntry, Person
from tests.conftest import sun, wang
from tests.fakebotapi import updates as U
from tests.harness import BotHarness

RATE = 200
N = 2_000
BASE_ID = 500_000


@pytest.fixture
def fast_rate(monkeypatch):
    monkeypatch.setattr("bot.app.RateLimiter", lambda *a, **k: RateLimiter(Limits(global_rate=RATE)))


@pytest.fixture
def bot_settings(fast_rate) -> dict:
    return {}  # the bot starts with the raised rate


async def add_residents(h: BotHarness, n: int) -> list[int]:
    now = datetime.now(timezone.utc)
    ids = [BASE_ID + i for i in range(n)]
    async with h.core.sessionmaker() as s, s.begin():
        await s.execute(Person.__table__.insert(), [dict(
            id=i, name=f"居民{i}", has_chatted=True, is_active=True, is_admin=False, created_at=now,
            tg_language="zh-hans") for i in ids])
    for i in ids:
        h.api.add_chat(i)
    return ids


async def start_broadcast(h: BotHarness, audience: str = "bc:a:res", text: str = "明天上午停水，请提前储水。") -> int:
    await h.say(sun, "/broadcast")
    replies = await h.say(sun, text)
    preview = await h.press(sun, replies[-1], audience)
    go = next(b for b in h.buttons(preview[-1]) if b.startswith("bc:go:"))
    # pushed, not pressed: press() would wait for the whole broadcast to settle
    h.api.push_update(U.callback(sun, preview[-1].result, go))
    return int(go.split(":")[2])


async def wait_done(h: BotHarness, bid: int, timeout: float = 60) -> Broadcast:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with h.core.sessionmaker() as s:
            bc = await s.get(Broadcast, bid)
        if bc is not None and bc.status == "done":
            return bc
        await asyncio.sleep(0.1)
    raise TimeoutError("broadcast did not finish")


async def counts(h: BotHarness, bid: int) -> dict[str, int]:
    async with h.core.sessionmaker() as s:
        rows = (await s.execute(select(OutboxMessage.status, func.count()).where(
            OutboxMessage.broadcast_id == bid).group_by(OutboxMessage.status))).all()
    return dict(rows)


def sends_per_chat(h: BotHarness) -> dict[int, int]:
    out: dict[int, int] = {}
    for c in h.api.sent():
        cid = int(c.params.get("chat_id"))
        out[cid] = out.get(cid, 0) + 1
    return out


def sends_to(h: BotHarness, chat_id: int) -> int:
    return len(h.api.sent(chat_id))


def spread(h: BotHarness) -> tuple[int, float]:
    times = [c.time for c in h.api.sent()]
    return len(times), times[-1] - times[0]


async def test_a_broadcast_reaches_every_resident_once_within_the_limits(bot):
    ids = await add_residents(bot, N)
    blocked = set(ids[::40])  # 50 of them blocked the bot
    for i in blocked:
        bot.api.block_chat(i)
    bid = await start_broadcast(bot)

    # a burst of 429s part-way through: delivery pauses for retry_after, nothing is lost
    async def burst():
        while len(bot.api.calls_of("sendMessage", ok=True)) < N // 3:
            await asyncio.sleep(0.05)
        bot.api.fail_next("sendMessage", times=3, status=429, retry_after=1)

    burster = asyncio.create_task(burst())
    bc = await wait_done(bot, bid)
    await burster
    await bot.delivered()

    assert bc.total == N + 1  # the admin is a resident too
    per_chat = sends_per_chat(bot)
    assert per_chat[sun.id] >= 1
    for i in ids:
        assert per_chat.get(i, 0) == (0 if i in blocked else 1), i
    n, took = spread(bot)
    print(f"\n[{bot.framework}] {n} messages in {took:.1f}s, max {bot.api.max_per_second()}/s (rate {RATE}/s)")
    assert bot.api.max_per_second() <= RATE + 1
    assert all(v <= 1 for k, v in per_chat.items() if k != sun.id)  # so never over 1/s to a chat
    c = await counts(bot, bid)
    assert c == {"sent": N + 1 - len(blocked), "gone": len(blocked)}
    async with bot.core.sessionmaker() as s:
        inactive = set((await s.execute(select(Person.id).where(Person.is_active.is_(False)))).scalars())
        audit = (await s.execute(select(AuditEntry).where(AuditEntry.action == "broadcast"))).scalars().all()
    assert inactive == blocked
    assert len(audit) == 1 and audit[0].actor_id == sun.id
    # after the 429 everything paused for retry_after (1 s). The server stamps the 429 when the
    # request arrives; a request already on its way may land a few tens of ms later and the
    # pause is counted from the answer, so the quiet gap is a little under 1 s, never near 0.
    first_429 = next(c for c in bot.api.calls if c.status == 429)
    after = [c.time for c in bot.api.sent() if c.time > first_429.time][:50]
    assert max(b - a for a, b in zip([first_429.time] + after, after)) >= 0.85
    # the admin saw progress edits and the final summary, with the counts
    texts = bot.texts(sun.id)
    summary = texts[-1]
    assert f"已发送 {N + 1 - len(blocked)} / {N + 1}" in summary and "失败 50" in summary and "不确定 0" in summary
    assert bot.api.calls_of("editMessageText", ok=True)


async def test_a_second_confirm_sends_nothing_twice(bot):
    ids = await add_residents(bot, 30)
    bid = await start_broadcast(bot)
    await wait_done(bot, bid)
    await bot.delivered()
    async with bot.core.sessionmaker() as s:
        bc = await s.get(Broadcast, bid)
    # the same button pressed again (a double tap, an old message)
    msg = next(c for c in bot.api.sent(sun.id) if f"bc:go:{bid}" in str(c.params.get("reply_markup")))
    mark = bot.api.mark()
    bot.api.push_update(U.callback(sun, msg.result, f"bc:go:{bid}"))
    await bot.settle()
    await bot.delivered()
    assert all(sends_to(bot, i) == 1 for i in ids)
    assert bot.api.sent(since=mark) == []
    assert bc.total == 31


async def test_an_area_subtree_and_groups_can_be_chosen(bot):
    from bot.people.models import GroupChat

    async with bot.core.sessionmaker() as s, s.begin():
        s.add(GroupChat(id=-100777, type="supergroup", title="幸福小区业主群", created_at=datetime.now(timezone.utc)))
    bot.api.add_chat(-100777, "supergroup", "幸福小区业主群")
    await bot.say(sun, "/broadcast")
    replies = await bot.say(sun, "今晚八点小区停电检修。")
    await bot.press(sun, replies[-1], "bc:a:area")  # the message turns into the area tree
    await bot.press(sun, replies[-1], "bc:t:haibin")
    assert "bc:p:fushanwan" in bot.buttons(replies[-1])
    await bot.press(sun, replies[-1], "bc:x")
    await bot.say(sun, "/broadcast")
    replies = await bot.say(sun, "今晚八点小区停电检修。")
    preview = await bot.press(sun, replies[-1], "bc:a:grp")
    assert "<b>1</b>" in preview[-1].params["text"]
    go = next(b for b in bot.buttons(preview[-1]) if b.startswith("bc:go:"))
    await bot.press(sun, preview[-1], go)
    await bot.delivered()
    assert any("今晚八点小区停电检修" in (c.text or "") for c in bot.api.sent(-100777))


async def test_a_resident_cannot_broadcast_or_forge_its_buttons(bot):
    await add_residents(bot, 5)
    replies = await bot.say(wang, "/broadcast")
    assert "没有权限" in replies[-1].text
    for data in ("bc:a:all", "bc:go:1", "bc:p:x", "bc:x:1", "ex:csv", "ex:xlsx"):
        mark = bot.api.mark()
        await bot.push(U.callback(wang, replies[-1].result, data))
        await bot.settle()
        answers = bot.api.calls_of("answerCallbackQuery", since=mark)
        assert answers and "没有权限" in (answers[-1].params.get("text") or ""), data
        assert bot.api.sent(since=mark) == []
    for cmd in ("/stats", "/export", "/invite captain x"):
        replies = await bot.say(wang, cmd)
        assert "没有权限" in replies[-1].text, cmd
    async with bot.core.sessionmaker() as s:
        assert (await s.execute(select(func.count()).select_from(Broadcast))).scalar_one() == 0


async def test_a_crash_mid_broadcast_resumes_without_duplicates(framework, db_url, settings_for, monkeypatch):
    monkeypatch.setattr(dispatcher_module, "LEASE", dispatcher_module.timedelta(seconds=1))
    monkeypatch.setattr("bot.app.RateLimiter", lambda *a, **k: RateLimiter(Limits(global_rate=2 * RATE)))
    from tests.fakebotapi import FakeBotAPI
    from tests.conftest import TOKEN

    async with FakeBotAPI(token=TOKEN) as api:
        h = BotHarness(framework, db_url, settings_for, api=api)
        await h.start()
        ids = await add_residents(h, N // 2)
        bid = await start_broadcast(h)
        while len(api.calls_of("sendMessage", ok=True)) < N // 4:
            await asyncio.sleep(0.02)
        # the crash: the outbox stops mid-send, nothing more is written
        h.core.dispatcher._task.cancel()
        await asyncio.gather(h.core.dispatcher._task, return_exceptions=True)
        h.core.dispatcher._task = None
        await h.stop()
        before = {i: sends_to(h, i) for i in ids}
        assert 0 < sum(before.values()) < N // 2
        await asyncio.sleep(1.1)  # the dead process's lease runs out

        h2 = BotHarness(framework, db_url, settings_for, api=api)
        await h2.start()
        try:
            await wait_done(h2, bid)
            await h2.delivered()
            c = await counts(h2, bid)
        finally:
            await h2.stop()
    uncertain = c.get("uncertain", 0)
    assert c.get("sent", 0) + uncertain == N // 2 + 1 and set(c) <= {"sent", "uncertain"}
    got = {i: sends_to(h2, i) for i in ids}
    assert all(n <= 1 for n in got.values()), "somebody got it twice"
    assert sum(1 for n in got.values() if n == 0) <= uncertain, "somebody was skipped"
    assert uncertain <= 2 * RATE  # only what was in hand: about half a second of the rate
    summary = h2.texts(sun.id)[-1]
    assert f"不确定 {uncertain}" in summary

