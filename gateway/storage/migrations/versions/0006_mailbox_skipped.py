"""mailbox_state.skipped_uids, last_skip_error: messages the IMAP server refused to hand out, skipped

Revision ID: 0006_mailbox_skipped
Revises: 0005_mailbox_sha256
"""
from alembic import op
import sqlalchemy as sa


revision = '0006_mailbox_skipped'
down_revision = '0005_mailbox_sha256'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mailbox_state') as batch:
        batch.add_column(sa.Column('skipped_uids', sa.JSON(), nullable=False, server_default='[]'))
        batch.add_column(sa.Column('last_skip_error', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('mailbox_state') as batch:
        batch.drop_column('last_skip_error')
        batch.drop_column('skipped_uids')
