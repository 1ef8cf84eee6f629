"""Screenshots of the command centre with a few thousand made-up cases (docs/console/*.png).

    python scripts/console_screenshots.py [--out docs/console] [--n 3000]

Builds a temporary SQLite database with the sample grid and cases spread over the last eight
weeks (bench/console.py's generator, pins inside their areas), serves the console on 127.0.0.1,
signs the admin in with a one-time link, and saves full-page screenshots from headless Chromium
(Debian's chromium + chromedriver, as the browser test). The case file with its photo comes from
the browser test (GRIDBOT_SCREENSHOTS=docs/console pytest tests/test_console_browser.py).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGES = {"overview": "/console/", "map": "/console/map", "overdue": "/console/overdue"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shoot(base: str, link: str, out: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    profile = tempfile.mkdtemp(prefix="gridbot-shots-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,900",
                f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
    try:
        d.get(link)
        WebDriverWait(d, 15).until(EC.presence_of_element_located((By.ID, "n-open")))
        for name, path in PAGES.items():
            d.get(base + path)
            WebDriverWait(d, 15).until(EC.presence_of_element_located(
                (By.CSS_SELECTOR, "#map.loaded" if name == "map" else "main")))
            height = d.execute_script("return document.documentElement.scrollHeight")
            d.set_window_size(1280, min(max(height + 200, 900), 2400))
            time.sleep(0.5)
            d.save_screenshot(str(out / f"{name}.png"))
            d.set_window_size(1280, 900)
            print("saved", out / f"{name}.png")
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


async def main(out: Path, n: int) -> None:
    from sqlalchemy import select

    from bench.console import fill
    from bot.app import Core
    from bot.areas.models import Area, Category
    from bot.people.service import ensure_person
    from bot.runner import prepare_database
    from bot.settings import load_settings
    from bot.web import login_link, serve

    tmp = tempfile.mkdtemp(prefix="gridbot-shots-db-")
    port = free_port()
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp}/shots.db", admin_ids="9100",
                             bot_token="123456:SCREENSHOTS", web_host="127.0.0.1", web_port=port, web_base_url="")
    engine = await prepare_database(settings)
    core = Core(settings, engine=engine)
    now = datetime.now(timezone.utc)
    async with core.sessionmaker() as s, s.begin():
        leaves = list((await s.execute(select(Area).where(Area.level == 3))).scalars())
        cats = [c.id for c in (await s.execute(select(Category))).scalars()]
        await ensure_person(session=s, user_id=9100, name="孙敏", now=now)
    areas = [(a.id, a.captain_id or 1018) for a in leaves]
    boxes = {a.id: (min(p[1] for p in a.boundary), max(p[1] for p in a.boundary),
                    min(p[0] for p in a.boundary), max(p[0] for p in a.boundary)) for a in leaves}
    rng = random.Random(7)

    # bench's generator spreads cases over a year; here eight weeks, pins inside their areas
    import bench.console as gen

    make = gen.make_rows

    def rows_here(start_id, count, now_, areas_, cats_, rng_):
        rows = make(start_id, count, now_, areas_, cats_, rng_)
        for r in rows:
            r["created_at"] = now_ - (now_ - r["created_at"]) / 6.5
            r["assigned_at"] = r["updated_at"] = r["created_at"]
            for k in ("accepted_at", "resolved_at", "closed_at"):
                if r[k] is not None:
                    r[k] = min(r["created_at"] + timedelta(hours=rng_.uniform(1, 90)), now_)
            r["deadline_at"] = r["created_at"] + timedelta(hours=rng_.choice((24, 48, 72)))
            if now_ - r["created_at"] < timedelta(days=6) and rng_.random() < 0.3:
                r.update(status=rng_.choice(("new", "accepted", "accepted", "reopened")), resolved_at=None,
                         closed_at=None, rating=None, next_check_at=r["deadline_at"])
            elif r["status"] in ("new", "accepted", "reopened"):
                r.update(status="closed", resolved_at=min(r["created_at"] + timedelta(hours=20), now_),
                         closed_at=min(r["created_at"] + timedelta(hours=30), now_))
            lo_lat, hi_lat, lo_lon, hi_lon = boxes[r["area_id"]]
            r["lat"] = rng_.uniform(lo_lat + (hi_lat - lo_lat) * 0.15, hi_lat - (hi_lat - lo_lat) * 0.15)
            r["lon"] = rng_.uniform(lo_lon + (hi_lon - lo_lon) * 0.15, hi_lon - (hi_lon - lo_lon) * 0.15)
        return rows

    gen.make_rows = rows_here
    await fill(core.sessionmaker, 1, n, now, areas, cats, rng)
    web = await serve(core, "127.0.0.1", port)
    try:
        out.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shoot, f"http://127.0.0.1:{port}", login_link(settings, 9100), out)
    finally:
        await web.cleanup()
        await engine.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    ap.add_argument("--n", type=int, default=3000)
    args = ap.parse_args()
    asyncio.run(main(args.out, args.n))
