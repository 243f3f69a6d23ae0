from __future__ import annotations

import json

import numpy as np
import pytest

from service.errors import ScoringError
from service.gate.decision import Decision, EvalScores, RuleResult, decide
from service.gate.policy import DEFAULT_POLICY, parse_policy
from tests.gate.factory import base_scores, evaluation, example_ids, shifted

DOMAINS = example_ids(120, 80)
BASE = base_scores(DOMAINS)
BASELINE = evaluation(DOMAINS, BASE)


def _rule(decision: Decision, rule_id: str) -> RuleResult:
    return next(r for r in decision.rules if r.rule_id == rule_id)


def _candidate(shifts: dict[tuple[str, str], float], noise: float = 0.01) -> EvalScores:
    return evaluation(DOMAINS, shifted(BASE, DOMAINS, shifts, noise=noise))


SKIPPED_WITHOUT_EVIDENCE = (
    "out_of_domain_delta:answer_match:out",
    "out_of_domain_delta:choice_acc:out",
    "out_of_domain_delta:target_nll:out",
    "no_regression:refusal_rate:all",
    "no_regression:over_refusal:all",
)
"""Default rules a dataset without accepted answers, choices, targets or ``expect`` skips."""

LIFT = {("in", "token_f1"): 0.1}
"""An in-domain token F1 rise that clears the default policy's lift bar (0.05)."""


def test_identical_candidate_fails_no_regression_rule_only_the_lift_bar() -> None:
    decision = decide(DEFAULT_POLICY, evaluation(DOMAINS, BASE), BASELINE)
    verdicts = {r.rule_id: r.verdict for r in decision.rules}
    assert verdicts.pop("min_improvement:token_f1:in") == "fail"
    assert "no lift of +0.05" in _rule(decision, "min_improvement:token_f1:in").message
    # no answers, choices, targets or safety probes in these examples: judged by similarity
    for rule_id in SKIPPED_WITHOUT_EVIDENCE:
        assert verdicts.pop(rule_id) == "skipped"
    assert set(verdicts.values()) == {"pass"}
    json.dumps(decision.to_dict(), allow_nan=False)


def test_candidate_with_a_lift_and_nothing_else_passes_every_default_rule() -> None:
    decision = decide(DEFAULT_POLICY, _candidate(LIFT), BASELINE)
    assert decision.verdict == "pass", decision.summary
    judged = len(DEFAULT_POLICY.rules) - len(SKIPPED_WITHOUT_EVIDENCE)
    skipped = len(SKIPPED_WITHOUT_EVIDENCE)
    assert decision.summary == f"pass: all {judged} rules passed ({skipped} skipped)"


def test_in_domain_regression_beyond_tolerance_fails_the_gate() -> None:
    decision = decide(DEFAULT_POLICY, _candidate({("in", "relevance"): -0.1}), BASELINE)
    rule = _rule(decision, "no_regression:relevance:in")
    assert rule.verdict == "fail"
    assert rule.n == 120
    assert rule.effect == pytest.approx(-0.1, abs=0.01)
    assert rule.ci_high is not None
    assert rule.ci_high < -0.03
    assert rule.candidate_value == pytest.approx(rule.baseline_value - 0.1, abs=0.01)  # type: ignore[operator]
    assert decision.verdict == "fail"
    assert "no_regression:relevance:in" in decision.summary
    assert _rule(decision, "no_regression:relevance:out").verdict == "pass"


def test_regression_within_tolerance_passes() -> None:
    decision = decide(DEFAULT_POLICY, _candidate({("in", "relevance"): -0.01, **LIFT}), BASELINE)
    assert _rule(decision, "no_regression:relevance:in").verdict == "pass"
    assert decision.verdict == "pass"


def test_hallucination_is_lower_is_better() -> None:
    worse = decide(DEFAULT_POLICY, _candidate({("in", "hallucination"): 0.2}), BASELINE)
    rule = _rule(worse, "no_regression:hallucination:in")
    assert rule.verdict == "fail"
    assert rule.effect == pytest.approx(-0.2, abs=0.01)  # negative = worse
    assert rule.candidate_value > rule.baseline_value  # type: ignore[operator]
    better = decide(DEFAULT_POLICY, _candidate({("in", "hallucination"): -0.2, **LIFT}), BASELINE)
    assert _rule(better, "no_regression:hallucination:in").effect == pytest.approx(0.2, abs=0.01)
    assert better.verdict == "pass"


