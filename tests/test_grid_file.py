"""Grid file loading and validation (bot/areas/grid_file.py)."""

from __future__ import annotations

import json

import pytest

from bot.areas.grid_file import (
    DEFAULT_CATEGORIES,
    DEFAULT_GRID_PATH,
    AreaSpec,
    GridFileError,
    GridSpec,
    load_grid,
    loads_grid,
    parse_number_alias,
)
from bot.areas.routing import Router

SQUARE = "[[120.0, 36.0], [120.1, 36.0], [120.1, 36.1], [120.0, 36.1], [120.0, 36.0]]"


def _err(text: str, fmt: str = "yaml", **kw) -> GridFileError:
    with pytest.raises(GridFileError) as info:
        loads_grid(text, fmt=fmt, **kw)
    return info.value


# ----------------------------------------------------------------------------- valid files


def test_sample_grid_loads_and_tree_helpers():
    g = load_grid(DEFAULT_GRID_PATH)
    assert isinstance(g, GridSpec)
    assert load_grid() == g  # None → the sample grid
    ids = [a.id for a in g.areas]
    assert len(ids) == len(set(ids))
    # parents before children; levels; order is the position
    seen = set()
    for pos, a in enumerate(g.areas):
        assert a.order == pos
        assert a.parent_id is None or a.parent_id in seen
        assert a.level == (0 if a.parent_id is None else g.area(a.parent_id).level + 1)
        seen.add(a.id)
    root = g.area("haibin")
    assert root.level == 0 and root.supervisor == 3001 and root.kind == "街道"
    communities = g.children("haibin")
    assert [c.id for c in communities] == ["fushanwan", "guanhai", "zhanshan", "xinjiazhuang"]
    assert all(c.supervisor for c in communities)
    leaves = [a for a in g.areas if not g.children(a.id)]
    assert 15 <= len(leaves) <= 20 and all(a.level == 3 and a.boundary for a in leaves)
    assert any(a.captain is None for a in leaves)
    assert [a.id for a in g.ancestors("xianggang-even")] == ["fushanwan-g1", "fushanwan", "haibin"]
    assert g.ancestors("haibin") == ()
    sub = [a.id for a in g.subtree("fushanwan-g2")]
    assert sub == ["fushanwan-g2", "fuzhou-s", "fuzhou-n"]
    assert len(g.subtree("haibin")) == len(g.areas)
    assert g.area("xianggang-odd").numbers == (("香港中路", 1, 99, "odd"),)
    assert g.person(1001).name and g.person(1001).phone is None
    assert all(p.phone is None for p in g.people)
    assert g.category("construction").working_hours is True
    with pytest.raises(KeyError):
        g.area("nope")


def test_default_categories():
    ids = [c.id for c in DEFAULT_CATEGORIES]
    for needed in ("streetlight", "manhole", "garbage", "road", "vending", "frontage", "construction",
                   "ebike", "parking", "noise", "greenery", "other"):
        assert needed in ids
    assert len(ids) == len(set(ids))
    for c in DEFAULT_CATEGORIES:
        assert c.name and c.name_en and c.sla_hours > 0
        if c.id != "other":
            assert len(c.keywords) >= 10, c.id
    by = {c.id: c for c in DEFAULT_CATEGORIES}
    assert by["manhole"].sla_hours <= 24
    assert by["construction"].working_hours
    # a file without categories gets the defaults
    g = loads_grid("areas: [{id: a, name: A}]")
    assert g.categories == DEFAULT_CATEGORIES


def test_categories_and_people_from_file():
    g = loads_grid("""
categories:
  - {id: lamp, name: 路灯, name_en: Lamp, keywords: [路灯, 不亮], sla_hours: 48}
  - {id: build, name: 违建, keywords: 违建, sla_hours: 120, working_time: true}
people:
  - {id: 1001, name: 李建国, phone: "13800000000"}
  - {id: "1002", name: 王秀英}
areas:
  - {id: a, name: A, captain: "1001", supervisor: 1002}
""")
    assert [c.id for c in g.categories] == ["lamp", "build"]
    assert g.categories[0].keywords == ("路灯", "不亮") and g.categories[0].sla_hours == 48.0
    assert g.categories[1].working_hours is True and g.categories[1].name_en is None
    assert g.categories[1].keywords == ("违建",)
    assert g.area("a").captain == 1001 and g.area("a").supervisor == 1002
    assert g.person(1001).phone == "13800000000" and g.person(1002).name == "王秀英"


