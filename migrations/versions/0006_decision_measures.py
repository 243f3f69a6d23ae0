"""gate decisions store the sweep view's paired numbers and the default slice summary

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 00:00:00

Both are computed with the decision (service.decisions.decide_evaluation), so reading a
sweep or a slice summary is a lookup instead of paired statistics over every score.
Decisions stored before this revision keep null: their readers compute the numbers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gate_decisions") as batch:
        batch.add_column(sa.Column("sweep_measures", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("slice_summary", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gate_decisions") as batch:
        batch.drop_column("slice_summary")
        batch.drop_column("sweep_measures")
