"""Tests of the fake Bot API itself, through the real aiogram and python-telegram-bot clients."""

from __future__ import annotations

import asyncio
import datetime as dt
import struct
import time
import zlib

import aiohttp
import pytest
import telegram
import telegram.error
from aiogram import Bot as AioBot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import BotCommand, BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto

from tests.fakebotapi import (
    FakeBotAPI,
    TgUser,
    callback,
    edited_message,
    group_chat,
    message,
    my_chat_member,
    parse_html,
)

TOKEN = "123456789:AAHfakeTokenForGridbotTests"
ALICE = TgUser(1001, "Alice", username="alice")
BOB = TgUser(1002, "Bob")
GROUP = -1001234567890


def _png(w: int = 4, h: int = 3) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


PNG = _png()


@pytest.fixture
async def api():
    async with FakeBotAPI(token=TOKEN) as fake:
        fake.add_user(ALICE)
        yield fake
        assert not fake.internal_errors, fake.internal_errors


@pytest.fixture
async def abot(api):
    bot = AioBot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.base_url)))
    yield bot
    await bot.session.close()


@pytest.fixture
async def pbot(api):
    bot = telegram.Bot(TOKEN, base_url=api.base_url + "/bot", base_file_url=api.base_url + "/file/bot")
    await bot.initialize()
    yield bot
    await bot.shutdown()


# ----------------------------------------------------------------- raw HTTP

async def test_raw_envelope_token_method_and_encodings(api):
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{api.base_url}/bot999:WRONG/getMe") as r:
            assert r.status == 401
            assert await r.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        async with s.post(f"{api.base_url}/bot{TOKEN}/noSuchMethod") as r:
            assert r.status == 404
            assert (await r.json())["description"] == "Not Found"
        # JSON body with native nested objects; method names are case-insensitive
        async with s.post(f"{api.base_url}/bot{TOKEN}/sendmessage", json={
            "chat_id": ALICE.id, "text": "hi",
            "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "x"}]]},
        }) as r:
            body = await r.json()
            assert body["ok"] is True and body["result"]["message_id"] == 1
        # urlencoded with numbers/nested JSON as strings, GET with query string
        async with s.post(f"{api.base_url}/bot{TOKEN}/sendMessage", data={
            "chat_id": str(ALICE.id), "text": "hey", "reply_markup": '{"inline_keyboard":[[{"text":"u","url":"https://t.me"}]]}',
            "disable_notification": "true",
        }) as r:
            body = await r.json()
            assert body["result"]["message_id"] == 2
            assert body["result"]["reply_markup"]["inline_keyboard"][0][0]["url"] == "https://t.me"
        async with s.get(f"{api.base_url}/bot{TOKEN}/getChat", params={"chat_id": str(ALICE.id)}) as r:
            assert (await r.json())["result"]["type"] == "private"
    call = api.calls_of("sendMessage")[1]
    assert call.params["chat_id"] == ALICE.id and call.params["disable_notification"] is True
    assert isinstance(call.params["reply_markup"], dict)
    assert [c.method for c in api.calls[:2]] == ["getMe", "noSuchMethod"] and not api.calls[0].ok
    assert list(api.messages[ALICE.id]) == [1, 2]


