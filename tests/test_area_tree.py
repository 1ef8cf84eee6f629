"""The area tree: one structure, one rule for who is responsible, asked by everyone."""

from __future__ import annotations

from bot.areas.grid_file import load_grid
from bot.areas.routing import Router
from bot.areas.service import load_tree
from bot.areas.tree import AreaTree, Node
from bot.cases import service
from tests.conftest import chen, li, song, zhao

SAMPLE = load_grid()


def small() -> AreaTree:
    return AreaTree([Node("root", "根街道", None, 0, 0, captain=1, supervisor=9),
                     Node("mid", "中社区", "root", 1, 1, supervisor=8),
                     Node("leaf", "叶网格", "mid", 2, 2),
                     Node("leaf2", "叶二网格", "mid", 2, 3, captain=3)])


def test_the_deepest_captain_is_responsible_then_the_first_supervisor():
    tree = small()
    assert tree.responsible_for("leaf2") == 3
    assert tree.responsible_for("leaf") == 1  # a captain above beats a nearer supervisor
    assert AreaTree([Node("mid", "中社区", None, supervisor=8), Node("leaf", "叶", "mid")]).responsible_for("leaf") == 8
    assert tree.responsible_for("nope") is None and tree.responsible_for(None) is None


def test_walks_up_and_down():
    tree = small()
    assert tree.ancestors("leaf") == ("mid", "root") and tree.ancestors("root") == ()
    assert tree.subtree("mid") == ["mid", "leaf", "leaf2"] and tree.subtree(None) == ["root", "mid", "leaf", "leaf2"]
    assert tree.subtree("nope") == [] and tree.children("nope") == ()
    assert tree.supervisors_above("leaf") == [8, 9]
    assert tree.path_name("leaf") == "根街道 › 中社区 › 叶网格"
    assert tree.rows_for(None, 2) == ["leaf", "leaf2"] and tree.rows_for("leaf", 1) == ["leaf"]
    assert tree.supervised() == {9: ["root"], 8: ["mid"]}


def test_an_area_whose_parent_is_gone_is_a_root():
    tree = AreaTree([Node("a", "甲", "retired-parent"), Node("b", "乙", "a")])
    assert tree.roots() == ("a",) and tree.ancestors("b") == ("a",)


def test_sample_grid_cast():
    tree = SAMPLE.tree
    assert tree.responsible_for("xianggang-even") == li.id
    assert tree.responsible_for("yanerdao-s") == chen.id
    assert tree.supervisors_above("xianggang-even")[:2] == [zhao.id, song.id]


async def test_the_router_and_the_case_service_give_the_same_answer(core):
    router = Router(SAMPLE)
    async with core.sessionmaker() as s:
        db_tree = await load_tree(session=s)
        for area in SAMPLE.areas:
            expected = SAMPLE.tree.responsible_for(area.id)
            assert router.assignee_for(area.id) == expected
            assert db_tree.responsible_for(area.id) == expected
            assert await service.assignee_for(session=s, area_id=area.id) == expected
            assert await service.supervisors_above(session=s, area_id=area.id) == SAMPLE.tree.supervisors_above(area.id)
