"""The message catalogs: both languages complete, placeholders matching, every key used exists."""

from __future__ import annotations

import re
import string
from pathlib import Path

from bot.i18n import Texts, catalog, pick_language
from bot.outbox.kinds import MessageKind

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = sorted({k.split(".")[0] for k in catalog("zh")})


def fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def test_both_languages_have_the_same_keys_and_placeholders():
    zh, en = catalog("zh"), catalog("en")
    assert set(zh) == set(en), set(zh) ^ set(en)
    for key in zh:
        assert fields(zh[key]) == fields(en[key]), key


def test_every_key_the_code_uses_exists():
    # keys passed to the catalog: t("…"), ctx.say("…"), key="…", and conditional keys "a" if … else "b"
    pattern = re.compile(r"""(?:\bt|\bsay|key=|else|[^y]\()\(?\s*["']((?:%s)\.[a-z0-9_]+)["']""" % "|".join(SECTIONS))
    used = set()
    for folder in ("bot", "handlers", "scheduler", "knowledge"):
        for path in (ROOT / folder).rglob("*.py"):
            used |= set(pattern.findall(path.read_text(encoding="utf-8")))
    missing = sorted(k for k in used if k not in catalog("zh"))
    assert not missing, missing


def test_every_message_kind_has_text_in_every_language():
    for lang in ("zh", "en"):
        missing = [k.value for k in MessageKind if not catalog(lang).get(k.key)]
        assert not missing, (lang, missing)
    assert {k.removeprefix("kind.") for k in catalog("zh") if k.startswith("kind.")} == {k.value for k in MessageKind}


def test_language_is_picked_from_telegram_and_traditional_is_rendered():
    assert pick_language("en-US") == "en" and pick_language("zh-hans") == "zh" and pick_language(None) == "zh"
    assert pick_language("zh-TW") == "zh-hant"
    assert Texts("zh-hant")("core.cancelled") == "已取消。"
    assert "幫助" in Texts("zh-hant")("menu.help")


def test_user_text_is_escaped_in_every_template():
    out = Texts("zh")("report.place_unknown", address="<b>&")
    assert "&lt;b&gt;&amp;" in out