def test_html_parser_matches_tdlib():
    assert parse_html("<b>bold</b> &lt;x&gt; <a href='https://example.org'>l</a>") == (
        "bold <x> l",
        [{"type": "bold", "offset": 0, "length": 4},
         {"type": "text_link", "offset": 9, "length": 1, "url": "https://example.org"}],
    )
    for bad, msg in [
        ("x <b", "Unclosed start tag at byte offset 2"),
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("<br>", 'Unsupported start tag "br" at byte offset 0'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("<b>x", "Can't find end tag corresponding to start tag \"b\""),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ("Tom & Jerry", "Character '&' at byte offset 4"),
    ]:
        with pytest.raises(ValueError) as exc:
            parse_html(bad)
        assert str(exc.value).startswith(msg), (bad, str(exc.value))
    assert parse_html("Tom & Jerry", strict_ampersand=False)[0] == "Tom & Jerry"


# ------------------------------------------------------------------ aiogram

async def test_aiogram_get_me_and_send_html_keyboard(api, abot):
    me = await abot.get_me()
    assert me.is_bot and me.id == 123456789 and me.username == "gridbot_test_bot" and me.can_join_groups
    kb = InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text="确认", callback_data="case:1:ok"),
        InlineKeyboardButton(text="Docs", url="https://example.org/docs"),
    ]])
    m = await abot.send_message(ALICE.id, "<b>网格</b> report &amp; <i>more</i>", parse_mode="HTML", reply_markup=kb)
    assert m.message_id == 1 and m.chat.id == ALICE.id and m.from_user.id == me.id
    assert m.text == "网格 report & more"
    assert [(e.type, e.offset, e.length) for e in m.entities] == [("bold", 0, 2), ("italic", 12, 4)]
    assert m.reply_markup.model_dump() == kb.model_dump()
    m2 = await abot.send_message(ALICE.id, "second")
    assert m2.message_id == 2
    [c1, c2] = api.sent(ALICE.id)
    assert c1.params["parse_mode"] == "HTML"
    assert c1.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "case:1:ok"
    assert api.messages[ALICE.id][1]["reply_markup"]["inline_keyboard"][0][1]["url"] == "https://example.org/docs"
    assert await abot.set_my_commands([BotCommand(command="start", description="开始")])
    assert [c.command for c in await abot.get_my_commands()] == ["start"]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await abot.set_my_commands([BotCommand(command="Bad-Name", description="x")])


