"""GRIDBOT_PROXY reaches Telegram through a SOCKS5 proxy with both frameworks, and the outbox
sums up the deliveries it put off for a retry in one periodic log line."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from tests.conftest import wang
from tests.harness import BotHarness


class Socks5Proxy:
    """A minimal SOCKS5 proxy (no authentication, CONNECT only) on 127.0.0.1 that counts tunnels."""

    def __init__(self) -> None:
        self.tunnels: list[tuple[str, int]] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _ver, n = await reader.readexactly(2)
            await reader.readexactly(n)
            writer.write(b"\x05\x00")
            _ver, cmd, _rsv, atyp = await reader.readexactly(4)
            if atyp == 1:
                host = socket.inet_ntoa(await reader.readexactly(4))
            elif atyp == 3:
                host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
            else:
                host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
            port = int.from_bytes(await reader.readexactly(2), "big")
            assert cmd == 1 and host in ("127.0.0.1", "localhost")  # tests talk to 127.0.0.1 only
            up_r, up_w = await asyncio.open_connection(host, port)
            self.tunnels.append((host, port))
            writer.write(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + (0).to_bytes(2, "big"))
            await writer.drain()

            async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                try:
                    while data := await r.read(65536):
                        w.write(data)
                        await w.drain()
                finally:
                    w.close()

            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer), return_exceptions=True)
        except (asyncio.IncompleteReadError, ConnectionError, AssertionError):
            writer.close()


@pytest.mark.parametrize("framework", ["aiogram", "ptb"])
async def test_the_bot_reaches_telegram_through_a_socks5_proxy(framework, tmp_path, settings_for):
    proxy = Socks5Proxy()
    port = await proxy.start()
    try:
        async with BotHarness(framework, f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", settings_for,
                              proxy=f"socks5://127.0.0.1:{port}") as h:
            replies = await h.say(wang, "/start")
            assert replies and "您好" in replies[-1].text
            api_port = h.api.port
    finally:
        await proxy.stop()
    assert ("127.0.0.1", api_port) in proxy.tunnels  # getMe, getUpdates and the reply went through it


async def test_retries_are_summed_up_in_one_periodic_line(core, caplog):
    from bot.outbox.service import enqueue
    from bot.outbox.kinds import MessageKind
    from bot.transport.base import Outgoing, TransientError

    class Down:
        async def deliver(self, msg):
            raise TransientError("Bad Gateway")

        async def answer_callback(self, *a, **k):
            return None

    dispatcher = core.attach(Down())
    async with core.sessionmaker() as s, s.begin():
        for chat in (9001, 9002):
            await enqueue(session=s, msg=Outgoing(chat_id=chat, text="你好"), kind=MessageKind.REPLY, now=core.clock())
    await dispatcher.run_once()
    with caplog.at_level(logging.WARNING, logger="gridbot.outbox"):
        line = dispatcher.retry_summary()
    assert line and "2 deliveries to 2 chats put off for a retry" in line and "Bad Gateway" in line
    assert any(r.getMessage() == line for r in caplog.records)
    assert dispatcher.retry_summary() is None  # nothing new since: no line
