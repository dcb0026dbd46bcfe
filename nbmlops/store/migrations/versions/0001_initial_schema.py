"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('artifacts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('uri', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('fingerprint', sa.String(length=80), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('schema', sa.JSON(), nullable=True),
    sa.Column('stored_path', sa.Text(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_artifacts')),
    sa.UniqueConstraint('uri', 'fingerprint', name=op.f('uq_artifacts_uri_fingerprint'))
    )
    with op.batch_alter_table('artifacts', schema=None) as batch_op:
        batch_op.create_index('ix_artifacts_fingerprint', ['fingerprint'], unique=False)

    op.create_table('cell_sources',
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('hash', name=op.f('pk_cell_sources'))
    )
    op.create_table('experiments',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_experiments')),
    sa.UniqueConstraint('name', name=op.f('uq_experiments_name'))
    )
    op.create_table('runs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('notebook_path', sa.Text(), nullable=True),
    sa.Column('notebook_hash', sa.String(length=64), nullable=True),
    sa.Column('parent_run_id', sa.String(length=32), nullable=True),
    sa.Column('start_time', sa.Float(), nullable=False),
    sa.Column('end_time', sa.Float(), nullable=True),
    sa.Column('git_commit', sa.String(length=64), nullable=True),
    sa.Column('git_dirty', sa.Boolean(), nullable=True),
    sa.Column('environment', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_runs_experiment_id_experiments')),
    sa.ForeignKeyConstraint(['parent_run_id'], ['runs.id'], name=op.f('fk_runs_parent_run_id_runs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs'))
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index('ix_runs_experiment_id_start_time', ['experiment_id', 'start_time'], unique=False)
        batch_op.create_index('ix_runs_notebook_path', ['notebook_path'], unique=False)
        batch_op.create_index('ix_runs_parent_run_id', ['parent_run_id'], unique=False)
        batch_op.create_index('ix_runs_start_time', ['start_time'], unique=False)
        batch_op.create_index('ix_runs_status_start_time', ['status', 'start_time'], unique=False)

    op.create_table('cell_executions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('cell_id', sa.String(length=64), nullable=True),
    sa.Column('execution_count', sa.Integer(), nullable=True),
    sa.Column('source_hash', sa.String(length=64), nullable=False),
    sa.Column('start_time', sa.Float(), nullable=False),
    sa.Column('duration', sa.Float(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error_name', sa.String(length=255), nullable=True),
    sa.Column('error_value', sa.Text(), nullable=True),
    sa.Column('vars_defined', sa.JSON(), nullable=False),
    sa.Column('vars_used', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_cell_executions_run_id_runs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_hash'], ['cell_sources.hash'], name=op.f('fk_cell_executions_source_hash_cell_sources')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cell_executions')),
    sa.UniqueConstraint('run_id', 'seq', name=op.f('uq_cell_executions_run_id_seq'))
    )
    with op.batch_alter_table('cell_executions', schema=None) as batch_op:
        batch_op.create_index('ix_cell_executions_cell_id', ['cell_id'], unique=False)

    op.create_table('tags',
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_tags_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'key', name=op.f('pk_tags'))
    )
    op.create_table('artifact_edges',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('cell_execution_id', sa.Integer(), nullable=True),
    sa.Column('artifact_id', sa.Integer(), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('via', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifacts.id'], name=op.f('fk_artifact_edges_artifact_id_artifacts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['cell_execution_id'], ['cell_executions.id'], name=op.f('fk_artifact_edges_cell_execution_id_cell_executions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_artifact_edges_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_artifact_edges'))
    )
    with op.batch_alter_table('artifact_edges', schema=None) as batch_op:
        batch_op.create_index('ix_artifact_edges_artifact_id_direction', ['artifact_id', 'direction'], unique=False)
        batch_op.create_index('ix_artifact_edges_cell_execution_id', ['cell_execution_id'], unique=False)
        batch_op.create_index('ix_artifact_edges_run_id', ['run_id'], unique=False)

    op.create_table('estimators',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('cell_execution_id', sa.Integer(), nullable=False),
    sa.Column('variable', sa.String(length=255), nullable=False),
    sa.Column('class_name', sa.String(length=255), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('fitted_on', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['cell_execution_id'], ['cell_executions.id'], name=op.f('fk_estimators_cell_execution_id_cell_executions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_estimators_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_estimators'))
    )
    with op.batch_alter_table('estimators', schema=None) as batch_op:
        batch_op.create_index('ix_estimators_cell_execution_id', ['cell_execution_id'], unique=False)
        batch_op.create_index('ix_estimators_run_id', ['run_id'], unique=False)

    op.create_table('metrics',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('timestamp', sa.Float(), nullable=False),
    sa.Column('cell_execution_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['cell_execution_id'], ['cell_executions.id'], name=op.f('fk_metrics_cell_execution_id_cell_executions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_metrics_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_metrics'))
    )
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.create_index('ix_metrics_run_id_key_step', ['run_id', 'key', 'step'], unique=False)

    op.create_table('params',
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('cell_execution_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['cell_execution_id'], ['cell_executions.id'], name=op.f('fk_params_cell_execution_id_cell_executions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_params_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'key', name=op.f('pk_params'))
    )
    op.create_table('variable_edges',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('src_cell_execution_id', sa.Integer(), nullable=False),
    sa.Column('dst_cell_execution_id', sa.Integer(), nullable=False),
    sa.Column('variable', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=8), server_default='data', nullable=False),
    sa.ForeignKeyConstraint(['dst_cell_execution_id'], ['cell_executions.id'], name=op.f('fk_variable_edges_dst_cell_execution_id_cell_executions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_variable_edges_run_id_runs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['src_cell_execution_id'], ['cell_executions.id'], name=op.f('fk_variable_edges_src_cell_execution_id_cell_executions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_variable_edges'))
    )
    with op.batch_alter_table('variable_edges', schema=None) as batch_op:
        batch_op.create_index('ix_variable_edges_dst_cell_execution_id', ['dst_cell_execution_id'], unique=False)
        batch_op.create_index('ix_variable_edges_src_cell_execution_id', ['src_cell_execution_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('variable_edges', schema=None) as batch_op:
        batch_op.drop_index('ix_variable_edges_src_cell_execution_id')
        batch_op.drop_index('ix_variable_edges_dst_cell_execution_id')

    op.drop_table('variable_edges')
    op.drop_table('params')
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_metrics_run_id_key_step')

    op.drop_table('metrics')
    with op.batch_alter_table('estimators', schema=None) as batch_op:
        batch_op.drop_index('ix_estimators_run_id')
        batch_op.drop_index('ix_estimators_cell_execution_id')

    op.drop_table('estimators')
    with op.batch_alter_table('artifact_edges', schema=None) as batch_op:
        batch_op.drop_index('ix_artifact_edges_run_id')
        batch_op.drop_index('ix_artifact_edges_cell_execution_id')
        batch_op.drop_index('ix_artifact_edges_artifact_id_direction')

    op.drop_table('artifact_edges')
    op.drop_table('tags')
    with op.batch_alter_table('cell_executions', schema=None) as batch_op:
        batch_op.drop_index('ix_cell_executions_cell_id')

    op.drop_table('cell_executions')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_status_start_time')
        batch_op.drop_index('ix_runs_start_time')
        batch_op.drop_index('ix_runs_parent_run_id')
        batch_op.drop_index('ix_runs_notebook_path')
        batch_op.drop_index('ix_runs_experiment_id_start_time')

    op.drop_table('runs')
    op.drop_table('experiments')
    op.drop_table('cell_sources')
    with op.batch_alter_table('artifacts', schema=None) as batch_op:
        batch_op.drop_index('ix_artifacts_fingerprint')

    op.drop_table('artifacts')