def test_out_of_domain_forgetting_fails_the_forgetting_rule() -> None:
    candidate = _candidate({("out", "relevance_reference"): -0.1, ("in", "relevance"): 0.1})
    decision = decide(DEFAULT_POLICY, candidate, BASELINE)
    rule = _rule(decision, "out_of_domain_delta:relevance_reference:out")
    assert rule.verdict == "fail"
    assert rule.n == 80
    assert rule.scope == "domain=out"
    assert decision.verdict == "fail"


def test_missing_out_of_domain_data_is_an_inconclusive_failure() -> None:
    domains = example_ids(40, 0)
    scores = base_scores(domains)
    decision = decide(DEFAULT_POLICY, evaluation(domains, scores), evaluation(domains, scores))
    rule = _rule(decision, "out_of_domain_delta:relevance_reference:out")
    assert rule.verdict == "inconclusive_fail"
    assert rule.message.startswith("no data for metric relevance_reference in scope domain=out")
    assert _rule(decision, "no_regression:relevance:out").verdict == "inconclusive_pass"
    assert decision.verdict == "fail"


def test_small_sample_is_inconclusive_and_the_policy_says_what_that_means() -> None:
    domains = example_ids(6, 0)
    scores = base_scores(domains)
    candidate = evaluation(domains, shifted(scores, domains, {("in", "relevance"): 0.0}, noise=0.2))
    text = "rules: [{kind: no_regression, metric: relevance, domain: in, tolerance: 0.03}]"
    lenient = decide(parse_policy(text), candidate, evaluation(domains, scores))
    assert lenient.rules[0].verdict == "inconclusive_pass"
    assert "need ≈" in lenient.rules[0].message
    assert lenient.rules[0].needed_n is not None
    assert lenient.rules[0].needed_n > 6
    assert lenient.verdict == "pass"
    assert "1 inconclusive" in lenient.summary
    strict = parse_policy("inconclusive: {no_regression: fail}\n" + text)
    assert decide(strict, candidate, evaluation(domains, scores)).verdict == "fail"


IMPROVEMENT = "rules: [{kind: min_improvement, metric: token_f1, delta: 0.05}]"


@pytest.mark.parametrize(
    ("shift", "noise", "verdict", "phrase"),
    [
        (0.1, 0.02, "pass", "improved by"),
        (0.02, 0.01, "fail", "no lift of +0.05: upper bound"),
        (0.0, 0.01, "fail", "no lift of +0.05: upper bound"),
    ],
)
def test_min_improvement(shift: float, noise: float, verdict: str, phrase: str) -> None:
    candidate = _candidate({("in", "token_f1"): shift}, noise=noise)
    decision = decide(parse_policy(IMPROVEMENT), candidate, BASELINE)
    assert decision.rules[0].verdict == verdict
    assert phrase in decision.rules[0].message
    assert decision.rules[0].n == 120  # in-domain only


def test_min_improvement_on_too_few_examples_is_inconclusive() -> None:
    domains = example_ids(5, 0)
    scores = base_scores(domains)
    candidate = shifted(scores, domains, {("in", "token_f1"): 0.0}, noise=0.2)
    decision = decide(
        parse_policy(IMPROVEMENT), evaluation(domains, candidate), evaluation(domains, scores)
    )
    # a lift that is not shown counts as a failure by default
    assert decision.rules[0].verdict == "inconclusive_fail"
    assert "need ≈" in decision.rules[0].message


def test_thresholds_on_means_and_on_model_metrics() -> None:
    policy = parse_policy(
        """rules:
  - {kind: threshold, metric: empty_output, max: 0.05}
  - {kind: threshold, metric: relevance, domain: in, min: 0.5}
  - {kind: threshold, metric: perplexity_word, max: 25}
"""
    )
    ok = decide(policy, evaluation(DOMAINS, BASE), BASELINE)
    assert [r.verdict for r in ok.rules] == ["pass", "pass", "pass"]
    assert ok.rules[2].scope == "model"
    broken = shifted(
        BASE, DOMAINS, {("in", "empty_output"): 1.0, ("in", "relevance"): -0.3}, noise=0
    )
    bad = decide(policy, evaluation(DOMAINS, broken, {"perplexity_word": 30.0}), BASELINE)
    assert [r.verdict for r in bad.rules] == ["fail", "fail", "fail"]
    assert bad.rules[0].candidate_value == pytest.approx(120 / 200)
    assert "outside" in bad.rules[0].message


