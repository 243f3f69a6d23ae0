"""Schemas for gate decisions, per-example diffs and the promote request."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.aliases import PRODUCTION
from service.api.schemas.common import UtcDateTime


class DecisionOut(BaseModel):
    id: int
    verdict: str
    summary: str
    policy_version: int
    candidate_evaluation_id: int
    baseline_evaluation_id: int
    rules: list[dict[str, Any]]
    created_at: UtcDateTime


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


class DiffPage(BaseModel):
    decision_id: int
    total: int
    offset: int
    limit: int
    items: list[ExampleDiffOut]


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
    verdict: str
    summary: str
    policy_version: int
    candidate_id: int
    candidate_name: str | None
    learning_rate: float | None
    sweep: str | None
    evaluation_id: int


class TimelinePage(BaseModel):
    family: str
    total: int
    offset: int
    limit: int
    items: list[TimelineEntryOut]


class PromoteIn(BaseModel):
    candidate_id: int
    alias: str = Field(default=PRODUCTION, min_length=1, max_length=100)
    reason: str | None = None
    override: bool = False
