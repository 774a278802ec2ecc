"""quarantine: stage, reason and traceback id of messages set aside after repeated failures

Revision ID: 0003_quarantine
Revises: 0002_reply_safety
"""
from alembic import op
import sqlalchemy as sa


revision = '0003_quarantine'
down_revision = '0002_reply_safety'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('quarantine',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('stage', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('traceback_id', sa.String(length=16), nullable=False),
    sa.Column('traceback', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolution', sa.String(length=16), nullable=True),
    sa.Column('resolved_by', sa.String(length=256), nullable=True),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_quarantine_message_id', 'quarantine', ['message_id'])
    op.create_index('ix_quarantine_traceback_id', 'quarantine', ['traceback_id'])


def downgrade() -> None:
    op.drop_index('ix_quarantine_traceback_id', table_name='quarantine')
    op.drop_index('ix_quarantine_message_id', table_name='quarantine')
    op.drop_table('quarantine')