@pytest.mark.parametrize(("perplexity", "verdict"), [(21.0, "pass"), (23.0, "fail")])
def test_perplexity_ratio(perplexity: float, verdict: str) -> None:
    policy = parse_policy("rules: [{kind: perplexity_ratio, max_ratio: 1.1}]")
    candidate = evaluation(DOMAINS, BASE, {"perplexity_word": perplexity})
    rule = decide(policy, candidate, BASELINE).rules[0]
    assert rule.verdict == verdict
    assert rule.ratio == pytest.approx(perplexity / 20.0)
    assert rule.effect == pytest.approx(20.0 - perplexity)  # lower is better: oriented


def test_missing_perplexity_is_inconclusive_not_a_silent_pass() -> None:
    policy = parse_policy("rules: [{kind: perplexity_ratio}]")
    rule = decide(policy, evaluation(DOMAINS, BASE, {"perplexity_token": 8.0}), BASELINE).rules[0]
    assert rule.verdict == "inconclusive_pass"
    assert rule.message.startswith("no data for metric perplexity_word in scope model")


def test_only_shared_examples_with_the_metric_are_paired() -> None:
    candidate_scores = {k: dict(v) for k, v in BASE.items() if k != "in-000"}
    del candidate_scores["in-001"]["relevance"]
    baseline_scores = {k: dict(v) for k, v in BASE.items()}
    del baseline_scores["in-002"]["relevance"]
    policy = parse_policy("rules: [{kind: no_regression, metric: relevance, tolerance: 0.03}]")
    rule = decide(
        policy, evaluation(DOMAINS, candidate_scores), evaluation(DOMAINS, baseline_scores)
    ).rules[0]
    assert rule.n == 200 - 3


def test_cohort_scope_selects_the_cohort() -> None:
    cohorts = {k: ("billing" if i % 4 == 0 else "other") for i, k in enumerate(DOMAINS)}
    billing = [k for k, c in cohorts.items() if c == "billing" and DOMAINS[k] == "in"]
    candidate_scores = {k: dict(v) for k, v in BASE.items()}
    for example_id in billing:
        candidate_scores[example_id]["relevance"] -= 0.2
    policy = parse_policy(
        """rules:
  - {kind: no_regression, metric: relevance, domain: in, cohort: billing, tolerance: 0.03}
  - {kind: no_regression, metric: relevance, domain: in, cohort: other, tolerance: 0.03}
"""
    )
    decision = decide(
        policy,
        evaluation(DOMAINS, candidate_scores, cohorts=cohorts),
        evaluation(DOMAINS, BASE, cohorts=cohorts),
    )
    assert decision.rules[0].n == len(billing)
    assert decision.rules[0].scope == "domain=in, cohort=billing"
    assert [r.verdict for r in decision.rules] == ["fail", "pass"]


def test_nan_score_is_an_error_not_a_result() -> None:
    broken = {k: dict(v) for k, v in BASE.items()}
    broken["in-003"]["relevance"] = float("nan")
    with pytest.raises(ScoringError, match="in-003"):
        decide(DEFAULT_POLICY, evaluation(DOMAINS, broken), BASELINE)


HOLM_RULES = """
rules:
  - {kind: no_regression, metric: relevance, domain: in, tolerance: 0.03}
  - {kind: no_regression, metric: relevance, domain: out, tolerance: 0.03}
  - {kind: no_regression, metric: token_f1, domain: in, tolerance: 0.03}
  - {kind: no_regression, metric: token_f1, domain: out, tolerance: 0.03}
"""


