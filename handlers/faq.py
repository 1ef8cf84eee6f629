"""Answers from the knowledge base (SPEC flow 5), and the admin's /faq."""

from __future__ import annotations

from sqlalchemy import func, select

from bot.core_models import UnansweredQuestion
from bot.i18n import escape
from bot.transport.base import Button
from handlers.registry import callback, command

MAX_QUESTION = 500


def _entries(ctx) -> dict:
    return ctx.core.matcher.by_id


def _answer_text(ctx, entry) -> str:
    return ctx.t("faq.answer", question=entry.question, answer=entry.answer)


async def answer_question(ctx, text: str) -> None:
    text = text.strip()
    if not text:
        await ctx.say("faq.ask_usage")
        return
    if len(text) > MAX_QUESTION:
        await ctx.say("faq.too_long", limit=MAX_QUESTION)
        return
    m = await ctx.core.match(text)
    entries = _entries(ctx)
    if m.decision == "answer" and m.answer_id in entries:
        await ctx.reply(_answer_text(ctx, entries[m.answer_id]))
        return
    if m.decision == "suggest" and m.candidates:
        rows = [[Button(entries[cid].question[:60], f"faq:{cid}")] for cid, _ in m.candidates[:3] if cid in entries]
        if rows:
            await ctx.say("faq.did_you_mean", rows)
            return
    from knowledge.normalize import is_chitchat, normalize

    if is_chitchat(text):
        # a greeting or a thank-you is not a question nobody answered
        await ctx.say("faq.chitchat")
        return
    q = UnansweredQuestion(at=ctx.now, user_id=ctx.ev.user.id, query=text, normalized=(normalize(text) or text)[:300])
    ctx.session.add(q)
    await ctx.session.flush()
    buttons = [[Button(ctx.t("faq.file_as_report"), f"fr:{q.id}")]] if ctx.ev.is_private else None
    await ctx.say("faq.unknown", buttons)


async def on_text(ctx) -> None:
    await answer_question(ctx, ctx.ev.text)


@command("ask", menu="menu.ask")
async def ask(ctx) -> None:
    await answer_question(ctx, ctx.ev.args)


@callback("faq")
async def faq_button(ctx, entry_id: str) -> None:
    entry = _entries(ctx).get(entry_id)
    if entry is None:
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    ctx.answer()
    await ctx.reply(_answer_text(ctx, entry))


@callback("fr")
async def file_as_report(ctx, qid: str) -> None:
    q = await ctx.session.get(UnansweredQuestion, int(qid)) if qid.isdigit() else None
    if q is None or q.user_id != ctx.ev.user.id or not ctx.ev.is_private:
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    ctx.answer()
    from handlers.resident import begin_report

    await begin_report(ctx, q.query)


@command("faq", private_only=True, menu="menu.faq", roles=("admin",))
async def faq_admin(ctx) -> None:
    roles = await ctx.roles()
    if not roles.admin:
        await ctx.say("core.not_allowed")
        return
    sub, _, rest = ctx.ev.args.strip().partition(" ")
    if sub == "reload":
        from knowledge.loader import KnowledgeError

        try:
            n = await ctx.core.rebuild_matcher()
        except KnowledgeError as e:
            await ctx.say("faq.admin_reload_failed", error=str(e))
            return
        await ctx.say("faq.admin_reloaded", count=n)
        return
    if sub == "add":
        await add_entry(ctx, rest)
        return
    if sub in ("unanswered", "top", ""):
        rows = (await ctx.session.execute(
            select(UnansweredQuestion.normalized, func.count().label("n"), func.max(UnansweredQuestion.query))
            .group_by(UnansweredQuestion.normalized).order_by(func.count().desc()).limit(15))).all()
        if not rows:
            await ctx.say("faq.admin_no_unanswered")
            return
        lines = [ctx.t("faq.admin_unanswered_title")]
        lines += [f"{i}. {escape(q)} ×{n}" for i, (_, n, q) in enumerate(rows, 1)]
        lines.append(ctx.t("faq.admin_usage"))
        await ctx.reply("\n".join(lines))
        return
    await ctx.say("faq.admin_usage")


async def add_entry(ctx, rest: str) -> None:
    """/faq add 问题 | 答案 — appended to admin_added.yaml in the knowledge folder, then reloaded."""
    question, sep, answer = rest.partition("|")
    question, answer = question.strip(), answer.strip()
    if not sep or not question or not answer:
        await ctx.say("faq.admin_usage")
        return
    import yaml

    from knowledge.loader import KnowledgeError

    path = ctx.core.settings.kb_path
    target = (path if path.is_dir() else path.parent) / "admin_added.yaml"
    data = yaml.safe_load(target.read_text(encoding="utf-8")) if target.exists() else None
    data = data or {"entries": []}
    existing = set(_entries(ctx))
    n = len(data["entries"]) + 1
    while f"admin-{n}" in existing:
        n += 1
    entry_id = f"admin-{n}"
    data["entries"].append({"id": entry_id, "question": question, "alternates": [], "answer": answer,
                            "tags": ["admin"]})
    old = target.read_text(encoding="utf-8") if target.exists() else None
    target.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    try:
        await ctx.core.rebuild_matcher()
    except KnowledgeError as e:
        if old is None:
            target.unlink()
        else:
            target.write_text(old, encoding="utf-8")
        await ctx.say("faq.admin_reload_failed", error=str(e))
        return
    from bot.people.models import AuditEntry

    ctx.session.add(AuditEntry(at=ctx.now, actor_id=ctx.person.id, action="faq_add", detail=entry_id))
    await ctx.say("faq.admin_added", id=entry_id)
