"""The command centre in a real headless browser (Debian's chromium + chromedriver, Selenium).

One browser, one bot (aiogram, polling the fake Bot API, the console on its own port), one walk:
sign in through a validated initData; the overview; the map with its pins and polygons; a case file
with its photo; a transfer that reaches the new captain's chat through the fake Bot API; a form
without its CSRF token refused; another community's supervisor refused (403); forged and stale
initData refused; the one-time /console link.

Set GRIDBOT_SCREENSHOTS=docs/console to save the case file and unanswered-questions screenshots
(docs/console; scripts/console_screenshots.py takes the overview, map and overdue board with a few
thousand cases).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import SUN, TOKEN
from tests.console_seed import PHOTO_ID, init_data, png_bytes, seed
from tests.harness import BotHarness

SUP_ZHANSHAN, NEW_CAPTAIN = 2003, 1007
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SHOTS = os.environ.get("GRIDBOT_SCREENSHOTS", "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromedriver are needed (apt-get install chromium chromium-driver; .ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="gridbot-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--lang=zh-CN", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


class Page:
    """Blocking Selenium calls, run in a thread so the bot's event loop keeps serving."""

    def __init__(self, driver, base: str) -> None:
        self.d = driver
        self.base = base

    async def run(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    def _wait(self, cond, timeout=10):
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.d, timeout).until(cond)

    def _css(self, sel: str, timeout=10):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        return self._wait(EC.presence_of_element_located((By.CSS_SELECTOR, sel)), timeout)

    async def open(self, path: str, wait_for: str = "main"):
        def go():
            self.d.get(self.base + path)
            self._css(wait_for)
            return self.d.page_source

        return await self.run(go)

    async def text(self, sel: str) -> str:
        return await self.run(lambda: self._css(sel).text)

    async def js(self, script: str, *args):
        return await self.run(self.d.execute_script, script, *args)

    async def shot(self, name: str) -> None:
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            def full_page():
                height = self.d.execute_script("return document.documentElement.scrollHeight")
                self.d.set_window_size(1280, min(max(height + 200, 900), 2400))
                time.sleep(0.3)
                self.d.save_screenshot(str(Path(SHOTS) / f"{name}.png"))
                self.d.set_window_size(1280, 900)

            await self.run(full_page)

    async def sign_in(self, user_id: int, name: str = "孙敏", *, auth_date: int | None = None,
                      forge: bool = False) -> str:
        data = init_data(TOKEN, user_id, name, auth_date=auth_date)
        if forge:
            data = data.replace("%22id%22%3A" + str(user_id), "%22id%22%3A9100")
        await self.run(self.d.delete_all_cookies)
        # how Telegram opens a Mini App: the signed initData in the URL fragment
        frag = "tgWebAppData=" + quote(data, safe="") + "&tgWebAppVersion=8.0&tgWebAppPlatform=web"

        def go():
            self.d.get("about:blank")  # a new fragment alone would not reload the page
            self.d.get(f"{self.base}/console/app#{frag}")
            return self._css("#n-open, #signin-refused").get_attribute("id")

        return await self.run(go)


