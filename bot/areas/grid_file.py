"""Grid file loader and validator (pure Python: no database, no Telegram).

A grid file describes the area tree 街道 → 社区 → 网格 → 微网格 and the problem
categories.  Two formats are read:

* YAML (``.yaml``/``.yml``)::

      categories:            # optional, DEFAULT_CATEGORIES when absent or empty
        - {id: streetlight, name: 路灯, name_en: Streetlight, keywords: [路灯, 不亮], sla_hours: 72}
      region: 山东省青岛市市南区   # optional: the home region (else inferred; `gridbot grid show`)
      people:                # optional display names for captain/supervisor ids
        - {id: 1001, name: 李建国}
      boundaries: polygons.geojson   # optional sibling GeoJSON, polygons keyed by area id
      areas:                 # a tree (``children:``) and/or a flat list with ``parent:``
        - id: haibin
          name: 海滨街道
          supervisor: 3001
          boundary: [[120.38, 36.05], [120.42, 36.05], [120.42, 36.08], [120.38, 36.08], [120.38, 36.05]]
          children:
            - id: m01
              name: 香港中路单号段
              aliases: [香港中路1-99号]
              numbers: [{road: 香港中路, from: 1, to: 99, parity: odd}]
              captain: 1001

* GeoJSON (``.geojson``/``.json``): a FeatureCollection; each Feature has
  ``properties: {id, name, parent?, aliases?, captain?, supervisor?, numbers?}`` and a
  Polygon geometry (its exterior ring is the boundary).  Optional top-level
  ``categories``, ``people`` and ``region`` members are read like in YAML.

All problems are collected and raised together in one :class:`GridFileError`
whose message names the line (YAML) or the feature / id; nothing is half-loaded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from bot.areas.tree import AreaTree

__all__ = [
    "AreaSpec",
    "CategorySpec",
    "DEFAULT_CATEGORIES",
    "DEFAULT_GRID_PATH",
    "GridFileError",
    "GridSpec",
    "PersonSpec",
    "load_grid",
    "loads_grid",
    "parse_number_alias",
]

DEFAULT_GRID_PATH = Path(__file__).resolve().with_name("sample_grid.yaml")

MAX_ID_LEN = 64
MAX_ERRORS_SHOWN = 20
PARITIES = ("all", "odd", "even")
_PARITY_WORDS = {
    "all": "all", "both": "all", "全": "all", "全部": "all", "": "all", None: "all",
    "odd": "odd", "单": "odd", "单号": "odd", "單": "odd", "單號": "odd",
    "even": "even", "双": "even", "双号": "even", "雙": "even", "雙號": "even",
}


class GridFileError(ValueError):
    """The grid file is invalid.  ``errors`` holds every message; ``str()`` lists them."""

    def __init__(self, message: str, errors: Iterable[str] | None = None):
        self.errors = list(errors) if errors is not None else [message]
        super().__init__(message)


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class CategorySpec:
    id: str
    name: str
    name_en: str | None
    keywords: tuple[str, ...]
    sla_hours: float
    # True: the SLA counts working time only (working days), e.g. 120 h ≈ 5 working days
    working_hours: bool = False


@dataclass(frozen=True)
class PersonSpec:
    id: int
    name: str
    phone: str | None = None


# (road, from, to, parity) with parity in {"all", "odd", "even"}
NumberRange = tuple[str, int, int, str]


@dataclass(frozen=True)
class AreaSpec:
    id: str
    name: str
    aliases: tuple[str, ...]
    captain: int | None
    supervisor: int | None
    boundary: tuple[tuple[float, float], ...] | None  # (lon, lat), closed ring
    parent_id: str | None
    level: int  # 0 = root
    order: int  # position in the pre-order walk of the tree (parents before children)
    numbers: tuple[NumberRange, ...] = ()
    kind: str | None = None  # free text: 街道 / 社区 / 网格 / 微网格


@dataclass(frozen=True)
class GridSpec:
    categories: tuple[CategorySpec, ...]
    areas: tuple[AreaSpec, ...]  # parents before children
    people: tuple[PersonSpec, ...] = ()
    # where the grid lies, e.g. 福建省漳州市芗城区 (optional; the router infers it when absent)
    region: str | None = None
    _by_id: dict = field(init=False, repr=False, compare=False)
    tree: AreaTree = field(init=False, repr=False, compare=False)  # the walks up and down

    def __post_init__(self) -> None:
        by_id = {a.id: a for a in self.areas}
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(self, "tree", AreaTree.of_spec(self.areas))

    # -- tree helpers
    def area(self, area_id: str) -> AreaSpec:
        """The area with this id (KeyError when unknown)."""
        return self._by_id[area_id]

    def get(self, area_id: str | None) -> AreaSpec | None:
        return self._by_id.get(area_id) if area_id is not None else None

    def __contains__(self, area_id: object) -> bool:
        return area_id in self._by_id

    def roots(self) -> tuple[AreaSpec, ...]:
        return tuple(self._by_id[x] for x in self.tree.roots())

    def children(self, area_id: str) -> tuple[AreaSpec, ...]:
        self.area(area_id)
        return tuple(self._by_id[x] for x in self.tree.children(area_id))

    def ancestors(self, area_id: str) -> tuple[AreaSpec, ...]:
        """Ancestors of the area, nearest first (the area itself not included)."""
        self.area(area_id)
        return tuple(self._by_id[x] for x in self.tree.ancestors(area_id))

    def subtree(self, area_id: str) -> tuple[AreaSpec, ...]:
        """The area and all its descendants, parents before children."""
        self.area(area_id)
        return tuple(self._by_id[x] for x in self.tree.subtree(area_id))

    def category(self, category_id: str) -> CategorySpec:
        for c in self.categories:
            if c.id == category_id:
                return c
        raise KeyError(category_id)

    def person(self, person_id: int | None) -> PersonSpec | None:
        for p in self.people:
            if p.id == person_id:
                return p
        return None


# --------------------------------------------------------------------------- defaults


def _cat(id, name, name_en, sla, keywords, working=False):
    return CategorySpec(id=id, name=name, name_en=name_en, keywords=tuple(keywords), sla_hours=float(sla), working_hours=working)


DEFAULT_CATEGORIES: tuple[CategorySpec, ...] = (
    _cat("streetlight", "路灯照明", "Streetlight", 72, [
        "路灯", "照明", "有路无灯", "路灯不亮", "灯不亮", "灯坏了", "灯坏", "灯灭了", "黑灯", "一闪一闪", "忽明忽暗",
        "灯杆", "太暗了", "黑漆漆", "路灯倒", "亮化", "street light", "streetlight", "lamp"]),
    _cat("manhole", "井盖", "Manhole cover", 24, [
        "井盖", "窨井", "下水井", "井盖没了", "井盖丢了", "井盖破了", "井盖响", "井盖松动", "井口", "没有盖子", "井盖翘起",
        "雨水篦子", "雨篦子", "掉井里", "manhole"]),
    _cat("garbage", "垃圾/环境卫生", "Garbage & sanitation", 48, [
        "垃圾", "日产日清", "垃圾满了", "没清运", "没人清", "垃圾桶", "垃圾箱", "垃圾站", "乱扔", "乱倒", "建筑垃圾",
        "臭味", "发臭", "卫生死角", "果皮箱", "污水", "苍蝇", "老鼠", "清运", "脏乱差", "garbage", "trash", "rubbish"]),
    _cat("road", "道路破损", "Damaged road", 72, [
        "道路破损", "路面破损", "坑", "坑洼", "大坑", "塌陷", "下陷", "人行道砖", "地砖", "砖松了", "路面开裂", "裂缝",
        "积水", "路坏了", "盲道", "台阶坏", "护栏", "pothole", "road damage"]),
    _cat("vending", "占道经营/流动摊贩", "Street vending", 48, [
        "占道经营", "流动摊贩", "摆摊", "小摊", "地摊", "小贩", "出店经营", "店外经营", "占道", "夜市", "烧烤摊",
        "卖菜的", "水果摊", "推车", "vendor", "street vending"]),
    _cat("frontage", "门前三包", "Shop-front duties", 48, [
        "门前三包", "三包", "门前", "店门口", "门口脏", "商户", "店铺", "乱堆", "堆放", "乱摆", "杂物", "广告牌",
        "招牌", "乱贴", "小广告", "shop front"]),
    _cat("construction", "私搭乱建/违章建筑", "Illegal construction", 120, [
        "私搭乱建", "违章建筑", "违建", "乱搭", "乱建", "搭建", "加盖", "彩钢房", "阳光房", "圈地", "私占", "占用绿地",
        "楼顶加层", "违法建设", "围墙", "棚子", "illegal construction"], working=True),
    _cat("ebike", "飞线充电/电动车充电", "E-bike charging", 24, [
        "飞线充电", "飞线", "电动车充电", "电瓶车", "电动车", "充电", "拉电线", "私拉电线", "私拉乱接", "楼道充电",
        "电池", "推进楼道", "电线垂下来", "插线板", "e-bike", "ebike", "charging"]),
    _cat("parking", "违停/乱停车", "Illegal parking", 24, [
        "违停", "乱停车", "乱停", "违章停车", "占车位", "堵路口", "挡道", "堵门", "僵尸车", "停在人行道", "占用消防通道",
        "消防通道", "共享单车", "停车", "parking"]),
    _cat("noise", "噪音扰民", "Noise", 24, [
        "噪音", "噪声", "扰民", "太吵", "很吵", "吵死", "吵得", "夜间施工", "施工", "广场舞", "音响", "喇叭", "叫卖",
        "装修", "电钻", "半夜", "noise", "noisy", "loud"]),
    _cat("greenery", "绿化", "Greenery", 72, [
        "绿化", "树木", "大树", "树枝", "断枝", "倒伏", "草坪", "绿地", "杂草", "修剪", "枯树", "花坛", "毁绿",
        "树倒了", "虫害", "tree", "grass"]),
    _cat("other", "其他", "Other", 72, ["其他", "其它", "other"]),
)


# --------------------------------------------------------------------------- YAML with line numbers

_LINE = "__line__"


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records the 1-based line of every mapping under ``__line__``
    and reports duplicate keys."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicate_keys: list[str] = []

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                k = key_node.value
                if k in seen and k != "<<":
                    self.duplicate_keys.append(
                        f"line {key_node.start_mark.line + 1}: duplicate key {k!r} (already on line {seen[k]})")
                seen.setdefault(k, key_node.start_mark.line + 1)
        mapping = super().construct_mapping(node, deep=deep)
        mapping[_LINE] = node.start_mark.line + 1
        return mapping


def _where(obj: Any, fallback: str = "") -> str:
    if isinstance(obj, dict) and _LINE in obj:
        return f"line {obj[_LINE]}"
    if isinstance(obj, dict) and "__where__" in obj:
        return obj["__where__"]
    return fallback


# --------------------------------------------------------------------------- helpers

_NUMBER_ALIAS_RE = re.compile(
    r"^\s*(?P<road>.+?[路街道巷弄里])\s*(?P<a>\d+)\s*(?:-|~|～|—|–|－|至|到)\s*(?P<b>\d+)\s*[号號]?\s*"
    r"(?:[(（]?\s*(?P<par>单号|双号|單號|雙號|单|双|單|雙|odd|even)\s*[)）]?)?\s*$",
    re.IGNORECASE,
)


def parse_number_alias(alias: str) -> NumberRange | None:
    """'香港中路1-99号' → ('香港中路', 1, 99, 'all'); '香港中路2-100号(双号)' → (..., 'even')."""
    m = _NUMBER_ALIAS_RE.match(alias)
    if not m:
        return None
    a, b = int(m["a"]), int(m["b"])
    if a > b:
        return None
    par = _PARITY_WORDS.get((m["par"] or "").lower(), "all")
    return (m["road"].strip(), a, b, par)


class _Errors:
    def __init__(self, source: str):
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, msg: str) -> None:
        self.items.append(f"{where}: {msg}" if where else msg)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        n = len(self.items)
        shown = self.items[:MAX_ERRORS_SHOWN]
        head = f"{self.source}: {n} error{'s' if n != 1 else ''} in grid file"
        body = "\n  ".join(shown)
        more = f"\n  … and {n - len(shown)} more" if n > len(shown) else ""
        raise GridFileError(f"{head}:\n  {body}{more}", self.items)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _user_id(v: Any, what: str, where: str, errs: _Errors) -> int | None:
    """Telegram user id: an int or a string of digits; None/absent allowed."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        errs.add(where, f"{what} must be a Telegram user id (an integer), got {v!r}")
        return None
    if isinstance(v, int):
        if v <= 0:
            errs.add(where, f"{what} must be a positive Telegram user id, got {v!r}")
            return None
        return v
    if isinstance(v, str) and re.fullmatch(r"\s*\d{1,19}\s*", v):
        n = int(v)
        if n > 0:
            return n
    errs.add(where, f"{what} must be a Telegram user id (an integer), got {v!r}")
    return None


