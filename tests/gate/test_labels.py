"""Sweep labels, one test per case: collapse, forgetting (with and without lift, perplexity
blow-up with fluent output), underfit, good (and good-but-gate-failed), recommendation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.gate.decision import Decision, RuleResult
from service.gate.labels import (
    CollapseSignals,
    classify_candidate,
    lift_metric_of,
    ood_metric_of,
)
from service.gate.policy import DEFAULT_POLICY, parse_policy
from service.gate.stats import paired_comparison
from service.sweeps import recommend, sweep_row

BASE = np.linspace(0.2, 0.6, 40)
LIFT = paired_comparison(BASE + 0.1 + np.linspace(-0.02, 0.02, 40), BASE, tolerance=0.0)
NO_LIFT = paired_comparison(BASE + np.linspace(-0.05, 0.05, 40), BASE, tolerance=0.0)


def _rule(rule_id: str, verdict: str, **fields: Any) -> RuleResult:
    kind, metric, *rest = rule_id.split(":")
    values: dict[str, Any] = {
        "rule_id": rule_id,
        "kind": kind,
        "metric": metric,
        "scope": f"domain={rest[0]}" if rest else "model",
        "domain": rest[0] if rest else None,
        "verdict": verdict,
        "baseline_value": 0.9,
        "candidate_value": 0.9,
        "effect": 0.0,
        "ci_low": -0.02,
        "ci_high": 0.02,
        "p_value": 0.5,
        "n": 67,
        "tolerance": 0.05,
        "min_detectable_effect": 0.04,
        "message": f"{rule_id} {verdict}",
    }
    return RuleResult(**{**values, **fields})


def _decision(*rules: RuleResult) -> Decision:
    failing = any(r.verdict in ("fail", "inconclusive_fail") for r in rules)
    return Decision(verdict="fail" if failing else "pass", rules=list(rules), summary="")


OOD_OK = _rule("out_of_domain_delta:answer_match:out", "pass")
OOD_LOST = _rule(
    "out_of_domain_delta:answer_match:out",
    "fail",
    effect=-0.39,
    ci_low=-0.49,
    ci_high=-0.29,
    message="regression beyond the tolerance -0.05: upper bound -0.29 < -0.05",
)
PPL_BLOWUP = _rule("perplexity_ratio:perplexity_word", "fail", ratio=2.5, tolerance=1.1)
EMPTY = _rule("threshold:empty_output:all", "fail", candidate_value=0.8, message="80 % empty")
LOOPING = CollapseSignals(repetition=0.7, perplexity_ratio=3.0)


def test_degenerate_output_is_collapse() -> None:
    labelled = classify_candidate(_decision(OOD_OK, EMPTY), LIFT)
    assert labelled.label == "collapse"
    assert labelled.reason.startswith("degenerate output: collapse threshold empty_output failed")


def test_perplexity_blowup_with_degenerate_output_is_collapse() -> None:
    labelled = classify_candidate(_decision(OOD_LOST, PPL_BLOWUP), LIFT, LOOPING)
    assert labelled.label == "collapse"
    assert "mean repetition 0.7" in labelled.reason
    assert "with perplexity ratio 3 > 2 x the allowed 1.1" in labelled.reason


def test_perplexity_blowup_with_fluent_output_is_forgetting() -> None:
    labelled = classify_candidate(_decision(OOD_OK, PPL_BLOWUP), LIFT)
    assert labelled.label == "forgetting"
    assert labelled.reason.startswith("perplexity ratio 2.5 > 2 x the allowed 1.1")
    assert "while the outputs stay fluent" in labelled.reason


def test_out_of_domain_regression_with_lift_is_forgetting_and_says_so() -> None:
    labelled = classify_candidate(_decision(OOD_LOST), LIFT)
    assert labelled.label == "forgetting"
    assert labelled.reason.startswith("out_of_domain_delta:answer_match:out: regression beyond")
    assert "(significant in-domain lift +0.1" in labelled.reason


def test_out_of_domain_regression_without_lift_is_forgetting_too() -> None:
    labelled = classify_candidate(_decision(OOD_LOST), NO_LIFT)
    assert labelled.label == "forgetting"  # not underfit: the facts went
    assert "(no significant in-domain lift" in labelled.reason
    assert classify_candidate(_decision(OOD_LOST), None).label == "forgetting"


@pytest.mark.parametrize("verdict", ["inconclusive_fail", "inconclusive_pass"])
@pytest.mark.parametrize(("effect", "label"), [(-0.08, "forgetting"), (-0.02, "good")])
def test_inconclusive_failure_is_forgetting_only_past_the_tolerance(
    effect: float, label: str, verdict: str
) -> None:
    # inconclusive_pass: a no_regression rule (or a fail that Holm's correction made
    # inconclusive) - the policy's choice at the gate, not evidence about the training
    rule = _rule(
        "out_of_domain_delta:relevance_reference:out",
        verdict,
        effect=effect,
        ci_low=effect - 0.05,
        ci_high=effect + 0.05,
    )
    assert classify_candidate(_decision(rule), LIFT).label == label


def test_a_good_candidate_with_a_significant_loss_inside_the_tolerance_says_so() -> None:
    small_loss = _rule(
        "no_regression:target_nll:out", "pass", effect=-0.04, ci_low=-0.07, ci_high=-0.01
    )
    labelled = classify_candidate(_decision(small_loss), LIFT)
    assert labelled.label == "good"
    assert "no out-of-domain regression" not in labelled.reason
    assert (
        "a significant out-of-domain loss within the tolerance on no_regression:target_nll:out "
        "(change -0.04 [-0.07, -0.01])" in labelled.reason
    )


def test_a_skipped_secondary_rule_does_not_label() -> None:
    secondary = _rule(
        "out_of_domain_delta:relevance_reference:out", "skipped", effect=-0.2, ci_high=-0.1
    )
    assert classify_candidate(_decision(OOD_OK, secondary), LIFT).label == "good"


def test_no_lift_is_underfit() -> None:
    labelled = classify_candidate(_decision(OOD_OK), NO_LIFT)
    assert labelled.label == "underfit"
    assert labelled.reason.startswith("no significant in-domain lift")


def test_a_gate_failed_good_candidate_names_the_failing_rule() -> None:
    hallucinating = _rule("no_regression:hallucination:in", "fail", message="more claims")
    labelled = classify_candidate(_decision(OOD_OK, hallucinating), LIFT)
    assert labelled.label == "good"
    assert "the gate failed on no_regression:hallucination:in: more claims" in labelled.reason
    assert classify_candidate(_decision(OOD_OK), LIFT).reason.endswith(
        "no out-of-domain regression"
    )


def test_recommended_rate_never_has_a_significant_out_of_domain_regression() -> None:
    # a lenient policy let a shown (if small) out-of-domain loss pass as inconclusive
    small_loss = _rule(
        "out_of_domain_delta:answer_match:out",
        "inconclusive_pass",
        effect=-0.04,
        ci_low=-0.09,
        ci_high=-0.01,
    )
    bigger = paired_comparison(BASE + 0.2 + np.linspace(-0.02, 0.02, 40), BASE, tolerance=0.0)
    rows = [
        sweep_row("lossy", 1e-3, _decision(small_loss), lift=bigger),
        sweep_row("clean", 1e-4, _decision(OOD_OK), lift=LIFT),
    ]
    assert [r.label for r in rows] == ["good", "good"]
    assert rows[0].ood_regression == "out_of_domain_delta:answer_match:out"
    rate, reason = recommend(rows)
    assert rate == 1e-4
    assert "candidate clean" in reason
    assert recommend(rows[:1])[0] is None


def test_lift_and_forgetting_metrics_of_a_policy() -> None:
    assert lift_metric_of(DEFAULT_POLICY) == "token_f1"
    assert ood_metric_of(DEFAULT_POLICY) == "answer_match"
    skipped = _rule("out_of_domain_delta:answer_match:out", "skipped")
    deciding = _rule("out_of_domain_delta:relevance_reference:out", "pass")
    assert ood_metric_of(DEFAULT_POLICY, _decision(skipped, deciding)) == "relevance_reference"
    plain = parse_policy("rules: [{kind: no_regression, metric: relevance, tolerance: 0.1}]")
    assert (lift_metric_of(plain), ood_metric_of(plain)) == ("token_f1", "relevance_reference")
