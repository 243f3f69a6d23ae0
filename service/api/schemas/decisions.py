"""Schemas for gate decisions, their rule results, per-example diffs and the promote request."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.alias_names import PRODUCTION
from service.api.schemas.common import DbId, Page, PlainText, UtcDateTime

Verdict = Literal["pass", "fail"]
RuleVerdict = Literal["pass", "fail", "inconclusive_pass", "inconclusive_fail", "skipped"]


class RuleResultOut(BaseModel):
    """One rule's outcome with the numbers behind it (:class:`service.gate.rules.RuleResult`)."""

    rule_id: str
    kind: str
    metric: str
    scope: str = Field(description='Which examples the rule saw, e.g. "domain=out" or "model"')
    verdict: RuleVerdict
    baseline_value: float | None = Field(description="Baseline mean (or model metric) in scope")
    candidate_value: float | None = Field(description="Candidate mean (or model metric) in scope")
    effect: float | None = Field(
        description="Candidate − baseline, oriented so negative = worse (comparative rules)"
    )
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n: int | None = Field(description="Examples used; null for model metrics")
    tolerance: float | None = Field(
        description="tolerance (regression), delta (min_improvement), max_ratio (perplexity)"
    )
    min_detectable_effect: float | None
    message: str
    needed_n: int | None = None
    ratio: float | None = Field(default=None, description="Candidate / baseline (perplexity)")
    confidence: float | None = None
    domain: str | None = None
    cohort: str | None = None
    test: str | None = Field(
        default=None,
        description='What decided: "exact McNemar" / "Tango score" (binary scores), '
        '"paired t", "no spread" or "none"',
    )
    p_adjusted: float | None = Field(default=None, description="p_value after Holm's correction")
    losses: int | None = Field(default=None, description="Binary: right → wrong examples")
    gains: int | None = Field(default=None, description="Binary: wrong → right examples")
    warning: str | None = Field(
        default=None, description="What the verdict cannot show, e.g. selection bias"
    )


class DecisionOut(BaseModel):
    id: int
    verdict: Verdict
    summary: str
    policy_version: int
    candidate_evaluation_id: int
    baseline_evaluation_id: int
    rules: list[RuleResultOut]
    created_at: UtcDateTime
    superseded_at: UtcDateTime | None = Field(
        default=None,
        description="Set when either evaluation was re-scored after this decision: it judged "
        "scores that no longer stand (the pair is decided again when the re-scoring ends)",
    )


class ExampleDiffOut(BaseModel):
    example_id: str
    domain: str
    cohort: str | None
    input: str
    reference: str | None
    context: str | None = None
    metric: str
    baseline_output: str
    candidate_output: str
    baseline_score: float
    candidate_score: float
    delta: float = Field(description="candidate − baseline, oriented so negative = worse")


class DiffPage(Page[ExampleDiffOut]):
    decision_id: int


class CohortSliceOut(BaseModel):
    cohort: str | None
    n: int
    mean_change: float | None = Field(description="mean oriented change (negative = worse)")
    ci_low: float | None
    ci_high: float | None
    n_regressed: int = Field(description="examples whose oriented change is below zero")
    regressed_share: float


class SliceSummaryOut(BaseModel):
    decision_id: int
    metric: str
    domain: str | None
    confidence: float = Field(description="coverage of each [ci_low, ci_high]")
    slices: list[CohortSliceOut] = Field(description="worst cohort first")


class TimelineEntryOut(BaseModel):
    decision_id: int
    created_at: UtcDateTime
    verdict: Verdict
    summary: str
    policy_version: int
    candidate_id: int
    candidate_name: str | None
    learning_rate: float | None
    sweep: str | None
    evaluation_id: int


class TimelinePage(Page[TimelineEntryOut]):
    family: str


class PromoteIn(BaseModel):
    candidate_id: DbId
    alias: PlainText = Field(default=PRODUCTION, min_length=1, max_length=100)
    reason: str | None = None
    override: bool = False