def _str_list(v: Any, what: str, where: str, errs: _Errors) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, list):
        errs.add(where, f"{what} must be a list of strings")
        return ()
    out = []
    for item in v:
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            errs.add(where, f"{what} must contain strings, got {item!r}")
            continue
        s = str(item).strip()
        if s and s not in out:
            out.append(s)
    return tuple(out)


def _ident(v: Any, what: str, where: str, errs: _Errors) -> str | None:
    if v is None or (isinstance(v, str) and not v.strip()):
        errs.add(where, f"{what} without id")
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        errs.add(where, f"{what} id must be a string, got {v!r}")
        return None
    s = str(v).strip()
    if len(s) > MAX_ID_LEN:
        errs.add(where, f"{what} id {s[:20]!r}… is longer than {MAX_ID_LEN} characters")
        return None
    if any(c.isspace() for c in s):
        errs.add(where, f"{what} id {s!r} must not contain spaces")
        return None
    return s


def _name(v: Any, what: str, where: str, errs: _Errors) -> str | None:
    if v is None or (isinstance(v, str) and not v.strip()):
        errs.add(where, f"{what} has no name")
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        errs.add(where, f"{what} name must be text, got {v!r}")
        return None
    return str(v).strip()


def _boundary(v: Any, label: str, where: str, errs: _Errors) -> tuple[tuple[float, float], ...] | None:
    """Validate a closed (lon, lat) ring.  Returns None (and records errors) when bad."""
    if v is None:
        return None
    if not isinstance(v, (list, tuple)):
        errs.add(where, f"{label}: boundary must be a list of [lon, lat] points")
        return None
    pts: list[tuple[float, float]] = []
    ok = True
    for i, p in enumerate(v):
        if (not isinstance(p, (list, tuple)) or len(p) not in (2, 3)
                or not all(_is_number(c) for c in p[:2])):
            errs.add(where, f"{label}: boundary point #{i + 1} {p!r} is not a [lon, lat] pair of numbers")
            ok = False
            continue
        lon, lat = float(p[0]), float(p[1])
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            errs.add(where, f"{label}: boundary point #{i + 1} {p!r} is out of range "
                            "(expected [lon, lat] with -180 ≤ lon ≤ 180, -90 ≤ lat ≤ 90)")
            ok = False
            continue
        pts.append((lon, lat))
    if not ok:
        return None
    if len(pts) < 4:
        errs.add(where, f"{label}: boundary has {len(pts)} points; a closed ring needs at least 4 "
                        "(first point repeated at the end)")
        return None
    if pts[0] != pts[-1]:
        errs.add(where, f"{label}: boundary is not closed (first point {list(pts[0])} != last point {list(pts[-1])})")
        return None
    from shapely.geometry import Polygon
    from shapely.validation import explain_validity

    try:
        poly = Polygon(pts)
    except Exception as exc:  # pragma: no cover - shapely raises only on degenerate input
        errs.add(where, f"{label}: boundary is not a polygon ({exc})")
        return None
    if not poly.is_valid or poly.area <= 0:
        errs.add(where, f"{label}: boundary is not a valid polygon ({explain_validity(poly)})")
        return None
    return tuple(pts)


