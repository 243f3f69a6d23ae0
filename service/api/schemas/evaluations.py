"""Request and response bodies for ``/v1/evaluations``."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Self

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas.common import DbId, Page, PlainText, UtcDateTime
from service.jsontypes import JSONObject

if TYPE_CHECKING:  # the CLI parses these models: no database or service code at import
    from service.db.models import Aggregate, Evaluation
    from service.evaluations import ResultRow


class EvaluationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    candidate_id: DbId
    dataset: PlainText = Field(
        min_length=1, description="`name` (latest version) or `name@version`"
    )


class EvaluationRescore(BaseModel):
    model_config = ConfigDict(extra="forbid")

    evaluators: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        default=None,
        min_length=1,
        max_length=50,
        description="The evaluator set to score with from now on (default: unchanged)",
    )


class EvaluationsRescore(EvaluationRescore):
    evaluation_ids: list[DbId] = Field(
        min_length=1, max_length=100, description="The evaluations to score again, all or none"
    )


class Progress(BaseModel):
    done: int
    total: int


class CandidateRef(BaseModel):
    id: int
    family: str
    name: str | None
    kind: str
    learning_rate: float | None
    sweep: str | None


class DatasetRef(BaseModel):
    name: str
    version: int
    digest: str


class AggregateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    metric: str
    scope: str
    scope_value: str
    n: int
    mean: float
    ci_low: float | None
    ci_high: float | None


class EvaluationSummary(BaseModel):
    id: int
    status: str
    progress: Progress
    error: str | None
    cancel_requested: bool
    config: JSONObject
    candidate: CandidateRef
    dataset: DatasetRef
    baseline_evaluation_id: int | None
    reused_from_id: int | None
    created_at: UtcDateTime
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None
    gate_decision_id: int | None = Field(
        description="Its newest current gate decision as the candidate, if any"
    )

    @classmethod
    def of(cls, row: Evaluation, gate_decision_id: int | None) -> Self:
        candidate, version = row.candidate, row.dataset_version
        return cls(
            id=row.id,
            status=row.status,
            progress=Progress(done=row.progress_done, total=row.progress_total),
            error=row.error,
            cancel_requested=row.cancel_requested,
            config=dict(row.config or {}),
            candidate=CandidateRef(
                id=candidate.id,
                family=candidate.family.name,
                name=candidate.name,
                kind=candidate.kind,
                learning_rate=candidate.learning_rate,
                sweep=candidate.sweep,
            ),
            dataset=DatasetRef(
                name=version.dataset.name, version=version.version, digest=version.digest
            ),
            baseline_evaluation_id=row.baseline_evaluation_id,
            reused_from_id=row.reused_from_id,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            gate_decision_id=gate_decision_id,
        )


class EvaluationDetail(EvaluationSummary):
    provenance: JSONObject
    attempts: int
    aggregates: list[AggregateOut] = Field(description="Empty until the evaluation finished")

    @classmethod
    def of_detail(
        cls, row: Evaluation, aggregates: list[Aggregate], gate_decision_id: int | None
    ) -> Self:
        return cls.model_validate(
            {
                **EvaluationSummary.of(row, gate_decision_id).model_dump(),
                "provenance": dict(row.provenance or {}),
                "attempts": row.attempts,
                "aggregates": [AggregateOut.model_validate(a) for a in aggregates],
            }
        )


class EvaluationPage(Page[EvaluationSummary]):
    pass


class EvaluatorRef(BaseModel):
    name: str
    version: str


class ResultOut(BaseModel):
    example_key: str
    position: int
    input: str
    context: str | None
    reference: str | None
    domain: str
    cohort: str | None
    output: str
    n_prompt_tokens: int
    n_new_tokens: int
    scores: dict[str, float]
    evaluators: dict[str, EvaluatorRef]

    @classmethod
    def of(cls, row: ResultRow) -> Self:
        return cls.model_validate(asdict(row))


class ResultPage(Page[ResultOut]):
    pass
