"""reply safety: what each mail provided (steps, screenshot) and the digests of its screenshot-sized images

Revision ID: 0002_reply_safety
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0002_reply_safety'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('decisions') as batch:
        batch.add_column(sa.Column('has_steps', sa.Boolean(), nullable=True))
        batch.add_column(sa.Column('has_screenshot', sa.Boolean(), nullable=True))
    op.create_table('message_images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('sender', sa.String(length=320), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('message_images') as batch:
        batch.create_index('ix_message_images_sender', ['sender', 'sha256'], unique=False)
        batch.create_index(batch.f('ix_message_images_message_id'), ['message_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('message_images') as batch:
        batch.drop_index(batch.f('ix_message_images_message_id'))
        batch.drop_index('ix_message_images_sender')
    op.drop_table('message_images')
    with op.batch_alter_table('decisions') as batch:
        batch.drop_column('has_screenshot')
        batch.drop_column('has_steps')
