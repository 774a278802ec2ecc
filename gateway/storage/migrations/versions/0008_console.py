"""console: accounts, shared settings (the session secret), audit log, corrected role, indexes for the lists

Revision ID: 0008_console
Revises: 0007_decision_trace
"""
from alembic import op
import sqlalchemy as sa


revision = '0008_console'
down_revision = '0007_decision_trace'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('console_users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('role', sa.Enum('OPERATOR', 'ADMIN', name='consolerole', native_enum=False, length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=256), nullable=False),
    sa.Column('session_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('console_settings',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('console_audit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('by', sa.String(length=64), nullable=False),
    sa.Column('area', sa.String(length=32), nullable=False),
    sa.Column('summary', sa.String(length=512), nullable=False),
    sa.Column('diff', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_console_audit_at', 'console_audit', ['at'], unique=False)
    with op.batch_alter_table('corrections') as batch:
        batch.add_column(sa.Column('role', sa.String(length=64), nullable=True))
    op.create_index('ix_decisions_category_message', 'decisions', ['category', 'message_id'], unique=False)
    op.create_index('ix_decisions_role_message', 'decisions', ['role', 'message_id'], unique=False)
    op.create_index('ix_decisions_confidence', 'decisions', ['confidence'], unique=False)
    op.create_index('ix_decisions_created_at', 'decisions', ['created_at'], unique=False)
    op.create_index('ix_messages_mailbox_id', 'messages', ['mailbox', 'id'], unique=False)
    op.create_index('ix_messages_received_at', 'messages', ['received_at'], unique=False)


def downgrade() -> None:
    for name, table in (('ix_messages_received_at', 'messages'), ('ix_messages_mailbox_id', 'messages'),
                        ('ix_decisions_created_at', 'decisions'), ('ix_decisions_confidence', 'decisions'),
                        ('ix_decisions_role_message', 'decisions'), ('ix_decisions_category_message', 'decisions')):
        op.drop_index(name, table_name=table)
    with op.batch_alter_table('corrections') as batch:
        batch.drop_column('role')
    op.drop_index('ix_console_audit_at', table_name='console_audit')
    op.drop_table('console_audit')
    op.drop_table('console_settings')
    op.drop_table('console_users')
