"""The rate limiter: in-memory per-chat buckets, the global bucket shared through the database,
429 pauses, and interactive messages going before broadcast ones."""

from __future__ import annotations

import asyncio
import time

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


async def test_a_429_in_one_process_pauses_the_other(db_url, settings_for):
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


async def test_a_reply_does_not_queue_behind_send_slots_a_broadcast_booked_ahead(db_url, settings_for):
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
