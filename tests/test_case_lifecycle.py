"""Report → route → push → work → confirm, through aiogram and python-telegram-bot."""

from __future__ import annotations

from sqlalchemy import select

from bot.cases.models import Case, CaseEvent, CasePhoto, CaseSubscriber
from bot.people.models import Person
from tests.conftest import chen, li, liu, wang, zhao
from tests.fakebotapi import updates as U

PIN_XIANGGANG_EVEN = (36.0575, 120.385)


async def one_case(bot) -> Case:
    async with bot.core.sessionmaker() as s:
        cases = list((await s.execute(select(Case))).scalars())
    assert len(cases) == 1
    return cases[0]


async def history(bot, case_id: int) -> list[str]:
    async with bot.core.sessionmaker() as s:
        return list((await s.execute(select(CaseEvent.action).where(CaseEvent.case_id == case_id)
                                     .order_by(CaseEvent.id))).scalars())


async def report_streetlight(bot, user=wang, text="/report 香港中路12号 路灯不亮三天了") -> Case:
    confirm = (await bot.say(user, text))[-1]
    assert "请确认" in confirm.text and "路灯" in confirm.text
    await bot.press(user, confirm, "rp:ok")
    async with bot.core.sessionmaker() as s:
        return (await s.execute(select(Case).where(Case.reporter_id == user.id))).scalars().one()


async def test_guided_report_with_photo_and_location_pin(bot):
    ask_cat = (await bot.say(wang, "/report"))[-1]
    ask_desc = (await bot.press(wang, ask_cat, "rp:cat:manhole"))[-1]
    assert "描述" in ask_desc.text
    ask_photo = (await bot.say(wang, "井盖不见了，晚上很危险"))[-1]
    assert "照片" in ask_photo.text
    # an album arrives as two updates with one media_group_id: one set of photos, one answer
    mark = bot.api.mark()
    for _ in range(2):
        bot.api.push_update(U.message(wang, photo=True, media_group_id="album-1"))
    await bot.settle()
    answers = bot.api.sent(wang.id, since=mark)
    assert len(answers) == 1
    ask_place = (await bot.press(wang, answers[-1], "rp:pdone"))[-1]
    assert "位置" in ask_place.text
    confirm = (await bot.say(wang, location=PIN_XIANGGANG_EVEN))[-1]
    assert "照片：2 张" in confirm.text and "香港中路双号段" in confirm.text
    mark = bot.api.mark()
    done = (await bot.press(wang, confirm, "rp:ok"))[-1]
    case = await one_case(bot)
    assert f"#{case.id}" in done.text and "街长" in done.text and "期限" in done.text
    assert case.category_id == "manhole" and case.area_id == "xianggang-even" and case.assignee_id == li.id
    # the captain gets the pin, the photos and the task with its buttons
    to_li = bot.api.sent(li.id, since=mark)
    methods = [c.method for c in to_li]
    assert methods[0] == "sendLocation" and "sendMediaGroup" in methods
    task = to_li[-1]
    assert f"#{case.id}" in task.text and "井盖不见了" in task.text
    assert set(bot.buttons(task)) >= {f"c:acc:{case.id}", f"c:res:{case.id}", f"c:tr:{case.id}"}
    # no phone, no name: the resident did not agree to share
    assert "王芳" not in task.text and "wangfang" not in task.text
    async with bot.core.sessionmaker() as s:
        photos = (await s.execute(select(CasePhoto).where(CasePhoto.case_id == case.id))).scalars().all()
    assert len(photos) == 2


async def test_one_line_report_with_a_traditional_chinese_address(bot):
    confirm = (await bot.say(wang, "/report 香港中路12號 路燈壞了好幾天"))[-1]
    assert "路灯照明" in confirm.text and "香港中路双号段" in confirm.text
    await bot.press(wang, confirm, "rp:ok")
    case = await one_case(bot)
    assert (case.category_id, case.area_id, case.assignee_id) == ("streetlight", "xianggang-even", li.id)


async def test_back_and_cancel_lose_nothing_that_was_not_submitted(bot):
    ask_cat = (await bot.say(wang, "/report"))[-1]
    ask_desc = (await bot.press(wang, ask_cat, "rp:cat:garbage"))[-1]
    back = (await bot.press(wang, ask_desc, "rp:back"))[-1]
    assert "类别" in back.text
    await bot.press(wang, back, "rp:x")
    async with bot.core.sessionmaker() as s:
        assert (await s.execute(select(Case))).first() is None


