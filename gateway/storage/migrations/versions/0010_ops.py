"""messages (mailbox, received_at) index: `gateway status` asks per mailbox for the last arrival and today's count

Revision ID: 0010_ops
Revises: 0007_decision_trace
"""
from alembic import op


revision = '0010_ops'
down_revision = '0007_decision_trace'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_messages_mailbox_received', 'messages', ['mailbox', 'received_at'])


def downgrade() -> None:
    op.drop_index('ix_messages_mailbox_received', table_name='messages')
