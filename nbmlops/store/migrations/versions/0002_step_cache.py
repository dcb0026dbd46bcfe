"""step cache of pipeline runs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('step_cache',
    sa.Column('cache_key', sa.String(length=80), nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('pipeline', sa.String(length=255), nullable=False),
    sa.Column('step', sa.String(length=255), nullable=False),
    sa.Column('outputs', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_step_cache_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('cache_key', 'run_id', name=op.f('pk_step_cache'))
    )
    with op.batch_alter_table('step_cache', schema=None) as batch_op:
        batch_op.create_index('ix_step_cache_run_id', ['run_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('step_cache', schema=None) as batch_op:
        batch_op.drop_index('ix_step_cache_run_id')
    op.drop_table('step_cache')
