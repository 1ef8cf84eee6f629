"""Start-up and event-loop responsiveness: the knowledge index is built before the first update
and off the event loop; heavy libraries are imported only when used."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from bot import app
from bot.app import Core


async def test_warm_builds_the_matcher_off_the_event_loop(core: Core):
    core._matcher = None
    app._MATCHERS.clear()  # built once per process: make this start build it
    gaps: list[float] = []
    stop = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    t = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    await core.warm()
    took = time.perf_counter() - t0
    stop = True
    await t
    assert core._matcher is not None and len(core._matcher.entries) > 50
    # built on the loop, the longest gap would be the whole build (0.6 s and more); off the loop
    # the loop still ticks through it. One stall of 0.79 s in a 1.11 s cold build was seen once in
    # CI (PostgreSQL run), cause not found yet: the bound tells "on the loop" from "off" only.
    assert max(gaps) < max(0.15, took * 0.8), (max(gaps), took)
    # warm: a question is answered at once, in the matcher's thread, the same as on the loop
    t0 = time.perf_counter()
    m = await core.match("家里的旧沙发不要了，大件垃圾怎么扔？")
    assert time.perf_counter() - t0 < 0.25
    assert m == core.matcher.match("家里的旧沙发不要了，大件垃圾怎么扔？")
    assert await core.rebuild_matcher() == len(core.matcher.entries)
    # a second bot in the same process (a replica, the next test) takes the built one
    other = Core(core.settings, engine=core.engine)
    t0 = time.perf_counter()
    await other.warm()
    assert other._matcher is core._matcher and time.perf_counter() - t0 < 0.5


def test_the_bot_starts_without_matplotlib_and_ptb_finds_sniffio():
    code = ("import sys, bot.runner, bot.cli, handlers, scheduler.registry, bot.transport.ptb, sniffio; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


async def test_a_chat_waiting_for_its_own_limit_does_not_hold_a_sending_slot(core: Core):
    """One sending slot (the rate is low); chat A has three replies queued (1/s, no burst), chat
    B one. B's reply goes out while A waits for its second second, not after all of A's."""
    from bot.outbox.dispatcher import OutboxDispatcher
    from bot.outbox.ratelimit import Limits, RateLimiter
    from bot.outbox.service import enqueue
    from bot.transport.base import Outgoing
    from tests.conftest import RecordingMessenger

    a, b = 7001, 7002
    async with core.sessionmaker() as s, s.begin():
        for text in ("a1", "a2", "a3"):
            await enqueue(session=s, msg=Outgoing(chat_id=a, text=text), kind="reply", now=core.clock())
        await enqueue(session=s, msg=Outgoing(chat_id=b, text="b1"), kind="reply", now=core.clock())
    messenger = RecordingMessenger()
    d = OutboxDispatcher(core.sessionmaker, messenger, workers=1, clock=core.clock, on_progress=None,
                         limiter=RateLimiter(Limits(global_rate=2.5, chat_burst=1.0, shared=False)))
    assert d.concurrency == 1
    d.start()
    try:
        deadline = time.monotonic() + 15
        while len(messenger.sent) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await d.stop(drain_seconds=1)
    order = [m.text for m in messenger.sent]
    assert sorted(order) == ["a1", "a2", "a3", "b1"]
    assert [t for t in order if t.startswith("a")] == ["a1", "a2", "a3"]  # one chat, in order
    assert order.index("b1") < order.index("a2"), order


async def test_aiogram_answers_are_read_without_building_a_model_each_time(monkeypatch):
    """aiogram reads each Bot API answer into Response[T], a generic pydantic model that pydantic
    caches only weakly: once the collector has run it is built again, 10 ms on the event loop
    for a Message. The transport keeps the ones it needs from its start."""
    import gc

    import pydantic.main
    from pydantic._internal import _generics

    from bot.transport.aiogram import AiogramTransport
    from tests.fakebotapi import FakeBotAPI

    api = await FakeBotAPI(token="123:ABC").start()
    transport = AiogramTransport("123:ABC", api.base_url)
    builds: list[object] = []
    build = _generics.create_generic_submodel

    def counted(*a, **kw):
        builds.append(a[0])
        return build(*a, **kw)

    monkeypatch.setattr(pydantic.main._generics, "create_generic_submodel", counted)
    try:
        api.add_chat(5)
        for i in range(5):
            await transport.send_text(5, f"第{i}条", None, False)
            gc.collect()
    finally:
        await transport.close()
        await api.stop()
    assert builds == []
