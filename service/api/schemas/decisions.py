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


class PromoteIn(BaseModel):
    candidate_id: int
    alias: str = Field(default=PRODUCTION, min_length=1, max_length=100)
    reason: str | None = None
    override: bool = False
