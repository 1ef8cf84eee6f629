"""Where is it? Addresses outside the grid, uncertain addresses and pins on a boundary, in the
report flow, through aiogram and python-telegram-bot against the fake Bot API."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.cases.models import Case
from tests.conftest import wang
from tests.fakebotapi import updates as U

tom = U.TgUser(wang.id + 77, "Tom", language_code="en")
# 10 m south of the line between 香港中路单号段 and 香港中路双号段 (sample grid, lat 36.055)
PIN_ON_THE_LINE = (36.055 - 10 / 110_540, 120.385)


@pytest.fixture
async def bot(bot):
    bot.api.add_chat(1001)  # the captain of 香港中路单号段, across the line from li's
    return bot


async def to_place_step(bot, user):
    ask_cat = (await bot.say(user, "/report"))[-1]
    await bot.press(user, ask_cat, "rp:cat:streetlight")
    ask_photo = (await bot.say(user, "路灯不亮"))[-1]
    return (await bot.press(user, ask_photo, "rp:pdone"))[-1]


async def test_an_address_in_another_city_is_explained_in_one_line_with_the_pin_and_area_offer(bot):
    await to_place_step(bot, wang)
    replies = await bot.say(wang, "北京市朝阳区香港中路12号")
    assert len(replies) == 1
    line = replies[0].text
    assert "北京市" in line and "海滨街道" in line and "位置" in line and "\n" not in line
    assert "rp:pick:" in bot.buttons(replies[0])
    # the pin offered works
    confirm = (await bot.say(wang, location=(36.0525, 120.385)))[-1]
    assert "请确认" in confirm.text and "香港中路单号段" in confirm.text
    async with bot.core.sessionmaker() as s:
        assert (await s.execute(select(Case))).first() is None  # not submitted yet


async def test_the_one_line_form_with_an_outside_address_says_so_at_the_place_step(bot):
    replies = await bot.say(wang, "/report 上海香港中路12号 路灯不亮三天了")
    line = replies[-1].text
    assert "上海" in line and "不在海滨街道范围内" in line
    assert set(bot.buttons(replies[-1])) >= {"rp:pick:", "rp:x"}
    pick = (await bot.press(wang, replies[-1], "rp:pick:"))[-1]
    assert "rp:pick:fushanwan" in bot.buttons(pick) or any(b.startswith("rp:pick:") for b in bot.buttons(pick))


async def test_an_english_speaker_hears_it_in_english(bot):
    await to_place_step(bot, tom)
    line = (await bot.say(tom, "near the old railway station"))[-1].text  # no place of ours: uncertain
    assert "location pin" in line
    line = (await bot.say(tom, "海口市海口路5号"))[-1].text
    assert "looks like it is in 海口市, outside 海滨街道" in line and "location pin" in line


async def test_an_uncertain_address_offers_the_likeliest_areas(bot):
    await to_place_step(bot, wang)
    reply = (await bot.say(wang, "东海新村3栋"))[-1]
    assert "没能确定" in reply.text and "位置" in reply.text
    buttons = bot.buttons(reply)
    assert "rp:pick:=zhanshan-g1" in buttons and "rp:pick:" in buttons
    confirm = (await bot.press(wang, reply, "rp:pick:=zhanshan-g1"))[-1]
    assert "湛山第一网格" in confirm.text


async def test_a_pin_near_the_neighbouring_unit_asks_which_side(bot):
    await to_place_step(bot, wang)
    ask = (await bot.say(wang, location=PIN_ON_THE_LINE))[-1]
    assert "30 米" in ask.text and "香港中路单号段" in ask.text and "香港中路双号段" in ask.text
    assert {"rp:pick:=xianggang-odd", "rp:pick:=xianggang-even"} <= set(bot.buttons(ask))
    confirm = (await bot.press(wang, ask, "rp:pick:=xianggang-even"))[-1]
    assert "香港中路双号段" in confirm.text
    await bot.press(wang, confirm, "rp:ok")
    async with bot.core.sessionmaker() as s:
        case = (await s.execute(select(Case))).scalars().one()
    assert case.area_id == "xianggang-even" and case.assignee_id == 1002
    assert abs(case.lat - PIN_ON_THE_LINE[0]) < 1e-9 and abs(case.lon - PIN_ON_THE_LINE[1]) < 1e-9
