"""Held-out perplexity of a causal LM, computed exactly as lm-eval 0.4.13 does.

This is per model, not per example, so it is a function rather than an Evaluator; its metrics
are declared like any evaluator's (:data:`SCORER`), so the registry knows that lower is better.

How (lm-eval's ``HFLM.loglikelihood_rolling``): each text is tokenized with the tokenizer's
default special-token handling (no special tokens added when the text already starts with the
prefix token's text), then cut into disjoint rolling windows of the model's context
(``utils.get_rolling_token_windows(context_len=1)`` + ``make_disjoint_window``). The first
window is the prefix token (BOS, or EOS when there is no BOS: lm-eval's ``prefix_token_id``)
followed by the text, so every token of the text is predicted exactly once; later windows are
filled up to ``max_length`` with preceding tokens as context. Log-probabilities of the predicted
tokens are summed per text.

Aggregates match lm-eval's ``weighted_perplexity`` over (loglikelihood, count) pairs:
``word_perplexity = exp(nll_sum / n_words)`` with words counted as the wikitext task does,
``len(re.split(r"\\s+", text))`` on each text; ``byte_perplexity`` uses UTF-8 bytes and
``token_perplexity`` the number of predicted tokens.

Batching: windows are sorted longest first and packed into batches of at most ``batch_size``
rows and ``max_batch_tokens`` padded tokens (``rows × width``), right-padded to the batch's
longest window: one forward pass per window, padding only up to similar lengths. Memory: one
pass holds ``rows × width × vocab`` float32 logits, which ``max_batch_tokens`` bounds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from evaluators.base import Metric, ModelScorer

#: The metrics the engine stores per model from :func:`rolling_perplexity`: at least 1 (a
#: probability of at most 1 per predicted token or word), unbounded above.
SCORER = ModelScorer(
    name="perplexity",
    version="1",
    metrics=(
        Metric("perplexity_token", higher_is_better=False, low=1.0, high=math.inf),
        Metric("perplexity_word", higher_is_better=False, low=1.0, high=math.inf),
    ),
)

#: lm-eval's fallback context length when neither config nor tokenizer sets one.
DEFAULT_MAX_LENGTH = 2048
#: transformers' "no limit" value for ``tokenizer.model_max_length``.
_TOKENIZER_INFINITY = 1000000000000000019884624838656


@dataclass(frozen=True)
class PerplexityResult:
    """Perplexities of a model over a set of texts, with the counts they were computed from."""

    token_perplexity: float
    word_perplexity: float
    byte_perplexity: float
    n_tokens: int
    n_words: int
    n_bytes: int
    nll_sum: float

    @property
    def bits_per_byte(self) -> float:
        """lm-eval's ``bits_per_byte``: nll_sum / n_bytes / ln 2."""
        return self.nll_sum / self.n_bytes / math.log(2)


def count_words(text: str) -> int:
    """Words as lm-eval's wikitext task counts them: ``len(re.split(r"\\s+", text))``."""
    return len(re.split(r"\s+", text))


def resolve_max_length(config: Any, tokenizer: Any) -> int:
    """The context length lm-eval would use: config, then tokenizer, then 2048."""
    cfg = getattr(config, "text_config", None) or config
    for attribute in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, attribute, None)
        if value is not None:
            return int(value)
    model_max = getattr(tokenizer, "model_max_length", None)
    if model_max is not None and model_max != _TOKENIZER_INFINITY:
        return int(model_max)
    return DEFAULT_MAX_LENGTH


