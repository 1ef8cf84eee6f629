"""/stats (admins; supervisors for their subtree) and /export (admins).

/stats [area id] [Nd]  — a short summary and a chart (rendered in a thread, sent as a photo).
/export [area id] [Nd] [status] — asks CSV or XLSX with buttons (`ex:csv`, `ex:xlsx`), sends a
document. Buttons check the admin right again on the server.
"""

from __future__ import annotations

import asyncio
import base64
import html
import re
from datetime import datetime, timedelta

from sqlalchemy import select

from bot import stats
from bot.areas.models import Area, Category
from bot.areas.routing import _t2s
from bot.areas.service import load_tree
from bot.cases.models import Case
from bot.charts import ChartData, Label, render_png
from bot.export import FORMATS, Filters, export_bytes
from bot.i18n import Texts
from bot.outbox.kinds import MessageKind
from bot.outbox.service import enqueue
from bot.transport.base import Button, Outgoing
from handlers.admin import audit
from handlers.registry import callback, command

DEFAULT_DAYS = 30
STATUSES = ("new", "accepted", "reopened", "resolved", "closed", "closed_unresolved", "duplicate", "withdrawn")
_DAYS = re.compile(r"^(\d{1,3})\s*(d|天|days?)?$", re.I)


def parse_args(args: str) -> tuple[str | None, int | None, str | None, list[str]]:
    """'<area> <Nd> <status>' in any order → (area, days, status, what was not understood)."""
    area = days = status = None
    rest = []
    for tok in args.split():
        m = _DAYS.match(tok)
        if m and days is None and 0 < int(m[1]) <= 366:
            days = int(m[1])
        elif tok in STATUSES and status is None:
            status = tok
        elif area is None:
            area = tok
        else:
            rest.append(tok)
    return area, days, status, rest


async def find_area(session, text: str) -> Area | None:
    """An area by id, else by its name or an alias (exactly, then a unique partial match);
    Traditional characters are read as Simplified."""
    area = await session.get(Area, text)
    if area is not None and not area.retired:
        return area
    def to_simplified(s: str) -> str:
        return _t2s().convert(s)

    want = to_simplified(text.strip()).lower()
    areas = list((await session.execute(select(Area).where(Area.retired.is_(False)))).scalars())

    def names(a: Area) -> list[str]:
        return [to_simplified(n).lower() for n in (a.name, *(a.aliases or ()))]

    exact = [a for a in areas if want in names(a)]
    if len(exact) == 1:
        return exact[0]
    partial = [a for a in areas if any(want in n for n in names(a))]
    return partial[0] if len(partial) == 1 else None


async def _scope(ctx, area_id: str | None, *, admin_only: bool) -> tuple[list[str] | None, str] | None:
    """The areas the user may see: (area ids or None = everything, the scope's name); None after
    telling the user why not."""
    roles = await ctx.roles()
    if not roles.admin and (admin_only or not roles.supervisor_of):
        await ctx.say("core.not_allowed")
        return None
    if area_id:
        area = await find_area(ctx.session, area_id)
        if area is None:
            await ctx.say("stats.no_area", area=area_id)
            return None
        tree = await load_tree(session=ctx.session, include_retired=False)
        ids = tree.subtree(area.id) or [area.id]
        if not roles.admin:
            allowed = set()
            for a in roles.supervisor_of:
                allowed.update(tree.subtree(a))
            if not set(ids) <= allowed:
                await ctx.say("stats.not_yours")
                return None
        return ids, area.name
    if roles.admin:
        return None, ctx.t("stats.whole")
    tree = await load_tree(session=ctx.session, include_retired=False)
    ids: list[str] = []
    for a in roles.supervisor_of:
        ids += [i for i in tree.subtree(a) if i not in ids]
    names = [a.name for a in (await ctx.session.execute(select(Area).where(Area.id.in_(roles.supervisor_of)))).scalars()]
    return ids, "、".join(names)


# --- /stats -----------------------------------------------------------------------------------


def _plain(s: str) -> str:
    """Chart text: no HTML entities, no emoji (no chart font has them: they would be boxes)."""
    return re.sub(r"[\U00010000-\U0010FFFF]", "", html.unescape(s)).strip()


def _ascii(s: str) -> bool:
    return all(ord(c) < 0x2E80 for c in s)



