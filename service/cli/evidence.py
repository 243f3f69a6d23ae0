"""The evidence behind a candidate's gate decision, gathered over HTTP for ``tunegate report``.

Everything comes from the server's JSON (the candidate, its latest finished evaluation and
the baseline's, the gate decision, the examples that regressed most for each comparative
rule's metric, the sweep): nothing is recomputed here. :mod:`service.cli.evidence_render`
turns it into a self-contained HTML page or Markdown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.cli.client import ClientError, TunegateClient
from service.cli.report import rule_label

WORST_PER_METRIC = 5


@dataclass(frozen=True)
class Evidence:
    """What a report shows; ``decision`` is ``None`` when the evaluation did not succeed."""

    candidate: dict[str, Any]
    evaluation: dict[str, Any]
    baseline: dict[str, Any] | None
    decision: dict[str, Any] | None
    worst: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sweep: dict[str, Any] | None = None
    generated_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )

    @property
    def title(self) -> str:
        c = self.candidate
        name = c.get("name") or f"candidate {c.get('id')}"
        return f"{c.get('family')} · {name} · lr {c.get('learning_rate'):g}"


def _latest_evaluation(client: TunegateClient, candidate_id: int) -> dict[str, Any]:
    page: dict[str, Any] = client.request(
        "GET", "/v1/evaluations", params={"candidate_id": candidate_id, "limit": 50}
    )
    items = page.get("items", [])
    finished = [e for e in items if e.get("status") == "succeeded"]
    chosen = (finished or items or [None])[0]
    if chosen is None:
        raise ClientError(
            f"candidate {candidate_id} has no evaluation",
            "nothing was evaluated for it yet",
            "queue one: tunegate submit ... --dataset NAME, or POST /v1/evaluations",
        )
    detail: dict[str, Any] = client.get_evaluation(chosen["id"])
    return detail


def _scope_filters(scope: str) -> dict[str, str]:
    """``"domain=out, cohort=billing"`` → ``{"domain": "out", "cohort": "billing"}``."""
    pairs = [part.strip().partition("=") for part in scope.split(",")]
    found = {k.strip(): v.strip() for k, sep, v in pairs if sep}
    filters = {"domain": found["domain"]} if found.get("domain") in ("in", "out") else {}
    if found.get("cohort") and found["cohort"] != "all":
        filters["cohort"] = found["cohort"]
    return filters


def _worst(client: TunegateClient, decision: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The examples that regressed most under each per-example rule, by rule label."""
    worst: dict[str, list[dict[str, Any]]] = {}
    for rule in decision.get("rules", []):
        scope = str(rule.get("scope") or "")
        if not rule.get("metric") or scope == "model" or rule.get("n") is None:
            continue
        params: dict[str, Any] = {"metric": rule["metric"], "limit": WORST_PER_METRIC}
        params |= _scope_filters(scope)
        page = client.request("GET", f"/v1/decisions/{decision['id']}/diff", params=params)
        regressed = [d for d in page.get("items", []) if d.get("delta", 0) < 0]
        if regressed:
            worst[rule_label(rule)] = regressed
    return worst


def gather(client: TunegateClient, candidate_id: int) -> Evidence:
    """Read the evidence for ``candidate_id``; raises :class:`ClientError`."""
    candidate: dict[str, Any] = client.request("GET", f"/v1/candidates/{candidate_id}")
    evaluation = _latest_evaluation(client, candidate_id)
    baseline_id = evaluation.get("baseline_evaluation_id")
    baseline = client.get_evaluation(baseline_id) if baseline_id else None
    decision = None
    if evaluation.get("status") == "succeeded" and baseline_id:
        decision = client.decision_for_evaluation(evaluation["id"])
    sweep = None
    if candidate.get("sweep"):
        sweep = client.get_sweep(candidate["family"], candidate["sweep"])
    worst = _worst(client, decision) if decision else {}
    return Evidence(candidate, evaluation, baseline, decision, worst, sweep)
