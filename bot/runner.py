"""Starting and stopping the bot: database, grid, transport, outbox, scheduler, polling or webhook."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from typing import Any

from bot.app import Core
from bot.db import ensure_sqlite_dir, make_engine, startup_lock, upgrade
from bot.settings import SAMPLE_GRID, Settings
from bot.updates import BIGINT, chat_of, valid_update_id

log = logging.getLogger("gridbot")
SWEEP_EVERY = 2.0  # seconds between looks for updates whose replica died with them


async def prepare_database(settings: Settings, engine=None, *, sample_grid: bool | None = True, installed_at=None,
                           stop: asyncio.Event | None = None):
    """Migrate, and load a grid into an empty database: GRIDBOT_GRID_FILE, else the sample grid
    if `sample_grid` (tests, the demo, `run --sample-grid`); else NoGridError (False) or leave
    it empty (None: `gridbot jobs run`). `installed_at`
    (what `gridbot run` passes) records the first start, before which no digest period counts.
    With `stop`, a database that does not answer yet is waited for. Returns the engine."""
    from bot.areas.service import area_count
    from bot.db import make_sessionmaker
    from bot.startup import NoGridError, StartupError, with_database

    try:
        ensure_sqlite_dir(settings.database_url)
    except OSError as e:
        raise StartupError(f"GRIDBOT_DATABASE_URL: cannot create the folder of the SQLite file: {e}", 2) from e
    engine = engine or make_engine(settings.database_url)

    async def step() -> bool:
        # replicas starting together migrate and import the grid one after another: the second
        # finds the schema current and the grid there
        async with startup_lock(engine):
            await upgrade(engine)
            async with make_sessionmaker(engine)() as s:
                empty = await area_count(session=s) == 0
            if empty:
                if settings.grid_file is not None:
                    await import_grid_file(settings, engine, settings.grid_file)
                elif sample_grid:
                    await import_grid_file(settings, engine, SAMPLE_GRID)
                elif sample_grid is not None:
                    raise NoGridError()
        return True

    done = await (with_database(settings, step, stop) if stop is not None else step())
    if done is None:  # asked to stop while waiting for the database
        return engine
    if installed_at is not None:
        from scheduler.jobs import mark_installed

        await mark_installed(engine, installed_at)
    return engine


async def import_grid_file(settings: Settings, engine, path) -> Any:
    from bot.areas.grid_file import load_grid
    from bot.areas.service import import_grid
    from bot.clock import utcnow
    from bot.db import make_sessionmaker

    spec = load_grid(path)
    async with make_sessionmaker(engine)() as s, s.begin():
        return await import_grid(session=s, spec=spec, now=utcnow())


_HEAP_SETTLED = False


def _settle_heap() -> None:
    """Once per process, before the first update: collect the start-up garbage and move what
    lives on (the knowledge index, the encoder, jieba's dictionary, the imported modules: a few
    million objects) out of the collector's sight. Otherwise the first full collections after
    start walk all of them, 100-200 ms each on the event loop, in the first seconds of traffic."""
    global _HEAP_SETTLED
    if _HEAP_SETTLED:
        return
    import gc

    _HEAP_SETTLED = True
    gc.collect()
    gc.freeze()


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def make_transport(settings: Settings):
    if settings.framework == "ptb":
        from bot.transport.ptb import PtbTransport

        return PtbTransport(settings.bot_token, settings.telegram_api_base, settings.proxy)
    from bot.transport.aiogram import AiogramTransport

    return AiogramTransport(settings.bot_token, settings.telegram_api_base, settings.proxy)


def command_menu() -> dict[str, list[tuple[str, str]]]:
    from bot.i18n import Texts
    from handlers.common import bot_commands

    return {"": bot_commands(Texts("zh"), "resident"), "en": bot_commands(Texts("en"), "resident")}


class BotRunner:
    """One bot process. `await runner.run()` until `runner.stop()` (or SIGTERM/SIGINT)."""

    def __init__(self, settings: Settings, *, webhook: bool = False, poll_timeout: int = 25,
                 with_scheduler: bool = True, engine=None, clock=None, sample_grid: bool = True) -> None:
        self.sample_grid = sample_grid
        self.clock = clock
        self.settings = settings
        self.webhook = webhook
        self.poll_timeout = poll_timeout
        self.with_scheduler = with_scheduler
        self.engine = engine
        self.core: Core | None = None
        self.transport = None
        self.scheduler = None
        self.fetcher = None
        self._sweeper: asyncio.Task | None = None
        self.ignored = 0  # webhook bodies acknowledged without being stored
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        settings = self.settings
        from bot.clock import utcnow
        from bot.startup import first_contact, summary

        self._install_signals()  # from the start: a bot waiting for its database still stops on SIGTERM
        engine = await prepare_database(settings, self.engine, sample_grid=self.sample_grid, stop=self._stop,
                                        installed_at=(self.clock or utcnow)())
        if self._stop.is_set():
            if self.engine is None:
                await engine.dispose()
            return
        core = self.core = Core(settings, engine=engine, **({"clock": self.clock} if self.clock else {}))
        await core.reload_router()
        transport = self.transport = make_transport(settings)
        transport.bind(core.process)
        core.feed = transport.feed
        core.attach(transport)
        try:
            me = await first_contact(settings, transport.start, "getMe", self._stop)
            if me is None:
                return
            core.bot_id, core.bot_username = me
            # after Telegram accepted the token (a wrong one is told at once), before any update
            # is taken (recovered ones included)
            await core.warm()
            try:
                await transport.set_commands(command_menu())
            except Exception as e:  # the menu is a convenience: never a reason not to start
                log.warning("setMyCommands failed: %s", e)
            core.dispatcher.start()
            if self.with_scheduler:
                from scheduler.registry import start_scheduler

                self.scheduler = start_scheduler(core)
            recovered = await core.recover()
            if recovered:
                log.info("handling %d updates recorded before the last stop", recovered)
            if not self.webhook:  # webhook mode: once its server listens
                log.info("%s", await summary(core, webhook=False))
            self._sweeper = asyncio.create_task(self._sweep())
            if not self.webhook:
                await self._drop_webhook()
            _settle_heap()
            self.ready.set()
            if self.webhook:
                await self._serve_webhook()
            else:
                await self._poll_with_console()
        finally:
            await self._shutdown()

    async def _sweep(self) -> None:
        """Chats with updates nobody handles (a replica died with them) are taken up here."""
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), SWEEP_EVERY)
            except asyncio.TimeoutError:
                await self.core.sweep()

    def _install_signals(self) -> None:
        if sys.platform == "win32":  # no loop signal handlers there; Ctrl+C still stops asyncio.run
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (RuntimeError, ValueError):  # not the main thread (tests run the bot in a task)
                continue

    async def _poll_with_console(self) -> None:
        """Polling; the web console (bot/web) listens on GRIDBOT_WEB_PORT when one is set."""
        web = None
        if self.settings.web_port:
            from bot.web import serve

            web = await serve(self.core, self.settings.web_host, self.settings.web_port)
        try:
            await self._poll()
        finally:
            if web is not None:
                await web.cleanup()

    async def _poll(self) -> None:
        core, transport = self.core, self.transport
        from bot.transport.raw import UpdateFetcher

        fetcher = self.fetcher = UpdateFetcher(self.settings.bot_token, self.settings.telegram_api_base,
                                                    self.settings.proxy)
        offset: int | None = None
        delay = 1.0
        while not self._stop.is_set():
            poll = asyncio.create_task(fetcher.get(offset, self.poll_timeout))
            stop = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait({poll, stop}, return_when=asyncio.FIRST_COMPLETED)
            if poll not in done:
                # stopping: an unfinished getUpdates confirmed nothing, Telegram will resend
                poll.cancel()
                await asyncio.gather(poll, return_exceptions=True)
                break
            stop.cancel()
            try:
                updates = poll.result()
            except Exception as e:
                log.warning("getUpdates failed: %s; retrying in %.0fs", e, delay)
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                delay = min(delay * 2, 30)
                continue
            delay = 1.0
            if not updates:
                continue
            # stored first, unparsed; only the next getUpdates (with the new offset) confirms them
            stored = await self._store(updates)
            if stored is None:
                break  # stopping during a database outage: nothing confirmed, Telegram resends
            offset = max(int(u["update_id"]) for u in updates) + 1
            for u in stored:
                core.submit(u)

    async def _drop_webhook(self) -> None:
        """Before polling starts (and before `ready`): Telegram refuses getUpdates while a
        webhook is set. A failure is retried, like a failed getUpdates."""
        delay = 1.0
        while not self._stop.is_set():
            try:
                if await self.transport.webhook_url():
                    # switching from webhook to polling: its pending updates are kept
                    # (drop_pending_updates=False)
                    log.info("a webhook is set; removing it to poll (pending updates are kept)")
                    await self.transport.delete_webhook()
                return
            except Exception as e:
                log.warning("getWebhookInfo failed: %s; retrying in %.0fs", e, delay)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, 30)

    async def _store(self, updates: list[dict]) -> list[dict] | None:
        """core.take (store, and handle what can be handled at once), waiting out a database
        outage (the offset stays where it is meanwhile). The updates left to submit."""
        core = self.core
        held = len(updates)
        while not self._stop.is_set():
            try:
                return await core.take(updates)
            except Exception as e:
                if await core.health.down(e, held):
                    held = 0
                    waiter = asyncio.create_task(core.health.wait_up())
                else:
                    core.errors.exception(e, "storing %d updates failed; retrying", len(updates))
                    waiter = asyncio.create_task(asyncio.sleep(1.0))
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
            for t in (waiter, stop):
                t.cancel()
        return None

    async def _serve_webhook(self) -> None:
        from aiohttp import web

        core, settings = self.core, self.settings

        async def handle(request: web.Request) -> web.Response:
            if settings.webhook_secret and request.headers.get("X-Telegram-Bot-Api-Secret-Token") != settings.webhook_secret:
                return web.Response(status=403, text="forbidden")
            try:
                update = json.loads(await request.read(), parse_constant=_no_constant)
            except Exception:
                update = None
            uid = valid_update_id(update)
            if uid is None:
                return web.Response(status=400, text="not an update")
            if not 0 <= uid < BIGINT:
                # cannot be an inbox key; answering anything else would only make it come back
                self.ignored += 1
                if self.ignored == 1 or self.ignored % 1000 == 0:
                    log.warning("ignored %d webhook update(s) with an out-of-range update_id", self.ignored)
                return web.Response(text="ignored")
            # stored before the 200: an answered update is never lost
            chat = chat_of(update)
            core._arriving[chat] = core._arriving.get(chat, 0) + 1
            try:
                stored = await core.receive([update])
            except Exception as e:
                if not await core.health.down(e, 1):
                    core.errors.exception(e, "storing webhook update %s failed", uid)
                # not recorded, so not acknowledged: Telegram sends it again
                return web.Response(status=503, text="database unavailable")
            finally:
                core._arriving[chat] -= 1
                if not core._arriving[chat]:
                    del core._arriving[chat]
            for u in stored:
                core.submit(u)
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post(settings.webhook_path, handle)
        from bot.web import mount

        mount(app, core)  # the web console and Open311 share the webhook server
        runner = web.AppRunner(app, access_log=None)  # one line per request is a flood under load
        await runner.setup()
        site = web.TCPSite(runner, settings.webhook_host, settings.webhook_port)
        try:
            await site.start()
        except OSError as e:
            from bot.startup import StartupError

            await runner.cleanup()
            raise StartupError(f"cannot listen on GRIDBOT_WEBHOOK_HOST:GRIDBOT_WEBHOOK_PORT "
                               f"({settings.webhook_host}:{settings.webhook_port}): {e.strerror or e}", 1) from e
        if settings.webhook_url:
            from bot.startup import first_contact

            url = settings.webhook_url.rstrip("/") + settings.webhook_path
            await first_contact(settings, lambda: self.transport.set_webhook(url, settings.webhook_secret),
                                "setWebhook", self._stop)
        from bot.startup import summary

        log.info("%s", await summary(self.core, webhook=True))
        try:
            await self._stop.wait()
        finally:
            # the webhook stays set: during a rolling restart the other replicas keep receiving
            await runner.cleanup()

    async def _shutdown(self) -> None:
        core = self.core
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if core is not None:
            await core.drain()
            if core.dispatcher is not None:
                await core.dispatcher.stop(drain_seconds=5.0)
        if self.fetcher is not None:
            await self.fetcher.close()
        if self.transport is not None:
            await self.transport.close()
        if core is not None:
            await core.engine.dispose()


def run(settings: Settings, *, webhook: bool = False, sample_grid: bool = False) -> None:
    from bot.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    from bot.logonce import log_tracebacks_once

    log_tracebacks_once()  # a flood of one failure is one traceback, then a count
    asyncio.run(BotRunner(settings, webhook=webhook, sample_grid=sample_grid).run())
