"""gate decisions store their paired scores, ranked by the oriented change

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 00:05:00

Stored with the decision (service.decisions.decide_evaluation), so a page of its diffs is
read off the (decision_id, delta, metric, example_key) index instead of joining both
evaluations' scores and sorting them. Decisions stored before this revision have
n_pairs null: their diffs are joined from the scores as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gate_decisions") as batch:
        batch.add_column(sa.Column("n_pairs", sa.Integer(), nullable=True))
    op.create_table(
        "decision_pairs",
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("example_key", sa.String(length=200), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("candidate_value", sa.Float(), nullable=False),
        sa.Column("baseline_value", sa.Float(), nullable=False),
        sa.Column("domain", sa.String(length=3), nullable=False),
        sa.Column("cohort", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["gate_decisions.id"],
            name=op.f("fk_decision_pairs_decision_id_gate_decisions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "decision_id", "metric", "example_key", name=op.f("pk_decision_pairs")
        ),
    )
    op.create_index(
        "ix_decision_pairs_ranked",
        "decision_pairs",
        ["decision_id", "delta", "metric", "example_key"],
    )


def downgrade() -> None:
    op.drop_index("ix_decision_pairs_ranked", table_name="decision_pairs")
    op.drop_table("decision_pairs")
    with op.batch_alter_table("gate_decisions") as batch:
        batch.drop_column("n_pairs")