def test_flat_list_with_parent_references_and_number_aliases():
    g = loads_grid(f"""
areas:
  - {{id: seg, name: 香港中路双号段, parent: grid, aliases: ["香港中路2-100号(双号)"], boundary: {SQUARE}}}
  - {{id: grid, name: 第一网格, parent: root}}
  - {{id: root, name: 海滨街道}}
  - {{id: seg2, name: 香港中路单号段, parent: grid, numbers: [{{road: 香港中路, from: 1, to: 99, parity: 单}}]}}
""")
    assert [a.id for a in g.areas] == ["root", "grid", "seg", "seg2"]
    assert g.area("seg").level == 2 and g.area("seg").parent_id == "grid"
    assert g.area("seg").numbers == (("香港中路", 2, 100, "even"),)
    assert g.area("seg2").numbers == (("香港中路", 1, 99, "odd"),)
    assert g.area("seg").boundary[0] == (120.0, 36.0)


def test_parse_number_alias():
    assert parse_number_alias("香港中路1-99号") == ("香港中路", 1, 99, "all")
    assert parse_number_alias("香港中路1~99號(单号)") == ("香港中路", 1, 99, "odd")
    assert parse_number_alias("燕儿岛路 61-160号（双）") == ("燕儿岛路", 61, 160, "even")
    assert parse_number_alias("海滨小学") is None
    assert parse_number_alias("香港中路99-1号") is None


def test_geojson_grid_loads_and_routes_like_yaml(tmp_path):
    g = load_grid(DEFAULT_GRID_PATH)
    feats = []
    for a in g.areas:
        props = {"id": a.id, "name": a.name, "aliases": list(a.aliases)}
        if a.parent_id:
            props["parent"] = a.parent_id
        if a.captain:
            props["captain"] = a.captain
        if a.supervisor:
            props["supervisor"] = str(a.supervisor)
        feats.append({"type": "Feature", "properties": props,
                      "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in a.boundary]]}})
    feats.reverse()  # children before parents in the file: still fine
    path = tmp_path / "grid.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}, ensure_ascii=False), encoding="utf-8")
    gj = load_grid(path)
    assert gj.categories == DEFAULT_CATEGORIES
    assert {a.id for a in gj.areas} == {a.id for a in g.areas}
    assert gj.areas[0].id == "haibin"
    assert gj.area("xianggang-odd").numbers == (("香港中路", 1, 99, "odd"),)
    assert gj.area("guanhai").supervisor == 2002
    r1, r2 = Router(g), Router(gj)
    for lat, lon in [(36.0525, 120.385), (36.0762, 120.415), (36.0687, 120.385), (36.2, 120.4)]:
        assert r1.route_point(lat, lon).area_id == r2.route_point(lat, lon).area_id
    assert r2.route_address("香港中路12号").area_id == "xianggang-even"
    # .json works too
    p2 = tmp_path / "grid.json"
    p2.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    assert load_grid(p2) == gj


def test_yaml_with_sibling_boundaries_file(tmp_path):
    (tmp_path / "polys.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": "a"},
         "geometry": {"type": "Polygon", "coordinates": [json.loads(SQUARE)]}},
    ]}), encoding="utf-8")
    (tmp_path / "grid.yaml").write_text(
        "boundaries: polys.geojson\nareas:\n  - id: a\n    name: A\n    children: [{id: b, name: B}]\n",
        encoding="utf-8")
    g = load_grid(tmp_path / "grid.yaml")
    assert g.area("a").boundary[1] == (120.1, 36.0)
    assert g.area("b").boundary is None
    assert Router(g).route_point(36.05, 120.05).area_id == "a"
    # a polygon for an unknown id is a typo worth reporting
    (tmp_path / "grid2.yaml").write_text("boundaries: polys.geojson\nareas: [{id: z, name: Z}]\n", encoding="utf-8")
    with pytest.raises(GridFileError, match="unknown area id 'a'"):
        load_grid(tmp_path / "grid2.yaml")
    (tmp_path / "grid3.yaml").write_text("boundaries: missing.geojson\nareas: [{id: z, name: Z}]\n", encoding="utf-8")
    with pytest.raises(GridFileError, match="missing.geojson"):
        load_grid(tmp_path / "grid3.yaml")


