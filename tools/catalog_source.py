"""Source of bot/i18n/{zh_Hans,en}/{core,cases}.yaml: each key with its Chinese and English text.

Run `python tools/catalog_source.py` after editing; it rewrites the YAML catalogs.
"""
import sys
from pathlib import Path

import yaml

C = {
 "core": {
  "error": ("抱歉，处理您的消息时出了点问题，我们已经记录下来。请稍后再试，或发送 /help 查看可用操作。",
            "Sorry, something went wrong handling your message. It has been logged; please try again later or send /help."),
  "edited_ignored": ("提示：修改已发送的消息不会被重新处理。如需更正，请直接发送新消息。",
                     "Note: edits to messages already sent are not processed again. Please send a new message instead."),
  "stale_button": ("这个按钮已失效，请重新操作。", "This button is no longer valid. Please start again."),
  "unknown_command": ("没有 /{command} 这个命令。发送 /help 查看可用命令。", "There is no /{command} command. Send /help to see what I can do."),
  "unsupported": ("暂不支持这类消息（{kind}）。您可以发送文字、照片或位置。", "I can't handle this kind of message ({kind}) yet. Please send text, a photo or a location."),
  "photo_outside_flow": ("收到照片/位置。如需上报问题，请先发送 /report，再按提示附上照片和位置。",
                         "Got your photo/location. To report a problem, send /report first and add photos and the place when asked."),
  "help_title": ("<b>我能为您做这些：</b>", "<b>Here is what I can do for you:</b>"),
  "help_group": ("在群里：用 /ask 问题 向我提问，或 @我。上报问题请私聊我（/report），个人信息不会出现在群里。",
                 "In groups: ask me with /ask your question, or mention me. To report a problem, talk to me privately (/report); personal details stay out of the group."),
  "welcome_resident": ("您好，{name}！我是社区网格化管理助手。\n\n"
                       "• /report 上报身边的问题（路灯不亮、井盖缺失、垃圾未清运、占道经营……），我会转给负责该区域的街长\n"
                       "• /my 查看您上报问题的处理进度\n"
                       "• 直接发问题给我，例如“大件垃圾怎么处理”，我来解答\n\n发送 /help 查看全部命令。",
                       "Hello, {name}! I am the neighbourhood grid assistant.\n\n"
                       "• /report a problem near you (broken streetlight, missing manhole cover, uncollected garbage…) and I pass it to the street captain in charge\n"
                       "• /my to follow your reports\n"
                       "• or just ask a question, e.g. “how do I get rid of old furniture”\n\nSend /help for all commands."),
  "welcome_captain": ("您好，{name}！您是本区域的街长。\n\n新的问题会推送给您，点按钮即可受理、办结或转办。\n• /tasks 查看您待办的任务（逾期的排在最前）\n• /case 编号 查看案件详情和处理记录\n\n发送 /help 查看全部命令。",
                      "Hello, {name}! You are a street captain.\n\nNew problems in your area are pushed to you with buttons to accept, resolve or transfer them.\n• /tasks lists your open tasks, overdue first\n• /case number shows a case and its history\n\nSend /help for all commands."),
  "welcome_supervisor": ("您好，{name}！您是辖区负责人。\n\n逾期未办结的问题会上报给您；每天早上您会收到辖区的汇总和整改率。\n• /tasks 查看转给您的任务\n• /case 编号 查看案件详情\n\n发送 /help 查看全部命令。",
                         "Hello, {name}! You supervise an area.\n\nOverdue problems in your area are escalated to you, and each morning you get your area's figures and rectification rate.\n• /tasks lists tasks assigned to you\n• /case number shows a case\n\nSend /help for all commands."),
  "welcome_admin": ("您好，{name}！您是管理员。\n\n• /staff 查看街长和负责人\n• /invite 邀请新的街长或负责人\n• /faq 管理知识库、查看未解答的问题\n\n发送 /help 查看全部命令。",
                    "Hello, {name}! You are an admin.\n\n• /staff lists captains and supervisors\n• /invite invites a new captain or supervisor\n• /faq manages the knowledge base and shows unanswered questions\n\nSend /help for all commands."),
  "welcome_group": ("大家好！我是社区网格化管理助手。在群里用 /ask 问题 向我提问；上报问题请私聊 @{bot}，个人信息不会发到群里。",
                    "Hello everyone! I am the neighbourhood grid assistant. Ask me here with /ask your question; to report a problem, talk to @{bot} privately — personal details stay out of the group."),
  "lang_choose": ("请选择语言：", "Choose your language:"),
  "lang_set": ("好的，以后我用简体中文和您交流。", "OK, I will speak English with you from now on."),
  "nothing_to_cancel": ("当前没有进行中的操作。", "There is nothing to cancel."),
  "cancelled": ("已取消。", "Cancelled."),
  "not_allowed": ("抱歉，您没有权限进行这个操作。", "Sorry, you are not allowed to do that."),
 },
 "menu": {
  "start": ("开始", "Start"), "help": ("帮助", "Help"), "lang": ("切换语言", "Change language"),
  "cancel": ("取消当前操作", "Cancel what you are doing"), "ask": ("提问", "Ask a question"),
  "faq": ("知识库管理", "Manage the knowledge base"), "report": ("上报问题", "Report a problem"),
  "my": ("我上报的问题", "My reports"), "case": ("查看案件：/case 编号", "Show a case: /case number"),
  "tasks": ("我的待办任务", "My open tasks"), "invite": ("邀请街长/负责人", "Invite a captain or supervisor"),
  "staff": ("人员与负责区域", "Workers and their areas"),
 },
 "group": {
  "go_private": ("为保护个人信息，请在私聊中操作。点下面的按钮打开和我的私聊：", "To keep personal details private, please continue in a private chat with me:"),
  "open_private": ("打开私聊", "Open private chat"),
 },
 "role": {"captain": ("街长", "street captain"), "supervisor": ("负责人", "supervisor"), "admin": ("管理员", "admin"),
          "resident": ("居民", "resident")},
 "status": {
  "new": ("待受理", "new"), "accepted": ("处理中", "in progress"), "reopened": ("重新处理", "reopened"),
  "resolved": ("已办结待确认", "resolved, awaiting confirmation"), "closed": ("已关闭", "closed"),
  "closed_unresolved": ("无法解决已关闭", "closed unresolved"), "duplicate": ("重复上报", "duplicate"),
  "withdrawn": ("已撤回", "withdrawn"), "overdue_suffix": ("（已逾期）", " (overdue)"),
 },
 "action": {
  "report": ("上报", "reported"), "accept": ("受理", "accepted"), "resolve": ("办结", "resolved"),
  "transfer": ("转办", "transferred"), "note": ("备注", "note"), "close_unresolved": ("无法解决", "closed unresolved"),
  "mark_duplicate": ("标记重复", "marked duplicate"), "withdraw": ("撤回", "withdrawn"), "confirm": ("居民确认", "confirmed"),
  "reopen": ("居民反馈未解决", "reopened"), "auto_close": ("自动关闭", "closed automatically"), "rate": ("评价", "rated"),
  "me_too": ("其他居民也反映", "also reported by another resident"), "message": ("留言", "message"),
  "remind": ("提醒", "reminder"), "overdue": ("逾期", "overdue"), "escalate": ("上报上级", "escalated"),
 },
 "btn": {
  "accept": ("✅ 受理", "✅ Accept"), "resolve": ("🛠 办结", "🛠 Resolve"), "transfer": ("↪️ 转办", "↪️ Transfer"),
  "message_resident": ("💬 联系居民", "💬 Message resident"), "confirm": ("👍 已解决", "👍 Fixed"),
  "not_fixed": ("👎 没解决", "👎 Not fixed"), "back": ("⬅️ 上一步", "⬅️ Back"), "cancel": ("✖️ 取消", "✖️ Cancel"),
  "skip_photos": ("跳过照片", "Skip photos"), "photos_done": ("照片发完了", "Done with photos"),
  "pick_area": ("📋 从列表选择区域", "📋 Pick the area from a list"), "pick_here": ("就是这里：{name}", "Here: {name}"),
  "submit": ("✅ 提交", "✅ Submit"), "share_on": ("允许街长看到我的联系方式", "Let the captain see my contact"),
  "share_off": ("不公开我的联系方式", "Keep my contact private"), "change_category": ("修改类别", "Change category"),
  "add_photos": ("添加照片", "Add photos"), "me_too": ("🙋 我也遇到了（{ref}）", "🙋 Me too ({ref})"),
  "withdraw": ("撤回上报", "Withdraw"), "no_photo": ("不附照片", "No photo"), "to_supervisor": ("⬆️ 交给负责人", "⬆️ To the supervisor"),
  "reply": ("回复", "Reply"),
 },
 "cases": {
  "task_header_new": ("🆕 <b>新任务 {ref}</b>", "🆕 <b>New task {ref}</b>"),
  "task_header_reopened": ("🔁 <b>居民反馈未解决，任务 {ref} 重新打开</b>", "🔁 <b>Task {ref} reopened: the resident says it is not fixed</b>"),
  "task_header_transferred": ("↪️ <b>转办给您的任务 {ref}</b>", "↪️ <b>Task {ref} transferred to you</b>"),
  "task_header_accepted": ("✅ <b>任务 {ref}（已受理）</b>", "✅ <b>Task {ref} (accepted)</b>"),
  "task_header_view": ("📄 <b>任务 {ref}</b>", "📄 <b>Task {ref}</b>"),
  "field_category": ("类别：{value}", "Category: {value}"), "field_place": ("地点：{value}", "Place: {value}"),
  "field_description": ("描述：{value}", "Description: {value}"), "field_deadline": ("办结期限：{value}", "Deadline: {value}"),
  "field_reporter": ("上报人：{value}", "Reported by: {value}"), "field_note": ("说明：{value}", "Note: {value}"),
  "field_reporter_count": ("共 {n} 位居民反映", "Reported by {n} residents"),
  "field_resolution": ("办理结果：{value}", "Resolution: {value}"), "field_rating": ("评价：{value}", "Rating: {value}"),
  "contact_hidden": ("居民未公开联系方式，可点“联系居民”通过机器人留言", "contact private — use “Message resident” to write through the bot"),
  "accepted_notice": ("您上报的问题 {ref}（{category}，{place}）已被街长受理，正在处理。", "Your report {ref} ({category}, {place}) was accepted and is being handled."),
  "accepted_toast": ("已受理", "Accepted"),
  "resolved_notice": ("您上报的问题 {ref}（{category}，{place}）已办结。\n办理结果：{note}\n\n请确认是否已解决：",
                      "Your report {ref} ({category}, {place}) was resolved.\nResolution: {note}\n\nIs it fixed?"),
  "transferred_notice": ("您上报的问题 {ref} 已转给 {place} 的负责人处理。", "Your report {ref} was passed on to the worker for {place}."),
  "reopened_supervisor": ("⚠️ 居民反馈 {ref} 没有解决，已退回街长重新处理。原因：{reason}", "⚠️ The resident says {ref} is not fixed; it went back to the captain. Reason: {reason}"),
  "err_generic": ("操作没有成功，请刷新后再试。", "That did not work; please try again."),
  "err_not_allowed": ("抱歉，只有当前负责人（或其上级、管理员）可以处理这个案件。", "Sorry, only the current assignee (or a supervisor above, or an admin) can act on this case."),
  "err_illegal_move": ("这个案件的状态已经变了，这个操作不再适用。", "This case has moved on; that action no longer applies."),
  "my_empty": ("您还没有上报过问题。发送 /report 上报一个。", "You have not reported anything yet. Send /report to report a problem."),
  "my_title": ("<b>您上报/关注的问题：</b>", "<b>Your reports:</b>"),
  "my_line": ("{ref} {category} · {status}\n    {description}", "{ref} {category} · {status}\n    {description}"),
  "my_footer": ("发送 /case 编号 查看详情，例如 /case 12", "Send /case number for details, e.g. /case 12"),
  "case_usage": ("请这样用：/case 编号，例如 /case 12", "Usage: /case number, e.g. /case 12"),
  "case_not_found": ("没有找到 {ref}，或者您无权查看。", "No case {ref}, or you may not see it."),
  "case_title": ("<b>案件 {ref}</b> · {status}", "<b>Case {ref}</b> · {status}"),
  "history_title": ("<b>处理记录：</b>", "<b>History:</b>"),
  "history_line": ("{at} {action} {who} {note}", "{at} {action} {who} {note}"),
  "confirmed_ask_rating": ("感谢确认，{ref} 已关闭。请为这次处理打个分：", "Thanks for confirming; {ref} is closed. Please rate how it was handled:"),
  "confirmed_worker": ("👍 居民确认 {ref} 已解决，案件关闭。", "👍 The resident confirmed {ref} is fixed; the case is closed."),
  "reopen_note": ("居民反馈问题没有解决", "the resident says it is not fixed"),
  "reopened_resident": ("收到，{ref} 已退回重新处理，新的期限：{deadline}。", "Understood: {ref} has been reopened. New deadline: {deadline}."),
  "already_rated": ("您已经评价过了，谢谢！", "You already rated this, thank you!"),
  "rated": ("谢谢您的评价 {stars}，{ref} 已归档。", "Thank you for rating {stars}; {ref} is filed."),
  "withdrawn_note": ("居民撤回", "withdrawn by the resident"),
  "withdrawn": ("{ref} 已撤回。", "{ref} was withdrawn."),
  "withdrawn_worker": ("居民撤回了 {ref}，无需处理。", "The resident withdrew {ref}; nothing to do."),
 },
 "report": {
  "ask_category": ("请选择问题类别：", "What kind of problem is it?"),
  "ask_description": ("请简单描述问题（例如：路灯不亮三天了）：", "Please describe the problem briefly (e.g. the streetlight has been out for three days):"),
  "ask_photos": ("可以发一张或几张照片（也可以跳过）：", "You can send one or more photos (or skip):"),
  "ask_place": ("问题在哪里？请发送位置（📎 → 位置），或输入地址（例如：香港中路12号），或从列表选择：",
                "Where is it? Share a location pin (📎 → Location), type an address (e.g. 香港中路12号), or pick from a list:"),
  "confirm_title": ("<b>请确认上报内容：</b>", "<b>Please check your report:</b>"),
  "field_photos": ("照片：{n} 张", "Photos: {n}"),
  "share_on": ("联系方式：允许街长看到您的名字和 Telegram 联系方式", "Contact: the captain may see your name and Telegram contact"),
  "share_off": ("联系方式：不公开（街长可通过机器人给您留言）", "Contact: private (the captain can write to you through the bot)"),
  "duplicate_found": ("附近已有同类问题 {ref}（{n} 人反映，{status}）。如果是同一个问题，点“我也遇到了”即可一起跟进，不必重复上报。",
                      "There is already an open report {ref} of this kind nearby ({n} people, {status}). If it is the same problem, press “Me too” to follow it instead of filing a new one."),
  "unsupported_media": ("这一步不支持这类消息（{kind}），请发送文字、照片或位置。", "This step cannot use that kind of message ({kind}); please send text, a photo or a location."),
  "too_long": ("内容太长了（{n} 字），请控制在 {limit} 字以内再发一次。", "That is too long ({n} characters); please keep it under {limit} and send it again."),
  "photo_kept_need_text": ("照片已收到。请再用文字描述一下问题：", "Photo received. Please also describe the problem in words:"),
  "too_many_photos": ("最多 {limit} 张照片。", "At most {limit} photos."),
  "photo_added": ("照片已收到。还可以继续发，发完请点“照片发完了”。", "Photo received. Send more, or press “Done with photos”."),
  "press_a_button": ("请点上面的按钮提交或修改。", "Please use the buttons above to submit or change the report."),
  "place_outside": ("这个位置不在本街道的网格范围内。请换个位置、输入地址，或从列表选择：", "That location is outside our grid. Try another pin, type an address, or pick from the list:"),
  "place_unknown": ("没能识别地址“{address}”。请写得具体一些（路名+门牌号或小区名），或从列表选择：",
                    "I could not place “{address}”. Please give a road and number or an estate name, or pick from the list:"),
  "expired": ("这次上报已经结束或超时，请重新发送 /report。", "This report has ended or expired; please send /report again."),
  "cancelled": ("已取消上报，内容没有提交。", "Report cancelled; nothing was submitted."),
  "pick_area": ("请选择区域：", "Pick the area:"),
  "me_too_done": ("已将您加入 {ref} 的关注（现在共 {n} 人反映）。有进展时会通知您。", "You are now following {ref} ({n} people reported it). You will hear when it moves."),
  "me_too_already": ("您已经在关注 {ref} 了（共 {n} 人反映）。", "You already follow {ref} ({n} people reported it)."),
  "submitted": ("✅ 已提交，编号 <b>{ref}</b>。\n已转给：{area} 的{role}\n办结期限：{deadline}\n\n发送 /my 查看进度。",
                "✅ Submitted as <b>{ref}</b>.\nPassed to: the {role} of {area}\nDeadline: {deadline}\n\nSend /my to follow it."),
  "role_captain": ("街长", "street captain"), "role_worker": ("负责人", "supervisor"),
 },
 "work": {
  "ask_resolution_note": ("请简要说明 {ref} 的处理结果：", "Please describe how {ref} was resolved:"),
  "ask_resolution_photo": ("可以附一张处理后的照片（或点“不附照片”）：", "Add a photo of the result (or press “No photo”):"),
  "resolved_done": ("已办结 {ref}，已通知居民确认。", "{ref} resolved; the resident has been asked to confirm."),
  "transfer_pick": ("把 {ref} 转给哪里？", "Transfer {ref} to where?"),
  "transfer_reason": ("请说明把 {ref} 转给 {target} 的原因：", "Why transfer {ref} to {target}?"),
  "no_supervisor": ("这个区域没有上级负责人。", "There is no supervisor above this area."),
  "the_supervisor": ("上级负责人", "the supervisor"),
  "transfer_reason_needed": ("请用文字说明转办原因。", "Please give the reason in words."),
  "transferred": ("{ref} 已转给 {target}。", "{ref} transferred to {target}."),
  "relay_ask": ("请输入要发给对方的话（关于 {ref}）：", "Type your message about {ref}:"),
  "relay_text_only": ("请发送文字消息。", "Please send a text message."),
  "relay_from_worker": ("💬 关于 {ref}，街长留言：\n{text}", "💬 About {ref}, the street captain writes:\n{text}"),
  "relay_from_resident": ("💬 关于 {ref}，居民回复：\n{text}", "💬 About {ref}, the resident writes:\n{text}"),
  "relay_sent": ("已发送。", "Sent."),
  "no_tasks": ("您目前没有待办任务。👍", "You have no open tasks. 👍"),
  "tasks_title": ("<b>待办任务（{n}）：</b>", "<b>Open tasks ({n}):</b>"),
  "task_line": ("{ref} {category} · {status} · 期限 {deadline}\n    {description}", "{ref} {category} · {status} · due {deadline}\n    {description}"),
  "task_line_overdue": ("🔴 {ref} {category} · 已逾期（期限 {deadline}）\n    {description}", "🔴 {ref} {category} · OVERDUE (due {deadline})\n    {description}"),
 },
 "admin": {
  "invite_usage": ("用法：/invite captain 区域编号 或 /invite supervisor 区域编号（/staff 可查看区域编号）", "Usage: /invite captain AREA_ID or /invite supervisor AREA_ID (see /staff for area ids)"),
  "invite_made": ("邀请已生成：{area} 的{role}。把下面的链接发给对方，{days} 天内有效，只能使用一次：\n{link}", "Invitation for the {role} of {area}. Send this link; it works once, for {days} days:\n{link}"),
  "invite_link": ("邀请链接", "Invitation link"),
  "invite_invalid": ("这个邀请已失效或已被使用。请向管理员重新索取。", "This invitation has expired or was already used. Please ask the admin for a new one."),
  "invite_welcome": ("欢迎！您现在是 {area} 的{role}。发送 /help 查看可用命令。", "Welcome! You are now the {role} of {area}. Send /help to see your commands."),
  "invite_redeemed": ("{name} 已接受邀请，成为 {area} 的{role}。", "{name} accepted the invitation and is now the {role} of {area}."),
  "staff_title": ("<b>区域与人员：</b>", "<b>Areas and workers:</b>"),
  "staff_supervisor": ("负责人 {name}", "supervisor {name}"), "staff_captain": ("街长 {name}", "captain {name}"),
  "staff_line": ("{indent}{area}（{id}）：{who}", "{indent}{area} ({id}): {who}"),
 },
}

def main() -> None:
    root = Path(__file__).resolve().parent.parent / "bot" / "i18n"
    files = {"core.yaml": ("core", "menu", "group", "role"), "cases.yaml": ("status", "action", "btn", "cases", "report", "work", "admin")}
    for lang, idx, folder in (("zh", 0, "zh_Hans"), ("en", 1, "en")):
        for fname, sections in files.items():
            out = {s: {k: v[idx] for k, v in C[s].items()} for s in sections}
            head = "# generated from tools/catalog_source.py — edit there\n"
            (root / folder / fname).write_text(head + yaml.safe_dump(out, allow_unicode=True, sort_keys=False, width=200), encoding="utf-8")
    print("written")

if __name__ == "__main__":
    main()
