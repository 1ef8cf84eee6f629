"""The area tree: one pure structure and one rule for "who is responsible here".

Built once — from the database (`bot.areas.service.load_tree`) or from a grid file
(`AreaTree.of_spec`) — and asked by the router, the case service, stats, broadcast audiences
and the digests. Nothing here touches the database or the clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Node:
    id: str
    name: str
    parent_id: str | None
    level: int = 0
    order: int = 0
    captain: int | None = None
    supervisor: int | None = None
    retired: bool = False


class AreaTree:
    """Areas by id, their children in display order, and walks up and down.

    `areas` maps each id to what the tree was built from (an `Area` row, an `AreaSpec`), for
    callers that need more than the tree's own fields (a boundary, the extra columns).
    """

    def __init__(self, nodes: Iterable[Node], sources: dict | None = None) -> None:
        self.nodes: dict[str, Node] = {n.id: n for n in nodes}
        self.areas: dict[str, object] = sources if sources is not None else dict(self.nodes)
        kids: dict[str | None, list[Node]] = {}
        for n in sorted(self.nodes.values(), key=lambda n: (n.order, n.id)):
            # an area whose parent is not in the tree (retired, filtered out) is a root
            kids.setdefault(n.parent_id if n.parent_id in self.nodes else None, []).append(n)
        self._children = {k: tuple(x.id for x in v) for k, v in kids.items()}

    @classmethod
    def of_spec(cls, areas: Iterable) -> AreaTree:
        """From a grid file's AreaSpecs."""
        areas = list(areas)
        return cls((Node(a.id, a.name, a.parent_id, a.level, a.order, a.captain, a.supervisor) for a in areas),
                   {a.id: a for a in areas})

    @classmethod
    def of_rows(cls, areas: Iterable) -> AreaTree:
        """From `Area` rows."""
        areas = list(areas)
        return cls((Node(a.id, a.name, a.parent_id, a.level, a.sort_order, a.captain_id, a.supervisor_id,
                         bool(a.retired)) for a in areas), {a.id: a for a in areas})

    def __contains__(self, area_id: object) -> bool:
        return area_id in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def get(self, area_id: str | None) -> Node | None:
        return self.nodes.get(area_id) if area_id is not None else None

    def roots(self) -> tuple[str, ...]:
        return self._children.get(None, ())

    def children(self, area_id: str | None) -> tuple[str, ...]:
        """The ids of the area's children (of the roots for None), in display order."""
        return self._children.get(area_id, ()) if area_id is None or area_id in self.nodes else ()

    def ancestors(self, area_id: str | None) -> tuple[str, ...]:
        """The ids above the area, nearest first (the area itself not included)."""
        out: list[str] = []
        n = self.get(area_id)
        while n is not None and n.parent_id in self.nodes and n.parent_id not in out:
            out.append(n.parent_id)
            n = self.nodes[n.parent_id]
        return tuple(out)

    def chain(self, area_id: str | None) -> tuple[Node, ...]:
        """The area and its ancestors, nearest first; empty for an unknown area."""
        if area_id not in self.nodes:
            return ()
        return (self.nodes[area_id],) + tuple(self.nodes[a] for a in self.ancestors(area_id))

    def subtree(self, area_id: str | None) -> list[str]:
        """The area and all below it, parents before children (the whole tree for None)."""
        if area_id is not None and area_id not in self.nodes:
            return []
        out: list[str] = []
        stack = [area_id] if area_id is not None else list(reversed(self.roots()))
        while stack:
            a = stack.pop()
            out.append(a)
            stack.extend(reversed(self._children.get(a, ())))
        return out

    def responsible_for(self, area_id: str | None) -> int | None:
        """Who gets a case here: the captain of the deepest area with one, from the area up;
        failing that the first supervisor up the tree; None when the area is unknown or nobody is set."""
        chain = self.chain(area_id)
        for n in chain:
            if n.captain is not None:
                return n.captain
        for n in chain:
            if n.supervisor is not None:
                return n.supervisor
        return None

    def supervisors_above(self, area_id: str | None) -> list[int]:
        """The supervisors from the area up to the root, nearest first, without repeats."""
        out: list[int] = []
        for n in self.chain(area_id):
            if n.supervisor is not None and n.supervisor not in out:
                out.append(n.supervisor)
        return out

    def name(self, area_id: str | None) -> str:
        n = self.get(area_id)
        return n.name if n else "—"

    def path_name(self, area_id: str | None, sep: str = " › ") -> str:
        """The names from the root down to the area."""
        chain = self.chain(area_id)
        return sep.join(n.name for n in reversed(chain)) if chain else "—"

    def rows_for(self, root: str | None, level: int) -> list[str]:
        """The areas a breakdown shows under `root` (None = the whole tree): those at `level`,
        or `root` itself when it is at or below that level."""
        r = self.get(root)
        if root is not None and r is None:
            return []
        if r is not None and r.level >= level:
            return [root]
        return [a for a in self.subtree(root) if self.nodes[a].level == level]

    def supervised(self) -> dict[int, list[str]]:
        """Each supervisor's topmost areas (an area inside another of theirs is left out)."""
        mine: dict[int, list[str]] = {}
        for n in self.nodes.values():
            if n.supervisor is not None and not n.retired:
                mine.setdefault(n.supervisor, []).append(n.id)
        out = {}
        for sup, ids in mine.items():
            inside = {x for i in ids for x in self.subtree(i) if x != i}
            out[sup] = sorted((i for i in ids if i not in inside), key=lambda i: (self.nodes[i].level, i))
        return out
