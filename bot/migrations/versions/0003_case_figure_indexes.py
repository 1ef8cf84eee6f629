"""Indexes for the digest's figures: open cases per worker and per area (partial), and the
time columns a period's events are found by

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

OPEN_CASES = sa.text("status IN ('new', 'accepted', 'reopened')")  # bot.cases.models.OPEN_CASES, as of now
TIMES = {'ix_cases_assigned': 'assigned_at', 'ix_cases_accepted': 'accepted_at', 'ix_cases_resolved': 'resolved_at',
         'ix_cases_closed': 'closed_at', 'ix_cases_deadline': 'deadline_at'}


def upgrade() -> None:
    op.create_index('ix_cases_open_assignee', 'cases', ['assignee_id', 'deadline_at'], unique=False,
                    sqlite_where=OPEN_CASES, postgresql_where=OPEN_CASES)
    op.create_index('ix_cases_open_area', 'cases', ['area_id', 'deadline_at'], unique=False,
                    sqlite_where=OPEN_CASES, postgresql_where=OPEN_CASES)
    for name, column in TIMES.items():
        op.create_index(name, 'cases', [column], unique=False)


def downgrade() -> None:
    for name in reversed(TIMES):
        op.drop_index(name, table_name='cases')
    op.drop_index('ix_cases_open_area', table_name='cases')
    op.drop_index('ix_cases_open_assignee', table_name='cases')
