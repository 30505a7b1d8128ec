"""discovery runs, proposals and device neighbours

Revision ID: 0011_discovery
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011_discovery'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('discovery_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('started_by', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('ranges', sa.JSON(), nullable=False),
    sa.Column('seed', sa.String(length=253), nullable=True),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('secrets', sa.LargeBinary(), nullable=True),
    sa.Column('previous_id', sa.Integer(), nullable=True),
    sa.Column('addresses', sa.Integer(), nullable=False),
    sa.Column('done', sa.Integer(), nullable=False),
    sa.Column('probes', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('finished_at', sa.Float(), nullable=True),
    sa.Column('next_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['previous_id'], ['discovery_runs.id'], name=op.f('fk_discovery_runs_previous_id_discovery_runs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_discovery_runs'))
    )
    op.create_table('discovery_found',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('change', sa.String(length=16), nullable=False),
    sa.Column('changed', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=True),
    sa.Column('facts', sa.JSON(), nullable=False),
    sa.Column('parent', sa.String(length=64), nullable=True),
    sa.Column('neighbours', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_discovery_found_device_id_devices'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['run_id'], ['discovery_runs.id'], name=op.f('fk_discovery_found_run_id_discovery_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_discovery_found')),
    sa.UniqueConstraint('run_id', 'address', name='uq_discovery_found_run_address')
    )
    op.create_table('device_neighbours',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('protocol', sa.String(length=8), nullable=False),
    sa.Column('local_port', sa.String(length=128), nullable=False),
    sa.Column('remote_name', sa.String(length=128), nullable=False),
    sa.Column('remote_port', sa.String(length=128), nullable=False),
    sa.Column('remote_address', sa.String(length=64), nullable=False),
    sa.Column('remote_chassis', sa.String(length=128), nullable=False),
    sa.Column('remote_descr', sa.Text(), nullable=False),
    sa.Column('seen_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_device_neighbours_device_id_devices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_device_neighbours'))
    )
    op.create_index('ix_device_neighbours_device', 'device_neighbours', ['device_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_device_neighbours_device', table_name='device_neighbours')
    op.drop_table('device_neighbours')
    op.drop_table('discovery_found')
    op.drop_table('discovery_runs')
