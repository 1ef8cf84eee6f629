"""Questions in the chat: answers, "did you mean", "I don't know", groups, the admin's /faq."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import select

from bot.core_models import UnansweredQuestion
from bot.settings import DEFAULT_KB_DIR
from tests.conftest import sun, wang
from tests.fakebotapi import updates as U


@pytest.fixture
def bot_settings(tmp_path):
    kb = tmp_path / "kb"  # a copy: the admin's /faq writes to it
    shutil.copytree(DEFAULT_KB_DIR, kb)
    return {"knowledge_dir": str(kb)}


async def test_a_clear_question_gets_the_answer(bot):
    reply = (await bot.say(wang, "家里的旧沙发不要了，大件垃圾怎么扔？"))[-1]
    entry = bot.core.matcher.by_id[bot.core.matcher.match("家里的旧沙发不要了，大件垃圾怎么扔？").answer_id]
    assert entry.answer.split("\n")[0][:20] in reply.text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


async def test_greetings_and_thanks_never_get_a_policy(bot):
    for text in ("你好", "谢谢", "在吗"):
        reply = (await bot.say(wang, text))[-1]
        assert "/report" in reply.text and "大件垃圾怎么处理" in reply.text
    async with bot.core.sessionmaker() as s:
        assert (await s.execute(select(UnansweredQuestion))).first() is None


async def test_an_unknown_question_is_logged_and_can_become_a_report(bot):
    reply = (await bot.say(wang, "明天股市会涨吗"))[-1]
    assert "/report" in reply.text
    async with bot.core.sessionmaker() as s:
        q = (await s.execute(select(UnansweredQuestion))).scalars().one()
    assert q.query == "明天股市会涨吗"
    ask_cat = (await bot.press(wang, reply, f"fr:{q.id}"))[-1]
    assert "类别" in ask_cat.text
    top = (await bot.say(sun, "/faq"))[-1]
    assert "明天股市会涨吗" in top.text


async def test_did_you_mean_buttons_answer_when_pressed(bot):
    m = None
    for text in ("电动车", "井盖", "路灯", "装电梯"):
        m = bot.core.matcher.match(text)
        if m.decision == "suggest":
            break
    assert m is not None and m.decision == "suggest", "no short query gives suggestions"
    reply = (await bot.say(wang, text))[-1]
    first = m.candidates[0][0]
    answer = (await bot.press(wang, reply, f"faq:{first}"))[-1]
    assert bot.core.matcher.by_id[first].question[:10] in answer.text


async def test_groups_get_answers_only_when_addressed(bot):
    group = U.group_chat(-100901, "浮山湾业主群")
    mark = bot.api.mark()
    await bot.say(wang, "大件垃圾怎么处理", chat=group)
    assert bot.api.sent(-100901, since=mark) == []
    reply = (await bot.say(wang, "/ask 大件垃圾怎么处理", chat=group))[-1]
    assert reply.text
    reply = (await bot.say(wang, "@gridbot_test_bot 大件垃圾怎么处理", chat=group))[-1]
    assert reply.text


async def test_an_admin_adds_an_entry_and_it_answers(bot):
    done = (await bot.say(sun, "/faq add 社区图书室几点开门 | 社区图书室每天 9:00–17:00 开放，周一闭馆。"))[-1]
    assert "admin-1" in done.text
    reply = (await bot.say(wang, "社区图书室几点开门"))[-1]
    assert "周一闭馆" in reply.text
    assert "没有权限" in (await bot.say(wang, "/faq reload"))[-1].text
