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
