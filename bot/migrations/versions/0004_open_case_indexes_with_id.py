"""The partial indexes over open cases carry the case id (a window over them then reads no row)

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

OPEN_CASES = sa.text("status IN ('new', 'accepted', 'reopened')")  # bot.cases.models.OPEN_CASES, as of now


def _recreate(with_id: bool) -> None:
    for name, column in (('ix_cases_open_assignee', 'assignee_id'), ('ix_cases_open_area', 'area_id')):
        op.drop_index(name, table_name='cases')
        op.create_index(name, 'cases', [column, 'deadline_at', *(['id'] if with_id else [])], unique=False,
                        sqlite_where=OPEN_CASES, postgresql_where=OPEN_CASES)


def upgrade() -> None:
    _recreate(with_id=True)


def downgrade() -> None:
    _recreate(with_id=False)
