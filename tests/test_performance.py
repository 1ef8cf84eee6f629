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
    # built on the loop, the longest gap would be the whole build (0.6 s and more)
    assert max(gaps) < max(0.15, took / 3), (max(gaps), took)
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
