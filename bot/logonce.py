"""Tracebacks once per distinct error, then a count: a flood of one failure is one log entry."""

from __future__ import annotations

import logging
import traceback
from collections import Counter


def error_key(exc: BaseException) -> tuple[str, str]:
    """The error's type and where it was raised (innermost frame): not its message, which
    usually carries ids that differ every time."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f"{tb[-1].filename}:{tb[-1].lineno}" if tb else ""
    return type(exc).__name__, where


class ErrorLog:
    def __init__(self, logger: logging.Logger, every: int = 1000) -> None:
        self.log = logger
        self.every = every
        self.counts: Counter[tuple[str, str]] = Counter()

    def exception(self, exc: BaseException, msg: str, *args) -> None:
        key = error_key(exc)
        self.counts[key] += 1
        n = self.counts[key]
        if n == 1:
            self.log.error(msg, *args, exc_info=exc)
        elif n % self.every == 0:
            self.log.error(msg + " (%s at %s: %d times so far, traceback logged the first time)",
                           *args, key[0], key[1], n)

    @property
    def total(self) -> int:
        return sum(self.counts.values())
