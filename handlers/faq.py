"""Answers from the knowledge base (SPEC flow 5), and the admin's /faq."""

from __future__ import annotations

from sqlalchemy import select

from bot.core_models import UnansweredQuestion
from bot.sql import give_id
from bot.transport.base import Button
from handlers.registry import callback, command

MAX_QUESTION = 500


def _entries(ctx) -> dict:
    return ctx.core.matcher.by_id


def _answer_text(ctx, entry) -> str:
    """The answer in the user's language: English users get the entry's English where it has one,
    otherwise the Chinese with a one-line note."""
    if ctx.lang == "en":
        if entry.answer_en:
            return ctx.t("faq.answer", question=entry.question_en or entry.question,
                         answer=entry.answer_en)
        return (ctx.t("faq.answer", question=entry.question, answer=entry.answer)
                + "\n\n" + ctx.t("faq.no_english"))
    return ctx.t("faq.answer", question=entry.question, answer=entry.answer)


def _button_label(ctx, entry) -> str:
    return ((entry.question_en or entry.question) if ctx.lang == "en" else entry.question)[:60]


async def _log(ctx, text: str, kind: str, entry_id: str | None) -> UnansweredQuestion:
    from knowledge.normalize import normalize

    q = UnansweredQuestion(at=ctx.now, user_id=ctx.ev.user.id, query=text, normalized=(normalize(text) or text)[:300],
                           kind=kind, entry_id=entry_id)
    ctx.session.add(q)
    await give_id(ctx.session, q)  # the "didn't help" button names it
    return q


async def _send_answer(ctx, entry, qid: int | None) -> None:
    buttons = [[Button(ctx.t("faq.didnt_help"), f"fu:{qid}")]] if qid is not None and ctx.ev.is_private else None
    await ctx.reply(_answer_text(ctx, entry), buttons)


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
        # logged as answered, so that a "didn't help" press lands beside the question
        q = await _log(ctx, text, "answered", m.answer_id)
        await _send_answer(ctx, entries[m.answer_id], q.id)
        return
    if m.decision == "suggest" and m.candidates:
        rows = [[Button(_button_label(ctx, entries[cid]), f"faq:{cid}")] for cid, _ in m.candidates[:3]
                if cid in entries]
        if rows:
            await _log(ctx, text, "suggest", m.candidates[0][0])
            await ctx.say("faq.did_you_mean", rows)
            return
    from knowledge.normalize import is_chitchat

    if is_chitchat(text):
        # a greeting or a thank-you is not a question nobody answered
        await ctx.say("faq.chitchat")
        return
    q = await _log(ctx, text, "unknown", None)
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
    await _send_answer(ctx, entry, None)


@callback("fu")
async def didnt_help(ctx, qid: str) -> None:
    """The resident says the answer did not help: logged beside the question, and a report offered."""
    q = await ctx.session.get(UnansweredQuestion, int(qid)) if qid.isdigit() else None
    if q is None or q.user_id != ctx.ev.user.id or not ctx.ev.is_private:
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    ctx.answer()
    q.kind = "unhelpful"
    await ctx.say("faq.unhelpful_logged", [[Button(ctx.t("faq.file_as_report"), f"fr:{q.id}")]])


@callback("fr")
async def file_as_report(ctx, qid: str) -> None:
    q = await ctx.session.get(UnansweredQuestion, int(qid)) if qid.isdigit() else None
    if q is None or q.user_id != ctx.ev.user.id or not ctx.ev.is_private:
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    ctx.answer()
    from handlers.resident import begin_report

    await begin_report(ctx, q.query)


OPEN_KINDS = ("unknown", "suggest", "unhelpful")
SHOWN_GROUPS = 8
CHOICES = 6  # entries offered when an admin picks the entry for a question


async def _is_admin(ctx) -> bool:
    if not (await ctx.roles()).admin:
        ctx.answer(ctx.t("core.not_allowed"), alert=True)
        return False
    return True


