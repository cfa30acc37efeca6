"""run control: reruns, pinned runs, copied steps

Revision ID: c4d6e8f0a603
Revises: b2e4d6f8a012
Create Date: 2026-12-04 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c4d6e8f0a603"
down_revision: str | None = "b2e4d6f8a012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("rerun_of", sa.Uuid(), nullable=True))
    op.create_index(op.f("ix_runs_rerun_of"), "runs", ["rerun_of"], unique=False)
    op.create_foreign_key(
        op.f("fk_runs_rerun_of_runs"), "runs", "runs", ["rerun_of"], ["id"], ondelete="SET NULL"
    )
    op.add_column(
        "runs",
        sa.Column("pinned", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_index(op.f("ix_runs_finished_at"), "runs", ["finished_at"], unique=False)
    op.add_column("step_runs", sa.Column("copied_from", sa.Uuid(), nullable=True))
    op.create_index(
        op.f("ix_chat_messages_created_at"), "chat_messages", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_chat_messages_created_at"), table_name="chat_messages")
    op.drop_column("step_runs", "copied_from")
    op.drop_index(op.f("ix_runs_finished_at"), table_name="runs")
    op.drop_column("runs", "pinned")
    op.drop_constraint(op.f("fk_runs_rerun_of_runs"), "runs", type_="foreignkey")
    op.drop_index(op.f("ix_runs_rerun_of"), table_name="runs")
    op.drop_column("runs", "rerun_of")
