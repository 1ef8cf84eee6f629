"""Routing engine: a typed address or a location pin → the responsible area and person.

Pure Python (shapely, rapidfuzz, OpenCC, pypinyin); no database, no Telegram.

* ``Router(grid).route_point(lat, lon)`` – the deepest area whose polygon holds the point;
  ``near`` lists neighbouring units within ``NEAR_METERS`` (the bot then asks which side).
* ``Router(grid).route_address(text)`` – area names / aliases found in free text
  (Traditional or Simplified, full- or half-width, typos, homophones, missing 路/街 suffixes,
  pinyin and English, house numbers resolved to road-segment micro-grids, landmarks after
  靠/靠近/挨着/近/离/往/朝 used only to break ties).  An address naming a province, city or
  county outside the grid's home region (``bot/areas/gazetteer.py``) routes to nothing and
  says so in ``outside``.
* ``Router.assignee_for(area_id)`` – captain of the deepest area with a captain going up
  the tree, failing that the first supervisor up the tree.
* ``Router.infer_category(text)`` – categories ranked by keyword / fuzzy match.
* ``route_json`` – one answer of the ``gridbot grid route`` contract (SPEC.md; the command is
  ``bot.cli.route_cli_main``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from rapidfuzz import fuzz
from rapidfuzz.distance import LCSseq

from bot.areas.grid_file import DEFAULT_GRID_PATH, GridSpec, load_grid

__all__ = [
    "ADDRESS_THRESHOLD",
    "NEAR_METERS",
    "RouteResult",
    "Router",
    "get_router",
    "normalize_text",
    "route_json",
]

# An address match must score at least this much to be routed (calibrated on
# tests/test_routing.py: true matches ≥ 75, one-character typos in 3-character names
# score 66.7 and are accepted only when a house number or 路/巷 context backs them).
ADDRESS_THRESHOLD = 70.0
NEAR_METERS = 30.0  # a pin this close to a neighbouring unit asks the resident which side
_FUZZY_MIN = 60.0  # fuzzy hits below this are ignored altogether
_FUZZY_MIN_LATIN = 80.0  # letters are few: latin names need a closer match

_ESTATE_SUFFIXES = ("花园", "家园", "小区", "新村", "苑", "公寓", "大厦")
_CJK_SUFFIXES = ("居委会", "号院", "小区", "社区", "街道", "花园", "家园", "新村", "公寓", "大厦",
                 "路", "街", "道", "巷", "弄", "里", "院", "苑")
_LATIN_SUFFIXES = ("subdistrict", "community", "street", "garden", "road", "lane", "jie", "rd", "st", "lu")
# suffix → how it is written in pinyin and English (generated Latin aliases)
_SUFFIX_LATIN = {
    "路": ("lu", "road", "rd"), "街": ("jie", "street", "st"), "道": ("dao", "road"), "大道": ("dadao", "avenue"),
    "巷": ("xiang", "lane"), "弄": ("nong", "lane"), "里": ("li",), "花园": ("huayuan", "garden"),
    "家园": ("jiayuan", "garden"), "新村": ("xincun", "newvillage"), "小区": ("xiaoqu", "estate"),
    "社区": ("shequ", "community"), "街道": ("jiedao", "subdistrict"), "苑": ("yuan", "garden"),
    "公寓": ("gongyu", "apartments"), "大厦": ("dasha", "building", "tower"),
}
_DIRECTION_LATIN = {"东": ("dong", "east"), "西": ("xi", "west"), "南": ("nan", "south"),
                    "北": ("bei", "north"), "中": ("zhong", "middle")}
# qualifiers: the place after one of these is a landmark beside the target, not the target
_QUALIFIER_RE = re.compile(r"(?:斜对面|对面|旁边|边上|隔壁|附近|后面|前面)是|靠近|挨着|靠|近|离|往|朝")
# …and a place followed by one of these (海滨小学旁边的福州南路, 福州南路5号，五十三中对面)
_AFTER_QUALIFIER_RE = re.compile(r"(?:的)?(?:斜对面|对面|旁边|边上|隔壁|附近|周边|后面|背后|旁)")
# a grid word directly followed by one of these is a division (海口市, 福州市), not the grid's place
_DIVISION_AFTER = set("市省区县")
_NOT_DIVISION_AFTER = ("市场", "市民", "市集", "区域")
# characters after a number that show it is not a house number (三天, 12路公交, 5个 …)
_NOT_HOUSE_UNITS = set("天日个次点米年月周时分辆棵盏根块层元岁路趟遍位人只条")
_DIGIT_RE = re.compile(r"\d{1,5}")
_CLAUSE_RE = re.compile(r"[，,。；;！!？?、\n]+")

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
# Latin house numbers: "No. 12", "no12", "12 hao", "#12"
_LATIN_NO_RE = re.compile(r"(?<![a-z])(?:no|nr|number)\.?\s*(\d{1,5})(?![\d])")
_LATIN_HAO_RE = re.compile(r"(\d{1,5})\s*hao(?![a-z]*lu)")


def _fold_latin(s: str) -> str:
    """Tone marks and other accents off Latin letters (Xiānggǎng → xianggang, lǜ → lv)."""
    if all(c < "\u00c0" or c >= "\u2e80" for c in s):
        return s
    s = s.replace("ü", "v").replace("Ü", "v").replace("ǖ", "v").replace("ǘ", "v").replace("ǚ", "v").replace("ǜ", "v")
    out = []
    for c in s:
        if "\u00c0" <= c < "\u2e80":
            c = "".join(x for x in unicodedata.normalize("NFKD", c) if not unicodedata.combining(x))
        out.append(c)
    return "".join(out)


@lru_cache(maxsize=4096)
def normalize_text(text: str) -> str:
    """Traditional → Simplified, full-width → half-width, lower case, Chinese house
    numbers (十二号 → 12号), Latin house numbers (No. 12, 12 hao → 12号), tone marks off,
    spaces and punctuation removed (``-`` kept for ranges)."""
    s = unicodedata.normalize("NFKC", text or "")
    s = _fold_latin(_t2s().convert(s).lower())
    s = s.replace("#", "号").replace("號", "号")
    s = re.sub(r"[~—–―‐‑‒－〜～]", "-", s)
    if "no" in s or "nr" in s or "number" in s:
        s = _LATIN_NO_RE.sub(r"\1号", s)
    if "hao" in s:
        s = _LATIN_HAO_RE.sub(r"\1号", s)
    s = _CN_NUM_RE.sub(lambda m: str(v) if (v := _cn_to_int(m.group(0))) is not None else m.group(0), s)
    return _KEEP_RE.sub("", s)


@lru_cache(maxsize=4096)
def _prepare(text: str) -> tuple[str, tuple[int, ...]]:
    """The normalised text and where its clauses end (commas and the like)."""
    parts = [normalize_text(p) for p in _CLAUSE_RE.split(text or "")]
    s, ends, pos = "", [], 0
    for p in parts:
        if p:
            s += p
            pos += len(p)
            ends.append(pos)
    return s, tuple(ends)


def _is_latin(s: str) -> bool:
    return bool(s) and all(c < "\u0250" for c in s)


def _is_cjk(s: str) -> bool:
    return bool(s) and all("\u3400" <= c <= "\u9fff" for c in s)


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


@lru_cache(maxsize=8192)
def _readings(c: str) -> frozenset[str]:
    """Every toneless pinyin reading of one character (empty for non-Chinese)."""
    if not ("\u3400" <= c <= "\u9fff"):
        return frozenset()
    from pypinyin import Style, pinyin

    return frozenset(pinyin(c, heteronym=True, style=Style.NORMAL, errors="ignore")[0])


def _pinyin(term: str) -> list[str]:
    """Toneless pinyin of a pure-Chinese term, one syllable per character, read as a phrase
    (重庆 → chong qing)."""
    from pypinyin import lazy_pinyin

    syl = lazy_pinyin(term)
    return syl if len(syl) == len(term) else []


def _latin_forms(term: str) -> set[str]:
    """Pinyin and English spellings of a Chinese name, with and without its suffix:
    东海西路 → donghaixilu, donghaixiroad, donghaiwestroad, westdonghairoad, donghaixi …"""
    syl = _pinyin(term)
    if not syl:
        return set()
    forms = {"".join(syl)}
    suf = next((x for x in sorted(_SUFFIX_LATIN, key=len, reverse=True)
                if term.endswith(x) and len(term) > len(x) + 1), None)
    core_n = len(term) - len(suf) if suf else len(term)
    d = term[core_n - 1] if core_n >= 3 and term[core_n - 1] in _DIRECTION_LATIN else None
    stem_n = core_n - 1 if d else core_n
    stem = "".join(syl[:stem_n])
    d_forms = [""] if d is None else list(_DIRECTION_LATIN[d])
    s_forms = [""] + (list(_SUFFIX_LATIN[suf]) if suf else [])
    for df in d_forms:
        for sf in s_forms:
            forms.add(stem + df + sf)
            if df and sf and not sf.isalpha():
                continue
            if df in ("east", "west", "south", "north", "middle") and sf:
                forms.add(df + stem + sf)  # West Donghai Road
                forms.add(stem + sf + df)  # Donghai Road West
    forms |= {f.replace("v", "u") for f in forms if "v" in f}  # lü typed as lu
    return {f for f in forms if len(f) >= 4}


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RouteResult:
    area_id: str | None
    score: float  # 0-100
    candidates: list[tuple[str, float]] = field(default_factory=list)
    # the division named in the address when it lies outside the grid's home region
    outside: str | None = None
    # a pin within NEAR_METERS of these other units (the resident is asked which side)
    near: tuple[str, ...] = ()


@dataclass
class _Term:
    text: str
    areas: set[str]
    weight: float  # 100 for a name / alias, less for a short stem
    roads: set[str]  # normalised road names this term stands for (house-number lookup)
    latin: bool
    needs_number: bool = False  # a two-character estate stem: only with a number after it


@dataclass
class _Hit:
    start: int
    end: int
    term: _Term
    score: float
    exact: bool
    area_id: str = ""
    areas: tuple[str, ...] = ()
    landmark: bool = False
    numbered: bool = False  # narrowed down by a house number


# ---------------------------------------------------------------------------- router


class Router:
    """Built once from a GridSpec; all queries are read-only and thread-safe."""

    def __init__(self, grid: GridSpec, *, threshold: float = ADDRESS_THRESHOLD, gazetteer: bool = True):
        self.grid = grid
        self.threshold = threshold
        self._areas = {a.id: a for a in grid.areas}
        self._depth = {a.id: a.level for a in grid.areas}
        self._order = {a.id: a.order for a in grid.areas}
        self.tree = grid.tree
        self._ancestors = {a.id: self.tree.ancestors(a.id) for a in grid.areas}
        self._has_children = {a.id for a in grid.areas if self.tree.children(a.id)}
        self._build_point_index()
        self._build_terms()
        self._build_categories()
        self._build_home(gazetteer)

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> "Router":
        return cls(load_grid(path))

    # ------------------------------------------------------------------ tree helpers
    def assignee_for(self, area_id: str | None) -> int | None:
        """Who is responsible for the area: the one rule, AreaTree.responsible_for."""
        return self.tree.responsible_for(area_id)

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

    # ------------------------------------------------------------------ home region
    def _build_home(self, use_gazetteer: bool) -> None:
        from bot.areas.gazetteer import Home, gazetteer

        self._gaz = gazetteer() if use_gazetteer else None
        if self._gaz is None:
            self.home = Home((), "", "unknown", 0)
            return
        roots = self.grid.roots()
        names = [n for r in roots for n in (r.name, *r.aliases)]
        centre = None
        if self._polys:
            from shapely.ops import unary_union

            c = unary_union(self._polys).centroid
            centre = (c.x, c.y)
        self.home = self._gaz.home(getattr(self.grid, "region", None), names, centre, normalize_text)

    def _outside(self, s: str, hits: list[_Hit]) -> str | None:
        """The first division named in ``s`` that lies outside the home region (a name
        inside an exact grid hit does not count: 福州南路 is a road here, not 福州)."""
        if self._gaz is None or not self.home.codes:
            return None
        for m in self._gaz.mentions(s):
            # a grid word as long as the division counts as the grid's only with a house
            # number after it (北京5号 is 北京路 here; 北京，香港路 is Beijing)
            if any(h.exact and h.start <= m.start and m.end <= h.end and (
                    (h.end - h.start) > (m.end - m.start) or re.match(r"(?:的|第)?\d", s[h.end:]))
                   for h in hits):
                continue
            divs = [self._gaz.divisions[c] for c in m.codes]
            if not any(self.home.contains(d) for d in divs):
                return m.text
        return None

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
        self._centroids = {i: (g.centroid.x, g.centroid.y) for i, g in zip(ids, geoms)}
        for g in geoms:
            shapely.prepare(g)
        self._tree = STRtree(geoms) if geoms else None

    def route_point(self, lat: float, lon: float) -> RouteResult:
        """The deepest area whose polygon contains (lat, lon); edges count as inside and
        ties (shared edges) go to the area listed first in the grid file.  ``near`` lists
        other units (areas without children) within NEAR_METERS of the pin."""
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
        best = found[0][3]
        return RouteResult(best, 100.0, cands, near=self._near(pt, best))

    def _near(self, pt, best: str) -> tuple[str, ...]:
        """Units other than ``best`` (and its ancestors) within NEAR_METERS of the point."""
        from shapely.geometry import box
        from shapely.ops import nearest_points

        from bot.areas.gazetteer import _km

        dlat = NEAR_METERS / 110_540.0
        dlon = NEAR_METERS / (111_320.0 * max(0.01, math.cos(math.radians(pt.y))))
        out = []
        for i in self._tree.query(box(pt.x - dlon, pt.y - dlat, pt.x + dlon, pt.y + dlat)):
            aid = self._poly_ids[int(i)]
            if aid == best or aid in self._has_children or self._is_ancestor(aid, best):
                continue
            q = nearest_points(self._polys[int(i)], pt)[0]
            if _km(pt.x, pt.y, q.x, q.y) * 1000.0 <= NEAR_METERS:
                out.append((self._order[aid], aid))
        return tuple(a for _, a in sorted(out))

    # ------------------------------------------------------------------ address index
    def _build_terms(self) -> None:
        terms: dict[str, _Term] = {}

        explicit: set[str] = set()  # terms that are some area's own name or alias

        def add(text: str, area_id: str, weight: float, road: str | None = None, needs_number: bool = False,
                own: bool = False) -> None:
            if not text:
                return
            latin = _is_latin(text)
            if (latin and len(text) < 4) or (not latin and len(text) < 2) or text.isdigit():
                return
            t = terms.get(text)
            if t is None:
                t = terms[text] = _Term(text, set(), weight, set(), latin, needs_number)
            elif own and text not in explicit:
                # an operator's own alias beats the same text derived as another area's stem
                t.areas, t.roads, t.needs_number = set(), set(), needs_number
            elif not own and text in explicit:
                return
            else:
                t.needs_number = t.needs_number and needs_number
            if own:
                explicit.add(text)
            t.areas.add(area_id)
            t.weight = max(t.weight, weight)
            if road:
                t.roads.add(road)

        def add_with_stems(n: str, area_id: str, road: str | None, own: bool = True) -> None:
            add(n, area_id, 100.0, road, own=own)
            for st in _stems(n):
                estate = len(st) == 2 and any(n.endswith(x) for x in _ESTATE_SUFFIXES)
                add(st, area_id, 100.0 if len(st) >= 3 else 95.0, road, needs_number=estate)

        for a in self.grid.areas:
            roads = {normalize_text(r[0]) for r in a.numbers}
            forms = [a.name, *a.aliases]
            for f in forms:
                if re.search(r"\d+\s*[-~～—至到]\s*\d+", f):
                    continue  # number-range aliases are handled through ``numbers``
                n = normalize_text(_strip_parens(f))
                road = next((r for r in roads if n.startswith(r)), None)
                add_with_stems(n, a.id, road)
                for seg in ("南段", "北段", "东段", "西段", "单号段", "双号段", "段"):
                    if n.endswith(seg) and len(n) > len(seg) + 1:
                        add(n[: -len(seg)], a.id, 100.0, road, own=False)
                        break
            for r in roads:
                add_with_stems(r, a.id, r, own=False)
        # pinyin and English spellings of every Chinese term (names, aliases, stems)
        for t in list(terms.values()):
            if t.latin or not _is_cjk(t.text) or t.text.endswith("段"):
                continue
            for lf in _latin_forms(t.text):
                for aid in t.areas:
                    road = next(iter(t.roads)) if len(t.roads) == 1 else None
                    add(lf, aid, t.weight if len(lf) >= 6 else min(t.weight, 95.0), road, t.needs_number)
                    if t.roads and lf in terms:
                        terms[lf].roads |= t.roads
        # latin aliases shared by every numbered area of a road act as that road
        for t in terms.values():
            if t.latin and not t.roads:
                rs = [{normalize_text(r[0]) for r in self._areas[x].numbers} for x in t.areas]
                if rs and all(rs) and len(set.intersection(*rs)) >= 1:
                    t.roads = set.intersection(*rs)
        self._terms = terms
        self._term_lens = sorted({len(k) for k in terms}, reverse=True)
        # fuzzy candidates: terms long enough to be matched approximately
        # (segment names such as 香港中路单号段 are matched exactly only: nobody types them,
        # and their road part would fuzzy-match every address on the road; generated Latin
        # spellings are matched exactly only: there are many and letters are few)
        generated = set()
        for a in self.grid.areas:
            for f in (a.name, *a.aliases):
                n = normalize_text(_strip_parens(f))
                if _is_latin(n):
                    generated.add(n)
                    generated.update(_stems(n))
        self._fuzzy_terms = [t for t in terms.values()
                             if (t.text in generated and len(t.text) >= 5 if t.latin else len(t.text) >= 3)
                             and not t.text.endswith("段")]
        self._char_index: dict[str, list[int]] = {}
        for i, t in enumerate(self._fuzzy_terms):
            for c in set(t.text):
                self._char_index.setdefault(c, []).append(i)
        # homophones: Chinese terms of 3+ characters by the readings of their first character
        self._sound_index: dict[str, list[tuple[_Term, tuple[frozenset[str], ...]]]] = {}
        for t in terms.values():
            if t.latin or len(t.text) < 3 or not _is_cjk(t.text):
                continue
            syl = _pinyin(t.text)
            if not syl:
                continue
            sounds = tuple(_readings(c) | {p} for c, p in zip(t.text, syl))
            for r in sounds[0]:
                self._sound_index.setdefault(r, []).append((t, sounds))
        # numbered areas: normalised road → [(area_id, from, to, parity)]
        self._ranges: dict[str, list[tuple[str, int, int, str]]] = {}
        for a in self.grid.areas:
            for road, lo, hi, par in a.numbers:
                self._ranges.setdefault(normalize_text(road), []).append((a.id, lo, hi, par))

    # ------------------------------------------------------------------ address routing
    def _exact_hits(self, s: str) -> list[_Hit]:
        hits = []
        n = len(s)
        terms = self._terms
        for i in range(n):
            for L in self._term_lens:
                if i + L > n:
                    continue
                t = terms.get(s[i:i + L])
                if t is not None:
                    hits.append(_Hit(i, i + L, t, t.weight, True))
        hits.extend(self._homophone_hits(s))
        return self._drop_covered(hits)

    def _homophone_hits(self, s: str) -> list[_Hit]:
        """Windows of 3+ Chinese characters that sound like a grid name (燕儿到路 → 燕儿岛路)."""
        out = []
        n = len(s)
        seen: set[tuple[int, str]] = set()
        for i in range(n - 2):
            for r in _readings(s[i]):
                for t, sounds in self._sound_index.get(r, ()):
                    L = len(sounds)
                    if i + L > n or (i, t.text) in seen:
                        continue
                    w = s[i:i + L]
                    if w == t.text:
                        continue
                    if all(_readings(c) & snd for c, snd in zip(w, sounds)):
                        seen.add((i, t.text))
                        out.append(_Hit(i, i + L, t, t.weight, True))
        return out

    @staticmethod
    def _drop_covered(hits: list[_Hit]) -> list[_Hit]:
        """A hit lying inside a longer (or equal, better) hit gives way, wherever each
        sits in the tree."""
        hits.sort(key=lambda h: (-(h.end - h.start), -h.score, h.term.text != "" and h.start))
        kept: list[_Hit] = []
        for h in hits:
            if any(k.start <= h.start and h.end <= k.end and (k.end - k.start > h.end - h.start or k.score >= h.score)
                   for k in kept):
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
                    h.numbered = True
        h.areas = tuple(sorted(areas, key=lambda x: self._order[x]))
        h.area_id = self._lca(areas) or ""

    @staticmethod
    def _is_place(s: str, h: _Hit) -> bool:
        """False for a grid word used as a division (海口市) and for a two-character estate
        stem without a building or house number after it."""
        nxt = s[h.end:h.end + 1]
        if nxt in _DIVISION_AFTER and not s.startswith(_NOT_DIVISION_AFTER, h.end):
            return False
        if h.term.needs_number and not re.match(r"(?:的|第)?\d", s[h.end:]):
            return False
        return True

    @staticmethod
    def _mark_landmarks(s: str, ends: tuple[int, ...], hits: list[_Hit]) -> None:
        """Hits after 靠/靠近/挨着/近/离/往/朝 or 旁边是/对面是… (up to the end of the clause,
        or a 的), and hits followed by 旁边/对面/附近…, are landmarks."""
        for m in _QUALIFIER_RE.finditer(s):
            q0, q1 = m.start(), m.end()
            if any(h.start <= q0 < h.end for h in hits):
                continue  # part of a name (朝阳路, 近江小区)
            stop = next((e for e in ends if e > q1), len(s))
            de = s.find("的", q1, stop)
            if de >= 0:
                stop = de
            for h in hits:
                if q1 <= h.start < stop:
                    h.landmark = True
        for h in hits:
            if _AFTER_QUALIFIER_RE.match(s, h.end) and not h.numbered:
                h.landmark = True

    def route_address(self, text: str) -> RouteResult:
        s, ends = _prepare(text or "")
        if not s:
            return RouteResult(None, 0.0, [])
        exact = [h for h in self._exact_hits(s) if self._is_place(s, h)]
        fuzzy = [h for h in self._fuzzy_hits(s, exact) if self._is_place(s, h)]
        for h in exact:
            self._resolve(s, h)
        for h in fuzzy:
            self._resolve(s, h)
        # a fuzzy hit overlapping an exact hit (or a better fuzzy hit) by half is dropped,
        # unless it is longer, sure enough, and covers the exact hit (浮山湾花圆: fuzzy
        # 浮山湾花园 wins over the exact 浮山湾, wherever each sits in the tree)
        hits = [h for h in exact if h.area_id]
        for f in sorted(fuzzy, key=lambda h: (-h.score, -(h.end - h.start))):
            if not f.area_id:
                continue
            flen = f.end - f.start
            clash = False
            covered = []
            for k in hits:
                if min(f.end, k.end) - max(f.start, k.start) > flen / 2:
                    if k.exact and flen > k.end - k.start and f.score >= 80.0 and (
                            self._is_ancestor(k.area_id, f.area_id)
                            or (f.start <= k.start and k.end <= f.end and k.area_id != f.area_id)):
                        if not self._is_ancestor(k.area_id, f.area_id):
                            covered.append(k)
                        continue
                    clash = True
                    break
            if not clash:
                hits = [h for h in hits if h not in covered]
                hits.append(f)
        outside = self._outside(s, hits)
        if outside is not None:
            return RouteResult(None, 0.0, [], outside=outside)
        if not hits:
            return RouteResult(None, 0.0, [])
        self._mark_landmarks(s, ends, hits)
        # a hit refined by a deeper, consistent hit gives way (湛山社区 + 东海西路12号 → donghai-w)
        good = [h for h in hits if h.score >= self.threshold]
        pruned = [h for h in hits if not any(
            g is not h and self._is_ancestor(h.area_id, g.area_id) and g.landmark <= h.landmark for g in good)]
        # landmarks only count when nothing else names a place
        targets = [h for h in pruned if not h.landmark and h.score >= self.threshold]
        landmarks = [h for h in pruned if h.landmark]
        pool = targets or pruned
        pool.sort(key=lambda h: (-h.score, not h.numbered, -(h.end - h.start), -self._depth[h.area_id],
                                 self._order[h.area_id]))
        best = pool[0]
        score = best.score
        area_id = best.area_id
        if targets and landmarks and len(best.areas) > 1:
            # 住X路，靠Y路那头: the segment of X nearest the landmark Y
            area_id = self._nearest(best.areas, landmarks[0].areas or (landmarks[0].area_id,)) or area_id
        elif not (targets and landmarks):
            # two equally good answers in unrelated branches (香港中路和福州南路交叉口): the
            # area holding both, a little less confident
            for other in pool[1:]:
                if (other.area_id != best.area_id and other.score >= best.score - 1
                        and other.numbered >= best.numbered
                        and not self._is_ancestor(other.area_id, best.area_id)
                        and not self._is_ancestor(best.area_id, other.area_id)
                        and (other.end - other.start) >= (best.end - best.start)):
                    area_id = self._lca([best.area_id, other.area_id]) or best.area_id
                    score -= 10
                    break
        cands: dict[str, float] = {}
        for h in pool:
            cands[h.area_id] = max(cands.get(h.area_id, 0.0), h.score)
            if len(h.areas) > 1:  # an ambiguous road: offer its segments too
                for x in h.areas:
                    cands.setdefault(x, round(h.score * 0.9, 1))
        cand_list = sorted(cands.items(), key=lambda kv: (-kv[1], self._order[kv[0]]))[:6]
        score = round(max(0.0, min(100.0, score)), 1)
        return RouteResult(area_id if score >= self.threshold else None, score,
                           [(a, round(v, 1)) for a, v in cand_list])

    def _nearest(self, ids: Iterable[str], to: Iterable[str]) -> str | None:
        """The area of ``ids`` closest to the landmark areas ``to`` (polygon distance, then
        centroid distance); None when the geometry cannot tell."""
        idx = {a: i for i, a in enumerate(self._poly_ids)}
        lm = [self._polys[idx[t]] for t in to if t in idx]
        if not lm:
            return None
        scored = []
        for i in ids:
            if i not in idx:
                return None
            g = self._polys[idx[i]]
            c = g.centroid
            scored.append((round(min(g.distance(x) for x in lm), 9),
                           round(min(c.distance(x.centroid) for x in lm), 9), i))
        scored.sort()
        if len(scored) > 1 and scored[0][:2] == scored[1][:2]:
            return None
        return scored[0][2] if scored else None

    def route(self, address: str | None = None, lat: float | None = None, lon: float | None = None) -> RouteResult:
        """A pin when given (and inside the grid), else the address."""
        if lat is not None and lon is not None:
            r = self.route_point(lat, lon)
            if r.area_id is not None or not address:
                return r
        if address:
            return self.route_address(address)
        return RouteResult(None, 0.0, [])

    # ------------------------------------------------------------------ categories
    def _build_categories(self) -> None:
        self._cat_terms: list[tuple[str, list[str]]] = []
        for c in self.grid.categories:
            kws = [c.name, *c.name.split("/"), *(c.name_en.split("/") if c.name_en else ()), *c.keywords]
            norm = []
            for k in kws:
                n = normalize_text(k)
                if n and n not in norm:
                    norm.append(n)
            self._cat_terms.append((c.id, norm))
        self._other_id = next((c.id for c in self.grid.categories if c.id == "other"), None)

    def infer_category(self, text: str) -> list[tuple[str, float]]:
        """[(category id, score 0-100)], best first.  Only categories with some evidence
        are listed; "other" is listed last (never above a real keyword hit)."""
        s = normalize_text(text or "")
        scored: list[tuple[float, int, str]] = []
        other_score = 0.0
        for cid, kws in self._cat_terms:
            best, hits, cover = 0.0, 0, 0
            for k in kws:
                latin = _is_latin(k)
                if k in s:
                    if latin:
                        sc = 95.0 if len(k) >= 4 else 0.0
                    else:
                        sc = min(100.0, 70.0 + 10.0 * len(k))
                    if sc:
                        hits += 1
                        cover += len(k)
                        best = max(best, sc)
                elif (len(k) >= 3 and not latin) or (latin and len(k) >= 6):
                    if len(s) >= len(k) - 1:
                        sc = fuzz.partial_ratio(k, s)
                        if sc >= 75:
                            best = max(best, sc * 0.8)
            if best <= 0:
                continue
            score = min(100.0, best + 3.0 * max(0, hits - 1))
            if cid == self._other_id:
                other_score = score
                continue
            scored.append((score, cover, cid))
        scored.sort(key=lambda x: (-x[0], -x[1], x[2]))
        out = [(cid, round(sc, 1)) for sc, _, cid in scored]
        if self._other_id is not None:
            if out:
                out.append((self._other_id, round(min(other_score or 20.0, out[-1][1] - 1, 20.0), 1)))
            else:
                out.append((self._other_id, round(max(other_score, 30.0), 1)))
        return out


# ---------------------------------------------------------------------------- CLI contract


def route_json(router: Router, address: str | None = None, lat: float | None = None,
               lon: float | None = None) -> dict:
    """``{"area_id": …, "assignee": <telegram user id or None>, "score": <0-100>}``."""
    r = router.route(address=address, lat=lat, lon=lon)
    return {
        "area_id": r.area_id,
        "assignee": router.assignee_for(r.area_id) if r.area_id is not None else None,
        "score": int(round(r.score)),
    }


@lru_cache(maxsize=8)
def _cached_router_at(path: str, mtime: float) -> Router:
    return Router.from_file(path)


def _cached_router(path: str) -> Router:
    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        mtime = 0.0
    return _cached_router_at(path, mtime)


def get_router(grid_path: str | Path | None = None) -> Router:
    """A Router for the grid file (cached while the file is unchanged)."""
    return _cached_router(str(Path(grid_path).resolve()) if grid_path else str(DEFAULT_GRID_PATH))
