"""Nodes: how many requests a node takes at once (slots) and the key the gateway sends it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("slots", sa.Integer, nullable=False, server_default="4"))
        batch.add_column(sa.Column("api_key", sa.String(512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("api_key")
        batch.drop_column("slots")