async def build_chart_data(*, session, area_ids, scope_name: str, start: datetime, end: datetime, now: datetime,
                           tz, t: Texts) -> tuple[ChartData, stats.Figures]:
    en = Texts("en")
    zh = Texts("zh")
    fig = await stats.figures(session=session, area_ids=area_ids, start=start, end=end, now=now)
    per_area = await stats.breakdown(session=session, area_ids=area_ids, start=start, end=end, now=now)
    tree = await load_tree(session=session)
    root = None
    if area_ids is not None and area_ids:
        root = area_ids[0]
    grids = []
    for gid in tree.rows_for(root, stats.GRID_LEVEL):
        f = stats.rollup(per_area, tree.subtree(gid))
        if f.rectification_rate is not None:
            name = tree.name(gid)
            grids.append((Label(name, name if _ascii(name) else gid), f.rectification_rate))
    grids.sort(key=lambda x: x[1])
    by_status = []
    for status, n in sorted(await stats.counts_by(session, Case.status, area_ids, start, end), key=lambda r: -r[1]):
        key = f"status.{status}"
        by_status.append((Label(zh(key) if zh.has(key) else status, en(key) if en.has(key) else status), int(n)))
    cats = {c.id: c for c in (await session.execute(select(Category))).scalars()}
    by_cat = []
    for cid, n in sorted(await stats.counts_by(session, Case.category_id, area_ids, start, end), key=lambda r: -r[1]):
        c = cats.get(cid)
        by_cat.append((Label(c.name if c else cid, (c.name_en or cid) if c else cid), int(n)))
    d0, d1 = start.astimezone(tz).strftime("%Y-%m-%d"), (end - timedelta(seconds=1)).astimezone(tz).strftime("%Y-%m-%d")
    scope_en = scope_name if _ascii(scope_name) else (",".join(area_ids[:1]) + ("…" if area_ids and len(area_ids) > 1 else "")
                                                     if area_ids else "whole district")
    data = ChartData(
        title=Label(_plain(zh("stats.caption", scope=scope_name, start=d0, end=d1)),
                    _plain(en("stats.caption", scope=scope_en, start=d0, end=d1))),
        by_status=by_status, by_category=by_cat, grid_rates=grids,
        per_day=await stats.per_day(session, area_ids, start, end, tz), overdue=fig.overdue_open,
        panel_titles={k: Label(zh(f"stats.chart_{k}"), en(f"stats.chart_{k}"))
                      for k in ("status", "category", "grid", "trend")})
    return data, fig


def summary_text(t: Texts, data: ChartData, fig: stats.Figures, scope: str, start: str, end: str) -> str:
    lang_zh = t.lang != "en"

    def items(pairs, fmt=str):
        return "、".join(f"{lab.zh if lang_zh else lab.en} {fmt(v)}" for lab, v in pairs[:6]) or "—"

    lines = [t("stats.title", scope=scope, start=start, end=end),
             t("stats.line_new", n=fig.new, resolved=fig.resolved, closed=fig.closed),
             t("stats.line_open", open=fig.open, overdue=fig.overdue_open),
             t("stats.line_rates", rect=stats.percent(fig.rectification_rate), res=stats.percent(fig.resolution_rate),
               sat=stats.percent(fig.satisfaction_rate)),
             *([t("stats.rect_none")] if fig.rectification_rate is None else []),
             t("stats.line_status", items=items(data.by_status)),
             t("stats.line_category", items=items(data.by_category))]
    if data.grid_rates:
        lines.append(t("stats.line_grids", items=items(data.grid_rates[:3], lambda r: f"{r * 100:.0f}%")))
    return "\n".join(lines)


