"""Response bodies for ``/v1/sweeps``: a family's sweeps and one sweep's labelled rows."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Literal, Self

from pydantic import BaseModel, Field

from service.api.schemas.candidates import DiagnosisOut, TrainingPointOut
from service.api.schemas.decisions import RuleVerdict, Verdict
from service.api.schemas.evaluations import Progress

if TYPE_CHECKING:
    from service.sweep_view import SweepCandidate, SweepSummary, SweepView

Label = Literal["underfit", "good", "forgetting", "collapse"]


class SweepSummaryOut(BaseModel):
    sweep: str
    n_candidates: int
    learning_rates: list[float]

    @classmethod
    def of(cls, summary: SweepSummary) -> Self:
        return cls.model_validate(asdict(summary))


class SweepRuleOut(BaseModel):
    """The numbers of a rule result that a sweep chart draws (a subset of
    :class:`~service.api.schemas.decisions.RuleResultOut`; the message, p-values and power
    figures are on ``GET /v1/decisions/{decision_id}``)."""

    rule_id: str
    kind: str
    metric: str
    domain: str | None = None
    cohort: str | None = None
    verdict: RuleVerdict
    candidate_value: float | None
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None
    tolerance: float | None
    ratio: float | None = None


class SweepRowOut(BaseModel):
    """One candidate of the sweep. The gate's numbers are null until its decision exists.

    Effects are oriented (negative = worse) except ``hallucination_change``, the raw change
    in hallucination share (positive = more).
    """

    candidate_id: int
    learning_rate: float | None
    evaluation_id: int | None
    status: str = Field(description="The latest evaluation's status, or 'not evaluated'")
    progress: Progress | None
    diagnosis: DiagnosisOut | None
    training_log: list[TrainingPointOut]
    decision_id: int | None = None
    verdict: Verdict | None = None
    label: Label | None = None
    label_reason: str | None = None
    in_domain_lift: float | None = None
    lift_ci_low: float | None = None
    lift_ci_high: float | None = None
    ood_delta: float | None = None
    ood_ci_low: float | None = None
    ood_ci_high: float | None = None
    hallucination_change: float | None = None
    perplexity_ratio: float | None = None
    empty_output: float | None = None
    repetition: float | None = None
    training_diagnosis: str | None = None
    ood_regression: str | None = Field(
        default=None,
        description="The out-of-domain rule showing a significant regression (never recommended)",
    )
    lift_metric: str | None = Field(default=None, description="The in-domain target metric")
    lift_significant: bool | None = None
    repeats: list[int] = Field(
        default_factory=list,
        description="Later submissions of the same weights to this sweep (shown on this row)",
    )
    rules: list[SweepRuleOut] = Field(
        default_factory=list,
        description="The numbers its charts draw from each of the decision's rule results "
        "(the full results: GET /v1/decisions/{decision_id}), so one request draws the sweep",
    )

    @classmethod
    def of(cls, candidate: SweepCandidate) -> Self:
        evaluation = candidate.evaluation
        measured = vars(candidate.row) if candidate.row is not None else {}  # flat
        return cls.model_validate(
            {
                **measured,
                "candidate_id": candidate.candidate_id,
                "learning_rate": candidate.learning_rate,
                "evaluation_id": evaluation.id if evaluation else None,
                "status": evaluation.status if evaluation else "not evaluated",
                "progress": (
                    Progress(done=evaluation.progress_done, total=evaluation.progress_total)
                    if evaluation
                    else None
                ),
                "diagnosis": candidate.diagnosis,
                "training_log": candidate.training_log,
                "decision_id": candidate.decision_id,
                "repeats": candidate.repeats,
                "lift_metric": candidate.lift_metric,
                "lift_significant": candidate.lift_significant,
                "rules": candidate.rules,
            }
        )


class SweepOut(BaseModel):
    family: str
    sweep: str
    rows: list[SweepRowOut] = Field(description="By learning rate")
    recommended_rate: float | None
    recommendation_reason: str

    @classmethod
    def of(cls, view: SweepView) -> Self:
        return cls(
            family=view.family,
            sweep=view.sweep,
            rows=[SweepRowOut.of(c) for c in view.candidates],
            recommended_rate=view.recommended_rate,
            recommendation_reason=view.recommendation_reason,
        )
