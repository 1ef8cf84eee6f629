"""Signing in to the console without passwords.

Two ways in, both ending in the same signed session cookie:

- a Telegram Mini App: Telegram hands the page `initData`, a query string signed with the bot
  token. It is checked as Telegram documents it: secret = HMAC-SHA256(key="WebAppData",
  msg=bot_token); the data-check-string is every field but `hash`, as `key=value` sorted by key
  and joined with "\\n"; the hash must equal hex(HMAC-SHA256(key=secret, msg=data-check-string)),
  and `auth_date` must be recent.
- a one-time link from `/console` in a private chat: a signed token with an expiry and a nonce;
  the nonce is spent in the database (a job_runs row), so a link opens one session once, whichever
  replica serves it.

The session cookie is `<payload>.<mac>` (payload: user id, expiry, a random session id), HttpOnly,
SameSite=Lax, Secure when the console is served over https. Forms carry a CSRF token derived from
the session id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

INIT_DATA_MAX_AGE = 3600  # seconds an initData stays good for signing in
LINK_MAX_AGE = 600  # a /console link is good for ten minutes, once
SESSION_MAX_AGE = 4 * 3600
COOKIE = "gridbot_console"


class AuthError(Exception):
    """Why a sign-in was refused (a short English reason, for logs and tests)."""


# --- Telegram Mini App initData ----------------------------------------------------------------


def _webapp_secret(bot_token: str) -> bytes:
    return hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()


def data_check_string(fields: dict[str, str]) -> str:
    return "\n".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "hash")


def sign_init_data(fields: dict[str, str], bot_token: str) -> str:
    """The hash Telegram puts in initData for these fields (tests and the demo sign with it)."""
    return hmac.new(_webapp_secret(bot_token), data_check_string(fields).encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WebAppUser:
    id: int
    first_name: str
    last_name: str
    username: str | None
    language_code: str | None
    auth_date: int


def validate_init_data(init_data: str, bot_token: str, *, now: float | None = None,
                       max_age: int = INIT_DATA_MAX_AGE) -> WebAppUser:
    """The user of a genuine, fresh initData string; AuthError otherwise."""
    if not bot_token:
        raise AuthError("no bot token configured")
    try:
        pairs = parse_qsl(init_data, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise AuthError("initData is not a query string") from None
    fields: dict[str, str] = {}
    for k, v in pairs:
        if k in fields:
            raise AuthError(f"field {k} given twice")
        fields[k] = v
    given = fields.get("hash", "")
    if not given:
        raise AuthError("no hash")
    if not hmac.compare_digest(sign_init_data(fields, bot_token), given.lower()):
        raise AuthError("wrong hash")
    try:
        auth_date = int(fields.get("auth_date", ""))
    except ValueError:
        raise AuthError("no auth_date") from None
    now = time.time() if now is None else now
    if now - auth_date > max_age:
        raise AuthError("stale auth_date")
    if auth_date - now > 60:
        raise AuthError("auth_date in the future")
    try:
        user = json.loads(fields["user"])
        uid = int(user["id"])
    except (KeyError, ValueError, TypeError):
        raise AuthError("no user") from None
    return WebAppUser(id=uid, first_name=str(user.get("first_name", "")), last_name=str(user.get("last_name", "")),
                      username=user.get("username"), language_code=user.get("language_code"), auth_date=auth_date)


# --- signed tokens: sessions and one-time links ----------------------------------------------------


class Signer:
    """MACs with a key derived from the bot token (or an explicit secret), one purpose per key."""

    def __init__(self, secret: str) -> None:
        self._root = hashlib.sha256(b"gridbot-console\0" + secret.encode()).digest()

    def _key(self, purpose: str) -> bytes:
        return hmac.new(self._root, purpose.encode(), hashlib.sha256).digest()

    def sign(self, purpose: str, payload: dict) -> str:
        body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
        mac = hmac.new(self._key(purpose), body.encode(), hashlib.sha256).hexdigest()[:43]
        return f"{body}.{mac}"

    def unsign(self, purpose: str, token: str, *, now: float | None = None) -> dict:
        body, _, mac = (token or "").partition(".")
        good = hmac.new(self._key(purpose), body.encode(), hashlib.sha256).hexdigest()[:43]
        if not body or not hmac.compare_digest(good, mac):
            raise AuthError("bad signature")
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:
            raise AuthError("bad payload") from None
        now = time.time() if now is None else now
        if not isinstance(payload, dict) or float(payload.get("exp", 0)) < now:
            raise AuthError("expired")
        return payload

    # sessions
    def session_cookie(self, user_id: int, *, now: float | None = None, max_age: int = SESSION_MAX_AGE) -> str:
        now = time.time() if now is None else now
        return self.sign("session", {"uid": int(user_id), "exp": int(now + max_age), "sid": secrets.token_hex(12)})

    def csrf_token(self, session: dict) -> str:
        return hmac.new(self._key("csrf"), str(session.get("sid", "")).encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: dict, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session), str(token))

    # one-time links
    def login_link_token(self, user_id: int, *, now: float | None = None, max_age: int = LINK_MAX_AGE) -> str:
        now = time.time() if now is None else now
        return self.sign("link", {"uid": int(user_id), "exp": int(now + max_age), "n": secrets.token_hex(10)})


_PROCESS_SECRET = secrets.token_hex(32)


def signer_for(settings) -> Signer:
    """Keys from the bot token, so every replica agrees; without one (the demo) a per-process key."""
    return Signer(settings.bot_token or _PROCESS_SECRET)
