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


async def test_replies_use_the_whole_rate_and_a_broadcast_takes_what_they_leave(db_url, settings_for):
    """Through the aiogram transport against the fake Bot API: eight replies to each of ten
    residents (three at once, then 1/s per chat) while a 150-recipient broadcast is due. While
    the replies can use the whole rate they get it and the broadcast waits; once the residents'
    own 1/s limits leave room (~10/s of replies), the broadcast takes the rest. No second at
    "Telegram" holds more than the rate, and the rate is used."""
    from datetime import datetime, timezone

    from bot.outbox.dispatcher import OutboxDispatcher
    from bot.outbox.service import enqueue, enqueue_many
    from bot.transport.aiogram import AiogramTransport
    from bot.transport.base import Outgoing
    from tests.conftest import TOKEN
    from tests.fakebotapi import FakeBotAPI

    rate, residents, each, notices = 40, 10, 8, 150
    engine = await prepare_database(settings_for(db_url))
    sm = make_sessionmaker(engine)
    now = datetime.now(timezone.utc)
    replies = [10_000 + i for i in range(residents)]
    audience = [20_000 + i for i in range(notices)]
    async with sm() as s, s.begin():
        await enqueue_many(session=s, rows=[dict(
            kind="broadcast", chat_id=c, payload=Outgoing(chat_id=c, text="明天上午停水").to_json(), status="pending",
            attempts=0, next_attempt_at=now, created_at=now, broadcast_id=1) for c in audience])
        for k in range(each):
            for c in replies:
                await enqueue(session=s, msg=Outgoing(chat_id=c, text=f"答复 {k}"), kind="reply", now=now)
    api = await FakeBotAPI(token=TOKEN).start()
    transport = AiogramTransport(TOKEN, api.base_url)
    d = OutboxDispatcher(sm, transport, limiter=RateLimiter(Limits(global_rate=rate)), on_progress=None)
    try:
        for c in replies + audience:
            api.add_chat(c)
        d.start()
        deadline = time.monotonic() + 30
        while len(api.sent()) < residents * each + notices and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        await d.stop(drain_seconds=1)
        await transport.close()
        await api.stop()
        await engine.dispose()
    sent = sorted(api.sent(), key=lambda c: c.time)
    assert len(sent) == residents * each + notices
    times = [c.time for c in sent]
    is_reply = [int(c.params["chat_id"]) < 20_000 for c in sent]
    reply_at = [i for i, r in enumerate(is_reply) if r]
    busiest = api.max_per_second()
    # every request after the first second (the window starts empty) up to the last reply
    steady = [t for t in times[:reply_at[-1] + 1] if t >= times[0] + 1.0]
    overall = (len(steady) - 1) / (steady[-1] - steady[0])
    # the first three replies to each resident could use the whole rate: the broadcast waited
    burst = reply_at[residents * 3 - 1]
    early = sum(1 for i in range(burst) if not is_reply[i])
    # then the residents' own 1/s leave ~3/4 of the rate: the broadcast took it
    later = sum(1 for i in range(burst, reply_at[-1]) if not is_reply[i])
    took = times[reply_at[-1]] - times[burst]
    print(f"\nrate {rate}/s: busiest second {busiest}; {overall:.1f}/s after the first second ({overall / rate:.0%}); "
          f"{early} notices before the first {residents * 3} replies; then {later / took:.1f} notices/s beside "
          f"{(len(reply_at) - residents * 3) / took:.1f} replies/s for {took:.1f} s")
    assert busiest <= rate
    assert overall >= 0.95 * rate
    assert early <= residents
    assert later / took >= 0.5 * rate
