"""Message catalogs: Simplified Chinese (default), English, and Traditional Chinese rendering.

Catalogs are YAML files under ``bot/i18n/<lang>/`` (one file per domain: ``core.yaml``,
``cases.yaml``, ``faq.yaml`` …), merged at first use. Keys are dotted names; values are
``str.format`` templates in Telegram HTML. Parameters are HTML-escaped when rendered unless
wrapped in :class:`Safe`, so user text can never break the markup.
"""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
DEFAULT_LANG = "zh"
LANGS = ("zh", "en", "zh-hant")
_DIRS = {"zh": "zh_Hans", "en": "en"}


class Safe(str):
    """Already-rendered HTML: inserted into a template as is."""


def escape(text: Any) -> str:
    return html.escape(str(text), quote=False)


@lru_cache(maxsize=None)
def catalog(lang: str) -> dict[str, str]:
    folder = HERE / _DIRS.get(lang, _DIRS[DEFAULT_LANG])
    merged: dict[str, str] = {}
    for path in sorted(folder.glob("*.yaml")):
        # libyaml's loader when PyYAML has it: the catalogs load in a fraction of the time
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        _flatten("", data, merged, path)
    return merged


def _flatten(prefix: str, node: Any, out: dict[str, str], path: Path) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _flatten(f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}", v, out, path)
    else:
        key = prefix.rstrip(".")
        if key in out:
            raise ValueError(f"{path.name}: duplicate catalog key {key}")
        out[key] = str(node)


def pick_language(code: str | None) -> str:
    """Telegram language_code → one of LANGS."""
    if not code:
        return DEFAULT_LANG
    c = code.lower().replace("_", "-")
    if c.startswith("en"):
        return "en"
    if c in ("zh-hant", "zh-tw", "zh-hk", "zh-mo") or c.startswith("zh-hant"):
        return "zh-hant"
    return DEFAULT_LANG


@lru_cache(maxsize=1)
def _s2t():
    import opencc  # loads its dictionaries: only for a Traditional Chinese reader

    return opencc.OpenCC("s2t")


class Texts:
    """The catalog for one language, bound for rendering."""

    def __init__(self, lang: str = DEFAULT_LANG) -> None:
        self.lang = lang if lang in LANGS else DEFAULT_LANG
        self._base = "en" if self.lang == "en" else "zh"

    def __call__(self, key: str, /, **params: Any) -> str:
        return self.t(key, **params)

    def has(self, key: str) -> bool:
        return key in catalog(self._base)

    def template(self, key: str) -> str:
        """The raw template of `key` (str.format syntax; its parameters unescaped)."""
        template = catalog(self._base).get(key)
        if template is None:
            template = catalog(DEFAULT_LANG).get(key)
        if template is None:
            raise KeyError(f"no catalog entry {key!r}")
        return template

    def t(self, key: str, /, **params: Any) -> str:
        template = self.template(key)
        safe = {k: (v if isinstance(v, Safe) else escape(v) if isinstance(v, str) else v) for k, v in params.items()}
        text = template.format(**safe)
        if self.lang == "zh-hant":
            text = _s2t().convert(text)
        return text


def texts(lang: str | None) -> Texts:
    return Texts(lang or DEFAULT_LANG)