# ----------------------------------------------------------------------------- errors


def test_duplicate_area_id_names_lines():
    e = _err("""areas:
  - id: root
    name: 根
    children:
      - id: a
        name: A
      - id: a
        name: A again
""")
    msg = str(e)
    assert "duplicate area id 'a'" in msg and "line 7" in msg and "line 5" in msg
    print(msg)


def test_duplicate_category_id():
    e = _err("""categories:
  - {id: lamp, name: 路灯, sla_hours: 24}
  - {id: lamp, name: 灯, sla_hours: 24}
areas: [{id: a, name: A}]
""")
    assert "duplicate category id 'lamp'" in str(e) and "line 3" in str(e)


def test_cycle_in_flat_list():
    e = _err("""areas:
  - {id: root, name: R}
  - {id: a, name: A, parent: b}
  - {id: b, name: B, parent: c}
  - {id: c, name: C, parent: a}
""")
    msg = str(e)
    assert "cycle" in msg and "a" in msg and "b" in msg and "c" in msg
    assert msg.count("cycle") == 1  # reported once, not once per member
    assert "line " in msg
    e2 = _err("areas:\n  - {id: a, name: A, parent: a}\n")
    assert "own parent" in str(e2) and "'a'" in str(e2)


def test_cycle_in_geojson():
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": "x", "name": "X", "parent": "y"}, "geometry": None},
        {"type": "Feature", "properties": {"id": "y", "name": "Y", "parent": "x"}, "geometry": None},
    ]}
    e = _err(json.dumps(doc), fmt="geojson")
    assert "cycle" in str(e) and "x → y → x" in str(e) or "y → x → y" in str(e)
    assert "feature #" in str(e)


def test_unknown_parent():
    e = _err("areas:\n  - {id: a, name: A}\n  - {id: b, name: B, parent: nowhere}\n")
    assert "unknown parent 'nowhere'" in str(e) and "line 3" in str(e) and "'b'" in str(e)


def test_nested_parent_contradiction():
    e = _err("areas:\n  - id: a\n    name: A\n    children:\n      - {id: b, name: B, parent: zzz}\n")
    assert "contradicts" in str(e)


@pytest.mark.parametrize("boundary, needle", [
    ("[[120.0, 36.0], [120.1, 36.0], [120.1, 36.1], [120.0, 36.1]]", "not closed"),
    ("[[120.0, 36.0], [120.1, 36.0], [120.0, 36.0]]", "at least 4"),
    ("[[120.0, 36.0], [120.1, 36.1], [120.1, 36.0], [120.0, 36.1], [120.0, 36.0]]", "Self-intersection"),
    ("[[120.0, 36.0], [120.1, 36.0], [120.1, 136.1], [120.0, 36.1], [120.0, 36.0]]", "out of range"),
    ("[[200.0, 36.0], [120.1, 36.0], [120.1, 36.1], [120.0, 36.1], [200.0, 36.0]]", "out of range"),
    ("[[120.0, 36.0], [120.1, 36.0], [120.1, 'x'], [120.0, 36.1], [120.0, 36.0]]", "not a [lon, lat] pair"),
    ("[[120.0, 36.0], [120.1, 36.0], [120.2, 36.0], [120.0, 36.0]]", "not a valid polygon"),
    ("'nope'", "boundary must be a list"),
])
def test_bad_boundaries(boundary, needle):
    e = _err(f"areas:\n  - id: a\n    name: A\n    boundary: {boundary}\n")
    assert needle in str(e), str(e)
    assert "line 2" in str(e) and "'a'" in str(e)


@pytest.mark.parametrize("value, ok", [
    ("1001", True), ("'1001'", True), ("abc", False), ("12.5", False), ("true", False), ("-5", False),
    ("'12a'", False), ("[1]", False),
])
def test_captain_and_supervisor_ids(value, ok):
    for key in ("captain", "supervisor"):
        text = f"areas:\n  - id: a\n    name: A\n    {key}: {value}\n"
        if ok:
            assert getattr(loads_grid(text).area("a"), key) == 1001
        else:
            e = _err(text)
            assert key in str(e) and "integer" in str(e) or "positive" in str(e), str(e)
            assert "line 2" in str(e)