async def test_accept_resolve_confirm_and_rate(bot):
    case = await report_streetlight(bot)
    task = bot.last_with_buttons(li.id)
    mark = bot.api.mark()
    await bot.press(li, task, f"c:acc:{case.id}")
    assert any("受理" in t for t in bot.texts(wang.id, since=mark))
    ask_note = (await bot.press(li, task, f"c:res:{case.id}"))[-1]
    assert "处理结果" in ask_note.text
    ask_photo = (await bot.say(li, "已更换灯泡，恢复照明"))[-1]
    mark = bot.api.mark()
    await bot.say(li, photo=True)
    to_wang = bot.api.sent(wang.id, since=mark)
    assert to_wang[-1].method == "sendPhoto" and "已更换灯泡" in to_wang[-1].text
    rate = (await bot.press(wang, to_wang[-1], f"c:ok:{case.id}"))
    await bot.press(wang, bot.api.messages[wang.id][to_wang[-1].result["message_id"]], f"c:rate:{case.id}:5")
    async with bot.core.sessionmaker() as s:
        c = await s.get(Case, case.id)
    assert (c.status, c.rating, c.resolution_note) == ("closed", 5, "已更换灯泡，恢复照明")
    assert await history(bot, case.id) == ["report", "accept", "resolve", "confirm", "rate"]


async def test_not_fixed_reopens_to_the_assignee_and_tells_the_supervisor(bot):
    case = await report_streetlight(bot)
    task = bot.last_with_buttons(li.id)
    await bot.press(li, task, f"c:res:{case.id}")
    await bot.say(li, "已处理")
    ask_photo = bot.last_with_buttons(li.id)
    mark = bot.api.mark()
    await bot.press(li, ask_photo, "w:nophoto")
    resolved = bot.last_with_buttons(wang.id, since=mark)
    mark = bot.api.mark()
    await bot.press(wang, resolved, f"c:no:{case.id}")
    async with bot.core.sessionmaker() as s:
        c = await s.get(Case, case.id)
    assert c.status == "reopened" and c.reopen_count == 1 and c.deadline_at > case.deadline_at
    assert any("重新打开" in t for t in bot.texts(li.id, since=mark))
    assert any("没有解决" in t for t in bot.texts(zhao.id, since=mark))


async def test_a_second_resident_says_me_too_and_hears_with_the_first(bot):
    case = await report_streetlight(bot)
    confirm = (await bot.say(liu, "/report 香港中路12号 这里的路灯坏了"))[-1]
    assert f"#{case.id}" in confirm.text
    done = (await bot.press(liu, confirm, f"rp:metoo:{case.id}"))[-1]
    assert "2" in done.text
    async with bot.core.sessionmaker() as s:
        assert (await s.execute(select(CaseSubscriber.user_id))).scalars().all() == [liu.id]
        assert len((await s.execute(select(Case))).all()) == 1
    mark = bot.api.mark()
    await bot.press(li, bot.last_with_buttons(li.id), f"c:acc:{case.id}")
    assert bot.api.sent(wang.id, since=mark) and bot.api.sent(liu.id, since=mark)


async def test_transfer_to_another_area_reaches_the_other_captain(bot):
    case = await report_streetlight(bot)
    pick = (await bot.press(li, bot.last_with_buttons(li.id), f"c:tr:{case.id}"))[-1]
    # walk the tree: sub-district → 观海社区 → 观海第一网格 → 燕儿岛路南段
    for data in ("c:tr:{id}:haibin", "c:tr:{id}:guanhai", "c:tr:{id}:guanhai-g1"):
        pick = (await bot.press(li, pick, data.format(id=case.id)))[-1]
    ask_reason = (await bot.press(li, pick, f"c:tra:{case.id}:yanerdao-s"))[-1]
    mark = bot.api.mark()
    await bot.say(li, "不属于本路段，应由燕儿岛路负责")
    to_chen = bot.api.sent(chen.id, since=mark)
    assert to_chen and f"#{case.id}" in to_chen[-1].text and "转办" in to_chen[-1].text
    async with bot.core.sessionmaker() as s:
        c = await s.get(Case, case.id)
    assert (c.area_id, c.assignee_id, c.status) == ("yanerdao-s", chen.id, "new")


async def test_a_resident_pressing_a_forged_resolve_button_is_refused(bot):
    case = await report_streetlight(bot)
    mark = bot.api.mark()
    welcome = (await bot.say(wang, "/start"))[-1]
    await bot.press(wang, welcome, f"!c:res:{case.id}")
    answer = bot.api.calls_of("answerCallbackQuery", since=mark)[-1]
    assert "只有当前负责人" in answer.params["text"]
    async with bot.core.sessionmaker() as s:
        assert (await s.get(Case, case.id)).status == "new"
    assert await history(bot, case.id) == ["report"]


async def test_chen_cannot_resolve_lis_task(bot):
    case = await report_streetlight(bot)
    welcome = (await bot.say(chen, "/start"))[-1]
    await bot.press(chen, welcome, f"!c:acc:{case.id}")
    async with bot.core.sessionmaker() as s:
        assert (await s.get(Case, case.id)).status == "new"


async def test_the_supervisor_above_may_act_on_the_task(bot):
    case = await report_streetlight(bot)
    welcome = (await bot.say(zhao, "/start"))[-1]
    await bot.press(zhao, welcome, f"!c:acc:{case.id}")
    async with bot.core.sessionmaker() as s:
        assert (await s.get(Case, case.id)).status == "accepted"


