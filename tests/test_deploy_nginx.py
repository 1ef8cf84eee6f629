"""The shipped multi-replica deployment, for real: nginx (from Debian's packages, its site taken
from deploy/nginx/gridbot.conf with TLS on a self-signed certificate made here) in front of two
`gridbot run --webhook` processes on one database (PostgreSQL in CI), set up with the commands
deploy/docker-compose.yml runs. The fake Bot API's updates are posted to nginx as Telegram would.

Checked: a report, the captain's push, a broadcast and the digest each happen once; both replicas
took updates; the broadcast stays within GRIDBOT_BROADCAST_RATE for the bot as a whole.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import PG_URL, SUN, TOKEN, WANG, child_env, reset_postgres
from tests.fakebotapi import FakeBotAPI
from tests.fakebotapi import updates as U

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "deploy" / "nginx" / "gridbot.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
SECRET = "s3cret-webhook-token"
RATE = 6  # messages per second for the bot as a whole
RESIDENTS = [U.TgUser(30_000 + i, f"居民{i}") for i in range(24)]
LI = 1002  # captain of 香港中路双号段 in the sample grid

pytestmark = pytest.mark.skipif(NGINX is None and not os.environ.get("GRIDBOT_REQUIRE_NGINX"),
                                reason="nginx is not installed (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx_config(tmp: Path, port: int, upstreams: list[int]) -> Path:
    """The deploy/ site with only the addresses and certificate paths changed, in a full config."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(tmp / "privkey.pem"), "-out", str(tmp / "fullchain.pem")],
                   check=True, capture_output=True, timeout=60)
    site = SITE.read_text(encoding="utf-8")
    servers = re.findall(r"^\s*server bot\d:8080[^\n]*\n", site, re.M)
    assert len(servers) == 2, "the deploy/ site lists two replicas"
    opts = servers[0].split(";")[0].split()[2:]
    site = site.replace(servers[0], "".join(f"    server 127.0.0.1:{p} {' '.join(opts)};\n" for p in upstreams))
    site = site.replace(servers[1], "")
    for old, new in (("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
                     ("/etc/nginx/tls/fullchain.pem", str(tmp / "fullchain.pem")),
                     ("/etc/nginx/tls/privkey.pem", str(tmp / "privkey.pem"))):
        assert old in site, old
        site = site.replace(old, new)
    (tmp / "gridbot.conf").write_text(site, encoding="utf-8")
    user = "user root root;\n" if os.geteuid() == 0 else ""  # workers must read files in a 0700 temp dir
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        "  log_format upstreams '$status $upstream_addr $upstream_status';\n"
        f"  access_log {tmp}/access.log upstreams;\n"
        + "".join(f"  {d}_temp_path {tmp}/{d};\n" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + f"  include {tmp}/gridbot.conf;\n"
        "}\n", encoding="utf-8")
    return conf


class Replica:
    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc, self.name = proc, name
        self.lines: list[str] = []
        self.started = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            raw = await self.proc.stderr.readline()
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            if "gridbot started" in line:
                self.started.set()

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), 60)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
        await asyncio.wait_for(self.reader, 10)
        return code


def environ(**kw: str) -> dict:
    return child_env(**kw)


