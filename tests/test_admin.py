"""Admins: invites, staff list, audit log — and nobody else."""

from __future__ import annotations

import re

from sqlalchemy import select

from bot.areas.models import Area
from bot.people.models import AuditEntry
from tests.conftest import sun, wang
from tests.fakebotapi import updates as U

newbie = U.TgUser(7001, "新街长")
other = U.TgUser(7002, "另一个人")


async def test_an_invite_makes_a_captain_once(bot):
    made = (await bot.say(sun, "/invite captain fuzhou-n"))[-1]
    code = re.search(r"start=inv_([\w-]+)", made.text).group(1)
    welcome = (await bot.say(newbie, f"/start inv_{code}"))[-1]
    assert "福州南路北段" in welcome.text and "街长" in welcome.text
    async with bot.core.sessionmaker() as s:
        assert (await s.get(Area, "fuzhou-n")).captain_id == newbie.id
        actions = (await s.execute(select(AuditEntry.action))).scalars().all()
    assert "invite" in actions and "invite_redeemed" in actions
    again = (await bot.say(other, f"/start inv_{code}"))[-1]
    assert "失效" in again.text
    help_text = (await bot.say(newbie, "/help"))[-1].text
    assert "/tasks" in help_text


async def test_a_resident_cannot_invite_or_see_staff(bot):
    assert "没有权限" in (await bot.say(wang, "/invite captain fuzhou-n"))[-1].text
    assert "没有权限" in (await bot.say(wang, "/staff"))[-1].text


async def test_staff_lists_areas_and_workers(bot):
    text = (await bot.say(sun, "/staff"))[-1].text
    assert "香港中路双号段" in text and "王秀英" in text