def test_holm_turns_a_fail_that_does_not_survive_the_family_into_inconclusive() -> None:
    # in-domain relevance: change -0.039 with t = -2.0 (one-sided p 0.024 < 0.05, but
    # 4 x 0.024 > 0.05 under Holm); the other three rules do not move.
    z = np.random.default_rng(0).normal(size=120)
    z = (z - z.mean()) / z.std(ddof=1)
    se = 0.05 / np.sqrt(120)
    diffs = iter(-0.03 - 2.0 * se + 0.05 * z)
    scores = {
        example_id: {**row, "relevance": row["relevance"] + next(diffs)}
        if DOMAINS[example_id] == "in"
        else dict(row)
        for example_id, row in BASE.items()
    }
    candidate = evaluation(DOMAINS, scores)
    raw = decide(parse_policy("family_wise: none\n" + HOLM_RULES), candidate, BASELINE)
    assert _rule(raw, "no_regression:relevance:in").verdict == "fail"
    assert raw.verdict == "fail"
    holm = decide(parse_policy(HOLM_RULES), candidate, BASELINE)
    rule = _rule(holm, "no_regression:relevance:in")
    assert rule.verdict == "inconclusive_pass"  # no_regression: inconclusive counts as pass
    assert rule.p_value == pytest.approx(0.024, abs=0.001)
    assert rule.p_adjusted == pytest.approx(4 * rule.p_value)
    assert "inconclusive after Holm's correction over 4 paired rules" in rule.message
    assert holm.verdict == "pass"


def _with_answers(
    lost: int, gained: int, base_wrong: int, similarity_shift: float
) -> tuple[EvalScores, EvalScores]:
    """Out-of-domain answers: the baseline gets ``base_wrong`` of 80 wrong; the candidate
    loses ``lost`` right ones and gains ``gained`` wrong ones; similarity moves alike."""
    outs = sorted(k for k, d in DOMAINS.items() if d == "out")
    base = {k: dict(v) for k, v in BASE.items()}
    cand = shifted(BASE, DOMAINS, {**LIFT, ("out", "relevance_reference"): similarity_shift})
    for i, key in enumerate(outs):
        right = i >= base_wrong
        base[key]["answer_match"] = float(right)
        flips = (right and i < base_wrong + lost) or (not right and i < gained)
        cand[key]["answer_match"] = float(right != flips)
    return evaluation(DOMAINS, cand), evaluation(DOMAINS, base)


def test_forgetting_is_judged_by_answers_when_present_and_similarity_is_secondary() -> None:
    # 20 of 80 facts lost while the similarity to the reference *rises* (style learned)
    candidate, baseline = _with_answers(20, 0, 20, similarity_shift=0.05)
    decision = decide(DEFAULT_POLICY, candidate, baseline)
    answers = _rule(decision, "out_of_domain_delta:answer_match:out")
    assert (answers.verdict, answers.test) == ("fail", "exact McNemar")
    assert (answers.losses, answers.gains, answers.n) == (20, 0, 80)
    assert "20 lost / 0 gained of 80" in answers.message
    similarity = _rule(decision, "out_of_domain_delta:relevance_reference:out")
    assert similarity.verdict == "skipped"
    assert similarity.effect == pytest.approx(0.05, abs=0.01)  # reported, does not decide
    assert similarity.message.startswith("secondary to answer_match, which decides")
    assert decision.verdict == "fail"


def test_losses_and_gains_are_paired_both_ways() -> None:
    # 8 lost, 12 gained of 80: change, not forgetting
    candidate, baseline = _with_answers(8, 12, 20, similarity_shift=0.0)
    rule = _rule(
        decide(DEFAULT_POLICY, candidate, baseline), "out_of_domain_delta:answer_match:out"
    )
    assert (rule.losses, rule.gains) == (8, 12)
    assert rule.effect == pytest.approx(4 / 80)
    assert rule.verdict != "fail"
    assert rule.warning is None  # a quarter of the set is wrong for the baseline


def test_selection_bias_is_warned_when_the_baseline_gets_almost_nothing_wrong() -> None:
    candidate, baseline = _with_answers(1, 0, 2, similarity_shift=0.0)
    decision = decide(DEFAULT_POLICY, candidate, baseline)
    rule = _rule(decision, "out_of_domain_delta:answer_match:out")
    assert rule.warning is not None
    assert "selection bias" in rule.warning
    assert "only 2 of 80 out-of-domain examples wrong" in rule.warning
    assert decision.warnings == [rule.warning]
    assert "Warning: selection bias" in decision.summary
