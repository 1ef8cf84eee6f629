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


class OnceFilter(logging.Filter):
    """For a log handler: a record with a traceback passes the first time its error (type and
    place) is seen; after that it is only counted, and every `every`-th passes without the
    traceback. Libraries (PTB logs every unreadable answer with its traceback) included."""

    def __init__(self, every: int = 1000) -> None:
        super().__init__()
        self.every = every
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        key = (record.name, *error_key(exc))
        self.counts[key] += 1
        n = self.counts[key]
        if n == 1:
            return True
        if n % self.every == 0:
            record.exc_info = None
            record.exc_text = None
            record.msg = f"{record.msg} ({key[1]} at {key[2]}: {n} times so far, traceback logged the first time)"
            return True
        return False


def log_tracebacks_once(every: int = 1000) -> None:
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, OnceFilter) for f in handler.filters):
            handler.addFilter(OnceFilter(every))