@command("stats", private_only=True, menu="stats.menu", roles=("admin", "supervisor"))
async def stats_cmd(ctx) -> None:
    area_id, days, _status, rest = parse_args(ctx.ev.args)
    roles = await ctx.roles()
    if not roles.admin and not roles.supervisor_of:
        await ctx.say("core.not_allowed")
        return
    if rest:
        await ctx.say("stats.usage")
        return
    scope = await _scope(ctx, area_id, admin_only=False)
    if scope is None:
        return
    area_ids, scope_name = scope
    tz = ctx.settings.tz
    days = days or DEFAULT_DAYS
    today = ctx.now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    end = today + timedelta(days=1)
    start = end - timedelta(days=days)
    data, fig = await build_chart_data(session=ctx.session, area_ids=area_ids, scope_name=scope_name, start=start,
                                       end=end, now=ctx.now, tz=tz, t=ctx.t)
    d0, d1 = start.strftime("%Y-%m-%d"), today.strftime("%Y-%m-%d")
    await ctx.reply(summary_text(ctx.t, data, fig, scope_name, d0, d1))
    # matplotlib is slow and synchronous: drawn in a thread, the loop keeps serving other chats
    png = await asyncio.to_thread(render_png, data, lang=ctx.lang)
    await send_upload(ctx, "photo", "stats.png", png, ctx.t("stats.caption", scope=scope_name, start=d0, end=d1),
                      kind=MessageKind.STATS_CHART)
    audit(ctx, "stats", f"{area_id or '*'} {days}d")


async def send_upload(ctx, file_kind: str, name: str, data: bytes, caption: str, *, kind: MessageKind) -> None:
    """Queue generated bytes (a chart, an export) as a photo or document to this chat."""
    msg = Outgoing(chat_id=ctx.ev.chat.id, method="photo" if file_kind == "photo" else "document", text=caption,
                   upload={"kind": file_kind, "name": name, "b64": base64.b64encode(data).decode("ascii")})
    await enqueue(session=ctx.session, msg=msg, kind=kind, now=ctx.now)


# --- /export -----------------------------------------------------------------------------------


@command("export", private_only=True, menu="export.menu", roles=("admin",))
async def export_cmd(ctx) -> None:
    if not (await ctx.roles()).admin:
        await ctx.say("core.not_allowed")
        return
    area_id, days, status, rest = parse_args(ctx.ev.args)
    if rest:
        await ctx.say("export.usage")
        return
    scope = await _scope(ctx, area_id, admin_only=True)
    if scope is None:
        return
    ids, scope_name = scope
    if area_id and ids:
        area_id = ids[0]  # the id of an area given by its name
    await ctx.set_state("ex", "format", {"area": area_id, "days": days, "status": status})
    t = ctx.t
    await ctx.say("export.choose_format", [[Button(t("export.csv"), "ex:csv"), Button(t("export.xlsx"), "ex:xlsx")]],
                  scope=scope_name, period=t("export.days", n=days) if days else t("export.all_time"),
                  status=t("export.status_filter", status=status) if status else "")


@callback("ex")
async def export_button(ctx, fmt: str) -> None:
    if not (await ctx.roles()).admin:
        ctx.answer(ctx.t("core.not_allowed"), alert=True)
        return
    if fmt not in FORMATS:
        ctx.answer(ctx.t("core.stale_button"), alert=True)
        return
    st = await ctx.load_state()
    data = dict(st.data or {}) if st is not None and st.flow == "ex" else {}
    area_id, days, status = data.get("area"), data.get("days"), data.get("status")
    area_ids = None
    scope_name = ctx.t("stats.whole")
    if area_id:
        area = await ctx.session.get(Area, area_id)
        if area is None:
            ctx.answer(ctx.t("core.stale_button"), alert=True)
            return
        area_ids = tuple((await load_tree(session=ctx.session, include_retired=False)).subtree(area.id) or [area.id])
        scope_name = area.name
    since = ctx.now - timedelta(days=days) if days else None
    body, n = await export_bytes(session=ctx.session, filters=Filters(since=since, area_ids=area_ids, status=status),
                                 fmt=fmt, now=ctx.now, tz=ctx.settings.tz, t=ctx.t)
    if st is not None and st.flow == "ex":
        await ctx.clear_state()
    period = ctx.t("export.days", n=days) if days else ctx.t("export.all_time")
    stamp = ctx.now.astimezone(ctx.settings.tz).strftime("%Y%m%d-%H%M")
    await ctx.edit(ctx.t("export.caption", n=n, scope=scope_name, period=period))
    await send_upload(ctx, "document", f"cases-{stamp}.{fmt}", body,
                      ctx.t("export.caption", n=n, scope=scope_name, period=period), kind=MessageKind.EXPORT)
    audit(ctx, "export", f"{fmt} {area_id or '*'} {days or 'all'} {status or '*'} → {n}")
    ctx.answer()
