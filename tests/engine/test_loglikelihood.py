"""Log-likelihood scoring: lm-eval's tokenisation, the shared-prompt path, record metrics,
and agreement with lm-eval 0.4.13 run end to end on a local multiple-choice task."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch

from evaluators.base import Example
from service.engine.generation import render_prompt
from service.engine.loading import LoadedModel, ModelPool
from service.engine.loglikelihood import (
    Request,
    encode_pair,
    loglikelihoods,
    record_requests,
    score_records,
)

needs_lm_eval = pytest.mark.skipif(
    importlib.util.find_spec("lm_eval") is None,
    reason="lm-eval 0.4.13 is not installed (pip install -e '.[reference]')",
)


def general_knowledge(n: int) -> list[dict[str, Any]]:
    """The first ``n`` multiple-choice items of the demo's general-knowledge set."""
    text = resources.files("service.demo").joinpath("data", "general_knowledge.jsonl")
    rows = [json.loads(line) for line in text.read_text().splitlines()]
    return [row for row in rows if "choices" in row][:n]


def as_plain_prompt(row: dict[str, Any]) -> Example:
    return Example(
        id=row["id"],
        input=f"Question: {row['input']}\nAnswer:",
        choices=row["choices"],
        answer=row["answer"],
        domain="out",
    )


@pytest.fixture(scope="module")
def pool() -> ModelPool:
    return ModelPool(max_bases=1, device="cpu")


@pytest.fixture(scope="module")
def tiny(pool: ModelPool, tiny_base: Path) -> Iterator[LoadedModel]:
    with pool.acquire(tiny_base) as loaded:
        yield loaded


def test_pairs_are_split_like_lm_eval(tiny: LoadedModel) -> None:
    tokenizer = tiny.tokenizer
    moved = encode_pair(tokenizer, "The sky is ", "blue")
    assert moved == encode_pair(tokenizer, "The sky is", " blue")
    assert list(moved.context) == tokenizer.encode("The sky is")
    whole = tokenizer.encode("The sky is blue")
    assert list(moved.context + moved.continuation) == whole
    empty = encode_pair(tokenizer, "", "blue")
    assert empty.context == (tokenizer.bos_token_id or tokenizer.eos_token_id,)
    with pytest.raises(ValueError, match="no token"):
        encode_pair(tokenizer, "The sky is", "")


def test_shared_prompt_gives_the_plain_numbers_with_fewer_positions(tiny: LoadedModel) -> None:
    tokenizer = tiny.tokenizer
    requests = [
        encode_pair(tokenizer, "Question: Which planet is red?\nAnswer:", " " + choice)
        for choice in ("Mars", "the planet Venus", "Jupiter, the largest one")
    ] + [encode_pair(tokenizer, "Name a colour:", " " + choice) for choice in ("red", "dark green")]
    requests.append(encode_pair(tokenizer, "A lone prompt", " with one continuation"))
    positions: list[int] = []
    hook = tiny.model.register_forward_pre_hook(
        lambda _m, args, kwargs: positions.append(int(kwargs["input_ids"].numel())),
        with_kwargs=True,
    )
    try:
        plain = loglikelihoods(tiny.model, requests, batch_size=2, share_prompt=False)
        n_plain = sum(positions)
        positions.clear()
        shared = loglikelihoods(tiny.model, requests, batch_size=2)
        n_shared = sum(positions)
    finally:
        hook.remove()
    for a, b in zip(plain, shared, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5)
        assert (a.n_tokens, a.is_greedy) == (b.n_tokens, b.is_greedy)
    assert n_shared < n_plain
    # batching does not change a number either
    one_by_one = loglikelihoods(tiny.model, requests, batch_size=1)
    for a, b in zip(one_by_one, shared, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5)


def test_log_likelihood_is_the_sum_of_token_log_probabilities(tiny: LoadedModel) -> None:
    request = Request(context=(1, 2, 3), continuation=(4, 5))
    with torch.inference_mode():
        logits = tiny.model(torch.tensor([[1, 2, 3, 4]])).logits[0]
    logprobs = torch.log_softmax(logits.float(), -1)
    expected = float(logprobs[2, 4] + logprobs[3, 5])
    (found,) = loglikelihoods(tiny.model, [request])
    assert found.logprob == pytest.approx(expected, abs=1e-5)
    assert found.n_tokens == 2


