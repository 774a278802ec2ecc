"""decisions.trace: the stored explain trace (top-3, phase and why, every rule checked, hit or missed, reply)

Revision ID: 0007_decision_trace
Revises: 0006_mailbox_skipped
"""
from alembic import op
import sqlalchemy as sa


revision = '0007_decision_trace'
down_revision = '0006_mailbox_skipped'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('decisions') as batch:
        batch.add_column(sa.Column('trace', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('decisions') as batch:
        batch.drop_column('trace')