def prefix_token_id(tokenizer: Any) -> int:
    """BOS if the tokenizer has one, else EOS (lm-eval's ``prefix_token_id``)."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise ValueError("tokenizer has neither a BOS nor an EOS token to condition the first token on")


def rolling_windows(
    tokens: list[int], prefix: int, max_length: int
) -> Iterator[tuple[list[int], list[int]]]:
    """Disjoint (context, continuation) windows covering ``tokens`` once (lm-eval, context_len=1).

    Every token is in exactly one continuation; ``len(context + continuation) <= max_length + 1``.
    """
    if not tokens:
        return
    first = min(max_length, len(tokens))
    yield [prefix], tokens[:first]
    predicted = first
    while predicted < len(tokens):
        window = min(len(tokens) - predicted, max_length)
        end = predicted + window
        yield tokens[end - max_length - 1 : end - window], tokens[end - window : end]
        predicted += window


def _encode(tokenizer: Any, text: str, prefix: int) -> list[int]:
    if text.startswith(tokenizer.decode(prefix)):
        return list(tokenizer.encode(text, add_special_tokens=False))
    return list(tokenizer.encode(text))


def _batches(
    windows: list[tuple[list[int], list[int]]],
    batch_size: int,
    max_batch_tokens: int | None,
    context: int,
) -> Iterator[list[tuple[list[int], list[int]]]]:
    """Consecutive windows (longest first) up to ``batch_size`` rows and the token budget."""
    start = 0
    while start < len(windows):
        first = windows[start]
        width = min(len(first[0]) + len(first[1]) - 1, context)
        rows = batch_size
        if max_batch_tokens is not None:
            rows = max(1, min(rows, max_batch_tokens // max(width, 1)))
        yield windows[start : start + rows]
        start += rows


def rolling_perplexity(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int | None = None,
    batch_size: int = 4,
    max_batch_tokens: int | None = None,
) -> PerplexityResult:
    """Token, word and byte perplexity of ``model`` on ``texts`` (lm-eval 0.4.13 semantics).

    ``model`` is a Hugging Face causal LM (a PEFT-wrapped one works too) in eval mode;
    ``max_length`` defaults to the model's context length as lm-eval resolves it;
    ``batch_size`` caps the rows of a pass and ``max_batch_tokens`` its padded tokens (a
    window longer than that still runs, alone). The result does not depend on either.
    Raises ValueError when there is no text or no token to score.
    """
    import torch

    if not texts:
        raise ValueError("perplexity needs at least one text")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    context = max_length or resolve_max_length(model.config, tokenizer)
    prefix = prefix_token_id(tokenizer)
    windows = [
        window
        for text in texts
        for window in rolling_windows(_encode(tokenizer, text, prefix), prefix, context)
    ]
    if not windows:
        raise ValueError("the texts contain no token to score")
    # Longest first, like lm-eval, so padding inside a batch stays small.
    windows.sort(key=lambda pair: -(len(pair[0]) + len(pair[1])))
    device = next(model.parameters()).device
    nll_sum = 0.0
    n_tokens = 0
    with torch.inference_mode():
        for batch in _batches(windows, batch_size, max_batch_tokens, context):
            inputs = [(ctx + cont)[-(context + 1) :][:-1] for ctx, cont in batch]
            width = max(len(row) for row in inputs)
            ids = torch.full((len(batch), width), prefix, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, row_ids in enumerate(inputs):
                ids[row, : len(row_ids)] = torch.tensor(row_ids)
                mask[row, : len(row_ids)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for row, ((_, cont), row_ids) in enumerate(zip(batch, inputs, strict=True)):
                scored = logits[row, len(row_ids) - len(cont) : len(row_ids)].float()
                targets = torch.tensor(cont, device=scored.device)
                log_probs = torch.log_softmax(scored, dim=-1)
                nll_sum -= float(log_probs.gather(1, targets[:, None]).sum())
                n_tokens += len(cont)
    n_words = sum(count_words(text) for text in texts)
    n_bytes = sum(len(text.encode("utf-8")) for text in texts)
    return PerplexityResult(
        token_perplexity=math.exp(nll_sum / n_tokens),
        word_perplexity=math.exp(nll_sum / n_words),
        byte_perplexity=math.exp(nll_sum / n_bytes),
        n_tokens=n_tokens,
        n_words=n_words,
        n_bytes=n_bytes,
        nll_sum=nll_sum,
    )