def test_records_get_choice_and_target_metrics(tiny: LoadedModel) -> None:
    examples = [as_plain_prompt(row) for row in general_knowledge(3)] + [
        Example(id="gold", input="The chemical symbol for gold is", target="Au.")
    ]
    records = score_records(tiny, examples, chat_template=False)
    scores = [r.scores for r in records]
    assert records[0].output in (examples[0].choices or [])
    assert records[3].output == ""
    for example, row in zip(examples[:3], scores[:3], strict=True):
        assert set(row) == {"choice_acc", "choice_acc_norm", "choice_margin"}
        requests = record_requests(tiny.tokenizer, example, chat_template=False)
        lls = [r.logprob for r in loglikelihoods(tiny.model, requests, share_prompt=False)]
        assert example.answer is not None
        best_wrong = max(v for i, v in enumerate(lls) if i != example.answer)
        assert row["choice_margin"] == pytest.approx(lls[example.answer] - best_wrong, abs=1e-5)
        assert row["choice_acc"] == float(row["choice_margin"] > 0)
    gold = scores[3]
    (request,) = record_requests(tiny.tokenizer, examples[3], chat_template=False)
    assert gold["target_nll"] == pytest.approx(-gold["target_logprob"] / len(request.continuation))
    assert tiny.tokenizer.decode(request.continuation) == " Au."


def test_with_a_chat_template_the_choice_is_the_assistant_turn(tiny: LoadedModel) -> None:
    example = Example(id="q", input="Which planet is red?", choices=["Mars", "Venus"], answer=0)
    requests = record_requests(tiny.tokenizer, example, chat_template=True, system="Be brief.")
    rendered = render_prompt(
        tiny.tokenizer, "Which planet is red?", chat_template=True, system="Be brief."
    )
    assert tiny.tokenizer.decode(requests[0].context) == rendered
    assert rendered.rstrip().endswith("assistant")
    assert [tiny.tokenizer.decode(r.continuation) for r in requests] == ["Mars", "Venus"]
    (record,) = score_records(tiny, [example], chat_template=True, system="Be brief.")
    assert record.n_prompt_tokens == len(requests[0].context)
    assert set(record.scores) == {"choice_acc", "choice_acc_norm", "choice_margin"}


@needs_lm_eval
@pytest.mark.parametrize("with_adapter", [False, True], ids=["base", "lora"])
def test_agrees_with_lm_eval_on_a_local_multiple_choice_task(
    tmp_path: Path,
    pool: ModelPool,
    tiny_base: Path,
    capitals_adapter: Path,
    with_adapter: bool,
) -> None:
    from evaluators.loglikelihood import choice_metrics
    from tests.lm_eval_reference import run_lm_eval, write_task

    examples = [as_plain_prompt(row) for row in general_knowledge(16)]
    items = [{"input": e.input, "choices": e.choices, "answer": e.answer} for e in examples]
    adapter = capitals_adapter if with_adapter else None
    reference = run_lm_eval(write_task(tmp_path / "task", items), tiny_base, adapter)

    with pool.acquire(tiny_base, adapter_dir=adapter) as loaded:
        requests = [record_requests(loaded.tokenizer, e, chat_template=False) for e in examples]
        flat = loglikelihoods(loaded.model, [r for rs in requests for r in rs], batch_size=4)
        scores = [
            r.scores for r in score_records(loaded, examples, chat_template=False, batch_size=4)
        ]
    found = iter(flat)
    for example, theirs, ours in zip(examples, reference, scores, strict=True):
        assert example.choices is not None
        assert example.answer is not None
        lls = [next(found).logprob for _ in example.choices]
        assert lls == pytest.approx(theirs.loglikelihoods, abs=1e-4)
        assert ours["choice_acc"] == theirs.acc
        assert ours["choice_acc_norm"] == theirs.acc_norm
        assert choice_metrics(theirs.loglikelihoods, example.choices, example.answer) == {
            **ours,
            "choice_margin": pytest.approx(ours["choice_margin"], abs=2e-4),
        }
