"""Batched greedy generation: same answers as one by one, in input order, reproducible."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.engine import generation
from service.engine.generation import encode_prompts, generate
from service.engine.loading import LoadedModel, ModelPool, load_tokenizer
from service.errors import ModelLoadError

PROMPTS = [
    "What is the capital of France?",
    "hi",
    "Tell me a long story about a dragon and a knight who met in the mountains",
    "2+2=",
    "The quick brown fox",
    "Write a haiku about autumn leaves falling on a quiet pond at dawn",
    "Why?",
]


@pytest.fixture(scope="module")
def context_model(context_model_dir: Path) -> Iterator[LoadedModel]:
    pool = ModelPool(device="cpu")
    with pool.acquire(context_model_dir) as loaded:
        yield loaded


@pytest.mark.parametrize("chat_template", [True, False])
def test_batched_equals_one_by_one(context_model: LoadedModel, chat_template: bool) -> None:
    single = [
        generate(context_model, [p], max_new_tokens=12, chat_template=chat_template)[0]
        for p in PROMPTS
    ]
    for batch_size in (2, 8):
        batched = generate(
            context_model,
            PROMPTS,
            max_new_tokens=12,
            chat_template=chat_template,
            batch_size=batch_size,
        )
        assert batched == single
    # the model's answers depend on the prompt, so the comparison above has teeth
    assert len({out.text for out in single}) == len(PROMPTS)


def test_order_counts_and_determinism(context_model: LoadedModel) -> None:
    outputs = generate(context_model, PROMPTS, max_new_tokens=10, seed=3)
    assert generate(context_model, PROMPTS, max_new_tokens=10, seed=3) == outputs
    reversed_outputs = generate(context_model, PROMPTS[::-1], max_new_tokens=10, seed=3)
    assert reversed_outputs == outputs[::-1]
    encoded = encode_prompts(context_model.tokenizer, PROMPTS, chat_template=True)
    assert [o.n_prompt_tokens for o in outputs] == [len(ids) for ids in encoded]
    assert all(1 <= o.n_new_tokens <= 10 for o in outputs)
    assert all(o.text == o.text.strip() and o.text for o in outputs)


def test_chat_template_is_applied(context_model: LoadedModel) -> None:
    tokenizer = context_model.tokenizer
    [with_template] = encode_prompts(tokenizer, ["hi"], chat_template=True)
    [plain] = encode_prompts(tokenizer, ["hi"], chat_template=False)
    text = tokenizer.decode(with_template)
    assert text.startswith("<|im_start|>")
    assert text.endswith("<|im_start|>assistant\n")
    assert "hi" in text
    assert len(plain) < len(with_template)
    assert (
        generate(context_model, ["hi"], max_new_tokens=6)[0]
        != generate(context_model, ["hi"], max_new_tokens=6, chat_template=False)[0]
    )


def test_missing_chat_template_is_an_error(
    context_model: LoadedModel, context_model_dir: Path
) -> None:
    tokenizer = load_tokenizer(context_model_dir)
    tokenizer.chat_template = None
    bare = LoadedModel(
        context_model.model,
        tokenizer,
        context_model.dtype,
        context_model.device,
        context_model_dir,
        None,
    )
    with pytest.raises(ModelLoadError, match="no chat template"):
        generate(bare, ["hi"])
    assert generate(bare, ["hi"], chat_template=False, max_new_tokens=3)[0].n_new_tokens == 3


def test_chat_messages_and_system_prompt_use_the_template(context_model: LoadedModel) -> None:
    tokenizer = context_model.tokenizer
    chat = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
    ]
    [ids] = encode_prompts(tokenizer, [chat], chat_template=True, system="Be terse.")
    text = tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\nBe terse.<|im_end|>")
    assert text.index("hi") < text.index("hello") < text.index("bye")
    assert text.endswith("<|im_start|>assistant\n")
    # the record's own system message wins over the dataset-wide one
    own = [{"role": "system", "content": "Be kind."}, chat[-1]]
    [own_ids] = encode_prompts(tokenizer, [own], chat_template=True, system="Be terse.")
    assert "Be kind." in tokenizer.decode(own_ids)
    assert "Be terse." not in tokenizer.decode(own_ids)
    # a one-turn text prompt is the same as a one-message conversation
    one = [{"role": "user", "content": "bye"}]
    assert encode_prompts(tokenizer, ["bye"], chat_template=True, system="s") == encode_prompts(
        tokenizer, [one], chat_template=True, system="s"
    )
    outputs = generate(context_model, [chat, "bye"], max_new_tokens=5, system="Be terse.")
    assert outputs[0].n_prompt_tokens == len(ids)
    with pytest.raises(ValueError, match="need chat_template=True"):
        encode_prompts(tokenizer, [chat], chat_template=False)


@pytest.mark.parametrize("prunable", [True, False])
def test_rows_that_finish_leave_the_batch_and_answers_stay_the_same(
    context_model: LoadedModel, prunable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EOS set to a token some rows reach early: they leave the batch between segments
    (later forwards see fewer rows) and every answer equals the one generated alone. A cache
    that cannot drop rows keeps them in the batch to the end, their answers cut at EOS."""
    model = context_model.model
    plain = generate(context_model, PROMPTS, max_new_tokens=24, batch_size=8)
    first_ids = context_model.tokenizer(plain[0].text, add_special_tokens=False)["input_ids"]
    saved = model.generation_config.eos_token_id
    rows_seen: list[int] = []
    hook = model.register_forward_hook(lambda _m, args, kw, _o: rows_seen.append(
        int((kw.get("input_ids") if kw.get("input_ids") is not None else args[0]).shape[0])
    ), with_kwargs=True)  # fmt: skip
    try:
        model.generation_config.eos_token_id = first_ids[2]  # a token of row 0's answer
        alone = [generate(context_model, [p], max_new_tokens=24)[0] for p in PROMPTS]
        if not prunable:
            monkeypatch.setattr(generation, "_prunable", lambda cache: False)
        calls: list[int] = []
        real_generate = model.generate

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls.append(int(kwargs["input_ids"].shape[0]))
            return real_generate(*args, **kwargs)

        monkeypatch.setattr(model, "generate", counted)
        rows_seen.clear()
        batched = generate(context_model, PROMPTS, max_new_tokens=24, batch_size=8)
    finally:
        model.generation_config.eos_token_id = saved
        hook.remove()
    assert batched == alone
    assert alone[0].n_new_tokens < 8  # the early EOS took effect within a segment ...
    assert max(o.n_new_tokens for o in alone) > 8  # ... and other rows went on past a segment
    assert rows_seen[0] == len(PROMPTS)
    if prunable:
        assert min(rows_seen) < len(PROMPTS)  # finished rows were dropped from the batch
    else:
        assert set(rows_seen) == {len(PROMPTS)}  # nothing dropped ...
        assert len(calls) == 2  # ... and after the first segment, the rest in one call
