"""A cursor for SQLAlchemy's aiosqlite dialect that makes one trip to aiosqlite's thread per
statement: the statement runs, its rows are fetched and its cursor closed there, in one go.
SQLAlchemy's own cursor makes four (cursor, execute, fetchall, close), each a hand-off to the
thread and a turn of the event loop back; under a backlog those were a fifth of the update
path's time. Server-side cursors (stream results) stay SQLAlchemy's."""

from __future__ import annotations

import collections
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection, AsyncAdapt_aiosqlite_cursor
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_


def _run_one(conn, operation, parameters):
    cur = conn.cursor()
    try:
        if parameters is None:
            cur.execute(operation)
        else:
            cur.execute(operation, parameters)
        desc = cur.description
        return desc, (cur.fetchall() if desc else ()), cur.rowcount, cur.lastrowid
    finally:
        cur.close()


def _run_many(conn, operation, seq):
    cur = conn.cursor()
    try:
        cur.executemany(operation, seq)
        return cur.description, (), cur.rowcount, cur.lastrowid
    finally:
        cur.close()


class FusedCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ("_desc", "_count", "_last")
    arraysize = 1

    def __init__(self, adapt_connection) -> None:  # no cursor of aiosqlite's: nothing to open
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._desc, self._count, self._last = None, -1, None

    @property
    def description(self):
        return self._desc

    @property
    def rowcount(self) -> int:
        return self._count

    @property
    def lastrowid(self):
        return self._last

    async def _run(self, fn, *args) -> None:
        conn = self._connection
        async with self._adapt_connection._execute_mutex:
            self._desc, rows, self._count, self._last = await conn._execute(fn, conn._conn, *args)
        self._rows = collections.deque(rows)

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            return await_(self._run(_run_one, operation, parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        try:
            return await_(self._run(_run_many, operation, seq_of_parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _async_soft_close(self) -> None:
        return

    def close(self) -> None:
        self._rows.clear()

    def setinputsizes(self, *inputsizes: Any) -> None:
        return None


class FusedConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = FusedCursor


def fuse(dbapi_conn: Any) -> None:
    """Give a new aiosqlite connection (SQLAlchemy's adapter of it) the one-trip cursor."""
    if type(dbapi_conn) is AsyncAdapt_aiosqlite_connection:
        dbapi_conn.__class__ = FusedConnection
