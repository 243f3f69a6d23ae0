"""Log-likelihood evidence sees forgetting that generated text hides (real SmolLM2, real LoRA).

An adapter is trained (16 real steps) on *wrong* answers to 24 general-knowledge questions.
Its greedy answers become short and confident ("Melbourne.", "Ag."), which look *more* like
the short reference answers than the base model's full sentences do: the generated-text
rule (embedding similarity to the reference, out of domain) does not see any regression on
these 24 questions. Scored by log-likelihood, the same 24 questions show the damage: the
model now prefers wrong choices, and the multiple-choice rule fails with its exact test.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from evaluators.base import Example
from evaluators.relevance import RelevanceEvaluator
from service.decisions import binary_metrics, metric_directions
from service.engine.generation import generate
from service.engine.loading import ModelPool
from service.engine.loglikelihood import score_records
from service.gate.decision import EvalScores, decide
from service.gate.policy import OutOfDomainDelta, Policy
from tests.adapters import trained_adapter
from tests.models import smollm2_dir

pytestmark = pytest.mark.slow

N_QUESTIONS = 24
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _questions() -> list[dict[str, Any]]:
    text = resources.files("service.demo").joinpath("data", "general_knowledge.jsonl")
    rows = [json.loads(line) for line in text.read_text().splitlines()]
    return [row for row in rows if "choices" in row][:N_QUESTIONS]


def _scores(adapter: Any, examples: list[Example]) -> EvalScores:
    with ModelPool(max_bases=1).acquire(smollm2_dir(), adapter_dir=adapter) as loaded:
        records = score_records(loaded, examples, chat_template=True)
        outputs = generate(
            loaded, [e.input for e in examples], max_new_tokens=12, chat_template=True
        )
    similarity = RelevanceEvaluator().score(examples, [o.text for o in outputs])
    per_example = {
        e.id: {**record.scores, "relevance_reference": s["relevance_reference"]}
        for e, record, s in zip(examples, records, similarity, strict=True)
    }
    return EvalScores(
        domains={e.id: "out" for e in examples},
        cohorts={e.id: None for e in examples},
        per_example=per_example,
        model_metrics={},
        higher_is_better=metric_directions(),
        binary_metrics=binary_metrics(),
    )


def test_choices_fail_a_knowledge_damaging_adapter_that_generated_text_lets_through() -> None:
    rows = _questions()
    wrong = [
        (row["input"], row["choices"][(row["answer"] + 1) % len(row["choices"])] + ".")
        for row in rows
    ]
    damaged = trained_adapter(
        "smollm2",
        "wrong-facts",
        lr=5e-3,
        steps=16,
        data=wrong,
        batch_size=4,
        target_modules=ALL_LINEAR,
    )
    examples = [
        Example(
            id=row["id"],
            input=row["input"],
            choices=row["choices"],
            answer=row["answer"],
            reference=row["choices"][row["answer"]],
            domain="out",
        )
        for row in rows
    ]
    baseline = _scores(None, examples)
    candidate = _scores(damaged, examples)

    by_choices = decide(
        Policy(rules=[OutOfDomainDelta(metric="choice_acc", tolerance=0.05)]), candidate, baseline
    )
    by_text = decide(
        Policy(rules=[OutOfDomainDelta(metric="relevance_reference", tolerance=0.03)]),
        candidate,
        baseline,
    )
    (choice_rule,) = by_choices.rules
    (text_rule,) = by_text.rules
    print(by_choices.summary, by_text.summary, sep="\n")
    assert choice_rule.verdict == "fail"
    assert choice_rule.test == "exact McNemar"  # binary: the exact paired test decided
    assert choice_rule.n == N_QUESTIONS
    assert choice_rule.effect is not None
    assert choice_rule.effect <= -0.25  # a quarter of the questions or more now answered wrong
    assert by_choices.verdict == "fail"
    # the same questions, the same model: greedy answers hide the damage
    assert text_rule.verdict == "pass"
    assert text_rule.effect is not None
    assert text_rule.effect > 0
    assert by_text.verdict == "pass"
