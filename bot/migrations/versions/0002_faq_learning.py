"""FAQ learning loop: how a question went (unknown / suggest / unhelpful), admin links, alternates

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import bot.db


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('faq_unanswered', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='unknown', nullable=False))
        batch_op.add_column(sa.Column('entry_id', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('linked_entry', sa.String(length=100), nullable=True))
    op.create_table('faq_alternates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.String(length=100), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('added_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('added_by', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_faq_alternates'))
    )
    with op.batch_alter_table('faq_alternates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_faq_alternates_entry_id'), ['entry_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('faq_alternates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_faq_alternates_entry_id'))
    op.drop_table('faq_alternates')
    with op.batch_alter_table('faq_unanswered', schema=None) as batch_op:
        batch_op.drop_column('linked_entry')
        batch_op.drop_column('entry_id')
        batch_op.drop_column('kind')
