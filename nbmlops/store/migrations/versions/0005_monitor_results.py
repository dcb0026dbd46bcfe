"""monitoring checks of served models (monitor_results)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('monitor_results',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('model', sa.String(length=255), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.Column('window_spec', sa.String(length=64), nullable=True),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.Column('labeled_rows', sa.BigInteger(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('drifted', sa.Boolean(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=True),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_monitor_results'))
    )
    with op.batch_alter_table('monitor_results', schema=None) as batch_op:
        batch_op.create_index('ix_monitor_results_model_id', ['model', 'id'], unique=False)
        batch_op.create_index('ix_monitor_results_created_at', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_table('monitor_results')
