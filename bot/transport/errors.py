"""Telegram's 400 descriptions, sorted by what to do next (the same for every library)."""

from __future__ import annotations

from bot.transport.base import NotModified, PermanentError, RecipientGone

GONE = ("chat not found", "user is deactivated", "bot was kicked", "bot is not a member", "have no rights to send",
        "not enough rights", "group chat was deactivated", "peer_id_invalid", "user not found", "bot was blocked")


def classify_bad_request(description: str) -> PermanentError:
    d = (description or "").lower()
    if "message is not modified" in d:
        return NotModified(description)
    if any(s in d for s in GONE):
        return RecipientGone(description)
    return PermanentError(description)