async def test_aiogram_strict_rejections(api, abot):
    with pytest.raises(TelegramBadRequest, match=r"can't parse entities: Unsupported start tag \"br\""):
        await abot.send_message(ALICE.id, "line<br>next", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="can't parse entities: Can't find end tag"):
        await abot.send_message(ALICE.id, "<b>unclosed", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await abot.send_message(ALICE.id, "网" * 4097)
    # limit applies after entity parsing: 4096 visible chars + tags is fine
    ok = await abot.send_message(ALICE.id, "<b>" + "x" * 4096 + "</b>", parse_mode="HTML")
    assert len(ok.text) == 4096
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await abot.send_message(ALICE.id, "  <b> </b> ", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await abot.send_message(ALICE.id, "x", reply_markup=InlineKeyboardMarkup(inline_keyboard=[[
            InlineKeyboardButton(text="b", callback_data="案" * 22)]]))  # 66 bytes
    with pytest.raises(TelegramBadRequest, match="Text buttons are unallowed in the inline keyboard"):
        await abot.send_message(ALICE.id, "x", reply_markup=InlineKeyboardMarkup(inline_keyboard=[[
            InlineKeyboardButton(text="b")]]))
    with pytest.raises(TelegramBadRequest, match="Bad Request: chat not found"):
        await abot.send_message(777, "hello")
    with pytest.raises(TelegramBadRequest, match="message caption is too long"):
        await abot.send_photo(ALICE.id, BufferedInputFile(PNG, "a.png"), caption="c" * 1025)
    failed = [c for c in api.calls if not c.ok]
    assert len(failed) == 8 and all(c.status == 400 for c in failed)
    assert api.sent(ALICE.id)[0].text == "x" * 4096 and len(api.sent()) == 1


async def test_aiogram_edits_and_callbacks(api, abot):
    kb = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="go", callback_data="go")]])
    m = await abot.send_message(ALICE.id, "v1", reply_markup=kb)
    with pytest.raises(TelegramBadRequest, match="message is not modified: specified new message content"):
        await abot.edit_message_text("v1", chat_id=ALICE.id, message_id=m.message_id, reply_markup=kb)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await abot.edit_message_text("v2", chat_id=ALICE.id, message_id=99)
    e = await abot.edit_message_text("v2", chat_id=ALICE.id, message_id=m.message_id, reply_markup=kb)
    assert e.text == "v2" and e.edit_date is not None
    e = await abot.edit_message_reply_markup(chat_id=ALICE.id, message_id=m.message_id)
    assert e.reply_markup is None and api.messages[ALICE.id][m.message_id]["text"] == "v2"
    # a user press: answerable exactly once
    upd = api.push_update(callback(ALICE, api.sent(ALICE.id)[0], "go"))
    [u] = await abot.get_updates(offset=0, timeout=0)
    assert u.update_id == upd["update_id"] and u.callback_query.data == "go"
    assert await abot.answer_callback_query(u.callback_query.id, text="ok")
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await abot.answer_callback_query(u.callback_query.id)
    assert await abot.delete_message(ALICE.id, m.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await abot.delete_message(ALICE.id, m.message_id)


async def test_aiogram_faults(api, abot):
    api.fail_next("sendMessage", status=429, retry_after=3)
    with pytest.raises(TelegramRetryAfter) as exc:
        await abot.send_message(ALICE.id, "a")
    assert exc.value.retry_after == 3 and "Too Many Requests: retry after 3" in exc.value.message
    assert (await abot.send_message(ALICE.id, "a")).message_id == 1  # rule consumed

    api.block_chat(ALICE.id)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await abot.send_message(ALICE.id, "b")
    assert (await abot.get_me()).is_bot  # other methods unaffected
    api.unblock_chat(ALICE.id)
    await abot.send_message(ALICE.id, "c")

    api.fail_next("*", status=500)
    with pytest.raises(TelegramServerError, match="Internal Server Error"):
        await abot.get_me()
    with api.outage(502):
        with pytest.raises(ClientDecodeError):  # nginx HTML page, like a real proxy outage
            await abot.send_message(ALICE.id, "d")
        assert await abot.get_updates(timeout=0) == []  # getUpdates spared by default
    api.add_chat(-100777, "group", title="Old group")
    api.fail_next("send*", status=400, migrate_to_chat_id=-100777999)
    with pytest.raises(TelegramMigrateToChat) as mig:
        await abot.send_message(-100777, "x")
    assert mig.value.migrate_to_chat_id == -100777999
    assert [c.status for c in api.calls if c.injected] == [429, 403, 500, 502, 400]
    assert [c.text for c in api.sent(ALICE.id)] == ["a", "c"]


async def test_aiogram_photo_media_group_and_download(api, abot):
    m = await abot.send_photo(ALICE.id, BufferedInputFile(PNG, "map.png"), caption="<b>区域</b>", parse_mode="HTML")
    assert m.caption == "区域" and m.photo[-1].width == 4 and m.photo[-1].height == 3
    call = api.sent(ALICE.id)[-1]
    [(field, up)] = call.files.items()
    assert call.params["photo"] == f"attach://{field}" and up.filename == "map.png" and up.size == len(PNG)
    # re-send by file_id; unknown file_id is rejected
    again = await abot.send_photo(ALICE.id, m.photo[-1].file_id)
    assert again.photo[-1].file_size == len(PNG)
    with pytest.raises(TelegramBadRequest, match="wrong file identifier/HTTP URL specified"):
        await abot.send_photo(ALICE.id, "AgACnotarealfileid")
    data = await abot.download(m.photo[-1].file_id)
    assert data.read() == PNG

    msgs = await abot.send_media_group(ALICE.id, [
        InputMediaPhoto(media=BufferedInputFile(PNG, "1.png"), caption="one"),
        InputMediaPhoto(media=BufferedInputFile(_png(8, 8), "2.png")),
    ])
    assert [x.message_id for x in msgs] == [3, 4] and msgs[0].media_group_id == msgs[1].media_group_id
    assert msgs[0].caption == "one" and msgs[1].caption is None
    assert sorted(u.filename for u in api.sent(ALICE.id)[-1].files.values()) == ["1.png", "2.png"]
    with pytest.raises(TelegramBadRequest):
        await abot.send_media_group(ALICE.id, [InputMediaPhoto(media=BufferedInputFile(PNG, "1.png"))])


# -------------------------------------------------------- python-telegram-bot

@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_ptb_get_me_send_and_errors(api, pbot):
    assert pbot.username == "gridbot_test_bot" and api.calls_of("getMe", ok=True)
    kb = telegram.InlineKeyboardMarkup([[telegram.InlineKeyboardButton("好", callback_data="ok")]])
    m = await pbot.send_message(ALICE.id, "<i>hello</i>", parse_mode="HTML", reply_markup=kb)
    assert m.text == "hello" and m.message_id == 1 and m.reply_markup == kb
    assert api.sent(ALICE.id)[0].params["reply_markup"] == {"inline_keyboard": [[{"text": "好", "callback_data": "ok"}]]}

    api.fail_next("sendMessage", status=429, retry_after=7)
    with pytest.raises(telegram.error.RetryAfter) as exc:
        await pbot.send_message(ALICE.id, "x")
    assert exc.value.retry_after in (7, dt.timedelta(seconds=7))
    api.block_chat(ALICE.id)
    with pytest.raises(telegram.error.Forbidden, match="bot was blocked by the user"):
        await pbot.send_message(ALICE.id, "x")
    with pytest.raises(telegram.error.BadRequest, match="Chat not found"):  # PTB capitalises
        await pbot.send_message(4242, "x")
    api.unblock_chat(ALICE.id)
    with api.outage(502):
        with pytest.raises(telegram.error.NetworkError, match="Bad Gateway"):
            await pbot.send_message(ALICE.id, "x")
    with pytest.raises(telegram.error.BadRequest, match="Can't parse entities: can't find end tag"):
        await pbot.send_message(ALICE.id, "<b>", parse_mode="HTML")


async def test_ptb_long_polling_and_offset(api, pbot):
    t0 = time.monotonic()
    assert await pbot.get_updates(timeout=0) == ()
    poll = asyncio.create_task(pbot.get_updates(timeout=5))
    await asyncio.sleep(0.2)
    assert not poll.done()
    pushed = api.push_update(message(BOB, text="/start hello"))
    updates = await asyncio.wait_for(poll, 2)
    assert time.monotonic() - t0 < 2
    [u] = updates
    assert u.update_id == pushed["update_id"] == 1
    assert u.message.text == "/start hello" and u.message.chat.id == BOB.id and u.message.from_user.language_code == "zh-hans"
    assert u.message.entities[0].type == "bot_command" and u.message.entities[0].length == 6
    assert len(api.pending_updates()) == 1  # not confirmed yet: returned again
    assert (await pbot.get_updates(timeout=0))[0].update_id == 1
    api.push_update(message(BOB, text="second"))
    got = await pbot.get_updates(offset=u.update_id + 1, timeout=1)
    assert [x.message.text for x in got] == ["second"] and [x["update_id"] for x in api.pending_updates()] == [2]
    # the pushed update made Bob's chat known; message ids are shared with the bot's messages
    reply = await pbot.send_message(BOB.id, "welcome", reply_to_message_id=got[0].message.message_id)
    assert reply.message_id == 3 and reply.reply_to_message.text == "second"
    # timeout with nothing pushed returns [] after ~timeout
    t1 = time.monotonic()
    assert await pbot.get_updates(offset=3, timeout=1) == ()
    assert 0.9 <= time.monotonic() - t1 < 2 and api.pending_updates() == []
    # webhook active -> 409
    assert await pbot.set_webhook("https://example.org/hook")
    assert (await pbot.get_webhook_info()).url == "https://example.org/hook"
    with pytest.raises(telegram.error.Conflict, match="webhook is active"):
        await pbot.get_updates(timeout=0)
    assert await pbot.delete_webhook()


async def test_ptb_photo_and_media_group(api, pbot):
    api.add_chat(GROUP, "supergroup", title="网格一组")
    m = await pbot.send_photo(GROUP, PNG, caption="photo", filename="p.png")
    assert m.photo[-1].width == 4 and m.caption == "photo" and m.chat.type == "supergroup"
    [(field, up)] = api.sent(GROUP)[0].files.items()
    assert field == "photo" and up.size == len(PNG)
    msgs = await pbot.send_media_group(GROUP, [
        telegram.InputMediaPhoto(PNG, caption="a"), telegram.InputMediaPhoto(_png(2, 2)),
        telegram.InputMediaPhoto(m.photo[-1].file_id),
    ])
    assert [x.message_id for x in msgs] == [2, 3, 4] and len({x.media_group_id for x in msgs}) == 1
    call = api.sent(GROUP)[-1]
    assert call.method == "sendMediaGroup" and len(call.files) == 2
    assert [x["media"].startswith("attach://") for x in call.params["media"]] == [True, True, False]
    with pytest.raises(telegram.error.BadRequest, match="Too much messages"):
        await pbot.send_media_group(GROUP, [telegram.InputMediaPhoto(m.photo[-1].file_id)] * 11)
    f = await pbot.get_file(m.photo[-1].file_id)
    assert bytes(await f.download_as_bytearray()) == PNG


# ------------------------------------------------------------------ helpers

async def test_helpers_wait_rate_latency_and_conflict(api, abot):
    api.push_update(my_chat_member(BOB, new_status="member", old_status="kicked"))
    mark = api.mark()
    asyncio.get_running_loop().call_later(0.1, lambda: asyncio.ensure_future(abot.send_message(BOB.id, "late")))
    call = await api.wait_for(lambda c: c.method == "sendMessage", since=mark, timeout=2)
    assert call.params["text"] == "late" and call.index >= mark
    for i in range(5):
        await abot.send_message(BOB.id, f"n{i}")
    sent = await api.wait_sent(BOB.id, count=6, timeout=1)
    assert len(sent) == 6 and api.max_per_second(BOB.id) == 6 and api.max_per_second(ALICE.id) == 0
    with pytest.raises(AssertionError, match="0/1 messages"):
        await api.wait_sent(ALICE.id, timeout=0.1)

    api.set_latency(0.3, method="getMe")
    t0 = time.monotonic()
    await abot.get_me()
    assert time.monotonic() - t0 >= 0.3
    api.set_latency(0, method="getMe")

    # user blocks the bot -> 403 (group kicked wording for groups)
    api.push_update(my_chat_member(BOB, new_status="kicked"))
    with pytest.raises(TelegramForbiddenError):
        await abot.send_message(BOB.id, "x")
    api.push_update(message(BOB, chat=group_chat(GROUP, "G"), text="hi all"))
    api.push_update(edited_message(BOB, api.incoming[GROUP][1], text="hi everyone"))
    upd = api.pending_updates()[-1]
    assert upd["edited_message"]["message_id"] == 1 and upd["edited_message"]["chat"]["type"] == "supergroup"

    last = await abot.get_updates(offset=-1, timeout=0)  # negative offset: keep only the last one
    assert [u.edited_message is not None for u in last] == [True] and len(api.pending_updates()) == 1
    # a second getUpdates terminates the first (waiting) one with 409, like Telegram
    first = asyncio.create_task(abot.get_updates(offset=last[0].update_id + 1, timeout=5))
    await asyncio.sleep(0.1)
    assert await abot.get_updates(timeout=0) == []
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await asyncio.wait_for(first, 2)
    api.clear()
    assert api.calls == [] and api.sent() == []


async def test_aiogram_misc_methods(api, abot):
    loc = await abot.send_location(ALICE.id, latitude=31.2304, longitude=121.4737)
    assert loc.location.latitude == pytest.approx(31.2304)
    doc = await abot.send_document(ALICE.id, BufferedInputFile(b"a,b\n1,2\n", "report.csv"), caption="报表")
    assert doc.document.file_name == "report.csv" and doc.document.file_size == 8
    assert [c.method for c in api.sent(ALICE.id)] == ["sendLocation", "sendDocument"]
    chat = await abot.get_chat(ALICE.id)
    assert chat.id == ALICE.id and chat.type == "private" and chat.username == "alice"
    assert await abot.send_chat_action(ALICE.id, "typing")
    assert await abot.delete_my_commands() and await abot.get_my_commands() == []
    assert (await abot.get_webhook_info()).url == ""
    assert await abot.log_out() and await abot.close()


async def test_aiogram_dispatcher_end_to_end(api, abot):
    from aiogram import Dispatcher, F
    from aiogram.filters import CommandStart

    dp = Dispatcher()

    @dp.message(CommandStart())
    async def on_start(m):
        await m.answer("欢迎 <b>使用</b>", parse_mode="HTML",
                       reply_markup=InlineKeyboardMarkup(inline_keyboard=[[
                           InlineKeyboardButton(text="上报", callback_data="report")]]))

    @dp.callback_query(F.data == "report")
    async def on_report(q):
        await q.answer("收到")

    task = asyncio.create_task(dp.start_polling(abot, handle_signals=False, polling_timeout=2))
    try:
        api.push_update(message(BOB, text="/start"))
        [welcome] = await api.wait_sent(BOB.id, timeout=3)
        assert welcome.result["text"] == "欢迎 使用" and welcome.result["reply_markup"]
        mark = api.mark()
        api.push_update(callback(BOB, welcome, "report"))
        ans = await api.wait_for(lambda c: c.method == "answerCallbackQuery", since=mark, timeout=3)
        assert ans.ok and ans.params["text"] == "收到"
    finally:
        await dp.stop_polling()
        await task
