"""PTB's requests over aiohttp (bot/transport/ptb_http.py): what PTB's own client did, through
the PTB transport against the fake Bot API — a reply with buttons, an upload keeping its UTF-8
file name, and each failure classified as before (timeout, refused connection, 429, 403)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from telegram.error import TimedOut

from bot.transport.base import Button, Outgoing, RecipientGone, RetryAfter, TransientError
from bot.transport.ptb import PtbTransport
from tests.fakebotapi import FakeBotAPI

TOKEN = "123456789:TEST-fake-token"
CHAT = 4242


@pytest.fixture
async def api():
    async with FakeBotAPI(token=TOKEN) as api:
        api.add_chat(CHAT, first_name="王")
        yield api


@pytest.fixture
async def ptb(api):
    t = PtbTransport(TOKEN, api.base_url)
    await t.start()
    yield t
    await t.close()


async def test_a_reply_with_buttons_and_an_upload_arrive_as_sent(api, ptb):
    mid = await ptb.deliver(Outgoing(chat_id=CHAT, text="<b>您好</b> &amp; 欢迎",
                                     buttons=[[Button("有帮助", data="faq:1:y"), Button("地图", url="https://example.org/")]]))
    [call] = api.sent(CHAT)
    assert call.params["text"] == "<b>您好</b> &amp; 欢迎" and call.params["parse_mode"] == "HTML"
    assert call.params["reply_markup"]["inline_keyboard"][0][0] == {"text": "有帮助", "callback_data": "faq:1:y"}
    assert mid == call.result["message_id"]
    await ptb.send_file(CHAT, "document", "统计 2026.xlsx", b"PK\x03\x04 not really a workbook", "本周<b>统计</b>", None)
    doc = api.calls_of("sendDocument", ok=True)[-1]
    [upload] = doc.files.values()
    assert upload.filename == "统计 2026.xlsx" and upload.data == b"PK\x03\x04 not really a workbook"
    assert doc.params["caption"] == "本周<b>统计</b>" and doc.params["chat_id"] == CHAT


async def test_failures_are_classified_as_with_ptbs_own_client(api, ptb):
    api.fail_next("sendMessage", status=429, retry_after=3)
    with pytest.raises(RetryAfter) as e:
        await ptb.send_text(CHAT, "x", None, True)
    assert e.value.seconds == 3
    api.block_chat(CHAT)
    with pytest.raises(RecipientGone):
        await ptb.send_text(CHAT, "x", None, True)
    api.unblock_chat(CHAT)
    # an answer that does not come within the read timeout (given for this request) is PTB's
    # TimedOut, which the transport reports as transient: retried later, not lost
    api.set_latency(1.0, "sendMessage")
    with pytest.raises(TimedOut):
        await ptb.bot.send_message(CHAT, "slow", read_timeout=0.2)
    api.set_latency(0, "sendMessage")
    assert (await ptb.bot.send_message(CHAT, "fast", read_timeout=0.2)).text == "fast"


async def test_a_refused_connection_is_transient():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = PtbTransport(TOKEN, f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(TransientError):
            await asyncio.wait_for(t.send_text(CHAT, "x", None, True), 10)
    finally:
        await t.close()
