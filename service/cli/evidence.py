"""The evidence behind a candidate's gate decision, gathered over HTTP for ``tunegate report``.

Everything comes from the server's answers, parsed into the API's response models (the
candidate, its latest finished evaluation and the baseline's, the gate decision, the examples
that regressed most for each comparative rule's metric, the sweep): nothing is recomputed
here. :mod:`service.cli.evidence_render` turns it into a self-contained HTML page or Markdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from service.api.schemas.candidates import CandidateDetail
from service.api.schemas.decisions import DecisionOut, ExampleDiffOut
from service.api.schemas.evaluations import EvaluationDetail
from service.api.schemas.sweeps import SweepOut
from service.cli.client import ClientError, TunegateClient
from service.cli.report import fmt, rule_label

WORST_PER_METRIC = 5


@dataclass(frozen=True)
class Evidence:
    """What a report shows; ``decision`` is ``None`` when the evaluation did not succeed."""

    candidate: CandidateDetail
    evaluation: EvaluationDetail
    baseline: EvaluationDetail | None
    decision: DecisionOut | None
    worst: dict[str, list[ExampleDiffOut]] = field(default_factory=dict)
    """The examples that regressed most, by rule label."""
    sweep: SweepOut | None = None
    generated_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )

    @property
    def title(self) -> str:
        c = self.candidate
        name = c.name or f"candidate {c.id}"
        return f"{c.family} · {name} · lr {fmt(c.learning_rate)}"


def _latest_evaluation(client: TunegateClient, candidate_id: int) -> EvaluationDetail:
    items = client.evaluations_of(candidate_id).items
    finished = [e for e in items if e.status == "succeeded"]
    chosen = next(iter(finished or items), None)
    if chosen is None:
        raise ClientError(
            f"candidate {candidate_id} has no evaluation",
            "nothing was evaluated for it yet",
            "queue one: tunegate submit ... --dataset NAME, or POST /v1/evaluations",
        )
    return client.get_evaluation(chosen.id)


def _scope_filters(scope: str) -> dict[str, str]:
    """``"domain=out, cohort=billing"`` → ``{"domain": "out", "cohort": "billing"}``."""
    pairs = [part.strip().partition("=") for part in scope.split(",")]
    found = {k.strip(): v.strip() for k, sep, v in pairs if sep}
    filters = {"domain": found["domain"]} if found.get("domain") in ("in", "out") else {}
    if found.get("cohort") and found["cohort"] != "all":
        filters["cohort"] = found["cohort"]
    return filters


def _worst(client: TunegateClient, decision: DecisionOut) -> dict[str, list[ExampleDiffOut]]:
    """The examples that regressed most under each per-example rule, by rule label."""
    worst: dict[str, list[ExampleDiffOut]] = {}
    for rule in decision.rules:
        if not rule.metric or rule.scope == "model" or rule.n is None:
            continue
        page = client.decision_diff(
            decision.id,
            metric=rule.metric,
            limit=WORST_PER_METRIC,
            filters=_scope_filters(rule.scope),
        )
        regressed = [d for d in page.items if d.delta < 0]
        if regressed:
            worst[rule_label(rule)] = regressed
    return worst


def gather(client: TunegateClient, candidate_id: int) -> Evidence:
    """Read the evidence for ``candidate_id``; raises :class:`ClientError`."""
    candidate = client.get_candidate(candidate_id)
    evaluation = _latest_evaluation(client, candidate_id)
    baseline_id = evaluation.baseline_evaluation_id
    baseline = client.get_evaluation(baseline_id) if baseline_id is not None else None
    decision = None
    if evaluation.status == "succeeded" and baseline_id is not None:
        decision = client.decision_for_evaluation(evaluation.id)
    sweep = None
    if candidate.sweep:
        sweep = client.get_sweep(candidate.family, candidate.sweep)
    worst = _worst(client, decision) if decision else {}
    return Evidence(candidate, evaluation, baseline, decision, worst, sweep)
