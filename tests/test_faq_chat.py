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


# --------------------------------------------------------------------------- the learning loop, English


async def test_an_admin_links_a_question_to_an_entry_and_it_answers_at_once(bot, tmp_path):
    from bot.core_models import FaqAlternate
    from knowledge.learned import export_kb
    from knowledge.loader import load_kb

    for _ in range(2):
        first = (await bot.say(wang, "跑步机坏了"))[-1]
    assert "fitness-equipment" not in bot.buttons(first)  # not answered yet
    await bot.say(wang, "跑步机坏啦")  # a near-identical wording joins the same group
    listing = (await bot.say(sun, "/faq"))[-1]
    assert "跑步机坏" in listing.text and "×3" in listing.text and "2 种说法" in listing.text
    pick = next(b for b in bot.buttons(listing) if b.startswith("fc:"))
    choices = (await bot.press(sun, listing, pick))[-1]
    link = next(b for b in bot.buttons(choices) if b.endswith(":fitness-equipment"))
    done = (await bot.press(sun, choices, link))[-1]
    assert "fitness-equipment" in done.text
    reply = (await bot.say(wang, "跑步机坏了"))[-1]
    assert "健身器材" in reply.text and any(b.startswith("fu:") for b in bot.buttons(reply))
    async with bot.core.sessionmaker() as s:
        rows = (await s.execute(select(FaqAlternate))).scalars().all()
        linked = (await s.execute(select(UnansweredQuestion).where(UnansweredQuestion.linked_entry.is_not(None))))
        assert len(linked.scalars().all()) == 2  # both exact repeats are marked linked
    assert [(r.entry_id, r.text) for r in rows] == [("fitness-equipment", "跑步机坏了")]
    # linked questions leave the list; a non-admin cannot link
    assert "跑步机坏了 ×" not in (await bot.say(sun, "/faq"))[-1].text
    # kept in the database: a restarted bot (fresh core) still knows it, and export writes it back
    bot.core.faq_extra = {}
    await bot.core.load_faq_alternates()
    assert bot.core.faq_extra == {"fitness-equipment": ["跑步机坏了"]}
    out = tmp_path / "exported"
    added = export_kb(bot.core.settings.kb_path, out, bot.core.faq_extra)
    assert sum(added.values()) == 1
    assert "跑步机坏了" in {e.id: e for e in load_kb(out)}["fitness-equipment"].alternates


async def test_didnt_help_is_logged_and_offers_a_report(bot):
    reply = (await bot.say(wang, "路灯坏了"))[-1]
    fu = next(b for b in bot.buttons(reply) if b.startswith("fu:"))
    offer = (await bot.press(wang, reply, fu))[-1]
    async with bot.core.sessionmaker() as s:
        q = (await s.execute(select(UnansweredQuestion))).scalars().one()
    assert (q.kind, q.entry_id, q.query) == ("unhelpful", "streetlight-out", "路灯坏了")
    assert f"fr:{q.id}" in bot.buttons(offer)
    assert "回答没帮助" in (await bot.say(sun, "/faq"))[-1].text
    ask_where = (await bot.press(wang, offer, f"fr:{q.id}"))[-1]
    assert "问题在哪里" in ask_where.text  # a report begun from the question (its category already guessed)


async def test_english_users_get_english_answers_or_chinese_with_a_note(bot):
    from tests.conftest import alice

    bot.api.add_chat(alice.id)
    reply = (await bot.say(alice, "the street light is broken"))[-1]
    assert "Street lighting" in reply.text and "路灯" not in reply.text
    reply = (await bot.say(alice, "路灯坏了"))[-1]
    assert "72 hours" in reply.text
    await bot.say(sun, "/faq add 社区图书室几点开门 | 社区图书室每天 9:00–17:00 开放，周一闭馆。")
    reply = (await bot.say(alice, "社区图书室几点开门"))[-1]
    assert "周一闭馆" in reply.text and "no English version" in reply.text
