"""Homophone typo correction against the knowledge base's own vocabulary (``pypinyin``).

Residents type with pinyin input methods, so a typo is usually another word with the same sound
(路登 for 路灯, 拉圾 for 垃圾). The hand-written table in ``synonyms.yaml`` covers a few; this covers
the rest: a 2–4 character window of the query is replaced by a knowledge-base word only when

* its toneless pinyin equals the pinyin of exactly one knowledge-base word (never a guess between two),
* it is not already that word, nor a common word of its own (jieba's dictionary frequency), and
* it contains no function character (unguarded, 那个 becomes 哪个 and 谁管 becomes 水管).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from functools import lru_cache
from typing import Iterable

__all__ = ["HomophoneFixer", "FUNCTION_CHARS"]

# Pronouns, question words, particles, copulas and other characters a real topic word here never
# needs a homophone of: a window holding one is left alone.
FUNCTION_CHARS = frozenset(
    "的地得了着过是在有我你您他她它们这那哪谁什么啥咋怎吗呢吧啊呀嘛哦么要想会能可以就都也还又再很太"
    "不没别和跟与或把被给对向让为从到去来上下里中个些点儿子一二三几多少每各该吧呗啦咯嗯喂哈")
COMMON_FREQ = 30   # a window jieba knows with at least this frequency is a real word: not a typo
_CJK_RUN = re.compile(r"[\u3400-\u9fff]+")


@lru_cache(maxsize=1)
def _readings() -> dict[int, str]:
    """pypinyin's character table (``pinyin_dict.json``), read without importing the ``pypinyin``
    package: its ``__init__`` also loads the phrase dictionary — some 200,000 Python lists and
    dicts that every full garbage collection would then walk (hundreds of ms, on any thread,
    stalling the event loop) — which character readings do not need."""
    import importlib.util
    import json

    spec = importlib.util.find_spec("pypinyin")  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pypinyin is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "pinyin_dict.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {int(k): v for k, v in raw.items()}


@lru_cache(maxsize=65536)
def _char_sound(ch: str) -> str:
    """Toneless first reading of one character (``?`` when it has none): one table look-up, the
    same for the knowledge base's words and the query, so both sides always agree."""
    r = _readings().get(ord(ch))
    if not r:
        return "?"
    first = unicodedata.normalize("NFD", r.split(",")[0])
    return "".join(c for c in first if not unicodedata.combining(c))


def _pinyin():
    return lambda text: [_char_sound(c) for c in text]


class HomophoneFixer:
    """Built from the knowledge base's words; ``fix(norm)`` is read-only and thread-safe."""

    def __init__(self, words: Iterable[str], common: "dict[str, int] | None" = None) -> None:
        py = _pinyin()
        by_sound: dict[str, set[str]] = {}
        self.vocab: frozenset[str] = frozenset(
            w for w in words if 2 <= len(w) <= 4 and _CJK_RUN.fullmatch(w) and not (set(w) & FUNCTION_CHARS))
        for w in self.vocab:
            by_sound.setdefault(" ".join(py(w)), set()).add(w)
        self._sound = {k: next(iter(v)) for k, v in by_sound.items() if len(v) == 1}
        self._common = common or {}

    def __len__(self) -> int:
        return len(self._sound)

    def fix(self, norm: str) -> str:
        if not self._sound or not norm:
            return norm
        return _CJK_RUN.sub(lambda m: self._fix_run(m.group(0)), norm)

    def _fix_run(self, run: str) -> str:
        if len(run) < 2:
            return run
        sounds = _pinyin()(run)
        out: list[str] = []
        i, n = 0, len(run)
        while i < n:
            done = False
            for size in (4, 3, 2):
                if i + size > n:
                    continue
                w = run[i:i + size]
                if w in self.vocab:  # already a knowledge-base word: keep it whole
                    out.append(w)
                    i += size
                    done = True
                    break
                if set(w) & FUNCTION_CHARS or self._common.get(w, 0) >= COMMON_FREQ:
                    continue
                target = self._sound.get(" ".join(sounds[i:i + size]))
                if target is not None:
                    out.append(target)
                    i += size
                    done = True
                    break
            if not done:
                out.append(run[i])
                i += 1
        return "".join(out)
