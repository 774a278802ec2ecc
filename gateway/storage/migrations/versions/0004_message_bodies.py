"""message_bodies: the raw bytes move out of messages, so state changes stop rewriting them

Revision ID: 0004_message_bodies
Revises: 0003_quarantine
"""
from alembic import op
import sqlalchemy as sa


revision = '0004_message_bodies'
down_revision = '0003_quarantine'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('message_bodies',
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], ),
    sa.PrimaryKeyConstraint('message_id')
    )
    op.execute('INSERT INTO message_bodies (message_id, raw) SELECT id, raw FROM messages')
    op.execute('ALTER TABLE messages DROP COLUMN raw')  # in place (SQLite >= 3.35): other tables refer to messages


def downgrade() -> None:
    op.add_column('messages', sa.Column('raw', sa.LargeBinary(), nullable=True))
    op.execute('UPDATE messages SET raw = (SELECT raw FROM message_bodies WHERE message_id = messages.id)')
    op.drop_table('message_bodies')
