"""Join tokens: one-time credentials with which a member's node registers itself.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "join_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False, unique=True),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("slots", sa.Integer, nullable=True),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("expires", sa.DateTime, nullable=False),
        sa.Column("used", sa.DateTime, nullable=True),
        sa.Column("revoked", sa.DateTime, nullable=True),
        sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id"), nullable=True),
    )
    op.create_index("ix_join_tokens_member_id", "join_tokens", ["member_id"])


def downgrade() -> None:
    op.drop_index("ix_join_tokens_member_id", "join_tokens")
    op.drop_table("join_tokens")
