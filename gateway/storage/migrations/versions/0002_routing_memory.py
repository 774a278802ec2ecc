"""routing memory: request fingerprint, duplicate and thread links on decisions

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('decisions') as batch:
        batch.add_column(sa.Column('fingerprint', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('duplicate_of', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('thread_of', sa.String(length=32), nullable=True))
        batch.create_index('ix_decisions_fingerprint', ['fingerprint'])


def downgrade() -> None:
    with op.batch_alter_table('decisions') as batch:
        batch.drop_index('ix_decisions_fingerprint')
        batch.drop_column('thread_of')
        batch.drop_column('duplicate_of')
        batch.drop_column('fingerprint')
