"""a gate decision is superseded when either evaluation it judged is re-scored

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 00:20:00

``superseded_at`` is set on every decision of an evaluation (as candidate or baseline)
when that evaluation is queued to be re-scored; when it succeeds again, the decision is
computed anew from the new scores. A superseded decision stays (a promotion may cite it;
the timeline lists it), so the pair and policy are unique among current decisions only:
the unique constraint becomes a partial unique index (SQLite and PostgreSQL both have them).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["candidate_evaluation_id", "baseline_evaluation_id", "policy_id"]
OLD = "uq_gate_decisions_candidate_evaluation_id_baseline_evaluation_id_policy_id"
NEW = "uq_gate_decisions_current"
CURRENT = sa.text("superseded_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("gate_decisions") as batch:
        batch.add_column(sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_constraint(op.f(OLD), type_="unique")  # op.f: PostgreSQL's truncated name
    op.create_index(
        NEW, "gate_decisions", COLUMNS, unique=True, sqlite_where=CURRENT, postgresql_where=CURRENT
    )


def downgrade() -> None:
    op.drop_index(NEW, table_name="gate_decisions")
    # the old constraint allows one decision per pair and policy: superseded ones go, unless
    # a promotion cites one (then the constraint fails loudly rather than lose the audit)
    op.execute(
        sa.text(
            "DELETE FROM gate_decisions WHERE superseded_at IS NOT NULL AND id NOT IN "
            "(SELECT decision_id FROM promotions WHERE decision_id IS NOT NULL)"
        )
    )
    with op.batch_alter_table("gate_decisions") as batch:
        batch.create_unique_constraint(op.f(OLD), COLUMNS)
        batch.drop_column("superseded_at")
