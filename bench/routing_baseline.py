"""Frozen copy of the address router as it was before issue 12 (the baseline of bench/routing.py; not used by the bot).

Only the address and pin routing is kept (category inference, the assignee rule and the
command line are not part of the comparison). Do not change it: it is what the new router is
measured against.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from rapidfuzz.distance import LCSseq

from bot.areas.grid_file import GridSpec, load_grid

__all__ = ["ADDRESS_THRESHOLD", "RouteResult", "Router", "normalize_text"]

# An address match must score at least this much to be routed (calibrated on
# tests/test_routing.py: true matches ≥ 75, one-character typos in 3-character names
# score 66.7 and are accepted only when a house number or 路/巷 context backs them).
ADDRESS_THRESHOLD = 70.0
_FUZZY_MIN = 60.0  # fuzzy hits below this are ignored altogether
_FUZZY_MIN_LATIN = 80.0  # letters are few: latin names need a closer match

_CJK_SUFFIXES = ("居委会", "号院", "小区", "社区", "街道", "花园", "家园", "路", "街", "道", "巷", "弄", "里", "院")
_LATIN_SUFFIXES = ("subdistrict", "community", "street", "garden", "road", "lane", "jie", "rd", "st", "lu")
# characters after a number that show it is not a house number (三天, 12路公交, 5个 …)
_NOT_HOUSE_UNITS = set("天日个次点米年月周时分辆棵盏根块层元岁路趟遍位人只条")
_DIGIT_RE = re.compile(r"\d{1,5}")

# ---------------------------------------------------------------------------- normalisation

_T2S = None


def _t2s():
    global _T2S
    if _T2S is None:
        import opencc  # opencc-python-reimplemented

        _T2S = opencc.OpenCC("t2s")
    return _T2S


_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_NUM_RE = re.compile(r"[零〇一二两三四五六七八九十百千]+(?=号)")


def _cn_to_int(s: str) -> int | None:
    if all(c in _CN_DIGITS for c in s):  # 一二三 → 123
        return int("".join(str(_CN_DIGITS[c]) for c in s))
    total, cur = 0, 0
    for c in s:
        if c in _CN_DIGITS:
            cur = _CN_DIGITS[c]
        elif c in _CN_UNITS:
            total += (cur or 1) * _CN_UNITS[c]
            cur = 0
        else:
            return None
    return total + cur


_KEEP_RE = re.compile(r"[^0-9a-z\u3400-\u9fff\-]+")


@lru_cache(maxsize=4096)
def normalize_text(text: str) -> str:
    """Traditional → Simplified, full-width → half-width, lower case, Chinese house
    numbers (十二号 → 12号), spaces and punctuation removed (``-`` kept for ranges)."""
    s = unicodedata.normalize("NFKC", text or "")
    s = _t2s().convert(s).lower()
    s = s.replace("#", "号").replace("號", "号")
    s = re.sub(r"[~—–―‐‑‒－〜～]", "-", s)
    s = _CN_NUM_RE.sub(lambda m: str(v) if (v := _cn_to_int(m.group(0))) is not None else m.group(0), s)
    return _KEEP_RE.sub("", s)


def _is_latin(s: str) -> bool:
    return bool(s) and all(c < "\u0250" for c in s)


def _strip_parens(s: str) -> str:
    return re.sub(r"[(（\[【].*?[)）\]】]", "", s)


def _stems(term: str) -> list[str]:
    """'浮山湾社区居委会' → ['浮山湾社区', '浮山湾']; 'minjiangroad' → ['minjiang']."""
    out = []
    cur = term
    latin = _is_latin(term)
    suffixes = _LATIN_SUFFIXES if latin else _CJK_SUFFIXES
    changed = True
    while changed:
        changed = False
        for suf in suffixes:
            if cur.endswith(suf) and len(cur) > len(suf):
                nxt = cur[: -len(suf)]
                if (latin and len(nxt) >= 5) or (not latin and len(nxt) >= 2):
                    cur = nxt
                    out.append(cur)
                    changed = True
                break
    return out


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RouteResult:
    area_id: str | None
    score: float  # 0-100
    candidates: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class _Term:
    text: str
    areas: set[str]
    weight: float  # 100 for a name / alias, less for a short stem
    roads: set[str]  # normalised road names this term stands for (house-number lookup)
    latin: bool


@dataclass
class _Hit:
    start: int
    end: int
    term: _Term
    score: float
    exact: bool
    area_id: str = ""
    areas: tuple[str, ...] = ()


# ---------------------------------------------------------------------------- router


class Router:
    """Built once from a GridSpec; all queries are read-only and thread-safe."""

    def __init__(self, grid: GridSpec, *, threshold: float = ADDRESS_THRESHOLD):
        self.grid = grid
        self.threshold = threshold
        self._areas = {a.id: a for a in grid.areas}
        self._depth = {a.id: a.level for a in grid.areas}
        self._order = {a.id: a.order for a in grid.areas}
        self._ancestors = {a.id: tuple(x.id for x in grid.ancestors(a.id)) for a in grid.areas}
        self._build_point_index()
        self._build_terms()  # (categories, the CLI and the assignee rule are not part of the baseline)

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> "Router":
        return cls(load_grid(path))

    # ------------------------------------------------------------------ tree helpers
    def _is_ancestor(self, anc: str, desc: str) -> bool:
        return anc in self._ancestors.get(desc, ())

    def _lca(self, ids: Iterable[str]) -> str | None:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return None
        if len(ids) == 1:
            return ids[0]
        common = None
        for i in ids:
            chain = (i,) + self._ancestors[i]
            common = list(chain) if common is None else [x for x in common if x in chain]
        return common[0] if common else None

    # ------------------------------------------------------------------ points
    def _build_point_index(self) -> None:
        import shapely
        from shapely.geometry import Polygon
        from shapely.strtree import STRtree

        ids, geoms = [], []
        for a in self.grid.areas:
            if a.boundary:
                ids.append(a.id)
                geoms.append(Polygon(a.boundary))
        self._poly_ids = ids
        self._polys = geoms
        for g in geoms:
            shapely.prepare(g)
        self._tree = STRtree(geoms) if geoms else None

    def route_point(self, lat: float, lon: float) -> RouteResult:
        """The deepest area whose polygon contains (lat, lon); edges count as inside and
        ties (shared edges) go to the area listed first in the grid file."""
        try:
            lat, lon = float(lat), float(lon)
        except (TypeError, ValueError):
            return RouteResult(None, 0.0, [])
        if not (math.isfinite(lat) and math.isfinite(lon)) or not (-90 <= lat <= 90 and -180 <= lon <= 180):
            return RouteResult(None, 0.0, [])
        if self._tree is None:
            return RouteResult(None, 0.0, [])
        from shapely.geometry import Point

        pt = Point(lon, lat)
        found = []
        for i in self._tree.query(pt):
            g = self._polys[int(i)]
            if g.intersects(pt):
                aid = self._poly_ids[int(i)]
                inside = g.contains_properly(pt)
                found.append((-self._depth[aid], not inside, self._order[aid], aid))
        if not found:
            return RouteResult(None, 0.0, [])
        found.sort()
        cands = [(f[3], 100.0) for f in found]
        return RouteResult(found[0][3], 100.0, cands)

    # ------------------------------------------------------------------ address index
    def _build_terms(self) -> None:
        terms: dict[str, _Term] = {}

        def add(text: str, area_id: str, weight: float, road: str | None = None) -> None:
            if not text:
                return
            latin = _is_latin(text)
            if (latin and len(text) < 4) or (not latin and len(text) < 2) or text.isdigit():
                return
            t = terms.get(text)
            if t is None:
                t = terms[text] = _Term(text, set(), weight, set(), latin)
            t.areas.add(area_id)
            t.weight = max(t.weight, weight)
            if road:
                t.roads.add(road)

        for a in self.grid.areas:
            roads = {normalize_text(r[0]) for r in a.numbers}
            forms = [a.name, *a.aliases]
            for f in forms:
                if re.search(r"\d+\s*[-~～—至到]\s*\d+", f):
                    continue  # number-range aliases are handled through ``numbers``
                n = normalize_text(_strip_parens(f))
                road = next((r for r in roads if n.startswith(r)), None)
                add(n, a.id, 100.0, road)
                for st in _stems(n):
                    add(st, a.id, 100.0 if len(st) >= 3 else 95.0, road)
                for seg in ("南段", "北段", "东段", "西段", "单号段", "双号段", "段"):
                    if n.endswith(seg) and len(n) > len(seg) + 1:
                        add(n[: -len(seg)], a.id, 100.0, road)
                        break
            for r in roads:
                add(r, a.id, 100.0, r)
                for st in _stems(r):
                    add(st, a.id, 100.0 if len(st) >= 3 else 95.0, r)
        # latin aliases shared by every numbered area of a road act as that road
        for t in terms.values():
            if t.latin and not t.roads:
                rs = [{normalize_text(r[0]) for r in self._areas[x].numbers} for x in t.areas]
                if rs and all(rs) and len(set.intersection(*rs)) >= 1:
                    t.roads = set.intersection(*rs)
        self._terms = terms
        self._terms_by_len = sorted(terms.values(), key=lambda t: (-len(t.text), t.text))
        # fuzzy candidates: terms long enough to be matched approximately
        # (segment names such as 香港中路单号段 are matched exactly only: nobody types them,
        # and their road part would fuzzy-match every address on the road)
        self._fuzzy_terms = [t for t in terms.values()
                             if (len(t.text) >= 5 if t.latin else len(t.text) >= 3) and not t.text.endswith("段")]
        self._char_index: dict[str, list[int]] = {}
        for i, t in enumerate(self._fuzzy_terms):
            for c in set(t.text):
                self._char_index.setdefault(c, []).append(i)
        # numbered areas: normalised road → [(area_id, from, to, parity)]
        self._ranges: dict[str, list[tuple[str, int, int, str]]] = {}
        for a in self.grid.areas:
            for road, lo, hi, par in a.numbers:
                self._ranges.setdefault(normalize_text(road), []).append((a.id, lo, hi, par))

    # ------------------------------------------------------------------ address routing
    def _exact_hits(self, s: str) -> list[_Hit]:
        hits = []
        for t in self._terms_by_len:
            i = s.find(t.text)
            while i >= 0:
                hits.append(_Hit(i, i + len(t.text), t, t.weight, True))
                i = s.find(t.text, i + 1)
        # drop hits lying inside a longer (or equal, better) hit
        hits.sort(key=lambda h: (-(h.end - h.start), -h.score))
        kept: list[_Hit] = []
        for h in hits:
            if any(k.start <= h.start and h.end <= k.end for k in kept):
                continue
            kept.append(h)
        return kept

    def _fuzzy_hits(self, s: str, exact: list[_Hit]) -> list[_Hit]:
        counts: dict[int, int] = {}
        for c in set(s):
            for i in self._char_index.get(c, ()):
                counts[i] = counts.get(i, 0) + 1
        exact_terms = {h.term.text for h in exact}
        hits = []
        n = len(s)
        for i, shared in counts.items():
            t = self._fuzzy_terms[i]
            tchars = set(t.text)
            if shared < 2 or shared < math.ceil(len(tchars) * 0.6) or t.text in exact_terms:
                continue
            L = len(t.text)
            best, bstart, bend = 0.0, 0, 0
            for start in range(n):
                if s[start] not in tchars and (start + 1 >= n or s[start + 1] not in tchars):
                    continue
                for w in (L - 1, L, L + 1):
                    end = start + w
                    if w < 2 or end > n:
                        continue
                    lcs = LCSseq.similarity(t.text, s[start:end])
                    if lcs < 2:
                        continue
                    # share of the name found, extra characters penalised; a same-length
                    # window with one wrong character (奥门路 for 澳门路, typical of pinyin
                    # input) is a little more likely than a dropped character
                    sc = 100.0 * lcs / max(L, w)
                    if w == L and lcs == L - 1 and L >= 4:
                        sc += 5.0
                    if sc > best:
                        best, bstart, bend = sc, start, end
            if best < (_FUZZY_MIN_LATIN if t.latin else _FUZZY_MIN):
                continue
            # trim the window to the part that actually matches (so house numbers after it are found)
            while bend > bstart + 1 and s[bend - 1] not in tchars:
                bend -= 1
            if re.match(r"(?:的|第)?\d{1,5}(?:号|$|[^\d天日个次点米年月周时分辆棵盏根块层元岁路])", s[bend:]):
                best += 8.0  # followed by a house number: an address for sure
            hits.append(_Hit(bstart, bend, t, min(99.0, best) * t.weight / 100.0, False))
        return hits

    def _house_number(self, s: str, h: _Hit) -> int | None:
        after = s[h.end:]
        m = re.match(r"(?:[a-z]{0,6}|的|第)(\d{1,5})" if h.term.latin else r"(?:的|第|no)?(\d{1,5})", after)
        if m:
            nxt = after[m.end(): m.end() + 1]
            if nxt == "号" or (nxt not in _NOT_HOUSE_UNITS and not after[m.end():].startswith("小时")):
                return int(m.group(1))
        if h.term.latin:
            m = re.search(r"(\d{1,5})(?:号)?$", s[: h.start])
            if m:
                return int(m.group(1))
        m = re.search(r"(\d{1,5})号", s) or re.search(r"no(\d{1,5})", s)
        if m:
            return int(m.group(1))
        return None

    def _resolve(self, s: str, h: _Hit) -> None:
        areas = set(h.term.areas)
        if h.term.roads:
            num = self._house_number(s, h)
            if num is not None:
                matched = set()
                for road in h.term.roads:
                    for aid, lo, hi, par in self._ranges.get(road, ()):
                        if aid in areas and lo <= num <= hi and (
                                par == "all" or (par == "odd") == (num % 2 == 1)):
                            matched.add(aid)
                if matched:
                    areas = matched
        h.areas = tuple(sorted(areas, key=lambda x: self._order[x]))
        h.area_id = self._lca(areas) or ""

    def route_address(self, text: str) -> RouteResult:
        s = normalize_text(text or "")
        if not s:
            return RouteResult(None, 0.0, [])
        exact = self._exact_hits(s)
        fuzzy = self._fuzzy_hits(s, exact)
        for h in exact:
            self._resolve(s, h)
        for h in fuzzy:
            self._resolve(s, h)
        # a fuzzy hit overlapping an exact hit (or a better fuzzy hit) by half is dropped,
        # unless it is longer and names a place inside the exact hit's area
        # (浮山湾花圆: fuzzy 浮山湾花园 refines the exact 浮山湾)
        hits = [h for h in exact if h.area_id]
        for f in sorted(fuzzy, key=lambda h: (-h.score, -(h.end - h.start))):
            if not f.area_id:
                continue
            flen = f.end - f.start
            clash = False
            for k in hits:
                if min(f.end, k.end) - max(f.start, k.start) > flen / 2:
                    if (k.exact and flen > k.end - k.start and f.score >= 80.0
                            and self._is_ancestor(k.area_id, f.area_id)):
                        continue
                    clash = True
                    break
            if not clash:
                hits.append(f)
        if not hits:
            return RouteResult(None, 0.0, [])
        # a hit refined by a deeper, consistent hit gives way (湛山社区 + 东海西路12号 → donghai-w)
        good = [h for h in hits if h.score >= self.threshold]
        pruned = [h for h in hits if not any(
            g is not h and self._is_ancestor(h.area_id, g.area_id) for g in good)]
        pruned.sort(key=lambda h: (-h.score, -(h.end - h.start), -self._depth[h.area_id], self._order[h.area_id]))
        best = pruned[0]
        score = best.score
        area_id = best.area_id
        # two equally good answers in unrelated branches (香港中路和福州南路交叉口): the
        # area holding both, a little less confident
        for other in pruned[1:]:
            if (other.area_id != best.area_id and other.score >= best.score - 1
                    and not self._is_ancestor(other.area_id, best.area_id)
                    and not self._is_ancestor(best.area_id, other.area_id)
                    and (other.end - other.start) >= (best.end - best.start)):
                area_id = self._lca([best.area_id, other.area_id]) or best.area_id
                score -= 10
                break
        cands: dict[str, float] = {}
        for h in pruned:
            cands[h.area_id] = max(cands.get(h.area_id, 0.0), h.score)
            if len(h.areas) > 1:  # an ambiguous road: offer its segments too
                for x in h.areas:
                    cands.setdefault(x, round(h.score * 0.9, 1))
        cand_list = sorted(cands.items(), key=lambda kv: (-kv[1], self._order[kv[0]]))[:6]
        score = round(max(0.0, min(100.0, score)), 1)
        return RouteResult(area_id if score >= self.threshold else None, score,
                           [(a, round(v, 1)) for a, v in cand_list])

    def route(self, address: str | None = None, lat: float | None = None, lon: float | None = None) -> RouteResult:
        """A pin when given (and inside the grid), else the address."""
        if lat is not None and lon is not None:
            r = self.route_point(lat, lon)
            if r.area_id is not None or not address:
                return r
        if address:
            return self.route_address(address)
        return RouteResult(None, 0.0, [])
