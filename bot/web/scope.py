"""Who is looking, and what they may see.

- an admin: everything;
- a supervisor: the cases of the subtrees they supervise, and any case assigned to them;
- a captain (grid worker): their own tasks only;
- anyone else (residents): nothing — every console page answers 403.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import false, or_, true
from sqlalchemy.ext.asyncio import AsyncSession

from bot.areas.models import Area
from bot.areas.service import load_tree
from bot.areas.tree import AreaTree
from bot.cases.models import Case
from bot.people.models import Person
from bot.people.service import Roles, roles_of


@dataclass
class Viewer:
    person: Person
    roles: Roles
    tree: AreaTree  # the current (not retired) areas
    rows: dict[str, Area]  # their rows: boundaries for the map
    area_ids: list[str] | None  # the areas whose cases they see; None = all (admin)

    @property
    def id(self) -> int:
        return self.person.id

    @property
    def admin(self) -> bool:
        return self.roles.admin

    @property
    def supervisor(self) -> bool:
        return self.admin or bool(self.roles.supervisor_of)

    @property
    def allowed(self) -> bool:
        return self.admin or self.roles.worker

    def case_filter(self):
        """A WHERE clause limiting Case rows to what this viewer may see."""
        if self.admin:
            return true()
        own = Case.assignee_id == self.id
        if self.area_ids:
            return or_(Case.area_id.in_(self.area_ids), own)
        return own if self.roles.worker else false()

    def may_see(self, case: Case) -> bool:
        if self.admin:
            return True
        if case.assignee_id == self.id:
            return True
        return bool(self.area_ids) and case.area_id in set(self.area_ids)

    def visible_areas(self) -> list[str]:
        """Areas drawn on the map and listed in the filters."""
        if self.area_ids is not None:
            return list(self.area_ids)
        return self.tree.subtree(None)


async def viewer_for(*, session: AsyncSession, person: Person, settings) -> Viewer:
    roles = await roles_of(session=session, person=person, settings=settings)
    tree = await load_tree(session=session, include_retired=False)
    rows = tree.areas
    if roles.admin:
        areas = None
    else:
        seen: dict[str, None] = {}
        for root in roles.supervisor_of:
            for a in tree.subtree(root):
                seen[a] = None
        areas = list(seen)
    return Viewer(person=person, roles=roles, tree=tree, rows=rows, area_ids=areas)
