"""Rolling perplexity: window arithmetic, a direct computation, and agreement with lm-eval."""

from __future__ import annotations

import importlib.util
import math
import random
from pathlib import Path
from typing import Any

import pytest

from evaluators.perplexity import count_words, rolling_perplexity, rolling_windows

TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 6,
    "Perplexity is the exponential of the mean negative log-likelihood.\n\n  Second paragraph.",
    "short",
]
HAVE_LM_EVAL = importlib.util.find_spec("lm_eval") is not None
needs_lm_eval = pytest.mark.skipif(
    not HAVE_LM_EVAL, reason="lm-eval 0.4.13 is not installed (pip install -e '.[reference]')"
)


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_base: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    return model, AutoTokenizer.from_pretrained(tiny_base)


def test_words_are_counted_like_lm_eval_wikitext() -> None:
    # re.split(r"\s+") counts an empty field after trailing whitespace, as lm-eval does.
    assert count_words("a b ") == 3
    assert count_words("a\n\n b") == 2


@pytest.mark.parametrize("max_length", [1, 2, 5, 16])
def test_windows_predict_every_token_once(max_length: int) -> None:
    tokens = list(range(100, 137))
    windows = list(rolling_windows(tokens, 0, max_length))
    assert [t for _, cont in windows for t in cont] == tokens
    assert windows[0][0] == [0]
    for context, continuation in windows:
        assert context
        assert len(context) + len(continuation) <= max_length + 1


@needs_lm_eval
def test_windows_match_lm_eval() -> None:
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    rng = random.Random(0)
    for _ in range(200):
        tokens = [rng.randrange(1000) for _ in range(rng.randrange(0, 60))]
        max_length = rng.randrange(1, 20)
        expected = [
            make_disjoint_window(pair)
            for pair in get_rolling_token_windows(tokens, 7, max_length, context_len=1)
        ]
        assert list(rolling_windows(tokens, 7, max_length)) == expected


def test_single_window_equals_a_direct_forward_pass(model_and_tokenizer: tuple[Any, Any]) -> None:
    import torch

    model, tokenizer = model_and_tokenizer
    text = TEXTS[1]
    ids = [tokenizer.bos_token_id, *tokenizer.encode(text)]
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0, :-1]
    nll = -float(torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None]).sum())
    result = rolling_perplexity(model, tokenizer, [text])
    assert result.n_tokens == len(ids) - 1
    assert result.nll_sum == pytest.approx(nll, rel=1e-5)
    assert result.token_perplexity == pytest.approx(math.exp(nll / result.n_tokens), rel=1e-5)
    assert result.n_words == count_words(text) == len(text.split())
    assert result.byte_perplexity == pytest.approx(math.exp(nll / len(text.encode())), rel=1e-5)


def test_batch_size_does_not_change_the_result(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    one = rolling_perplexity(model, tokenizer, TEXTS, max_length=16, batch_size=1)
    many = rolling_perplexity(model, tokenizer, TEXTS, max_length=16, batch_size=5)
    assert one.n_tokens == many.n_tokens
    assert one.nll_sum == pytest.approx(many.nll_sum, rel=1e-5)
    # a token budget smaller than one window still runs every window once, alone
    for budget in (1, 40):
        packed = rolling_perplexity(
            model, tokenizer, TEXTS, max_length=16, batch_size=64, max_batch_tokens=budget
        )
        assert packed.n_tokens == one.n_tokens
        assert packed.nll_sum == pytest.approx(one.nll_sum, rel=1e-5)


def test_nothing_to_score_is_an_error(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    with pytest.raises(ValueError, match="at least one text"):
        rolling_perplexity(model, tokenizer, [])
    with pytest.raises(ValueError, match="no token"):
        rolling_perplexity(model, tokenizer, [""])


@needs_lm_eval
@pytest.mark.parametrize("max_length", [16, None])
def test_agrees_with_lm_eval(
    tiny_base: Path, model_and_tokenizer: tuple[Any, Any], max_length: int | None
) -> None:
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(tiny_base), device="cpu", batch_size=3, max_length=max_length)
    requests = [
        Instance(request_type="loglikelihood_rolling", doc={}, arguments=(text,), idx=i)
        for i, text in enumerate(TEXTS)
    ]
    loglikelihoods = lm.loglikelihood_rolling(requests, disable_tqdm=True)
    theirs = math.exp(-sum(loglikelihoods) / sum(count_words(text) for text in TEXTS))

    model, tokenizer = model_and_tokenizer
    ours = rolling_perplexity(model, tokenizer, TEXTS, max_length=max_length)
    assert ours.word_perplexity == pytest.approx(theirs, rel=5e-3)
    assert ours.nll_sum == pytest.approx(-sum(loglikelihoods), rel=1e-5)


@pytest.mark.slow
def test_smollm2_finds_english_likelier_than_random_tokens() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.models import smollm2_dir

    folder = smollm2_dir()
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    english = ["The capital of France is Paris. It is known for the Eiffel Tower and its museums."]
    rng = random.Random(0)
    noise = [tokenizer.decode([rng.randrange(1000, 40000) for _ in range(24)])]
    fluent = rolling_perplexity(model, tokenizer, english)
    garbled = rolling_perplexity(model, tokenizer, noise)
    assert fluent.token_perplexity < 50 < 1000 < garbled.token_perplexity
