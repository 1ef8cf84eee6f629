"""`gridbot demo`: the whole system in a terminal, with no Telegram account.

The same core and handlers as the Telegram transports; the console adapter prints what each
person receives, and what is typed becomes Telegram-shaped updates from the current speaker.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import TextIO

from sqlalchemy import select

from bot.app import Core
from bot.cases.service import assignee_for, supervisors_above
from bot.clock import utcnow
from bot.people.models import Person
from bot.people.service import ensure_person
from bot.runner import prepare_database
from bot.settings import load_settings
from bot.transport.console import ConsoleMessenger
from bot.web import login_link, serve
from scheduler.registry import JOBS, run_job

EXAMPLE_ADDRESS = "香港中路12号"
RESIDENT = 9001
RESIDENT_2 = 9002
ADMIN = 9100

HELP = """Demo commands (anything else is sent as a message from the current speaker):
  !as resident | resident2 | captain | supervisor | admin | <user id>   speak as someone else
  !who                      list the cast
  !1, !2 …                  press button 1, 2 … of the last message the speaker received
  !photo [caption]          send a photo          !album N   send an album of N photos
  !loc LAT LON              share a location pin  (e.g. !loc 36.0615 120.3855)
  !job NAME                 run a scheduled job now (sweep, digest, weekly, autoclose)
  !console                  a new sign-in link to the web command centre (as the demo admin)
  !help                     this text             !quit      leave
