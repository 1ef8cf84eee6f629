"""getUpdates as raw JSON, our own request: nothing parses an update before the inbox has it.

The frameworks still handle each update (one at a time, after it is stored), so an update the
pinned library cannot parse fails alone instead of making it reject the whole batch.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.transport.base import PermanentError, RetryAfter, TransientError
from bot.updates import valid_update_id

ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]


class UpdateFetcher:
    def __init__(self, token: str, api_base: str, proxy: str = "", allowed_updates: list[str] | None = None) -> None:
        self.url = f"{api_base.rstrip('/')}/bot{token}/getUpdates"
        self.proxy = proxy
        self.allowed = allowed_updates or ALLOWED_UPDATES
        self._session: aiohttp.ClientSession | None = None

    async def get(self, offset: int | None, timeout: int) -> list[dict[str, Any]]:
        if self._session is None:
            connector = None
            if self.proxy:  # GRIDBOT_PROXY, as the frameworks use it (HTTP or SOCKS5)
                from aiohttp_socks import ProxyConnector

                connector = ProxyConnector.from_url(self.proxy)
            self._session = aiohttp.ClientSession(connector=connector)
        body: dict[str, Any] = {"timeout": timeout, "allowed_updates": self.allowed}
        if offset is not None:
            body["offset"] = offset
        try:
            async with self._session.post(self.url, json=body,
                                          timeout=aiohttp.ClientTimeout(total=timeout + 15)) as r:
                status = r.status
                try:
                    data = await r.json(content_type=None)
                except ValueError:
                    data = None
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise TransientError(f"{type(e).__name__}: {e}") from e
        if not isinstance(data, dict):
            raise TransientError(f"HTTP {status}: not a Bot API answer")
        if not data.get("ok"):
            desc = f"HTTP {status}: {data.get('description', '')}"
            retry = (data.get("parameters") or {}).get("retry_after")
            if retry:
                raise RetryAfter(float(retry), desc)
            if status in (401, 404):
                raise PermanentError(desc)
            raise TransientError(desc)
        result = data.get("result")
        if not isinstance(result, list):
            raise TransientError("getUpdates: no list of updates")
        return [u for u in result if valid_update_id(u) is not None]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