async def test_a_bot_api_outage_during_a_push_loses_nothing(bot):
    confirm = (await bot.say(wang, "/report 香港中路12号 路灯不亮三天了"))[-1]
    with bot.api.outage(502):
        bot.api.push_update(U.callback(wang, confirm.result, "rp:ok"))
        for _ in range(100):
            if not bot.api.pending_updates():
                break
            import asyncio

            await asyncio.sleep(0.05)
        import asyncio

        await asyncio.sleep(0.5)
    await bot.delivered()
    case = await one_case(bot)
    assert len([c for c in bot.api.sent(li.id) if f"#{case.id}" in (c.text or "")]) == 1
    assert len([c for c in bot.api.sent(wang.id) if "已提交" in (c.text or "")]) == 1


async def test_my_and_case_show_status_and_history(bot):
    case = await report_streetlight(bot)
    my = (await bot.say(wang, "/my"))[-1]
    assert f"#{case.id}" in my.text and "待受理" in my.text
    detail = (await bot.say(wang, f"/case {case.id}"))[-1]
    assert "处理记录" in detail.text
    nosy = (await bot.say(liu, f"/case {case.id}"))[-1]
    assert "没有找到" in nosy.text


async def test_a_group_report_gets_a_deep_link_and_no_personal_data(bot):
    group = U.group_chat(-100777, "浮山湾业主群")
    replies = await bot.say(wang, "/report 香港中路12号 路灯坏了", chat=group)
    assert len(replies) == 1 and "私聊" in replies[0].text
    async with bot.core.sessionmaker() as s:
        assert (await s.execute(select(Case))).first() is None


async def test_a_restart_in_the_middle_of_a_flow_loses_nothing(bot):
    ask_cat = (await bot.say(wang, "/report"))[-1]
    await bot.press(wang, ask_cat, "rp:cat:garbage")
    await bot.stop()
    await bot.start()
    ask_photo = (await bot.say(wang, "小区门口垃圾两天没人清运"))[-1]
    assert "照片" in ask_photo.text
    async with bot.core.sessionmaker() as s:
        from bot.core_models import Conversation

        st = await s.get(Conversation, (wang.id, wang.id))
    assert st.data["category"] == "garbage" and st.data["description"].startswith("小区门口")


async def test_bad_input_in_a_flow_gets_a_polite_answer_and_keeps_the_flow(bot):
    ask_cat = (await bot.say(wang, "/report"))[-1]
    await bot.press(wang, ask_cat, "rp:cat:road")
    sticker = (await bot.say(wang, None, document={"file_id": "d", "file_unique_id": "d", "file_name": "x.pdf"}))[-1]
    assert "document" in sticker.text
    too_long = (await bot.say(wang, "坑" * 1500))[-1]
    assert "1500" in too_long.text and "1000" in too_long.text
    ok = (await bot.say(wang, "人行道砖松动"))[-1]
    assert "照片" in ok.text


async def test_an_edited_message_is_not_run_again(bot):
    first = bot.api.push_update(U.message(wang, text="/report 香港中路12号 路灯坏了"))
    await bot.settle()
    mark = bot.api.mark()
    await bot.push(U.edited_message(wang, first, text="/report 香港中路14号 路灯坏了"))
    await bot.settle()
    replies = bot.api.sent(wang.id, since=mark)
    assert len(replies) == 1 and "修改" in replies[0].text


async def test_a_case_that_cannot_be_fixed_is_closed_honestly(bot):
    case = await report_streetlight(bot)
    welcome = (await bot.say(zhao, "/start"))[-1]
    more = (await bot.press(zhao, welcome, f"!c:more:{case.id}"))[-1]
    ask = (await bot.press(zhao, more, f"c:cu:{case.id}"))[-1]
    mark = bot.api.mark()
    await bot.say(zhao, "该路灯属于市政主干线，需要市级部门改造")
    async with bot.core.sessionmaker() as s:
        c = await s.get(Case, case.id)
    assert c.status == "closed_unresolved" and "市政主干线" in c.close_reason
    assert any("无法解决" in t for t in bot.texts(wang.id, since=mark))


async def test_a_captain_cannot_close_unresolved_without_a_supervisor(bot):
    case = await report_streetlight(bot)
    more = (await bot.press(li, bot.last_with_buttons(li.id), f"c:more:{case.id}"))[-1]
    assert f"c:cu:{case.id}" not in bot.buttons(more)
    await bot.press(li, more, f"!c:cu:{case.id}")
    async with bot.core.sessionmaker() as s:
        assert (await s.get(Case, case.id)).status == "new"


async def test_it_marks_a_user_who_blocked_the_bot_inactive(bot):
    case = await report_streetlight(bot)
    bot.api.block_chat(wang.id)
    await bot.press(li, bot.last_with_buttons(li.id), f"c:acc:{case.id}")
    await bot.delivered()
    async with bot.core.sessionmaker() as s:
        assert (await s.get(Person, wang.id)).is_active is False
    bot.api.unblock_chat(wang.id)
    await bot.say(wang, "/my")
    async with bot.core.sessionmaker() as s:
        assert (await s.get(Person, wang.id)).is_active is True
