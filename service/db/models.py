"""ORM models (SQLAlchemy 2.0, typed). The schema changes only through Alembic revisions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db.base import Base, utcnow
from service.jsontypes import JSONObject


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    versions: Mapped[list[DatasetVersion]] = relationship(
        back_populates="dataset", order_by="DatasetVersion.version"
    )


class DatasetVersion(Base):
    """Immutable and content-addressed: ``digest`` is sha256 of the canonical JSONL."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "version"),
        UniqueConstraint("dataset_id", "digest"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    version: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64), index=True)
    generation: Mapped[JSONObject] = mapped_column(default=dict)
    n_examples: Mapped[int] = mapped_column(Integer)
    n_in_domain: Mapped[int] = mapped_column(Integer)
    n_out_domain: Mapped[int] = mapped_column(Integer)
    n_heldout: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="versions")


class DatasetExample(Base):
    __tablename__ = "dataset_examples"
    __table_args__ = (UniqueConstraint("dataset_version_id", "example_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_version_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    example_key: Mapped[str] = mapped_column(String(200))
    input: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(Text, default=None)
    context: Mapped[str | None] = mapped_column(Text, default=None)
    domain: Mapped[str] = mapped_column(String(3), default="in")
    cohort: Mapped[str | None] = mapped_column(String(200), default=None)
    json_schema: Mapped[JSONObject | None] = mapped_column(default=None)
    # chat prompt (``input`` then holds its last user message) and the evidence fields
    messages: Mapped[list[dict[str, str]] | None] = mapped_column(JSON, default=None)
    answers: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    choices: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    answer: Mapped[int | None] = mapped_column(Integer, default=None)
    target: Mapped[str | None] = mapped_column(Text, default=None)
    expect: Mapped[str | None] = mapped_column(String(8), default=None)


class HeldoutText(Base):
    __tablename__ = "heldout_texts"
    __table_args__ = (UniqueConstraint("dataset_version_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_version_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)


class Family(Base):
    """A line of models sharing a base model, a gate policy and aliases."""

    __tablename__ = "families"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    base_model: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    policies: Mapped[list[GatePolicy]] = relationship(
        back_populates="family", order_by="GatePolicy.version"
    )


class GatePolicy(Base):
    """A family's gate policy; a change makes a new version, old ones stay for old decisions."""

    __tablename__ = "gate_policies"
    __table_args__ = (UniqueConstraint("family_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[JSONObject] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    family: Mapped[Family] = relationship(back_populates="policies")


class Candidate(Base):
    """A checkpoint under evaluation. ``kind='base'`` is the family's base model itself."""

    __tablename__ = "candidates"
    __table_args__ = (Index("ix_candidates_family_sweep", "family_id", "sweep"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    kind: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(10), default="path")
    checkpoint_path: Mapped[str | None] = mapped_column(String(2000), default=None)
    base_model: Mapped[str] = mapped_column(String(1000))
    learning_rate: Mapped[float | None] = mapped_column(Float, default=None)
    sweep: Mapped[str | None] = mapped_column(String(200), default=None)
    training_run: Mapped[str | None] = mapped_column(String(200), default=None)
    tags: Mapped[dict[str, str]] = mapped_column(default=dict)
    digests: Mapped[dict[str, str]] = mapped_column(default=dict)
    """sha256 of every file, by relative path."""
    training_log: Mapped[list[JSONObject] | None] = mapped_column(default=None)
    diagnosis: Mapped[JSONObject | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(20), default="registered")
    rejection_reason: Mapped[str | None] = mapped_column(Text, default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True, default=None)
    request_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    family: Mapped[Family] = relationship()


class Evaluation(Base):
    """One model × one dataset version × one generation config."""

    __tablename__ = "evaluations"
    __table_args__ = (Index("ix_evaluations_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), index=True)
    dataset_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    baseline_evaluation_id: Mapped[int | None] = mapped_column(
        ForeignKey("evaluations.id"), default=None
    )
    status: Mapped[str] = mapped_column(String(20))  # a service.lifecycle.EvaluationStatus
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    config: Mapped[JSONObject] = mapped_column(default=dict)
    cache_key: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    reused_from_id: Mapped[int | None] = mapped_column(ForeignKey("evaluations.id"), default=None)
    provenance: Mapped[JSONObject] = mapped_column(default=dict)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    candidate: Mapped[Candidate] = relationship(foreign_keys=[candidate_id])
    dataset_version: Mapped[DatasetVersion] = relationship()


class LeaseEvent(Base):
    """Who held an evaluation when: the audit trail of exclusive execution."""

    __tablename__ = "lease_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id"), index=True)
    worker_id: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(20))  # claimed | released | expired | lost
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ExampleResult(Base):
    """One example's output; keyed by (evaluation, example) so a rerun never duplicates it."""

    __tablename__ = "example_results"
    __table_args__ = (UniqueConstraint("evaluation_id", "example_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(
        ForeignKey("evaluations.id", ondelete="CASCADE"), index=True
    )
    example_key: Mapped[str] = mapped_column(String(200))
    output: Mapped[str] = mapped_column(Text)
    n_prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    n_new_tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Score(Base):
    """One metric of one example, with the evaluator (name, version, options) that produced it."""

    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("evaluation_id", "example_key", "metric"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(
        ForeignKey("evaluations.id", ondelete="CASCADE"), index=True
    )
    example_key: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)
    evaluator: Mapped[str] = mapped_column(String(100))
    evaluator_version: Mapped[str] = mapped_column(String(50))
    # digest of the evaluator's options: with (evaluator, version) what the score depends on
    # besides the output, so a changed option re-scores and an unchanged one is reused
    evaluator_options: Mapped[str] = mapped_column(String(64), default="", server_default="")


class Aggregate(Base):
    """Per-metric mean over a scope (all / domain / cohort / model) with a bootstrap CI."""

    __tablename__ = "aggregates"
    __table_args__ = (UniqueConstraint("evaluation_id", "metric", "scope", "scope_value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(
        ForeignKey("evaluations.id", ondelete="CASCADE"), index=True
    )
    metric: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(20))  # all | domain | cohort | model
    scope_value: Mapped[str] = mapped_column(String(200), default="")
    n: Mapped[int] = mapped_column(Integer)
    mean: Mapped[float] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float, default=None)
    ci_high: Mapped[float | None] = mapped_column(Float, default=None)


class GateDecision(Base):
    __tablename__ = "gate_decisions"
    __table_args__ = (
        # one current decision per pair and policy; superseded ones stay as history
        Index(
            "uq_gate_decisions_current",
            "candidate_evaluation_id",
            "baseline_evaluation_id",
            "policy_id",
            unique=True,
            sqlite_where=text("superseded_at IS NULL"),
            postgresql_where=text("superseded_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id"), index=True)
    baseline_evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id"))
    policy_id: Mapped[int] = mapped_column(ForeignKey("gate_policies.id"))
    verdict: Mapped[str] = mapped_column(String(10))
    rules: Mapped[list[JSONObject]] = mapped_column(default=list)
    summary: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sweep_measures: Mapped[JSONObject | None] = mapped_column(default=None)
    """The sweep view's paired numbers (:class:`service.sweeps.SweepMeasures`), computed
    with the decision; null for a decision stored before they were."""
    slice_summary: Mapped[JSONObject | None] = mapped_column(default=None)
    """The default slice summary (:class:`service.slices.SliceSummary`), computed with the
    decision; null for a decision stored before it was."""
    n_pairs: Mapped[int | None] = mapped_column(Integer, default=None)
    """How many paired scores the decision stored in ``decision_pairs`` (its diffs); null
    for a decision stored before they were (its diffs are then joined from the scores)."""
    superseded_at: Mapped[datetime | None] = mapped_column(default=None)
    """Set when either evaluation was queued to be re-scored: the decision judged scores
    that no longer stand. Kept as history; the pair is decided again when it succeeds."""


class DecisionPair(Base):
    """One paired score of a decision with its oriented change, stored with the decision so
    that its diffs are paged straight off the ``(decision_id, delta, ...)`` index."""

    __tablename__ = "decision_pairs"
    __table_args__ = (
        Index("ix_decision_pairs_ranked", "decision_id", "delta", "metric", "example_key"),
    )

    decision_id: Mapped[int] = mapped_column(
        ForeignKey("gate_decisions.id", ondelete="CASCADE"), primary_key=True
    )
    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    example_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    delta: Mapped[float] = mapped_column(Float)
    """Oriented: candidate − baseline, negated for lower-is-better metrics."""
    candidate_value: Mapped[float] = mapped_column(Float)
    baseline_value: Mapped[float] = mapped_column(Float)
    domain: Mapped[str] = mapped_column(String(3))
    cohort: Mapped[str | None] = mapped_column(String(200), default=None)


class Alias(Base):
    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("family_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Promotion(Base):
    """An audited alias move: who, when, from, to, on which decision, why."""

    __tablename__ = "promotions"

    id: Mapped[int] = mapped_column(primary_key=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"), index=True)
    alias: Mapped[str] = mapped_column(String(100))
    from_candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"))
    to_candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"))
    decision_id: Mapped[int | None] = mapped_column(ForeignKey("gate_decisions.id"))
    actor: Mapped[str] = mapped_column(String(200))
    override: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Webhook(Base):
    """A family's HTTP endpoint for events; ``secret`` signs each body (HMAC-SHA256)."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    events: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one webhook (an outbox row, written in the event's own transaction),
    with every delivery attempt in ``log``."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    delivery_id: Mapped[str] = mapped_column(String(36), unique=True)
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[JSONObject] = mapped_column()
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    log: Mapped[list[JSONObject]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


class MlflowRun(Base):
    """An evaluation logged to MLflow (the ``mlflow`` extra): one row per evaluation, written
    before logging (a claim) and completed with the run id."""

    __tablename__ = "mlflow_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(
        ForeignKey("evaluations.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending|logged|failed
    run_id: Mapped[str | None] = mapped_column(String(64), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    logged_at: Mapped[datetime | None] = mapped_column(default=None)