async def list_open_questions(ctx) -> None:
    """Questions not answered, only "did you mean"-ed, or answered but "didn't help": grouped by
    similarity, counted, each group with one-tap buttons (link to the likely entry / new entry)."""
    from collections import Counter

    from knowledge.learned import group_similar

    rows = list((await ctx.session.execute(
        select(UnansweredQuestion).where(UnansweredQuestion.kind.in_(OPEN_KINDS),
                                         UnansweredQuestion.linked_entry.is_(None))
        .order_by(UnansweredQuestion.id.desc()).limit(500))).scalars())
    if not rows:
        await ctx.say("faq.admin_no_unanswered")
        return
    by_norm: dict[str, list[UnansweredQuestion]] = {}
    for r in rows:
        by_norm.setdefault(r.normalized, []).append(r)
    norms = list(by_norm)
    groups = group_similar([(n, len(by_norm[n])) for n in norms])
    groups.sort(key=lambda g: -sum(len(by_norm[norms[i]]) for i in g))
    entries = _entries(ctx)
    lines = [ctx.t("faq.admin_unanswered_title")]
    buttons = []
    for n, g in enumerate(groups[:SHOWN_GROUPS], 1):
        members = [q for i in g for q in by_norm[norms[i]]]
        lead = by_norm[norms[g[0]]][0]
        kinds = Counter(q.kind for q in members)
        guess = Counter(q.entry_id for q in members if q.entry_id in entries).most_common(1)
        entry_id = guess[0][0] if guess else None
        if entry_id is None:
            m = await ctx.core.match(lead.query)
            entry_id = next((cid for cid, _ in m.candidates if cid in entries), None)
        tags = " ".join(ctx.t(f"faq.kind_{k}") for k in OPEN_KINDS if kinds.get(k))
        similar = len({q.normalized for q in members})
        lines.append(ctx.t("faq.admin_group", n=n, question=lead.query, count=len(members),
                           variants=similar, kinds=tags))
        row = []
        if entry_id is not None:
            row.append(Button(ctx.t("faq.admin_link_button", n=n, question=entries[entry_id].question[:24]),
                              f"fl:{lead.id}:{entry_id}"))
        row.append(Button(ctx.t("faq.admin_choose_button", n=n), f"fc:{lead.id}"))
        row.append(Button(ctx.t("faq.admin_new_button", n=n), f"fn:{lead.id}"))
        buttons.append(row)
    lines.append(ctx.t("faq.admin_usage"))
    await ctx.reply("\n".join(lines), buttons)


@callback("fl")
async def link_question(ctx, rest: str) -> None:
    """One tap: the question (and its exact repeats) becomes an alternate of the entry, live at once."""
    from sqlalchemy import update

    from bot.core_models import FaqAlternate
    from bot.people.models import AuditEntry

    qid, _, entry_id = rest.partition(":")
    if not await _is_admin(ctx):
        return
    q = await ctx.session.get(UnansweredQuestion, int(qid)) if qid.isdigit() else None
    entry = _entries(ctx).get(entry_id)
    if q is None or entry is None or q.linked_entry is not None:
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    ctx.answer()
    await ctx.session.execute(update(UnansweredQuestion)
                              .where(UnansweredQuestion.normalized == q.normalized,
                                     UnansweredQuestion.linked_entry.is_(None))
                              .values(linked_entry=entry_id))
    ctx.session.add(FaqAlternate(entry_id=entry_id, text=q.query, added_at=ctx.now, added_by=ctx.ev.user.id))
    ctx.session.add(AuditEntry(at=ctx.now, actor_id=ctx.person.id, action="faq_link", detail=f"{entry_id}: {q.query[:200]}"))
    ctx.core.faq_extra.setdefault(entry_id, []).append(q.query)
    await ctx.core.rebuild_matcher()
    await ctx.say("faq.admin_linked", question=q.query, id=entry_id, entry=entry.question)


@callback("fc")
async def choose_entry(ctx, qid: str) -> None:
    """The entries the rankers find closest to the question, one button each (one tap links)."""
    if not await _is_admin(ctx):
        return
    q = await ctx.session.get(UnansweredQuestion, int(qid)) if qid.isdigit() else None
    if q is None or q.linked_entry is not None:
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    ctx.answer()
    from knowledge.index import _prob

    matcher = ctx.core.matcher
    rows, _, _ = matcher.candidates(q.query)
    ranked = [matcher.entries[i] for i, x in sorted(rows, key=lambda r: -_prob(r[1]))][:CHOICES]
    buttons = [[Button(e.question[:60], f"fl:{q.id}:{e.id}")] for e in ranked]
    buttons.append([Button(ctx.t("faq.admin_new_button", n=""), f"fn:{q.id}")])
    await ctx.say("faq.admin_choose", buttons, question=q.query)


@callback("fn")
async def new_entry_from_question(ctx, qid: str) -> None:
    if not await _is_admin(ctx):
        return
    q = await ctx.session.get(UnansweredQuestion, int(qid)) if qid.isdigit() else None
    if q is None:
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    ctx.answer()
    await ctx.say("faq.admin_new_hint", question=q.query)


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
        await list_open_questions(ctx)
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
