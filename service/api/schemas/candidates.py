"""Request and response bodies for ``/v1/candidates``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.api.schemas.common import PlainText, UtcDateTime

if TYPE_CHECKING:  # the CLI parses these models: no database or service code at import
    from service.candidates import CandidateSpec, Submission, TrainingLogText
    from service.db.models import Candidate


class CandidateMetadata(BaseModel):
    """What the caller says about a candidate (the upload's ``metadata`` field)."""

    model_config = ConfigDict(extra="forbid")

    family: PlainText = Field(min_length=1, max_length=200)
    kind: Literal["lora", "full"] | None = Field(
        default=None, description="Detected from the folder when left out"
    )
    learning_rate: float = Field(gt=0, allow_inf_nan=False)
    sweep: PlainText | None = Field(default=None, min_length=1, max_length=200)
    training_run: PlainText | None = Field(default=None, max_length=200)
    name: PlainText | None = Field(default=None, max_length=200)
    tags: dict[PlainText, PlainText] = Field(default_factory=dict)
    evaluate: bool = Field(
        default=False, description="Queue an evaluation on `dataset` in the same request"
    )
    dataset: PlainText | None = Field(
        default=None, min_length=1, description="`name` or `name@version` (with evaluate)"
    )

    @model_validator(mode="after")
    def _evaluate_needs_dataset(self) -> Self:
        if self.evaluate and self.dataset is None:
            raise ValueError("evaluate: true needs a dataset (name or name@version)")
        if self.dataset is not None and not self.evaluate:
            raise ValueError(
                "dataset is only used with evaluate: true; set it or leave dataset out"
            )
        return self

    def spec(self, training_log: TrainingLogText | None) -> CandidateSpec:
        from service.candidates import CandidateSpec

        return CandidateSpec(
            family=self.family,
            learning_rate=self.learning_rate,
            kind=self.kind,
            sweep=self.sweep,
            training_run=self.training_run,
            name=self.name,
            tags=self.tags,
            training_log=training_log,
            evaluate_on=self.dataset if self.evaluate else None,
        )


class CandidateCreate(CandidateMetadata):
    """``POST /v1/candidates``: a checkpoint folder by absolute path on the server."""

    checkpoint: PlainText = Field(min_length=1, max_length=2000)
    training_log: str | None = Field(
        default=None, description="trainer_state.json or step JSONL, as text"
    )
    training_log_filename: str | None = Field(
        default=None, max_length=200, description="The log's file name (helps detect its format)"
    )

    def log(self) -> TrainingLogText | None:
        if self.training_log is None:
            return None
        from service.candidates import TrainingLogText

        return TrainingLogText(self.training_log, self.training_log_filename)


class TrainingPointOut(BaseModel):
    """One logged training step (a NaN or infinite loss is null)."""

    step: int
    loss: float | None
    learning_rate: float | None = None
    grad_norm: float | None = None


class DiagnosisOut(BaseModel):
    """What the candidate's training-loss curve suggests (:func:`service.traininglog.diagnose`)."""

    label: str
    figures: dict[str, float]
    reasons: list[str]
    flags: list[str] = Field(default_factory=list)
    notes: list[str] = Field(
        default_factory=list, description="Findings beside the headline label, e.g. no_warmup"
    )


class CandidateOut(BaseModel):
    id: int
    family: str
    name: str | None
    kind: str
    source: str
    checkpoint_path: str | None
    base_model: str
    learning_rate: float | None
    sweep: str | None
    training_run: str | None
    tags: dict[str, str]
    digests: dict[str, str] = Field(description="sha256 of every file, by relative path")
    checkpoint_digest: str | None = Field(description="sha256 over all file digests")
    diagnosis: DiagnosisOut | None = Field(description="What the training-loss curve suggests")
    status: str
    created_at: UtcDateTime

    @classmethod
    def of(cls, row: Candidate) -> Self:
        from service.candidates import checkpoint_digest

        return cls(
            id=row.id,
            family=row.family.name,
            name=row.name,
            kind=row.kind,
            source=row.source,
            checkpoint_path=row.checkpoint_path,
            base_model=row.base_model,
            learning_rate=row.learning_rate,
            sweep=row.sweep,
            training_run=row.training_run,
            tags=dict(row.tags or {}),
            digests=dict(row.digests or {}),
            checkpoint_digest=checkpoint_digest(row.digests) if row.digests else None,
            diagnosis=row.diagnosis,
            status=row.status,
            created_at=row.created_at,
        )


class CandidateDetail(CandidateOut):
    training_log: list[TrainingPointOut] | None = Field(description="Parsed training-log points")

    @classmethod
    def of(cls, row: Candidate) -> Self:
        return cls.model_validate(
            {**CandidateOut.of(row).model_dump(), "training_log": row.training_log}
        )


class CandidateSubmitted(CandidateDetail):
    """The response to a registration (the same on an idempotent replay)."""

    evaluation_id: int | None = None
    baseline_evaluation_id: int | None = None

    @classmethod
    def of_submission(cls, submission: Submission) -> Self:
        evaluation = submission.evaluation
        return cls.model_validate(
            {
                **CandidateDetail.of(submission.candidate).model_dump(),
                "evaluation_id": evaluation.id if evaluation else None,
                "baseline_evaluation_id": evaluation.baseline_evaluation_id if evaluation else None,
            }
        )
