"""ix_messages_mailbox_sha256: IMAP mail without a Message-ID is recognised by mailbox + sha256

Revision ID: 0005_mailbox_sha256
Revises: 0004_message_bodies
"""
from alembic import op


revision = '0005_mailbox_sha256'
down_revision = '0004_message_bodies'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_messages_mailbox_sha256', 'messages', ['mailbox', 'sha256'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_messages_mailbox_sha256', table_name='messages')
