"""Every outgoing message has a name: it keys the outbox row and the catalog entry ``kind.<name>``.

The catalog entry names the message in each language (what an operator reads in an outbox
listing); `tests/test_i18n.py` checks every kind has one in every language.
"""

from __future__ import annotations

from enum import StrEnum


class MessageKind(StrEnum):
    # answers in the chat the update came from
    REPLY = "reply"
    EDIT = "edit"
    ERROR = "error"
    # a case's task message to its assignee (one per header) and the pin before it
    CASE_LOCATION = "case_location"
    CASE_NEW = "case_new"
    CASE_REOPENED = "case_reopened"
    CASE_TRANSFERRED = "case_transferred"
    CASE_ACCEPTED = "case_accepted"
    CASE_VIEW = "case_view"
    CASE_EXTENDED = "case_extended"
    # what the people following a case are told
    CASE_RESOLVED = "case_resolved"
    CASE_CLOSE_UNRESOLVED = "case_close_unresolved"
    CASE_MARK_DUPLICATE = "case_mark_duplicate"
    CASE_CONFIRMED = "case_confirmed"
    CASE_WITHDRAWN = "case_withdrawn"
    CASE_REOPENED_SUPERVISOR = "case_reopened_supervisor"
    AUTO_CLOSED = "auto_closed"
    RELAY_TO_RESIDENT = "relay_to_resident"
    RELAY_TO_WORKER = "relay_to_worker"
    # the chase and the scheduled letters
    SLA_REMINDER = "sla_reminder"
    OVERDUE_ASSIGNEE = "overdue_assignee"
    ESCALATION = "escalation"
    DIGEST_WORKER = "digest_worker"
    DIGEST_SUPERVISOR = "digest_supervisor"
    DIGEST_ADMIN = "digest_admin"
    WEEKLY_OVERDUE = "weekly_overdue"
    # administration
    INVITE_REDEEMED = "invite_redeemed"
    STATS_CHART = "stats_chart"
    EXPORT = "export"
    BROADCAST = "broadcast"
    BC_PROGRESS = "bc_progress"
    BC_DONE = "bc_done"

    @property
    def key(self) -> str:
        """The catalog entry naming this message."""
        return f"kind.{self.value}"

    @classmethod
    def task(cls, header: str) -> MessageKind:
        """The kind of a task message pushed with this header (new, reopened, transferred …)."""
        return cls(f"case_{header}")
