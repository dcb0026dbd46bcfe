"""model registry (models, versions, aliases, audit events) and data validations

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('registered_models',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registered_models')),
    sa.UniqueConstraint('name', name=op.f('uq_registered_models_name'))
    )
    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=80), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('stored_path', sa.Text(), nullable=False),
    sa.Column('source_uri', sa.Text(), nullable=True),
    sa.Column('model_class', sa.String(length=255), nullable=True),
    sa.Column('run_id', sa.String(length=32), nullable=True),
    sa.Column('cell_execution_id', sa.Integer(), nullable=True),
    sa.Column('artifact_id', sa.Integer(), nullable=True),
    sa.Column('signature', sa.JSON(), nullable=False),
    sa.Column('info', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['model_id'], ['registered_models.id'], name=op.f('fk_model_versions_model_id_registered_models'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_model_versions_run_id_runs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['cell_execution_id'], ['cell_executions.id'], name=op.f('fk_model_versions_cell_execution_id_cell_executions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifacts.id'], name=op.f('fk_model_versions_artifact_id_artifacts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('model_id', 'version', name=op.f('uq_model_versions_model_id_version'))
    )
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.create_index('ix_model_versions_run_id', ['run_id'], unique=False)
        batch_op.create_index('ix_model_versions_digest', ['digest'], unique=False)

    op.create_table('model_aliases',
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['registered_models.id'], name=op.f('fk_model_aliases_model_id_registered_models'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], name=op.f('fk_model_aliases_version_id_model_versions')),
    sa.PrimaryKeyConstraint('model_id', 'alias', name=op.f('pk_model_aliases'))
    )
    with op.batch_alter_table('model_aliases', schema=None) as batch_op:
        batch_op.create_index('ix_model_aliases_version_id', ['version_id'], unique=False)

    op.create_table('model_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=True),
    sa.Column('from_version', sa.Integer(), nullable=True),
    sa.Column('to_version', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('user', sa.String(length=255), nullable=True),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('run_id', sa.String(length=32), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['registered_models.id'], name=op.f('fk_model_events_model_id_registered_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_events'))
    )
    with op.batch_alter_table('model_events', schema=None) as batch_op:
        batch_op.create_index('ix_model_events_model_id_id', ['model_id', 'id'], unique=False)

    op.create_table('validations',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=True),
    sa.Column('cell_execution_id', sa.Integer(), nullable=True),
    sa.Column('cell_seq', sa.Integer(), nullable=True),
    sa.Column('data_label', sa.Text(), nullable=False),
    sa.Column('data_fingerprint', sa.String(length=80), nullable=True),
    sa.Column('dataset_artifact_id', sa.Integer(), nullable=True),
    sa.Column('reference_label', sa.Text(), nullable=False),
    sa.Column('reference_artifact_id', sa.Integer(), nullable=True),
    sa.Column('schema_artifact_id', sa.Integer(), nullable=True),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('rows', sa.BigInteger(), nullable=True),
    sa.Column('violations', sa.JSON(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_validations_run_id_runs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['cell_execution_id'], ['cell_executions.id'], name=op.f('fk_validations_cell_execution_id_cell_executions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['dataset_artifact_id'], ['artifacts.id'], name=op.f('fk_validations_dataset_artifact_id_artifacts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['reference_artifact_id'], ['artifacts.id'], name=op.f('fk_validations_reference_artifact_id_artifacts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['schema_artifact_id'], ['artifacts.id'], name=op.f('fk_validations_schema_artifact_id_artifacts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_validations'))
    )
    with op.batch_alter_table('validations', schema=None) as batch_op:
        batch_op.create_index('ix_validations_run_id_cell_seq', ['run_id', 'cell_seq'], unique=False)
        batch_op.create_index('ix_validations_dataset_artifact_id', ['dataset_artifact_id'], unique=False)
        batch_op.create_index('ix_validations_reference_artifact_id', ['reference_artifact_id'], unique=False)


def downgrade() -> None:
    op.drop_table('validations')
    op.drop_table('model_events')
    op.drop_table('model_aliases')
    op.drop_table('model_versions')
    op.drop_table('registered_models')