Try:  /report 香港中路12号 路灯不亮三天了   then  !as captain  and press the buttons."""


class Demo:
    def __init__(self, core: Core, console: ConsoleMessenger, out) -> None:
        self.core = core
        self.console = console
        self.out = out
        self.update_ids = itertools.count(int(time.time()))
        self.msg_ids = itertools.count(1)
        self.cast: dict[str, tuple[int, str]] = {}
        self.speaker = RESIDENT

    async def load_cast(self) -> None:
        async with self.core.sessionmaker() as s:
            names = dict((await s.execute(select(Person.id, Person.name))).all())
        # the captain and supervisor of the README's example address, so the walkthrough works
        area_id = self.core.router.route_address(EXAMPLE_ADDRESS).area_id
        async with self.core.sessionmaker() as s:
            captain = await assignee_for(session=s, area_id=area_id)
            sups = await supervisors_above(session=s, area_id=area_id)
        sup = sups[0] if sups else None
        self.cast = {"resident": (RESIDENT, "王芳 (resident)"), "resident2": (RESIDENT_2, "刘强 (resident)"),
                     "admin": (ADMIN, "孙敏 (admin)")}
        if captain:
            self.cast["captain"] = (captain, f"{names.get(captain) or captain} (captain)")
        if sup:
            self.cast["supervisor"] = (sup, f"{names.get(sup) or sup} (supervisor)")
        self.console.names.update({uid: label for uid, label in self.cast.values()})
        for uid, n in names.items():
            self.console.names.setdefault(uid, n or str(uid))

    def _user(self) -> dict:
        label = self.console.names.get(self.speaker, str(self.speaker))
        return {"id": self.speaker, "is_bot": False, "first_name": label.split(" (")[0], "language_code": "zh-hans"}

    def _message(self, **fields) -> dict:
        user = self._user()
        msg = {"message_id": next(self.msg_ids), "date": int(time.time()), "from": user,
               "chat": {"id": user["id"], "type": "private", "first_name": user["first_name"]}, **fields}
        return {"update_id": next(self.update_ids), "message": msg}

    async def send(self, update: dict) -> None:
        await self.core.receive([update])
        await self.core.process(update)
        await self.core.dispatcher.drain()

    async def line(self, text: str) -> bool:
        text = text.strip()
        if not text:
            return True
        if not text.startswith("!"):
            entities = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}] if text.startswith("/") else None
            await self.send(self._message(text=text, **({"entities": entities} if entities else {})))
            return True
        cmd, *args = shlex.split(text[1:]) or [""]
        if cmd in ("quit", "exit", "q"):
            return False
        if cmd == "help":
            self.out(HELP)
        elif cmd == "who":
            for role, (uid, label) in self.cast.items():
                self.out(f"  {role:<11} {uid:<6} {label}{'   ← speaking' if uid == self.speaker else ''}")
        elif cmd == "as":
            who = args[0] if args else ""
            if who in self.cast:
                self.speaker = self.cast[who][0]
            elif who.isdigit():
                self.speaker = int(who)
            else:
                self.out(f"  unknown person {who!r}; see !who")
                return True
            self.out(f"  now speaking as {self.console.names.get(self.speaker, self.speaker)}")
        elif cmd.isdigit():
            await self.press(int(cmd))
        elif cmd == "photo":
            n = next(self.msg_ids)
            photo = [{"file_id": f"demo-photo-{n}", "file_unique_id": f"u{n}", "width": 1280, "height": 960}]
            extra = {"caption": " ".join(args)} if args else {}
            await self.send(self._message(photo=photo, **extra))
        elif cmd == "album":
            count = int(args[0]) if args and args[0].isdigit() else 2
            group = f"album-{next(self.msg_ids)}"
            for i in range(count):
                photo = [{"file_id": f"demo-{group}-{i}", "file_unique_id": f"{group}{i}", "width": 800, "height": 600}]
                await self.send(self._message(photo=photo, media_group_id=group))
        elif cmd == "loc":
            try:
                lat, lon = float(args[0]), float(args[1])
            except (IndexError, ValueError):
                self.out("  usage: !loc LAT LON")
                return True
            await self.send(self._message(location={"latitude": lat, "longitude": lon}))
        elif cmd == "console":
            self.out(f"  command centre: {console_link(self.core.settings)}")
        elif cmd == "job":
            if not args or args[0] not in JOBS:
                self.out(f"  jobs: {', '.join(JOBS)}")
                return True
            result = await run_job(self.core, args[0])
            self.out(f"  job {args[0]}: {result}")
            await self.core.dispatcher.drain()
        else:
            self.out(f"  unknown demo command !{cmd}; try !help")
        return True

    async def press(self, n: int) -> None:
        buttons = self.console.buttons.get(self.speaker) or []
        if not 1 <= n <= len(buttons):
            self.out("  no such button in your last message")
            return
        label, data, mid = buttons[n - 1]
        user = self._user()
        update = {"update_id": next(self.update_ids), "callback_query": {
            "id": str(next(self.update_ids)), "from": user, "chat_instance": "demo", "data": data,
            "message": {"message_id": mid, "date": int(time.time()), "chat": {"id": self.speaker, "type": "private"},
                        "text": label}}}
        self.out(f"  (pressed “{label}”)")
        await self.send(update)


def console_link(settings) -> str:
    """A one-time link that signs the demo admin in to the web command centre."""
    return login_link(settings, ADMIN)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_demo(db: Path, source: TextIO, interactive: bool, out=print) -> int:
    db.parent.mkdir(parents=True, exist_ok=True)
    port = int(os.environ.get("GRIDBOT_WEB_PORT") or 0) or _free_port()
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{db}", admin_ids=str(ADMIN), bot_token="",
                             web_host="127.0.0.1", web_port=port, web_base_url="")
    engine = await prepare_database(settings)
    core = Core(settings, engine=engine)
    await core.reload_router()
    # as `gridbot run` does: built lazily, the first question would read the learned alternates
    # inside its own handler's transaction and wait for it (SQLite's writer queue)
    await core.warm()
    core.bot_id, core.bot_username = 1, "gridbot_demo"
    console = ConsoleMessenger({}, out=out, files_dir=db.parent / "files")
    dispatcher = core.attach(console)
    demo = Demo(core, console, out)
    await demo.load_cast()

    async with core.sessionmaker() as s, s.begin():
        await ensure_person(session=s, user_id=ADMIN, name="孙敏", now=utcnow())
    web = await serve(core, settings.web_host, settings.web_port)
    out("gridbot demo — a local chat; nothing leaves this machine.")
    out(HELP)
    out(f"database: {db}")
    out(f"command centre (signs in the demo admin, once; !console for a new link): {console_link(settings)}")
    await dispatcher.drain()
    try:
        while True:
            if interactive:
                who = console.names.get(demo.speaker, demo.speaker)
                sys.stdout.write(f"\n[{who}] > ")
                sys.stdout.flush()
            raw = await asyncio.to_thread(source.readline)  # the web console keeps serving meanwhile
            if not raw:
                break
            if not interactive:
                out(f"\n[{console.names.get(demo.speaker, demo.speaker)}] > {raw.rstrip()}")
            if not await demo.line(raw):
                break
    finally:
        await web.cleanup()
        await engine.dispose()
    return 0