async def test_console_in_a_browser(browser, tmp_path, settings_for):
    port = free_port()
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'console.db'}"
    # map tiles from a tile server on 127.0.0.1 (the console's own static files stand in for one)
    tiles = f"http://127.0.0.1:{port}/console/static/leaflet/images/layers-2x.png?z={{z}}&x={{x}}&y={{y}}"
    async with BotHarness("aiogram", db_url, settings_for, web_port=port, tile_url=tiles) as h:
        from bot.clock import utcnow

        cases = await seed(h.core, utcnow())
        # the report's photo is a real image in the fake Bot API's file store
        h.api._register_file_id(PHOTO_ID, "console-photo")
        h.api.files[PHOTO_ID].data = png_bytes()
        p = Page(browser, f"http://127.0.0.1:{port}")

        # --- sign in as the admin through a validated initData; the overview ---------------------------
        assert await p.sign_in(SUN.id) == "n-open"
        assert await p.text("#n-open") == "3" and await p.text("#n-overdue") == "1"
        rates = await p.text("#rates")
        assert "浮山湾社区" in rates and "观海社区" in rates and "湛山第一网格" in rates
        assert len(await p.js("return document.querySelectorAll('#trend .bar')")) == 8

        # --- the map: polygons of the grid and a pin per open case with a location ---------------------
        await p.open("/console/map", "#map.loaded")
        n_areas = await p.js("return document.querySelectorAll('path.gb-area').length")
        n_pins = await p.js("return document.querySelectorAll('path.gb-pin').length")
        assert n_areas == 30 and n_pins == 3
        assert await p.js("return document.querySelectorAll('path.gb-overdue').length") == 1
        await p.run(lambda: p._wait(lambda d: d.execute_script(
            "return [...document.querySelectorAll('img.leaflet-tile')].some(i => i.complete && i.naturalWidth > 0)")))
        scripts = await p.js("return [...document.scripts].map(s => s.src).filter(Boolean)")
        assert scripts and all(s.startswith(p.base) for s in scripts)  # nothing from a CDN
        await p.open("/console/map?category=garbage", "#map.loaded")
        assert await p.js("return document.querySelectorAll('path.gb-pin').length") == 1

        await p.open("/console/overdue", "#board")
        assert f"#{cases.road}" in await p.text("#board")
        await p.open("/console/faq", "#faq")
        assert "垃圾分类几点收" in await p.text("#faq")
        await p.shot("faq")

        # --- a case file with its photo ---------------------------------------------------------------
        await p.open(f"/console/case/{cases.lamp}", "#history")
        await p.run(lambda: p._wait(lambda d: d.execute_script(
            "const i = document.querySelector('img.photo'); return i && i.complete && i.naturalWidth > 0")))
        assert await p.js("return document.querySelector('img.photo').naturalWidth") == 320
        assert "孙敏" in await p.text("#seen-by")
        await p.shot("case")

        # --- a form without its CSRF token is refused -----------------------------------------------------
        def post_without_csrf():
            p.d.execute_script("""const f = document.getElementById('form-note');
                f.querySelector('[name=csrf]').remove(); f.querySelector('[name=note]').value = 'x'; f.submit();""")
            return p._css("#error").get_attribute("data-code")

        assert await p.run(post_without_csrf) == "403"

        # --- transfer: the new captain's chat receives the task through the fake Bot API ------------------
        await p.open(f"/console/case/{cases.lamp}", "#form-transfer")
        mark = h.api.mark()

        def transfer():
            from selenium.webdriver.support.ui import Select

            f = p._css("#form-transfer")
            Select(f.find_element("name", "area")).select_by_value("yanerdao-n")
            f.find_element("name", "reason").send_keys("地址在燕儿岛路北段")
            f.find_element("css selector", "button").click()
            return p._css("#flash").text

        assert await p.run(transfer) == "已转办。"
        assert await p.text("#case-area") == "燕儿岛路北段"
        call = await h.api.wait_for(lambda c: c.chat_id == NEW_CAPTAIN and "地址在燕儿岛路北段" in (c.text or ""),
                                    timeout=15, since=mark)
        assert "转办" in call.text and f"#{cases.lamp}" in call.text

        # --- another community's supervisor: their own cases yes, this one 403 ----------------------------
        assert await p.sign_in(SUP_ZHANSHAN) == "n-open"
        await p.open(f"/console/case/{cases.road}", "#history")
        await p.open(f"/console/case/{cases.garbage}", "#error")
        assert await p.js("return document.getElementById('error').dataset.code") == "403"

        # --- forged and stale initData are refused ----------------------------------------------------------
        assert await p.sign_in(SUP_ZHANSHAN, forge=True) == "signin-refused"
        assert "wrong hash" in await p.text("#signin-refused")
        assert await p.sign_in(SUN.id, auth_date=int(time.time()) - 3 * 86400) == "signin-refused"
        assert "stale" in await p.text("#signin-refused")
        await p.open("/console/", "#error")
        assert await p.js("return document.getElementById('error').dataset.code") == "401"

        # --- /console in a private chat: a one-time link ------------------------------------------------------
        reply = (await h.say(SUN, "/console"))[-1]
        link = re.search(r"http://\S+", reply.text).group(0)
        await p.open(link.removeprefix(p.base), "#n-open")
        await p.run(p.d.delete_all_cookies)
        await p.open(link.removeprefix(p.base), "#error")  # spent
