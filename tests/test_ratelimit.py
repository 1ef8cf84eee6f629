"""The rate limiter: in-memory per-chat buckets, the global bucket shared through the database,
429 pauses, and interactive messages going before broadcast ones."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.db import make_sessionmaker
from bot.outbox.ratelimit import Bucket, Limits, RateLimiter, SharedBucket
from bot.runner import prepare_database


def test_a_bucket_refills_at_its_rate():
    b = Bucket(capacity=1, rate=2, tokens=1, stamp=0)
    b.take(0)
    assert b.wait_time(0) == 0.5
    assert b.wait_time(0.5) == 0


async def test_one_chat_gets_at_most_one_broadcast_message_a_second():
    lim = RateLimiter(Limits(global_rate=1000))
    stamps = []
    for _ in range(3):
        await lim.acquire(42, strict=True)
        stamps.append(time.monotonic())
    assert stamps[1] - stamps[0] >= 0.95 and stamps[2] - stamps[1] >= 0.95


async def test_a_429_pauses_everything_for_retry_after():
    lim = RateLimiter(Limits(global_rate=1000))
    await lim.acquire(1)
    lim.pause(0.5)
    t0 = time.monotonic()
    await lim.acquire(2)
    assert time.monotonic() - t0 >= 0.49


async def test_interactive_messages_go_before_broadcast_ones():
    lim = RateLimiter(Limits(global_rate=20))
    order = []

    async def send(chat, strict):
        await lim.acquire(chat, strict=strict)
        order.append("bc" if strict else "reply")

    bulk = [asyncio.create_task(send(1000 + i, True)) for i in range(10)]
    await asyncio.sleep(0.12)
    reply = asyncio.create_task(send(7, False))
    await asyncio.gather(reply, *bulk)
    # the reply waited for at most one broadcast slot, not for the whole queue
    assert order.index("reply") <= 4


async def test_two_processes_share_the_global_rate(db_url, settings_for):
    engine = await prepare_database(settings_for(db_url))
    try:
        sm = make_sessionmaker(engine)
        rate = 40
        a, b = RateLimiter(Limits(global_rate=rate)), RateLimiter(Limits(global_rate=rate))
        a.share(sm)
        b.share(sm)
        stamps: list[float] = []

        async def run(lim, base):
            for i in range(40):
                await lim.acquire(base + i, strict=True)
                stamps.append(time.monotonic())

        t0 = time.monotonic()
        await asyncio.gather(run(a, 10_000), run(b, 20_000))
        took = time.monotonic() - t0
        # 80 messages at 40/s together take ~2 s (each alone would take 1 s)
        assert took >= 80 / rate - 0.5
        stamps.sort()
        busiest = max(sum(1 for t in stamps if s <= t < s + 1) for s in stamps)
        assert busiest <= rate + 1  # never more than the rate in any second, whatever the processes
    finally:
        await engine.dispose()


@pytest.fixture
def others_booking(monkeypatch):
    """Each limiter behaves as it does while other processes book slots too (then it waits for
    its slots; a process alone leaves the spacing to its SendWindow)."""
    monkeypatch.setattr(SharedBucket, "solo", property(lambda self: False))


async def test_a_429_in_one_process_pauses_the_other(db_url, settings_for, others_booking):
    engine = await prepare_database(settings_for(db_url))
    try:
        sm = make_sessionmaker(engine)
        a, b = RateLimiter(Limits(global_rate=50)), RateLimiter(Limits(global_rate=50))
        a.share(sm)
        b.share(sm)
        await b.acquire(1)
        await a.pause_all(0.6)
        t0 = time.monotonic()
        # b may still use the slot it took before, then waits
        for i in range(2):
            await b.acquire(2 + i)
        assert time.monotonic() - t0 >= 0.5
    finally:
        await engine.dispose()


async def test_a_reply_does_not_queue_behind_send_slots_a_broadcast_booked_ahead(db_url, settings_for, others_booking):
    engine = await prepare_database(settings_for(db_url))
    try:
        sm = make_sessionmaker(engine)
        lim = RateLimiter(Limits(global_rate=20))
        lim.share(sm)
        booked: list[tuple[float, float]] = []  # (when booked, the slot)

        async def notice(chat):
            # as the dispatcher sends a broadcast row: book the slot, then wait for it
            slot = await lim.acquire(chat, strict=True, sleep=False)
            booked.append((lim.shared.wall(), slot))
            await lim.until(slot)

        bulk = [asyncio.create_task(notice(30_000 + i)) for i in range(40)]
        await asyncio.sleep(0.3)
        asked = lim.shared.wall()
        slot = await lim.acquire(7, sleep=False)
        # 40 notices at 20/s are two seconds of slots; the reply gets one of the next few
        assert slot - asked < 0.35
        await asyncio.gather(*bulk)
        assert len(booked) == 40
        assert max(s - t for t, s in booked) <= 0.15  # no notice booked its slot far ahead
    finally:
        await engine.dispose()


async def test_replies_use_the_whole_rate_and_a_broadcast_takes_what_they_leave(db_url, settings_for):
    """Through the aiogram transport against the fake Bot API, with a 200-recipient broadcast due
    all along: first three replies to each of 40 residents, more than the rate can carry (they
    get all of it, the broadcast waits); then five replies to each of five others (three at
    once, then 1/s per chat: the residents' own limits leave most of the rate, and the broadcast
    takes it). No second at "Telegram" holds more than the rate."""
    from datetime import datetime, timezone

    from bot.outbox.dispatcher import OutboxDispatcher
    from bot.outbox.service import enqueue, enqueue_many
    from bot.transport.aiogram import AiogramTransport
    from bot.transport.base import Outgoing
    from tests.conftest import TOKEN
    from tests.fakebotapi import FakeBotAPI

    rate, notices = 40, 200
    many = [10_000 + i for i in range(40)]
    few = [11_000 + i for i in range(5)]
    audience = [20_000 + i for i in range(notices)]
    engine = await prepare_database(settings_for(db_url))
    sm = make_sessionmaker(engine)

    async def queue_replies(chats, each):
        now = datetime.now(timezone.utc)
        async with sm() as s, s.begin():
            for k in range(each):
                for c in chats:
                    await enqueue(session=s, msg=Outgoing(chat_id=c, text=f"答复 {k}"), kind="reply", now=now)

    async def until_sent(chats, n):
        deadline = time.monotonic() + 20
        while sum(len(api.sent(c)) for c in chats) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    now = datetime.now(timezone.utc)
    async with sm() as s, s.begin():
        await enqueue_many(session=s, rows=[dict(
            kind="broadcast", chat_id=c, payload=Outgoing(chat_id=c, text="明天上午停水").to_json(), status="pending",
            attempts=0, next_attempt_at=now, created_at=now, broadcast_id=1) for c in audience])
    await queue_replies(many, 3)
    stalls: list[tuple[float, float]] = []  # (when, how long) the event loop did not run at all

    async def watch():
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.005)
            if (late := time.monotonic() - t - 0.005) > 0.005:
                stalls.append((t, late))

    api = await FakeBotAPI(token=TOKEN).start()
    transport = AiogramTransport(TOKEN, api.base_url)
    d = OutboxDispatcher(sm, transport, limiter=RateLimiter(Limits(global_rate=rate)), on_progress=None)
    watcher = asyncio.create_task(watch())
    try:
        for c in many + few + audience:
            api.add_chat(c)
        d.start()
        await until_sent(many, 3 * len(many))
        await queue_replies(few, 5)
        d.kick()
        await until_sent(few, 5 * len(few))
    finally:
        watcher.cancel()
        await d.stop(drain_seconds=0)
        await transport.close()
        await api.stop()
        await engine.dispose()
    sent = sorted(api.sent(), key=lambda c: c.time)
    kind = ["many" if c < 11_000 else "few" if c < 20_000 else "notice" for c in (int(c.params["chat_id"]) for c in sent)]
    times = [c.time for c in sent]
    assert kind.count("many") == 3 * len(many) and kind.count("few") == 5 * len(few)
    busiest = api.max_per_second()
    # the first phase, after its first second (the window starts empty): the replies had the rate
    end1 = max(i for i, k in enumerate(kind) if k == "many")
    steady = [i for i in range(end1 + 1) if times[i] >= times[0] + 1.0]
    # less the time this (shared, busy) machine did not run the event loop at all: nothing can
    # be sent then, whatever the limiter
    stalled = sum(late for t, late in stalls if times[steady[0]] <= t <= times[end1])
    replies1 = (sum(1 for i in steady if kind[i] == "many") - 1) / (times[end1] - times[steady[0]] - stalled)
    notices1 = sum(1 for i in range(end1) if kind[i] == "notice")
    # the second: from the first reply to the last
    few_at = [i for i, k in enumerate(kind) if k == "few"]
    took = times[few_at[-1]] - times[few_at[0]]
    notices2 = sum(1 for i in range(few_at[0], few_at[-1]) if kind[i] == "notice") / took
    replies2 = len(few_at) / took
    print(f"\nrate {rate}/s, busiest second {busiest}: replies {replies1:.1f}/s ({replies1 / rate:.0%}) with "
          f"{notices1} notices meanwhile ({stalled:.2f} s of event-loop stalls); then replies {replies2:.1f}/s and notices {notices2:.1f}/s for {took:.1f} s")
    assert busiest <= rate
    assert replies1 >= 0.95 * rate
    assert notices1 <= 3
    assert notices2 >= 0.5 * rate and replies2 + notices2 >= 0.8 * rate


async def test_the_send_window_counts_requests_by_when_they_can_have_arrived():
    """A request held after its turn (a broadcast row's sending mark) counts as arriving any time
    until it leaves: meanwhile the others get one turn fewer in every second. Where every answer
    is slow, the network is: an unanswered request is then taken to arrive within GRACE of
    leaving."""
    from bot.outbox.ratelimit import GRACE, SendWindow

    w = SendWindow(5)  # five in any second
    held = await w.turn()
    granted: list[float] = []

    async def others():
        while True:
            t = await w.turn()
            granted.append(time.monotonic())
            w.leaving(t)
            w.answered(t)

    task = asyncio.create_task(others())
    await asyncio.sleep(2.5)
    task.cancel()
    busiest = max(sum(1 for t in granted if s <= t < s + 1) for s in granted)
    assert busiest == 4, granted  # the held one may arrive in any of those seconds
    w.leaving(held)
    w.answered(held)

    slow = SendWindow(5)
    for _ in range(10):
        t = await slow.turn()
        slow.leaving(t)
        await asyncio.sleep(0.06)  # every answer slower than SLOW_ANSWER
        slow.answered(t)
    assert slow.slow_network
    entry = [time.monotonic(), None]  # left, no answer yet
    assert slow._arrived_by(entry) == entry[0] + GRACE
