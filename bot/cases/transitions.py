"""The case state machine: one table of legal moves and one pure function that applies them.

Nothing here reads the clock or the database: `apply` is handed the actor's standing and
`now`, checks the right to act, changes the case, and returns the history row and events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

OPEN = ("new", "accepted", "reopened")
FINAL = ("closed", "closed_unresolved", "duplicate", "withdrawn")
# statuses statistics may count as fixed
FIXED = ("resolved", "closed")

# (status, action) → new status
MOVES: dict[tuple[str, str], str] = {
    **{(s, "accept"): "accepted" for s in ("new", "reopened")},
    **{(s, "resolve"): "resolved" for s in OPEN},
    **{(s, "transfer"): "new" for s in OPEN},
    **{(s, "note"): s for s in OPEN},
    **{(s, "extend"): s for s in OPEN},  # more time for the assignee (the web desk)
    **{(s, "close_unresolved"): "closed_unresolved" for s in OPEN},
    **{(s, "mark_duplicate"): "duplicate" for s in OPEN},
    ("new", "withdraw"): "withdrawn",
    ("resolved", "confirm"): "closed",
    ("resolved", "reopen"): "reopened",
    ("resolved", "auto_close"): "closed",
    ("closed", "rate"): "closed",
}

# who may take each action: worker = the assignee, a supervisor above the case's area, or an admin
WORKER_ACTIONS = {"accept", "resolve", "transfer", "note", "mark_duplicate"}
SUPERVISOR_ACTIONS = {"close_unresolved", "extend"}
REPORTER_ACTIONS = {"withdraw", "confirm", "reopen", "rate"}
SYSTEM_ACTIONS = {"auto_close"}


@dataclass(frozen=True)
class Actor:
    id: int | None  # None = the system (scheduled jobs)
    is_admin: bool = False
    supervises_area: bool = False  # supervisor of the case's area or an area above it

    @classmethod
    def system(cls) -> Actor:
        return cls(id=None)


@dataclass
class Event:
    action: str
    case_id: int
    actor_id: int | None
    from_status: str
    to_status: str
    note: str = ""
    data: dict = field(default_factory=dict)


class TransitionError(Exception):
    """Base: the move was refused. `reason` is a catalog key."""

    reason = "cases.err_generic"


class NotAllowed(TransitionError):
    reason = "cases.err_not_allowed"


class IllegalMove(TransitionError):
    reason = "cases.err_illegal_move"


def may(case, action: str, actor: Actor) -> bool:
    if action in SYSTEM_ACTIONS:
        return actor.id is None
    if actor.id is None:
        return False
    if action in REPORTER_ACTIONS:
        # the one who resolves is never the one who confirms
        if action in ("confirm", "rate") and case.resolved_by == actor.id:
            return False
        return actor.id == case.reporter_id
    if action in WORKER_ACTIONS:
        return actor.id == case.assignee_id or actor.supervises_area or actor.is_admin
    if action in SUPERVISOR_ACTIONS:
        return actor.supervises_area or actor.is_admin
    return False


def apply(case, action: str, actor: Actor, now: datetime, note: str = "", **data) -> Event:
    """Check and make one move; the caller stores the returned event as the history row."""
    target = MOVES.get((case.status, action))
    if target is None:
        raise IllegalMove(f"{action} not allowed from {case.status}")
    if not may(case, action, actor):
        raise NotAllowed(f"{actor.id} may not {action} case {case.id}")
    before = case.status
    case.status = target
    case.updated_at = now
    if action == "accept":
        case.accepted_at = now
    elif action == "resolve":
        case.resolved_at = now
        case.resolution_note = note
        case.resolved_by = actor.id
    elif action in ("confirm", "auto_close", "close_unresolved", "mark_duplicate", "withdraw"):
        case.closed_at = now
        if action in ("close_unresolved", "mark_duplicate", "withdraw"):
            case.close_reason = note
    elif action == "reopen":
        case.reopen_count += 1
        case.resolved_at = None
        case.resolved_by = None
    elif action == "rate":
        case.rating = int(data["rating"])
    return Event(action=action, case_id=case.id, actor_id=actor.id, from_status=before, to_status=target,
                 note=note, data=data)
