"""The command centre: a web console for supervisors and admins, and a read-only Open311 endpoint.

`mount(app, core)` adds the routes to an aiohttp application (the webhook server in webhook mode);
`serve(core, host, port)` runs them on their own (polling mode, `gridbot demo`).
"""

from __future__ import annotations

from aiohttp import web

from bot.web.views import PREFIX, base_url, login_link, mount

__all__ = ["PREFIX", "base_url", "login_link", "mount", "serve"]


async def serve(core, host: str, port: int) -> web.AppRunner:
    """Start the console on host:port; the caller awaits `runner.cleanup()` to stop it."""
    app = web.Application()
    mount(app, core)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