def test_missing_id_or_name():
    e = _err("areas:\n  - {name: A}\n  - {id: b}\n  - {id: '', name: C}\n")
    msg = str(e)
    assert "line 2: area without id" in msg
    assert "line 3: area 'b' has no name" in msg
    assert "line 4: area without id" in msg
    e2 = _err("categories:\n  - {name: x, sla_hours: 1}\n  - {id: y, sla_hours: 1}\nareas: [{id: a, name: A}]\n")
    assert "line 2: category without id" in str(e2) and "line 3: category 'y' has no name" in str(e2)


@pytest.mark.parametrize("sla", ["0", "-3", "abc", "true", ".nan"])
def test_sla_hours_must_be_positive(sla):
    e = _err(f"categories:\n  - {{id: x, name: X, sla_hours: {sla}}}\nareas: [{{id: a, name: A}}]\n")
    assert "sla_hours must be a positive number" in str(e) and "line 2" in str(e)


def test_errors_are_collected_and_nothing_half_loaded():
    text = """categories:
  - {id: x, name: X, sla_hours: 0}
areas:
  - id: a
    name: A
    captain: abc
    children:
      - {id: b, name: B, boundary: [[1, 1], [2, 2]]}
      - {id: b, name: B2}
  - {id: c, parent: zz, name: C}
"""
    e = _err(text)
    assert len(e.errors) == 5, e.errors
    msg = str(e)
    for part in ("sla_hours", "captain", "boundary", "duplicate area id 'b'", "unknown parent 'zz'"):
        assert part in msg
    assert msg.startswith("<grid>: 5 errors in grid file")
    # a good file loads afterwards: no state left over from the failed load
    assert [a.id for a in loads_grid("areas: [{id: a, name: A}]").areas] == ["a"]


def test_yaml_syntax_error_and_duplicate_keys():
    e = _err("areas:\n  - id: a\n    name: [unclosed\n")
    assert "YAML syntax error" in str(e) and "line" in str(e)
    e2 = _err("areas:\n  - id: a\n    id: b\n    name: A\n")
    assert "line 3: duplicate key 'id'" in str(e2)


def test_structure_errors(tmp_path):
    assert "no 'areas'" in str(_err("categories: []\n"))
    assert "must be a mapping" in str(_err("- just a list\n"))
    assert "no areas" in str(_err("areas: []\n"))
    assert "'areas' must be a list" in str(_err("areas: {id: a}\n"))
    with pytest.raises(GridFileError, match="not found"):
        load_grid(tmp_path / "missing.yaml")
    bad_json = tmp_path / "x.geojson"
    bad_json.write_text("{not json", encoding="utf-8")
    with pytest.raises(GridFileError, match="invalid JSON"):
        load_grid(bad_json)


def test_geojson_errors_name_the_feature():
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": "a", "name": "A"},
         "geometry": {"type": "Point", "coordinates": [120, 36]}},
        {"type": "Feature", "properties": {"id": "b", "name": "B", "captain": "abc"},
         "geometry": {"type": "Polygon", "coordinates": [[[120, 36], [121, 36], [121, 37], [120, 36.5]]]}},
        {"type": "Feature", "properties": {"name": "no id"}, "geometry": None},
    ]}
    e = _err(json.dumps(doc), fmt="geojson")
    msg = str(e)
    assert "feature #1 (id 'a')" in msg and "Polygon" in msg
    assert "feature #2 (id 'b')" in msg and "captain" in msg and "not closed" in msg
    assert "feature #3" in msg and "without id" in msg
    assert "FeatureCollection" in str(_err(json.dumps({"type": "Feature"}), fmt="geojson"))


def test_areaspec_is_frozen():
    g = loads_grid("areas: [{id: a, name: A, aliases: [x, y]}]")
    a = g.area("a")
    assert isinstance(a, AreaSpec) and a.aliases == ("x", "y")
    with pytest.raises(Exception):
        a.name = "B"  # type: ignore[misc]