def _numbers(v: Any, label: str, where: str, errs: _Errors) -> list[NumberRange]:
    if v is None:
        return []
    if isinstance(v, dict):
        v = [v]
    if not isinstance(v, list):
        errs.add(where, f"{label}: numbers must be a list of {{road, from, to, parity}}")
        return []
    out = []
    for item in v:
        if not isinstance(item, dict):
            errs.add(where, f"{label}: numbers entry {item!r} must be a mapping {{road, from, to, parity}}")
            continue
        road = item.get("road")
        lo, hi = item.get("from", 1), item.get("to")
        par = item.get("parity", "all")
        bad = False
        if not isinstance(road, str) or not road.strip():
            errs.add(where, f"{label}: numbers entry needs a road name")
            bad = True
        for key, val in (("from", lo), ("to", hi)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 0:
                errs.add(where, f"{label}: numbers {key!r} must be a non-negative integer, got {val!r}")
                bad = True
        if not bad and lo > hi:
            errs.add(where, f"{label}: numbers range {lo}-{hi} is reversed")
            bad = True
        p = _PARITY_WORDS.get(par.lower() if isinstance(par, str) else par)
        if p is None:
            errs.add(where, f"{label}: numbers parity must be odd, even or all, got {par!r}")
            bad = True
        if not bad:
            out.append((road.strip(), lo, hi, p))
    return out


# --------------------------------------------------------------------------- sections


def _parse_region(raw: Any, errs: _Errors) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        errs.add("", f"'region' must be text such as 福建省漳州市芗城区, got {raw!r}")
        return None
    return raw.strip() or None


def _parse_categories(raw: Any, errs: _Errors) -> tuple[CategorySpec, ...]:
    if raw is None or raw == []:
        return DEFAULT_CATEGORIES
    if not isinstance(raw, list):
        errs.add("", "'categories' must be a list")
        return ()
    out: list[CategorySpec] = []
    seen: dict[str, str] = {}
    for i, c in enumerate(raw):
        where = _where(c, f"category #{i + 1}")
        if not isinstance(c, dict):
            errs.add(where, f"category #{i + 1} must be a mapping")
            continue
        cid = _ident(c.get("id"), "category", where, errs)
        label = f"category {cid!r}" if cid else "category"
        name = _name(c.get("name"), label, where, errs)
        if cid is not None:
            if cid in seen:
                errs.add(where, f"duplicate category id {cid!r} (first defined at {seen[cid]})")
            else:
                seen[cid] = where or f"category #{i + 1}"
        sla = c.get("sla_hours", 72)
        if not _is_number(sla) or sla <= 0:
            errs.add(where, f"{label}: sla_hours must be a positive number of hours, got {sla!r}")
            sla = None
        wh = c.get("working_hours", c.get("working_time", False))
        if not isinstance(wh, bool):
            errs.add(where, f"{label}: working_time must be true or false, got {wh!r}")
            wh = False
        name_en = c.get("name_en")
        if name_en is not None and not isinstance(name_en, str):
            errs.add(where, f"{label}: name_en must be text")
            name_en = None
        keywords = _str_list(c.get("keywords"), f"{label} keywords", where, errs)
        if cid and name and sla is not None:
            out.append(CategorySpec(cid, name, name_en, keywords, float(sla), wh))
    return tuple(out)


def _parse_people(raw: Any, errs: _Errors) -> tuple[PersonSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errs.add("", "'people' must be a list")
        return ()
    out = []
    seen: dict[int, str] = {}
    for i, p in enumerate(raw):
        where = _where(p, f"person #{i + 1}")
        if not isinstance(p, dict):
            errs.add(where, f"person #{i + 1} must be a mapping {{id, name, phone}}")
            continue
        if p.get("id") is None:
            errs.add(where, "person without id")
            pid = None
        else:
            pid = _user_id(p.get("id"), "person id", where, errs)
        name = _name(p.get("name"), f"person {pid}" if pid else "person", where, errs)
        phone = p.get("phone")
        if phone is not None:
            phone = str(phone).strip() or None
        if pid is not None:
            if pid in seen:
                errs.add(where, f"duplicate person id {pid} (first defined at {seen[pid]})")
                continue
            seen[pid] = where
        if pid is not None and name:
            out.append(PersonSpec(pid, name, phone))
    return tuple(out)


def _flatten_yaml_areas(raw: Any, errs: _Errors) -> list[dict]:
    """Walk the YAML tree: returns flat records {id, parent, nested_parent, raw, where}."""
    records: list[dict] = []
    if not isinstance(raw, list):
        errs.add("", "'areas' must be a list")
        return records

    def walk(items: list, parent: str | None, parent_label: str) -> None:
        for i, a in enumerate(items):
            where = _where(a, f"area #{i + 1} under {parent_label}")
            if not isinstance(a, dict):
                errs.add(where, f"area #{i + 1} under {parent_label} must be a mapping")
                continue
            rec = {"raw": a, "where": where, "nested_parent": parent}
            records.append(rec)
            kids = a.get("children")
            if kids is not None:
                if not isinstance(kids, list):
                    errs.add(where, "'children' must be a list")
                else:
                    aid = a.get("id")
                    walk(kids, str(aid).strip() if aid is not None else "?", f"area {aid!r}")

    walk(raw, None, "'areas'")
    return records


def _build(records: list[dict], categories, people, errs: _Errors,
           extra_boundaries: dict[str, tuple[Any, str]] | None = None) -> GridSpec | None:
    """Validate area records (flat, with nested/explicit parents) and build the GridSpec."""
    by_id: dict[str, dict] = {}
    order_in_file: list[str] = []
    for rec in records:
        a, where = rec["raw"], rec["where"]
        aid = _ident(a.get("id"), "area", where, errs)
        label = f"area {aid!r}" if aid else "area"
        name = _name(a.get("name"), label, where, errs)
        explicit = a.get("parent")
        if explicit is not None:
            explicit = str(explicit).strip() or None
        nested = rec.get("nested_parent")
        parent = nested if nested is not None else explicit
        if nested is not None and explicit is not None and explicit != nested:
            errs.add(where, f"{label}: parent {explicit!r} contradicts its place under {nested!r}")
        captain = _user_id(a.get("captain"), f"{label}: captain", where, errs)
        supervisor = _user_id(a.get("supervisor"), f"{label}: supervisor", where, errs)
        aliases = _str_list(a.get("aliases"), f"{label}: aliases", where, errs)
        numbers = _numbers(a.get("numbers"), label, where, errs)
        for al in aliases:
            nr = parse_number_alias(al)
            if nr and nr not in numbers:
                numbers.append(nr)
        boundary = None
        if a.get("boundary") is not None:
            boundary = _boundary(a.get("boundary"), label, where, errs)
        elif extra_boundaries and aid in extra_boundaries:
            ring, bwhere = extra_boundaries[aid]
            boundary = _boundary(ring, label, bwhere, errs)
        kind = a.get("kind")
        kind = str(kind).strip() if kind not in (None, "") else None
        if aid is None:
            continue
        if aid in by_id:
            errs.add(where, f"duplicate area id {aid!r} (first defined at {by_id[aid]['where']})")
            continue
        by_id[aid] = {
            "id": aid, "name": name, "parent": parent, "where": where, "captain": captain,
            "supervisor": supervisor, "aliases": aliases, "numbers": tuple(numbers),
            "boundary": boundary, "kind": kind,
        }
        order_in_file.append(aid)

    if extra_boundaries:
        for bid, (_, bwhere) in extra_boundaries.items():
            if bid not in by_id:
                errs.add(bwhere, f"boundary for unknown area id {bid!r}")

    # parents
    kids: dict[str | None, list[str]] = {}
    for aid in order_in_file:
        p = by_id[aid]["parent"]
        if p is not None and p not in by_id:
            errs.add(by_id[aid]["where"], f"area {aid!r}: unknown parent {p!r}")
            continue
        if p == aid:
            errs.add(by_id[aid]["where"], f"area {aid!r} is its own parent (cycle)")
            continue
        kids.setdefault(p, []).append(aid)

    # cycles: everything must be reachable from a root
    reached: set[str] = set()
    ordered: list[tuple[str, int]] = []
    stack = [(r, 0) for r in reversed(kids.get(None, []))]
    while stack:
        aid, lvl = stack.pop()
        if aid in reached:
            continue
        reached.add(aid)
        ordered.append((aid, lvl))
        stack.extend((c, lvl + 1) for c in reversed(kids.get(aid, [])))
    reported: set[str] = set()
    for aid in order_in_file:
        if aid in reached or aid in reported:
            continue
        p = by_id[aid]["parent"]
        if p is None or p not in by_id or p == aid:
            continue  # already reported (unknown parent / self parent)
        # follow the parent chain to find the loop
        chain = [aid]
        cur = p
        while cur is not None and cur in by_id and cur not in chain:
            chain.append(cur)
            cur = by_id[cur]["parent"]
        if cur is not None and cur in chain:
            loop = chain[chain.index(cur):] + [cur]
            if not reported.intersection(loop):
                errs.add(by_id[cur]["where"], "cycle in area parents: " + " → ".join(loop))
            reported.update(loop)
        reported.add(aid)

    if not by_id and not errs.items:
        errs.add("", "no areas defined")
    errs.raise_if_any()

    areas = []
    for pos, (aid, lvl) in enumerate(ordered):
        r = by_id[aid]
        areas.append(AreaSpec(
            id=aid, name=r["name"], aliases=r["aliases"], captain=r["captain"], supervisor=r["supervisor"],
            boundary=r["boundary"], parent_id=r["parent"], level=lvl, order=pos, numbers=r["numbers"],
            kind=r["kind"]))
    return GridSpec(categories=tuple(categories), areas=tuple(areas), people=tuple(people))


# --------------------------------------------------------------------------- GeoJSON


def _geojson_features(doc: Any, errs: _Errors, source: str) -> list[tuple[dict, str, Any]]:
    """→ [(properties, where, exterior ring or None)]"""
    out = []
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        errs.add(source, "GeoJSON must be a FeatureCollection with a 'features' list")
        return out
    for i, f in enumerate(doc["features"]):
        props = f.get("properties") if isinstance(f, dict) else None
        fid = props.get("id") if isinstance(props, dict) else None
        where = f"{source} feature #{i + 1}" + (f" (id {fid!r})" if fid is not None else "")
        if not isinstance(f, dict) or f.get("type") != "Feature":
            errs.add(where, "not a GeoJSON Feature")
            continue
        if not isinstance(props, dict):
            errs.add(where, "feature without properties {id, name, …}")
            continue
        geom = f.get("geometry")
        ring = None
        if geom is not None:
            gtype = geom.get("type") if isinstance(geom, dict) else None
            coords = geom.get("coordinates") if isinstance(geom, dict) else None
            # a bad geometry is reported and the feature kept without a boundary, so the
            # remaining checks still run (and do not report it again as an unknown parent)
            if gtype != "Polygon":
                errs.add(where, f"geometry must be a Polygon, got {gtype!r}")
            elif not isinstance(coords, list) or not coords:
                errs.add(where, "Polygon without coordinates")
            elif len(coords) > 1:
                errs.add(where, "Polygon holes are not supported (give the exterior ring only)")
            else:
                ring = coords[0]
        out.append((props, where, ring))
    return out


def _load_geojson(doc: Any, source: str) -> GridSpec:
    errs = _Errors(source)
    records = []
    for props, where, ring in _geojson_features(doc, errs, source):
        raw = dict(props)
        raw.pop("children", None)
        if ring is not None:
            raw["boundary"] = ring
        records.append({"raw": raw, "where": where, "nested_parent": None})
    cats = _parse_categories(doc.get("categories") if isinstance(doc, dict) else None, errs)
    people = _parse_people(doc.get("people") if isinstance(doc, dict) else None, errs)
    if not records:
        if not errs.items:
            errs.add(source, "no features")
        errs.raise_if_any()
    region = _parse_region(doc.get("region") if isinstance(doc, dict) else None, errs)
    spec = _build(records, cats, people, errs)
    errs.raise_if_any()
    assert spec is not None
    return dataclasses.replace(spec, region=region)


# --------------------------------------------------------------------------- entry points


def _load_yaml_text(text: str, source: str, base_dir: Path | None) -> GridSpec:
    errs = _Errors(source)
    loader = _LineLoader(text)
    try:
        doc = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}" if mark else ""
        raise GridFileError(f"{source}: {line}: YAML syntax error: {exc.problem or exc}", [str(exc)]) from None
    except yaml.YAMLError as exc:
        raise GridFileError(f"{source}: YAML error: {exc}") from None
    finally:
        loader.dispose()
    for d in loader.duplicate_keys:
        errs.add("", d)
    if not isinstance(doc, dict):
        errs.add("", "the grid file must be a mapping with an 'areas' list")
        errs.raise_if_any()
    if "areas" not in doc:
        errs.add("", "the grid file has no 'areas' list")
    cats = _parse_categories(doc.get("categories"), errs)
    people = _parse_people(doc.get("people"), errs)

    extra = None
    bfile = doc.get("boundaries")
    if bfile is not None:
        if not isinstance(bfile, str):
            errs.add(_where(doc), "'boundaries' must be a file name")
        else:
            bpath = Path(bfile)
            if not bpath.is_absolute():
                bpath = (base_dir or Path.cwd()) / bpath
            try:
                bdoc = json.loads(bpath.read_text(encoding="utf-8"))
            except FileNotFoundError:
                errs.add("", f"boundaries file {str(bpath)!r} not found")
                bdoc = None
            except (OSError, ValueError) as exc:
                errs.add("", f"boundaries file {str(bpath)!r} is not valid JSON: {exc}")
                bdoc = None
            if bdoc is not None:
                extra = {}
                for props, where, ring in _geojson_features(bdoc, errs, bpath.name):
                    bid = props.get("id")
                    if bid is None:
                        errs.add(where, "feature without id")
                        continue
                    bid = str(bid).strip()
                    if ring is None:
                        continue
                    if bid in extra:
                        errs.add(where, f"duplicate boundary for area id {bid!r}")
                        continue
                    extra[bid] = (ring, where)

    region = _parse_region(doc.get("region"), errs)
    records = _flatten_yaml_areas(doc.get("areas", []), errs)
    spec = _build(records, cats, people, errs, extra)
    errs.raise_if_any()
    assert spec is not None
    return dataclasses.replace(spec, region=region)


def loads_grid(text: str, *, fmt: str = "yaml", source: str = "<grid>", base_dir: str | Path | None = None) -> GridSpec:
    """Parse a grid from text; ``fmt`` is "yaml" or "geojson"."""
    if fmt in ("geojson", "json"):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            line = getattr(exc, "lineno", None)
            raise GridFileError(f"{source}: line {line}: invalid JSON: {exc}" if line else f"{source}: invalid JSON: {exc}") from None
        return _load_geojson(doc, source)
    if fmt not in ("yaml", "yml"):
        raise GridFileError(f"{source}: unknown grid format {fmt!r}")
    return _load_yaml_text(text, source, Path(base_dir) if base_dir is not None else None)


def load_grid(path: str | Path | None = None) -> GridSpec:
    """Load and validate a grid file (YAML, or GeoJSON for ``.geojson``/``.json``).

    ``None`` loads the bundled sample grid.  Raises :class:`GridFileError`."""
    p = Path(path) if path is not None else DEFAULT_GRID_PATH
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise GridFileError(f"grid file {str(p)!r} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GridFileError(f"grid file {str(p)!r} cannot be read: {exc}") from None
    fmt = "geojson" if p.suffix.lower() in (".geojson", ".json") else "yaml"
    return loads_grid(text, fmt=fmt, source=p.name, base_dir=p.parent)
