"""Sweep labels, one test per case: collapse (threshold, regression on a collapse metric),
forgetting (with and without lift, perplexity
blow-up with fluent output), underfit, good (and good-but-gate-failed), recommendation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.gate.decision import Decision, RuleResult, compare_metric, decide
from service.gate.labels import (
    CollapseSignals,
    classify_candidate,
    lift_metric_of,
    ood_metric_of,
)
from service.gate.policy import DEFAULT_POLICY, parse_policy
from service.gate.stats import paired_comparison
from service.sweeps import recommend, sweep_row
from tests.gate.factory import base_scores, evaluation, example_ids, shifted

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


# The CLI's looping adapter under a relative policy: repetition 0 -> 0.9, no in-domain lift.
REPETITION_ROSE = _rule(
    "no_regression:repetition",
    "fail",
    domain="all",
    scope="domain=all",
    baseline_value=0.0,
    candidate_value=0.9,
    effect=-0.9,
    ci_low=-0.97,
    ci_high=-0.83,
    tolerance=0.1,
    message="regression beyond the tolerance -0.1: upper bound -0.83 < -0.1",
)


@pytest.mark.parametrize("lift", [NO_LIFT, LIFT, None])
def test_a_regression_on_a_collapse_metric_is_collapse_and_names_it(lift: Any) -> None:
    labelled = classify_candidate(_decision(OOD_OK, REPETITION_ROSE), lift)
    assert labelled.label == "collapse"  # not underfit (no lift), not good (a lift)
    assert labelled.reason.startswith(
        "degenerate output: repetition rose from 0 to 0.9 (+0.9 [+0.83, +0.97]); "
        "no_regression:repetition: regression beyond the tolerance -0.1"
    )
    assert CollapseSignals.from_decision(_decision(REPETITION_ROSE)).repetition == 0.9


RELATIVE = parse_policy(
    """
rules:
  - {kind: no_regression, metric: repetition, tolerance: 0.1}
  - {kind: no_regression, metric: token_f1, domain: out, tolerance: 0.1}
"""
)


@pytest.mark.parametrize(
    ("shifts", "label"),
    [
        ({("in", "repetition"): 0.6, ("out", "repetition"): 0.6}, "collapse"),
        ({("in", "repetition"): 0.02}, "underfit"),
        ({("out", "token_f1"): -0.3}, "forgetting"),
        ({("in", "token_f1"): 0.1}, "good"),
    ],
)
def test_a_relative_policy_labels_from_the_decided_rules(
    shifts: dict[tuple[str, str], float], label: str
) -> None:
    # no threshold rule: collapse is seen only through the repetition rule's change
    domains = example_ids(30, 30)
    base = base_scores(domains)
    baseline = evaluation(domains, base)
    candidate = evaluation(domains, shifted(base, domains, shifts))
    decision = decide(RELATIVE, candidate, baseline)
    lift = compare_metric(candidate, baseline, "token_f1", RELATIVE, domain="in")
    labelled = classify_candidate(decision, lift)
    assert labelled.label == label, labelled.reason
    if label == "collapse":
        assert labelled.reason.startswith("degenerate output: repetition rose from 0.104 to 0.704")
        assert "no_regression:repetition:all: regression beyond the tolerance" in labelled.reason


def test_collapse_comes_before_forgetting() -> None:
    empty_rose = _rule(
        "no_regression:empty_output:out",
        "inconclusive_pass",  # short of examples, but the point estimate is past the tolerance
        baseline_value=0.0,
        candidate_value=0.3,
        effect=-0.3,
        ci_low=-0.5,
        ci_high=-0.02,
        tolerance=0.1,
    )
    labelled = classify_candidate(_decision(OOD_LOST, empty_rose), LIFT)
    assert labelled.label == "collapse"
    assert "empty_output rose from 0 to 0.3 (+0.3 [+0.02, +0.5])" in labelled.reason


def test_a_collapse_metric_within_its_tolerance_does_not_label() -> None:
    slightly = _rule(
        "no_regression:repetition",
        "pass",
        baseline_value=0.1,
        candidate_value=0.12,
        effect=-0.02,
        ci_low=-0.04,
        ci_high=-0.01,  # a shown rise, but inside the tolerance: not degenerate
        tolerance=0.1,
    )
    assert classify_candidate(_decision(OOD_OK, slightly), NO_LIFT).label == "underfit"
    assert classify_candidate(_decision(OOD_LOST, slightly), LIFT).label == "forgetting"
    assert classify_candidate(_decision(OOD_OK, slightly), LIFT).label == "good"
    assert CollapseSignals.from_decision(_decision(slightly)).repetition == 0.12


def test_signals_prefer_the_threshold_then_the_widest_scope() -> None:
    cohort = _rule("no_regression:repetition:in", "pass", candidate_value=0.4, cohort="billing")
    domain = _rule("no_regression:repetition:in", "pass", candidate_value=0.3)
    everything = _rule("no_regression:repetition", "pass", candidate_value=0.2, domain="all")
    threshold = _rule("threshold:repetition:all", "pass", candidate_value=0.1)
    read = CollapseSignals.from_decision
    assert read(_decision(cohort, domain, everything)).repetition == 0.2
    assert read(_decision(cohort, domain)).repetition == 0.3
    assert read(_decision(domain, everything, threshold)).repetition == 0.1


def test_a_looping_candidate_is_never_recommended() -> None:
    rows = [
        sweep_row("looping", 1e-3, _decision(OOD_OK, REPETITION_ROSE), lift=LIFT),
        sweep_row("clean", 1e-4, _decision(OOD_OK), lift=LIFT),
    ]
    assert [r.label for r in rows] == ["collapse", "good"]
    assert rows[0].repetition == 0.9
    assert recommend(rows)[0] == 1e-4
    assert recommend(rows[:1])[0] is None


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