async def gridbot(env: dict, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *args, cwd=str(ROOT), env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, (args, err.decode()[-2000:])
    return out.decode()


async def until(predicate, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out: {what}")


async def test_nginx_in_front_of_two_webhook_replicas(tmp_path):
    if PG_URL:
        await reset_postgres(PG_URL)
        db_url = PG_URL
    else:
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'gridbot.db'}"
    nginx_port, ports = free_port(), [free_port(), free_port()]
    conf = nginx_config(tmp_path, nginx_port, ports)
    nginx = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    replicas: list[Replica] = []
    async with FakeBotAPI(token=TOKEN) as api, aiohttp.ClientSession() as http:
        for chat in (LI, 2001, 3001):  # the captain, the supervisors above: they have started the bot
            api.add_chat(chat)
        base = dict(GRIDBOT_BOT_TOKEN=TOKEN, GRIDBOT_TELEGRAM_API_BASE=api.base_url, GRIDBOT_DATABASE_URL=db_url,
                    GRIDBOT_ADMIN_IDS=str(SUN.id), GRIDBOT_BROADCAST_RATE=str(RATE))
        # the public address Telegram is given (port 443); here nginx listens on a free local port
        webhook = dict(GRIDBOT_WEBHOOK_URL="https://bot.example.org", GRIDBOT_WEBHOOK_SECRET=SECRET,
                       GRIDBOT_WEBHOOK_HOST="127.0.0.1")
        try:
            # what docker-compose's `init` service runs, then its two replicas
            await gridbot(environ(**base), "grid", "import", str(ROOT / "bot/areas/sample_grid.yaml"))
            for i, port in enumerate(ports):
                env = environ(**base, **webhook, GRIDBOT_WEBHOOK_PORT=str(port))
                proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "run", "--webhook",
                                                            cwd=str(ROOT), env=env, stdout=asyncio.subprocess.DEVNULL,
                                                            stderr=asyncio.subprocess.PIPE)
                replicas.append(Replica(proc, f"bot{i + 1}"))
            try:
                await asyncio.wait_for(asyncio.gather(*(r.started.wait() for r in replicas)), 120)
            except asyncio.TimeoutError:
                raise AssertionError("\n".join(line for r in replicas for line in r.lines[-20:])) from None
            assert nginx.poll() is None, nginx.stderr.read().decode()
            await until(lambda: api.webhook is not None, 30, "setWebhook")
            assert api.webhook["url"] == "https://bot.example.org/telegram/webhook"
            assert api.webhook["secret_token"] == SECRET

            url = f"https://127.0.0.1:{nginx_port}/telegram/webhook"  # where bot.example.org points

            async def post(update: dict) -> None:
                """What Telegram does: POST the update to the webhook, with the secret token."""
                update = api.push_update(update)  # registers chats and callback ids, assigns update_id
                api._updates.clear()  # delivered by webhook, not by getUpdates
                async with http.post(url, json=update, ssl=False,
                                     headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}) as r:
                    assert r.status == 200, await r.text()

            # residents start the bot (and the admin): nginx spreads them over both replicas
            for u in (*RESIDENTS, SUN):
                await post(U.message(u, text="/start"))
            await until(lambda: all(api.sent(u.id) for u in (*RESIDENTS, SUN)), 60, "welcome replies")

            # a report, confirmed: the captain gets the task
            await post(U.message(WANG, text="/report 香港中路12号 路灯不亮三天了"))
            await until(lambda: any("rp:ok" in str(c.params.get("reply_markup")) for c in api.sent(WANG.id)), 60,
                        "the confirm screen")
            confirm = next(c for c in reversed(api.sent(WANG.id)) if "rp:ok" in str(c.params.get("reply_markup")))
            await post(U.callback(WANG, confirm.result, "rp:ok"))
            await until(lambda: any("香港中路12号" in (c.text or "") for c in api.sent(LI)), 60, "the captain's task")

            # a broadcast queued from the shell, delivered by whichever replicas claim its rows
            mark = api.mark()
            notice = "明天上午 9:00 停水，请提前储水。"
            await gridbot(environ(**base), "broadcast", "--text", notice, "--audience", "residents", "--yes")
            got = lambda: [c for c in api.sent(since=mark) if notice in (c.text or "")]  # noqa: E731
            everyone = {u.id for u in (*RESIDENTS, WANG)}
            await until(lambda: {int(c.params["chat_id"]) for c in got()} >= everyone, 120, "the broadcast")
            broadcast_calls = got()

            # the morning digest, run from the shell twice (two operators, or a retry)
            await gridbot(environ(**base), "jobs", "run", "digest")
            await gridbot(environ(**base), "jobs", "run", "digest")
            await until(lambda: _digest_to(api, LI), 60, "the captain's digest")
            await asyncio.sleep(2.0)  # anything sent twice would arrive by now
        finally:
            codes = [await r.stop() for r in replicas]
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(20)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()

    assert codes == [0, 0], "\n".join(line for r in replicas for line in r.lines[-20:])
    # once each: no chat got the same text twice
    sent = Counter((int(c.params["chat_id"]), c.text) for c in api.sent() if c.method.startswith("send"))
    twice = {k: n for k, n in sent.items() if n > 1}
    assert not twice, twice
    pushes = [t for (chat, t) in sent if chat == LI and "香港中路12号" in (t or "") and "待办任务" not in t]
    assert len(pushes) == 1, pushes  # the task (the digest lists it too)
    recipients = Counter(int(c.params["chat_id"]) for c in broadcast_calls)
    assert set(recipients) >= {u.id for u in RESIDENTS} and max(recipients.values()) == 1
    assert len(_digest_to(api, LI)) == 1
    # the rate is the bot's, not each replica's: broadcast sends in any one second, both replicas together
    times = sorted(c.time for c in broadcast_calls)
    per_second = max(sum(1 for t in times if s <= t < s + 1.0) for s in times)
    assert per_second <= RATE + 1, per_second
    # both replicas took webhook posts through nginx, every one answered 200
    log = (tmp_path / "access.log").read_text().splitlines()
    upstreams = Counter(a for line in log for a in re.findall(r"127\.0\.0\.1:\d+", line))
    assert all(line.startswith("200 ") for line in log), log[:10]
    assert {f"127.0.0.1:{p}" for p in ports} <= set(upstreams), upstreams
    print(f"\nnginx upstreams: {dict(upstreams)}; broadcast peak {per_second}/s at rate {RATE}; "
          f"{len(broadcast_calls)} notices")


def _digest_to(api: FakeBotAPI, chat: int) -> list:
    return [c for c in api.sent(chat) if "待办任务" in (c.text or "")]
