from __future__ import annotations

import json

import pytest

from service.gate.decision import EvalScores, compare_metric, decide
from service.gate.policy import DEFAULT_POLICY
from service.sweeps import CollapseSignals, SweepRow, classify_candidate, recommend, sweep_row
from tests.gate.factory import base_scores, evaluation, example_ids, shifted

DOMAINS = example_ids(100, 60)
BASE = base_scores(DOMAINS)
BASELINE = evaluation(DOMAINS, BASE)


def _candidate(
    shifts: dict[tuple[str, str], float], perplexity: float = 20.5, seed: int = 1
) -> EvalScores:
    scores = shifted(BASE, DOMAINS, shifts, noise=0.01, seed=seed)
    return evaluation(DOMAINS, scores, {"perplexity_word": perplexity})


def _row(
    candidate_id: str, rate: float, candidate: EvalScores, diagnosis: str | None = None
) -> SweepRow:
    decision = decide(DEFAULT_POLICY, candidate, BASELINE)
    return sweep_row(
        candidate_id,
        rate,
        decision,
        lift=compare_metric(candidate, BASELINE, "relevance", DEFAULT_POLICY, domain="in"),
        ood=compare_metric(
            candidate, BASELINE, "relevance_reference", DEFAULT_POLICY, domain="out"
        ),
        hallucination=compare_metric(
            candidate, BASELINE, "hallucination", DEFAULT_POLICY, domain="all"
        ),
        training_diagnosis=diagnosis,
    )


GOOD = {("in", "relevance"): 0.1, ("in", "token_f1"): 0.1}
FORGETTING = {**GOOD, ("out", "relevance_reference"): -0.1}


@pytest.mark.parametrize(
    ("shifts", "perplexity", "label", "verdict", "phrase"),
    [
        (GOOD, 20.5, "good", "pass", "significant in-domain lift +0.09"),
        # no in-domain lift: the default policy's lift bar fails them too
        ({}, 20.0, "underfit", "fail", "no significant in-domain lift"),
        ({("in", "relevance"): -0.02}, 20.0, "underfit", "fail", "no significant"),
        (FORGETTING, 20.5, "forgetting", "fail", "out_of_domain_delta:relevance_reference:out"),
        ({**GOOD, ("in", "empty_output"): 1.0}, 20.5, "collapse", "fail", "collapse threshold"),
        # a perplexity blow-up with fluent answers is forgetting, not collapse
        ({**GOOD}, 50.0, "forgetting", "fail", "perplexity ratio 2.5 > 2 x the allowed 1.1"),
        # A perplexity rise that fails the gate but is no blow-up: the training still worked.
        (GOOD, 26.0, "good", "fail", "significant in-domain lift"),
    ],
)
def test_labels_follow_the_measured_numbers(
    shifts: dict[tuple[str, str], float], perplexity: float, label: str, verdict: str, phrase: str
) -> None:
    row = _row("c1", 1e-4, _candidate(shifts, perplexity))
    assert (row.label, row.verdict) == (label, verdict)
    assert phrase in row.label_reason


def test_explicit_collapse_signals_and_missing_lift() -> None:
    candidate = _candidate(GOOD)
    decision = decide(DEFAULT_POLICY, candidate, BASELINE)
    lift = compare_metric(candidate, BASELINE, "relevance", DEFAULT_POLICY, domain="in")
    assert classify_candidate(decision, lift).label == "good"
    looping = CollapseSignals(repetition=0.6)
    assert classify_candidate(decision, lift, looping).label == "collapse"
    assert classify_candidate(decision, None).label == "underfit"


def test_row_reports_effects_and_raw_hallucination_change() -> None:
    candidate = _candidate({**FORGETTING, ("all", "hallucination"): 0.0})
    hallucinating = shifted(
        candidate.per_example,
        DOMAINS,
        {("in", "hallucination"): 0.1, ("out", "hallucination"): 0.1},
    )
    row = _row("c7", 3e-4, evaluation(DOMAINS, hallucinating, {"perplexity_word": 21.0}), "healthy")
    assert row.in_domain_lift == pytest.approx(0.1, abs=0.01)
    assert row.lift_ci_low is not None
    assert row.lift_ci_low > 0
    assert row.ood_delta == pytest.approx(-0.1, abs=0.01)
    assert row.hallucination_change == pytest.approx(0.1, abs=0.01)  # raw: positive = more
    assert row.perplexity_ratio == pytest.approx(21.0 / 20.0)
    assert row.empty_output == 0.0
    assert row.training_diagnosis == "healthy"
    json.dumps(row.to_dict(), allow_nan=False)


def test_recommend_picks_the_passing_candidate_with_the_largest_lift() -> None:
    rows = [
        _row("under", 1e-5, _candidate({})),
        _row("small", 1e-4, _candidate({("in", "relevance"): 0.05, ("in", "token_f1"): 0.1})),
        _row("best", 3e-4, _candidate({("in", "relevance"): 0.12, ("in", "token_f1"): 0.1})),
        _row(
            "forgot",
            1e-3,
            _candidate({**GOOD, ("in", "relevance"): 0.2, ("out", "relevance"): -0.2}),
        ),
        _row("broke", 1e-2, _candidate({("in", "empty_output"): 1.0, **GOOD})),
    ]
    assert [r.label for r in rows] == ["underfit", "good", "good", "forgetting", "collapse"]
    rate, reason = recommend(rows)
    assert rate == 3e-4
    assert "candidate best" in reason
    assert "among 2 passing" in reason


def test_recommend_breaks_ties_with_the_lower_rate() -> None:
    same = _candidate(GOOD)
    rate, reason = recommend([_row("a", 3e-4, same), _row("b", 1e-4, same), _row("c", 2e-4, same)])
    assert rate == 1e-4
    assert "lowest of 3 tied rates" in reason


def test_recommend_without_a_passing_candidate_says_why() -> None:
    failing = [_row("f", 1e-3, _candidate(FORGETTING)), _row("c", 1e-2, _candidate({}, 60.0))]
    rate, reason = recommend(failing)
    assert rate is None
    assert reason == "none of the 2 candidates passed the gate (2 forgetting)"
    rate, reason = recommend([_row("u", 1e-6, _candidate({}))])
    assert rate is None
    assert reason == "none of the 1 candidates passed the gate (1 underfit)"
    assert recommend([]) == (None, "the sweep has no candidates")


def test_inconclusive_out_of_domain_failure_past_tolerance_is_forgetting() -> None:
    from service.gate.decision import Decision, RuleResult
    from service.gate.stats import paired_comparison
    from service.sweeps import classify_candidate

    rule = RuleResult(
        rule_id="out_of_domain_delta:relevance_reference:out",
        kind="out_of_domain_delta",
        metric="relevance_reference",
        scope="domain=out",
        verdict="inconclusive_fail",
        baseline_value=0.7,
        candidate_value=0.57,
        effect=-0.13,
        ci_low=-0.19,
        ci_high=-0.079,
        p_value=0.06,
        n=66,
        tolerance=0.08,
        min_detectable_effect=0.085,
        message="inconclusive",
        domain="out",
    )
    decision = Decision(verdict="fail", rules=[rule], summary="fail")
    lift = paired_comparison([1.0, 0.9, 1.0, 0.8] * 5, [0.0, 0.1, 0.0, 0.1] * 5, tolerance=0.0)
    assert classify_candidate(decision, lift).label == "forgetting"
    within = RuleResult(**{**rule.to_dict(), "effect": -0.05})
    decision = Decision(verdict="fail", rules=[within], summary="fail")
    assert classify_candidate(decision, lift).label == "good"
