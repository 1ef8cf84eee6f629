"""Admin commands: invites and staff."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select, update

from bot.areas.models import Area
from bot.outbox.kinds import MessageKind
from bot.people.models import AuditEntry, Invite, Person
from bot.i18n import Safe
from bot.transport.base import Button
from handlers.registry import command

INVITE_TTL = timedelta(days=3)


async def _admin_only(ctx) -> bool:
    if not (await ctx.roles()).admin:
        await ctx.say("core.not_allowed")
        return False
    return True


def audit(ctx, action: str, detail: str) -> None:
    ctx.session.add(AuditEntry(at=ctx.now, actor_id=ctx.person.id, action=action, detail=detail[:2000]))


@command("invite", private_only=True, menu="menu.invite", roles=("admin",))
async def invite(ctx) -> None:
    """/invite captain|supervisor <area id> → a one-time deep link."""
    if not await _admin_only(ctx):
        return
    role, _, area_id = ctx.ev.args.strip().partition(" ")
    area_id = area_id.strip()
    area = await ctx.session.get(Area, area_id) if area_id else None
    if role not in ("captain", "supervisor") or area is None or area.retired:
        await ctx.say("admin.invite_usage")
        return
    code = secrets.token_urlsafe(12)
    ctx.session.add(Invite(code=code, role=role, area_id=area.id, created_by=ctx.person.id, created_at=ctx.now,
                           expires_at=ctx.now + INVITE_TTL))
    audit(ctx, "invite", f"{role} {area.id}")
    from handlers.group import deep_link  # here: handlers/__init__.py sets the command order

    await ctx.say("admin.invite_made", [[Button(ctx.t("admin.invite_link"), url=deep_link(ctx, f"inv_{code}"))]],
                  role=ctx.t(f"role.{role}"), area=area.name, link=deep_link(ctx, f"inv_{code}"),
                  days=INVITE_TTL.days)


async def redeem_invite(ctx, code: str) -> None:
    # the conditional update makes the code work once, even with two presses at the same moment
    res = await ctx.session.execute(
        update(Invite).where(Invite.code == code, Invite.used_by.is_(None), Invite.expires_at > ctx.now)
        .values(used_by=ctx.person.id, used_at=ctx.now))
    if res.rowcount != 1:
        await ctx.say("admin.invite_invalid")
        return
    inv = await ctx.session.get(Invite, code)
    area = await ctx.session.get(Area, inv.area_id)
    if inv.role == "captain":
        area.captain_id = ctx.person.id
    else:
        area.supervisor_id = ctx.person.id
    ctx.session.add(AuditEntry(at=ctx.now, actor_id=ctx.person.id, action=MessageKind.INVITE_REDEEMED,
                               detail=f"{inv.role} {area.id} by {inv.created_by}"))
    await ctx.say("admin.invite_welcome", role=ctx.t(f"role.{inv.role}"), area=area.name)
    await ctx.notify(inv.created_by, MessageKind.INVITE_REDEEMED,
                     lambda t: t("admin.invite_redeemed", name=ctx.person.name, role=t(f"role.{inv.role}"),
                                 area=area.name))


@command("staff", private_only=True, menu="menu.staff", roles=("admin",))
async def staff(ctx) -> None:
    if not await _admin_only(ctx):
        return
    areas = list((await ctx.session.execute(select(Area).where(Area.retired.is_(False))
                                            .order_by(Area.level, Area.sort_order, Area.id))).scalars())
    ids = {a.captain_id for a in areas if a.captain_id} | {a.supervisor_id for a in areas if a.supervisor_id}
    people = {p.id: p for p in (await ctx.session.execute(select(Person).where(Person.id.in_(ids)))).scalars()} if ids else {}
    lines = [ctx.t("admin.staff_title")]
    from bot.areas.tree import AreaTree

    # each area under its own parent (sorted by depth alone, a grid would sit under the last community)
    tree = AreaTree.of_rows(areas)
    by_id = {a.id: a for a in areas}
    for area_id in tree.subtree(None):
        a, depth = by_id[area_id], len(tree.ancestors(area_id))
        bits = []
        if a.supervisor_id:
            p = people.get(a.supervisor_id)
            bits.append(ctx.t("admin.staff_supervisor", name=p.name if p else a.supervisor_id))
        if a.captain_id:
            p = people.get(a.captain_id)
            bits.append(ctx.t("admin.staff_captain", name=p.name if p else a.captain_id))
        if bits:
            lines.append(ctx.t("admin.staff_line", indent="  " * depth, area=a.name, id=a.id, who=Safe(" · ".join(bits))))
    await ctx.reply("\n".join(lines[:120]))
