from __future__ import annotations

import json

import pytest

from service.errors import InvalidPolicy
from service.gate.policy import (
    DEFAULT_POLICY,
    FORGETTING_EVIDENCE,
    MinImprovement,
    NoRegression,
    OutOfDomainDelta,
    PerplexityRatio,
    Threshold,
    parse_policy,
    policy_json,
)


def test_default_policy_round_trips_through_its_stored_json() -> None:
    stored = policy_json(DEFAULT_POLICY)
    assert parse_policy(stored) == DEFAULT_POLICY
    assert json.loads(stored)["rules"][0]["id"] == "min_improvement:token_f1:in"
    assert json.loads(stored)["family_wise"] == "holm"


def test_default_policy_covers_regression_forgetting_perplexity_and_collapse() -> None:
    kinds = {type(rule) for rule in DEFAULT_POLICY.rules}
    assert kinds == {MinImprovement, NoRegression, OutOfDomainDelta, PerplexityRatio, Threshold}
    lift = next(r for r in DEFAULT_POLICY.rules if isinstance(r, MinImprovement))
    assert (lift.metric, lift.domain, lift.delta) == ("token_f1", "in", 0.05)
    assert DEFAULT_POLICY.inconclusive_outcome(lift) == "fail"  # a lift must be shown
    regression = {(r.metric, r.domain) for r in DEFAULT_POLICY.rules if isinstance(r, NoRegression)}
    assert regression == {
        ("relevance", "in"),
        ("relevance", "out"),
        ("hallucination", "in"),
        ("hallucination", "out"),
        ("refusal_rate", "all"),
        ("over_refusal", "all"),
    }
    safety = [r for r in DEFAULT_POLICY.rules if r.metric in ("refusal_rate", "over_refusal")]
    assert all(isinstance(r, NoRegression) and r.when_missing == "skip" for r in safety)
    ratio = next(r for r in DEFAULT_POLICY.rules if isinstance(r, PerplexityRatio))
    assert ratio.max_ratio == pytest.approx(1.10)
    forgetting = [r for r in DEFAULT_POLICY.rules if isinstance(r, OutOfDomainDelta)]
    # strongest evidence first: correctness, then similarity as a secondary signal
    assert [(r.metric, r.tolerance) for r in forgetting] == FORGETTING_EVIDENCE
    assert [r.metric for r in forgetting] == [
        "answer_match",
        "choice_acc",
        "target_nll",
        "relevance_reference",
    ]
    assert [r.when_missing for r in forgetting] == ["skip", "skip", "skip", "inconclusive"]
    assert forgetting[3].secondary_to == ["answer_match", "choice_acc", "target_nll"]
    ood = forgetting[-1]
    assert DEFAULT_POLICY.inconclusive_outcome(ood) == "fail"
    assert DEFAULT_POLICY.inconclusive_outcome(ratio) == "pass"


def test_yaml_policy_with_every_rule_kind() -> None:
    policy = parse_policy(
        """
alpha: 0.1
n_resamples: 3000
inconclusive: {no_regression: fail}
rules:
  - {kind: no_regression, metric: relevance, domain: in, cohort: billing, tolerance: 0.02}
  - {kind: min_improvement, metric: token_f1, delta: 0.05}
  - {kind: threshold, metric: json_schema_valid, min: 0.98}
  - {kind: perplexity_ratio, metric: perplexity_token, max_ratio: 1.2}
  - {kind: out_of_domain_delta, metric: token_f1, tolerance: 0.04, on_inconclusive: pass}
"""
    )
    assert policy.alpha == 0.1
    assert [rule.id for rule in policy.rules] == [
        "no_regression:relevance:in:billing",
        "min_improvement:token_f1:in",
        "threshold:json_schema_valid:all",
        "perplexity_ratio:perplexity_token",
        "out_of_domain_delta:token_f1:out",
    ]
    # A partial mapping keeps the other kinds' defaults; a rule may override its kind.
    assert policy.inconclusive["no_regression"] == "fail"
    assert policy.inconclusive["out_of_domain_delta"] == "fail"
    assert policy.inconclusive_outcome(policy.rules[4]) == "pass"


def test_json_numbers_in_exponent_form_parse() -> None:
    text = '{"alpha": 1e-2, "rules": [{"kind": "no_regression", "metric": "x", "tolerance": 5e-2}]}'
    policy = parse_policy(text)
    assert policy.alpha == pytest.approx(0.01)
    assert policy.rules[0].tolerance == pytest.approx(0.05)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("rules: []", "rules: List should have at least 1 item"),
        (
            "rules: [{kind: no_regression, metric: x, tolerance: -1}]",
            "rules.0.no_regression.tolerance: Input should be greater than or equal to 0",
        ),
        ("rules: [{kind: bogus, metric: x}]", "Input tag 'bogus'"),
        ("rules: [{metric: x}]", "Unable to extract tag using discriminator 'kind'"),
        ("rules: [{kind: no_regression, metric: x}]", "tolerance: Field required"),
        ("rules: [{kind: threshold, metric: x}]", "needs 'min', 'max' or both"),
        ("rules: [{kind: threshold, metric: x, min: 2, max: 1}]", "min 2.0 is above max 1.0"),
        ("rules: [{kind: min_improvement, metric: x, delta: 0}]", "delta: Input should be greater"),
        ("rules: [{kind: perplexity_ratio, maxratio: 2}]", "maxratio: Extra inputs"),
        (
            "rules: [{kind: threshold, metric: x, max: 1}, {kind: threshold, metric: x, max: 2}]",
            "duplicate rule id 'threshold:x:all'",
        ),
        (
            "alpha: 0.7\nrules: [{kind: threshold, metric: x, max: 1}]",
            "alpha: Input should be less",
        ),
        ("n_resamples: 100\nrules: [{kind: threshold, metric: x, max: 1}]", "n_resamples"),
        ("- just\n- a list", "must be a mapping"),
        ("rules: [", "neither valid JSON nor YAML"),
        ("", "must be a mapping"),
    ],
)
def test_bad_policy_is_rejected_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidPolicy) as info:
        parse_policy(text)
    assert reason in info.value.detail
    assert info.value.status_code == 422
