"""Token buckets for Telegram's limits: global, per private chat, per group.

Buckets are data (capacity, rate, tokens, last refill), so the whole state can be stored
and shared; this module keeps them in memory for one process.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass
class Bucket:
    capacity: float
    rate: float  # tokens per second
    tokens: float
    stamp: float

    def wait_time(self, now: float) -> float:
        self.refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float) -> None:
        self.refill(now)
        self.tokens -= 1


@dataclass(frozen=True)
class Limits:
    global_rate: float = 25.0  # messages per second for the whole bot
    global_burst: float = 5.0
    chat_rate: float = 1.0  # per private chat
    chat_burst: float = 3.0  # a reply of two or three messages goes out at once
    group_rate: float = 20 / 60  # per group chat
    group_burst: float = 3.0
    strict: bool = False  # broadcasts: exactly 1/s per chat, no bursts


class RateLimiter:
    def __init__(self, limits: Limits | None = None, clock=time.monotonic) -> None:
        self.limits = limits or Limits()
        self.clock = clock
        now = clock()
        # start the global bucket with one token: a fresh process cannot burst past the rate
        self.global_bucket = Bucket(self.limits.global_burst, self.limits.global_rate, 1.0, now)
        self.chats: dict[int, Bucket] = {}
        self.paused_until = 0.0
        self._lock = asyncio.Lock()

    def _chat_bucket(self, chat_id: int, now: float, strict: bool) -> Bucket:
        b = self.chats.get(chat_id)
        if b is None:
            group = chat_id < 0
            rate = self.limits.group_rate if group else self.limits.chat_rate
            burst = 1.0 if strict else (self.limits.group_burst if group else self.limits.chat_burst)
            b = self.chats[chat_id] = Bucket(burst, rate, burst, now)
            if len(self.chats) > 50_000:  # forget idle chats
                for k in [k for k, v in self.chats.items() if v.tokens >= v.capacity][:10_000]:
                    del self.chats[k]
        return b

    def pause(self, seconds: float) -> None:
        """A 429 from Telegram: nobody sends until it has passed."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def chat_wait(self, chat_id: int, strict: bool = False) -> float:
        now = self.clock()
        return self._chat_bucket(chat_id, now, strict).wait_time(now)

    async def acquire(self, chat_id: int, strict: bool = False) -> None:
        """Wait until one message to chat_id may be sent, then take the tokens."""
        while True:
            async with self._lock:
                now = self.clock()
                wait = max(0.0, self.paused_until - now)
                if not wait:
                    cb = self._chat_bucket(chat_id, now, strict)
                    wait = max(self.global_bucket.wait_time(now), cb.wait_time(now))
                    if wait <= 0:
                        self.global_bucket.take(now)
                        cb.take(now)
                        return
            await asyncio.sleep(min(wait, 1.0))
