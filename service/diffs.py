"""Per-example diffs of a gate decision and the per-cohort slice summary over them.

Both read the two evaluations' stored scores in SQL: the candidate's and the baseline's
score of the same example and metric are paired by a join on the unique
``(evaluation_id, example_key, metric)`` index, the oriented change is computed in the
query (negated for lower-is-better metrics, so negative always means worse), and the
database sorts and pages. Only the page's examples and outputs are read back, in the
same statement, never a whole evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.orm import Session, aliased

from service.db.models import (
    DatasetExample,
    DecisionPair,
    Evaluation,
    ExampleResult,
    GateDecision,
)
from service.db.models import Score as ScoreRow
from service.errors import InvalidRequest
from service.metric_kinds import metric_directions

MAX_PAGE = 500


@dataclass(frozen=True)
class DiffFilters:
    """Which paired scores to look at; ``None`` = all."""

    metric: str | None = None
    domain: str | None = None
    cohort: str | None = None

    def __post_init__(self) -> None:
        if self.domain is not None and self.domain not in ("in", "out"):
            raise InvalidRequest(f"domain must be 'in' or 'out', not {self.domain!r}")


@dataclass(frozen=True)
class ExampleDiff:
    example_id: str
    domain: str
    cohort: str | None
    input: str
    reference: str | None
    context: str | None
    metric: str
    baseline_output: str
    candidate_output: str
    baseline_score: float
    candidate_score: float
    delta: float
    """Oriented: candidate − baseline, negated for lower-is-better metrics (negative = worse)."""


def _oriented_delta(cand: Any, base: Any) -> ColumnElement[float]:
    lower = sorted(m for m, higher in metric_directions().items() if not higher)
    raw = cand.value - base.value
    if not lower:
        return raw  # type: ignore[no-any-return]
    return case((cand.metric.in_(lower), base.value - cand.value), else_=raw)


def pair_values(decision: GateDecision, filters: DiffFilters) -> dict[str, Any]:
    """The bind parameters of :class:`Pairs` for this decision with these filters."""
    shown = {"metric": filters.metric, "domain": filters.domain, "cohort": filters.cohort}
    return {
        "candidate_evaluation": decision.candidate_evaluation_id,
        "baseline_evaluation": decision.baseline_evaluation_id,
        **{name: value for name, value in shown.items() if value is not None},
    }


class Pairs:
    """The pairing join of a decision's two evaluations' scores, as a statement builder:
    ``select(columns)`` selects over it with the filters applied. The evaluations and the
    filter values are bind parameters (``values`` gives them), so a statement built once
    serves every decision with filters of the same shape."""

    def __init__(self, filters: DiffFilters) -> None:
        self.cand = aliased(ScoreRow, name="cand")
        self.base = aliased(ScoreRow, name="base")
        self.delta = _oriented_delta(self.cand, self.base).label("delta")
        self.filters = filters
        # the candidate evaluation's dataset version, inside the statement (no round trip)
        self.dataset_version_id = (
            select(Evaluation.dataset_version_id)
            .where(Evaluation.id == bindparam("candidate_evaluation"))
            .scalar_subquery()
        )

    def values(self, decision: GateDecision) -> dict[str, Any]:
        """The bind parameters of this decision with these filters."""
        return pair_values(decision, self.filters)

    def select(self, *columns: Any) -> Select[Any]:
        cand, base, f = self.cand, self.base, self.filters
        query = (
            select(*columns)
            .select_from(cand)
            .join(
                base,
                and_(
                    base.evaluation_id == bindparam("baseline_evaluation"),
                    base.example_key == cand.example_key,
                    base.metric == cand.metric,
                ),
            )
            .join(
                DatasetExample,
                and_(
                    DatasetExample.dataset_version_id == self.dataset_version_id,
                    DatasetExample.example_key == cand.example_key,
                ),
            )
            .where(cand.evaluation_id == bindparam("candidate_evaluation"))
        )
        if f.metric is not None:
            query = query.where(cand.metric == bindparam("metric"))
        if f.domain is not None:
            query = query.where(DatasetExample.domain == bindparam("domain"))
        if f.cohort is not None:
            query = query.where(DatasetExample.cohort == bindparam("cohort"))
        return query


def store_pairs(session: Session, decision: GateDecision) -> int:
    """Store a flushed decision's paired scores with their oriented change (one INSERT …
    SELECT of the pairing join), so its diffs page off an index; returns how many."""
    pairs = Pairs(DiffFilters())
    cand, base = pairs.cand, pairs.base
    stored = session.execute(
        insert(DecisionPair).from_select(
            [
                "decision_id",
                "metric",
                "example_key",
                "delta",
                "candidate_value",
                "baseline_value",
                "domain",
                "cohort",
            ],
            pairs.select(
                literal(decision.id, Integer),
                cand.metric,
                cand.example_key,
                pairs.delta,
                cand.value,
                base.value,
                DatasetExample.domain,
                DatasetExample.cohort,
            ).params(pairs.values(decision)),
        ),
        execution_options={"preserve_rowcount": True},
    )
    return int(stored.rowcount)  # type: ignore[attr-defined]


def _shape(filters: DiffFilters) -> DiffFilters:
    """Filters with placeholder values: which filters apply, not what they say."""
    return DiffFilters(
        metric=None if filters.metric is None else "",
        domain=None if filters.domain is None else "in",
        cohort=None if filters.cohort is None else "",
    )


@lru_cache(maxsize=32)
def page_statements(stored: bool, shape: DiffFilters) -> tuple[Select[Any], Select[Any]]:
    """A page of a decision's pairs, most regressed first, with its examples and outputs,
    and the statement that counts the pairs past the last page; built once per shape
    (their construction costs more than running them).

    Read from ``decision_pairs`` when the decision stored them (an index range in
    order, the total stored with the decision unless filtered), else joined from both
    evaluations' scores and sorted.
    """
    pairs = Pairs(shape)
    if not stored:
        cand, base = pairs.cand, pairs.base
        ranked = (
            pairs.select(
                cand.example_key.label("key"),
                cand.metric.label("metric"),
                cand.value.label("cand_value"),
                base.value.label("base_value"),
                pairs.delta,
                func.count().over().label("total"),
            )
            .order_by(pairs.delta, cand.metric, cand.example_key)
            .offset(bindparam("offset", type_=Integer))
            .limit(bindparam("limit", type_=Integer))
            .subquery("ranked")
        )
        count = pairs.select(func.count())
    else:
        p = DecisionPair
        where = [p.decision_id == bindparam("decision")]
        if shape.metric is not None:
            where.append(p.metric == bindparam("metric"))
        if shape.domain is not None:
            where.append(p.domain == bindparam("domain"))
        if shape.cohort is not None:
            where.append(p.cohort == bindparam("cohort"))
        filtered = len(where) > 1
        ranked = (
            select(
                p.example_key.label("key"),
                p.metric.label("metric"),
                p.candidate_value.label("cand_value"),
                p.baseline_value.label("base_value"),
                p.delta.label("delta"),
                (func.count().over() if filtered else bindparam("n_pairs", type_=Integer)).label(
                    "total"
                ),
            )
            .where(*where)
            .order_by(p.delta, p.metric, p.example_key)
            .offset(bindparam("offset", type_=Integer))
            .limit(bindparam("limit", type_=Integer))
            .subquery("ranked")
        )
        count = select(func.count()).where(*where)
    cand_out, base_out = aliased(ExampleResult, name="cand_out"), aliased(ExampleResult)
    page = (
        select(
            ranked.c.key,
            ranked.c.metric,
            ranked.c.cand_value,
            ranked.c.base_value,
            ranked.c.delta,
            ranked.c.total,
            DatasetExample.domain,
            DatasetExample.cohort,
            DatasetExample.input,
            DatasetExample.reference,
            DatasetExample.context,
            cand_out.output,
            base_out.output,
        )
        .select_from(ranked)
        .join(
            DatasetExample,
            and_(
                DatasetExample.dataset_version_id == pairs.dataset_version_id,
                DatasetExample.example_key == ranked.c.key,
            ),
        )
        .outerjoin(
            cand_out,
            and_(
                cand_out.evaluation_id == bindparam("candidate_evaluation"),
                cand_out.example_key == ranked.c.key,
            ),
        )
        .outerjoin(
            base_out,
            and_(
                base_out.evaluation_id == bindparam("baseline_evaluation"),
                base_out.example_key == ranked.c.key,
            ),
        )
        .order_by(ranked.c.delta, ranked.c.metric, ranked.c.key)
    )
    return page, count


def example_diffs(
    session: Session,
    decision: GateDecision,
    filters: DiffFilters = DiffFilters(),
    *,
    offset: int = 0,
    limit: int = 50,
) -> tuple[int, list[ExampleDiff]]:
    """Per-example paired changes, most regressed first; returns (total, page).

    One statement: the pairs are ranked and paged, then only the page's examples and
    outputs are joined. Raises ``InvalidRequest`` for a bad page or domain.
    """
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidRequest(f"limit must be within 1..{MAX_PAGE} and offset ≥ 0")
    stored = decision.n_pairs is not None
    page_statement, count = page_statements(stored, _shape(filters))
    values = pair_values(decision, filters)
    if stored:
        values |= {"decision": decision.id, "n_pairs": decision.n_pairs}
    page = session.execute(page_statement, {**values, "offset": offset, "limit": limit}).all()
    # the total rides on the page; past the last page it needs its own query
    total = page[0].total if page else session.scalar(count, values) or 0
    return total, [
        ExampleDiff(
            example_id=key,
            domain=domain,
            cohort=cohort,
            input=text,
            reference=reference,
            context=context,
            metric=metric,
            baseline_output=base_output or "",
            candidate_output=cand_output or "",
            baseline_score=base_value,
            candidate_score=cand_value,
            delta=float(delta),
        )
        for (
            key,
            metric,
            cand_value,
            base_value,
            delta,
            _,
            domain,
            cohort,
            text,
            reference,
            context,
            cand_output,
            base_output,
        ) in page
    ]
