"""Broadcast flows: fan a confirmed notice out to the outbox, and report its progress.

`launch` runs in the confirming update's transaction: the Broadcast row turns `sending`, one
outbox row per recipient is bulk-inserted (dedupe key `bc:{broadcast}:{chat}`, so nothing is
queued twice) and the admin's progress message is queued, all in one commit.

`progress_tick` is called by the outbox dispatcher after it writes broadcast results (and
every few seconds): it edits the progress message at most every PROGRESS_EVERY seconds, and
when no row is left it marks the broadcast done and sends the summary — once, whichever
process gets there first.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts import service
from bot.broadcasts.models import Broadcast
from bot.i18n import LANGS, Safe, Texts, pick_language
from bot.notify import language_of
from bot.outbox.kinds import MessageKind
from bot.outbox.models import OutboxMessage
from bot.outbox.service import enqueue, enqueue_many
from bot.people.models import Person
from bot.transport.base import Outgoing

PROGRESS_EVERY = 3.0  # seconds between edits of the progress message
CHUNK = 5_000  # outbox rows per INSERT statement

_last_edit: dict[int, float] = {}  # broadcast id → monotonic time of the last progress edit here


def progress_ref(broadcast_id: int) -> str:
    return f"bc:{broadcast_id}:progress"


def render_notice(t: Texts, text: str) -> str:
    return t("bc.notice", header=Safe(t("bc.header")), text=text)


def audience_label(t: Texts, audience: str, area_name: str | None = None) -> str:
    if audience.startswith("area:"):
        return t("bc.aud_area_named", area=area_name or audience[5:])
    return t({"all": "bc.aud_all", "residents": "bc.aud_residents", "workers": "bc.aud_workers",
              "groups": "bc.aud_groups"}[audience])


def _message(chat_id: int, body: str, photo: str | None) -> dict:
    msg = Outgoing(chat_id=chat_id, method="photo" if photo else "send", text=body, photos=[photo] if photo else [])
    return msg.to_json()


async def launch(*, session: AsyncSession, now: datetime, bc: Broadcast, admin_chat_id: int | None,
                 t: Texts) -> int:
    """Queue the broadcast (already `sending`) to its audience; the number of recipients."""
    people = await service.recipients(session=session, audience=bc.audience)
    bodies: dict[str, dict] = {}
    rows = []
    for chat_id, lang in people:
        lang = lang if lang in LANGS else pick_language(lang)
        if lang not in bodies:
            bodies[lang] = _message(0, render_notice(Texts(lang), bc.text), bc.photo)
        payload = dict(bodies[lang], chat_id=chat_id)
        rows.append(dict(dedupe_key=f"bc:{bc.id}:{chat_id}", kind=MessageKind.BROADCAST, chat_id=chat_id, payload=payload,
                         status="pending", attempts=0, next_attempt_at=now, created_at=now, broadcast_id=bc.id,
                         remember_as=None, locked_by=None, locked_until=None, sent_at=None, sent_message_id=None,
                         error=None))
    for i in range(0, len(rows), CHUNK):
        await enqueue_many(session=session, rows=rows[i:i + CHUNK])
    bc.total = len(rows)
    if admin_chat_id is not None:
        await enqueue(session=session, msg=Outgoing(chat_id=admin_chat_id, text=progress_text(t, bc, {}, now)),
                      kind=MessageKind.BC_PROGRESS, now=now, dedupe_key=f"bc:{bc.id}:progress", remember_as=progress_ref(bc.id))
    return len(rows)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_text(t: Texts, bc: Broadcast, counts: dict[str, int], now: datetime) -> str:
    sent = counts.get("sent", 0)
    failed = counts.get("failed", 0) + counts.get("gone", 0)
    left = counts.get("pending", 0) + counts.get("in_flight", 0) + counts.get("sending", 0) if counts else bc.total
    done = sent + failed + counts.get("uncertain", 0)
    eta = t("bc.eta_unknown")
    if bc.started_at and done and left:
        took = (now - bc.started_at).total_seconds()
        if took > 0:
            eta = _duration(left / (done / took))
    return t("bc.progress", id=bc.id, sent=sent, total=bc.total, failed=failed, left=left, eta=eta)


def summary_text(t: Texts, bc: Broadcast, counts: dict[str, int], now: datetime) -> str:
    took = (now - bc.started_at).total_seconds() if bc.started_at else 0
    return t("bc.done", id=bc.id, sent=counts.get("sent", 0), total=bc.total,
             failed=counts.get("failed", 0) + counts.get("gone", 0), gone=counts.get("gone", 0),
             uncertain=counts.get("uncertain", 0), took=_duration(took))


def _edit_row(chat_id: int, ref: str, text: str, now: datetime) -> dict:
    payload = Outgoing(chat_id=chat_id, method="edit", text=text).to_json()
    payload["ref"] = ref
    return dict(dedupe_key=None, kind=MessageKind.BC_PROGRESS, chat_id=chat_id, payload=payload, status="pending", attempts=0,
                next_attempt_at=now, created_at=now, broadcast_id=None, remember_as=None)


async def progress_tick(sessionmaker, now: datetime, touched: set[int]) -> bool:
    """Report on running broadcasts (those in `touched`, or all when empty). True if it
    queued a message (the dispatcher then looks at the outbox at once)."""
    queued = False
    async with sessionmaker() as s, s.begin():
        ids = sorted(touched) if touched else await service.sending_ids(session=s)
        for bid in ids:
            bc = await s.get(Broadcast, bid)
            if bc is None or bc.status != "sending":
                continue
            counts = await service.delivery_counts(session=s, broadcast_id=bid)
            left = counts.get("pending", 0) + counts.get("in_flight", 0) + counts.get("sending", 0)
            chat = bc.progress_chat_id
            t = Texts(language_of(await s.get(Person, bc.author_id))) if chat else None
            if left == 0:
                if not await service.finish(session=s, broadcast_id=bid, now=now):
                    continue
                _last_edit.pop(bid, None)
                if chat:
                    text = summary_text(t, bc, counts, now)
                    # the progress message says it is over; the summary comes once, as a message of
                    # its own (an edit makes no sound)
                    s.add(OutboxMessage(**_edit_row(chat, progress_ref(bid), t("bc.progress_over", id=bid), now)))
                    await enqueue(session=s, msg=Outgoing(chat_id=chat, text=text), kind=MessageKind.BC_DONE, now=now,
                                  dedupe_key=f"bc:{bid}:done")
                    queued = True
                continue
            mono = time.monotonic()
            if not chat or mono - _last_edit.get(bid, 0.0) < PROGRESS_EVERY:
                continue
            if await service.progress_edit_waiting(session=s, chat_id=chat, ref=progress_ref(bid)):
                continue
            _last_edit[bid] = mono
            s.add(OutboxMessage(**_edit_row(chat, progress_ref(bid), progress_text(t, bc, counts, now), now)))
            queued = True
    return queued


# --- the command line --------------------------------------------------------------------


def broadcast_cli_main(settings, *, text: str, audience: str = "all", photo: str | None = None,
                       author_id: int | None = None, yes: bool = False, echo=print) -> int:
    """`gridbot broadcast --audience all|residents|workers|groups|area:<id> --text … [--photo FILE_ID] [--yes]`

    Queues a broadcast from the shell (the running bot delivers it); without --yes it only
    prints how many would get it. Progress goes to the author (default: the first admin id).
    Returns the exit code.
    """
    from bot.clock import utcnow
    from bot.db import make_engine, make_sessionmaker
    from bot.people.models import AuditEntry

    if audience not in service.AUDIENCES and not audience.startswith("area:"):
        echo(f"gridbot: unknown audience {audience!r} (all, residents, workers, groups, area:<id>)")
        return 2
    text = (text or "").strip()
    if not text or len(text) > service.MAX_TEXT:
        echo(f"gridbot: the text must have 1 to {service.MAX_TEXT} characters")
        return 2
    author = author_id if author_id is not None else (settings.admin_ids[0] if settings.admin_ids else 0)

    async def go() -> int:
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as s, s.begin():
                now = utcnow()
                if audience.startswith("area:"):
                    from bot.areas.models import Area

                    area = await s.get(Area, audience[5:])
                    if area is None or area.retired:
                        echo(f"gridbot: no area {audience[5:]!r} in the grid (the ids are in `gridbot grid show`)")
                        return 2
                n = await service.count(session=s, audience=audience)
                if not yes:
                    echo(f"{n} recipients; add --yes to send")
                    return 0
                if n == 0:
                    echo("nobody to send to")
                    return 1
                t = Texts(language_of(await s.get(Person, author))) if author else Texts("zh")
                bc = await service.create_draft(session=s, author_id=author, text=text, photo=photo,
                                                audience=audience, total=n, now=now)
                bc = await service.start(session=s, broadcast_id=bc.id, author_id=author,
                                         chat_id=author if author else None, now=now)
                sent_to = await launch(session=s, now=now, bc=bc, admin_chat_id=author or None, t=t)
                s.add(AuditEntry(at=now, actor_id=author or None, action="broadcast",
                                 detail=f"#{bc.id} {audience} {sent_to} (command line)"))
                echo(f"broadcast #{bc.id} queued for {sent_to} recipients")
                return 0
        finally:
            await engine.dispose()

    return asyncio.run(go())
