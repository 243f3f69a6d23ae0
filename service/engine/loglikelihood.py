"""Log-likelihood of continuations, batched, with a record's prompt run once for its choices.

What is computed is exactly what lm-evaluation-harness 0.4.13 computes for a causal model
(``HFLM.loglikelihood``), so that a task scored here and there gives the same numbers:

- **Tokenisation** (:func:`encode_pair`): trailing whitespace of the context moves to the
  continuation; ``context + continuation`` is encoded whole and split at the length of the
  encoded context, so a token that straddles the boundary belongs to the continuation. The
  tokenizer adds its special tokens (BOS for Llama-style models) unless the text already
  starts with BOS, as lm-eval's ``tok_encode`` does. A chat prompt is rendered by the
  template with the generation prompt and encoded without special tokens (the template has
  them); the continuation is then the assistant's turn.
- **Scoring**: the log-softmax of the logits at each continuation position, summed over the
  continuation's tokens (``logprob``), and whether every token is the argmax
  (``is_greedy``). Sequences longer than the context window lose tokens from the left.

Two paths give the same numbers (a test holds them to 1e-5):

- *plain*: each (context, continuation) row is one right-padded sequence, rows sorted by
  length and batched — lm-eval's own scheme;
- *shared prompt* (the default for records with two or more continuations of one context,
  e.g. the choices of a multiple-choice item): the contexts of a batch run once, right-padded,
  keeping their key/value cache; the cache rows are repeated per continuation and the
  continuations run on top of it with explicit positions and a mask that hides the padding.
  A 4-choice item with a 60-token prompt costs ~60 + 4 × (choice length) token positions
  instead of 4 × 60.

Memory: a batch holds ``rows × length × vocab`` float32 logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from evaluators.base import Example
from evaluators.loglikelihood import choice_metrics, target_metrics
from evaluators.perplexity import prefix_token_id, resolve_max_length
from service.engine.generation import prompt_of, render_prompt
from service.engine.loading import LoadedModel

if TYPE_CHECKING:
    from service.engine.hf import CausalLM, Tokenizer


@dataclass(frozen=True)
class Request:
    """Token ids of a (non-empty) context and the (non-empty) continuation to score after it."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]


@dataclass(frozen=True)
class Loglikelihood:
    """Summed log-probability (nats) of a continuation, its token count, greedy or not."""

    logprob: float
    n_tokens: int
    is_greedy: bool


def _encode(tokenizer: Tokenizer, text: str, special_tokens: bool) -> list[int]:
    if special_tokens and tokenizer.bos_token and text.startswith(tokenizer.bos_token):
        special_tokens = False  # lm-eval: no second BOS when the text has one
    return list(tokenizer.encode(text, add_special_tokens=special_tokens))


def encode_pair(
    tokenizer: Tokenizer, context: str, continuation: str, *, chat: bool = False
) -> Request:
    """``context``/``continuation`` as token ids, split the way lm-eval 0.4.13 splits them.

    ``chat=True`` for a chat-rendered context: no special tokens added (the template holds
    them) and its trailing newline stays in the context (it closes the assistant header; the
    turn starts after it). An empty context is conditioned on the prefix token (BOS, else
    EOS). Raises ValueError when the continuation encodes to no token.
    """
    special_tokens = not chat
    if not context:
        ids = _encode(tokenizer, continuation, False)
        prefix = prefix_token_id(tokenizer)
        if ids and ids[0] == prefix:
            ctx, cont = ids[:1], ids[1:]
        else:
            ctx, cont = [prefix], ids
    else:
        n_spaces = 0 if chat else len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = _encode(tokenizer, context + continuation, special_tokens)
        ctx = _encode(tokenizer, context, special_tokens)
        cont = whole[len(ctx) :]
    if not cont:
        raise ValueError(f"continuation {continuation!r} encodes to no token after the context")
    return Request(tuple(ctx), tuple(cont))


def _score_rows(logits: torch.Tensor, targets: Sequence[int]) -> tuple[float, bool]:
    """Sum of log-softmax(logits)[i, targets[i]] and whether each target is the argmax."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    index = torch.tensor(list(targets), dtype=torch.long, device=logits.device)
    picked = logprobs.gather(1, index[:, None])[:, 0]
    greedy = bool((logprobs.argmax(dim=-1) == index).all())
    return float(picked.sum()), greedy


def loglikelihoods(
    model: CausalLM,
    requests: Sequence[Request],
    *,
    batch_size: int = 8,
    max_length: int | None = None,
    share_prompt: bool = True,
) -> list[Loglikelihood]:
    """The log-likelihood of each request's continuation after its context, in input order.

    ``batch_size`` counts sequences per forward pass (contexts on the shared path, rows on the
    plain one). ``max_length`` defaults to the model's context window. Requests whose context
    occurs more than once take the shared-prompt path when ``share_prompt`` and nothing needs
    truncating; the rest take the plain path.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    if any(not r.context or not r.continuation for r in requests):
        raise ValueError("every request needs a non-empty context and continuation")
    window = max_length or resolve_max_length(model.config, None)
    results: dict[int, Loglikelihood] = {}
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(request.context, []).append(index)
    shared = [
        indices
        for context, indices in groups.items()
        if share_prompt
        and len(indices) > 1
        and all(len(context) + len(requests[i].continuation) <= window + 1 for i in indices)
    ]
    plain = sorted(
        set(range(len(requests))) - {i for indices in shared for i in indices},
        key=lambda i: (-len(requests[i].context) - len(requests[i].continuation), i),
    )
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(plain), batch_size):
            chunk = plain[start : start + batch_size]
            for index, found in zip(
                chunk,
                _plain_batch(model, [requests[i] for i in chunk], window, device),
                strict=True,
            ):
                results[index] = found
        shared.sort(key=lambda indices: -len(requests[indices[0]].context))
        for start in range(0, len(shared), batch_size):
            groups_chunk = shared[start : start + batch_size]
            found_rows = _shared_batch(
                model, [[requests[i] for i in g] for g in groups_chunk], device
            )
            for indices, group_found in zip(groups_chunk, found_rows, strict=True):
                for index, value in zip(indices, group_found, strict=True):
                    results[index] = value
    return [results[i] for i in range(len(requests))]


def _plain_batch(
    model: CausalLM, batch: Sequence[Request], window: int, device: torch.device
) -> list[Loglikelihood]:
    """lm-eval's scheme: (context + continuation)[-(window + 1):][:-1], right-padded."""
    inputs = [(r.context + r.continuation)[-(window + 1) :][:-1] for r in batch]
    width = max(len(ids) for ids in inputs)
    input_ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(inputs):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[row, : len(ids)] = 1
    logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
    found = []
    for row, (request, ids) in enumerate(zip(batch, inputs, strict=True)):
        n = len(request.continuation)
        logprob, greedy = _score_rows(logits[row, len(ids) - n : len(ids)], request.continuation)
        found.append(Loglikelihood(logprob, n, greedy))
    return found


def _shared_batch(
    model: CausalLM, groups: Sequence[Sequence[Request]], device: torch.device
) -> list[list[Loglikelihood]]:
    """Contexts once (right-padded, cache kept), then every continuation on the repeated cache."""
    contexts = [group[0].context for group in groups]
    width = max(len(c) for c in contexts)
    ctx_ids = torch.zeros((len(groups), width), dtype=torch.long)
    ctx_mask = torch.zeros((len(groups), width), dtype=torch.long)
    for row, context in enumerate(contexts):
        ctx_ids[row, : len(context)] = torch.tensor(context, dtype=torch.long)
        ctx_mask[row, : len(context)] = 1
    out = model(input_ids=ctx_ids.to(device), attention_mask=ctx_mask.to(device), use_cache=True)
    # every continuation's first token is predicted by its context's last position
    rows = [(g, request) for g, group in enumerate(groups) for request in group]
    # only continuations longer than one token need a second pass (over their tails)
    tailed = [i for i, (_, request) in enumerate(rows) if len(request.continuation) > 1]
    tail_row = {i: position for position, i in enumerate(tailed)}
    tail_logits = None
    if tailed:
        tails = [rows[i][1].continuation[:-1] for i in tailed]
        tail_width = max(len(t) for t in tails)
        cache = out.cache
        cache.batch_select_indices(torch.tensor([rows[i][0] for i in tailed], device=device))
        tail_ids = torch.zeros((len(tailed), tail_width), dtype=torch.long)
        mask = torch.zeros((len(tailed), width + tail_width), dtype=torch.long)
        positions = torch.zeros((len(tailed), tail_width), dtype=torch.long)
        for position, (i, tail) in enumerate(zip(tailed, tails, strict=True)):
            n_ctx = len(contexts[rows[i][0]])
            mask[position, :n_ctx] = 1
            tail_ids[position, : len(tail)] = torch.tensor(tail, dtype=torch.long)
            mask[position, width : width + len(tail)] = 1
            positions[position] = torch.arange(n_ctx, n_ctx + tail_width)
        tail_logits = model(
            input_ids=tail_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            cache=cache,
        ).logits
    found: list[list[Loglikelihood]] = [[] for _ in groups]
    for i, (g, request) in enumerate(rows):
        first = out.logits[g, len(contexts[g]) - 1 : len(contexts[g])]
        if i in tail_row:
            assert tail_logits is not None
            n_tail = len(request.continuation) - 1
            logits = torch.cat([first, tail_logits[tail_row[i], :n_tail]])
        else:
            logits = first
        logprob, greedy = _score_rows(logits, request.continuation)
        found[g].append(Loglikelihood(logprob, len(request.continuation), greedy))
    return found


#: lm-eval's default ``target_delimiter``: a choice or target follows a plain prompt after it.
TARGET_DELIMITER = " "


def is_loglikelihood_record(example: Example) -> bool:
    """Whether ``example`` is scored by log-likelihood (it has ``choices`` or a ``target``)."""
    return example.choices is not None or example.target is not None


def record_requests(
    tokenizer: Tokenizer, example: Example, *, chat_template: bool, system: str | None = None
) -> list[Request]:
    """The requests of one record: each choice, then the target, after the record's prompt.

    Without a chat template the prompt is ``input`` exactly and each continuation is
    ``" " + text`` (lm-eval's ``multiple_choice`` with ``doc_to_text: "{{input}}"``); with
    one, the prompt is rendered with the generation prompt and the text is the assistant turn.
    """
    prompt = prompt_of(example)
    texts = [*(example.choices or []), *([example.target] if example.target is not None else [])]
    if chat_template:
        context = render_prompt(tokenizer, prompt, chat_template=True, system=system)
        return [encode_pair(tokenizer, context, text, chat=True) for text in texts]
    context = render_prompt(tokenizer, prompt, chat_template=False, system=system)
    return [encode_pair(tokenizer, context, TARGET_DELIMITER + text) for text in texts]


@dataclass(frozen=True)
class RecordScore:
    """One record's metrics, the text it is shown with (the choice the model prefers; empty
    for a gold continuation) and its prompt's length in tokens."""

    scores: dict[str, float]
    output: str
    n_prompt_tokens: int


def score_records(
    loaded: LoadedModel,
    examples: Sequence[Example],
    *,
    chat_template: bool,
    system: str | None = None,
    batch_size: int = 8,
    share_prompt: bool = True,
) -> list[RecordScore]:
    """Per record, its choice metrics and/or target metrics (see evaluators.loglikelihood)."""
    per_record = [
        record_requests(loaded.tokenizer, e, chat_template=chat_template, system=system)
        for e in examples
    ]
    flat = [request for requests in per_record for request in requests]
    found = iter(
        loglikelihoods(loaded.model, flat, batch_size=batch_size, share_prompt=share_prompt)
    )
    records: list[RecordScore] = []
    for example, requests in zip(examples, per_record, strict=True):
        row: dict[str, float] = {}
        output = ""
        if example.choices is not None and example.answer is not None:
            lls = [next(found).logprob for _ in example.choices]
            row.update(choice_metrics(lls, example.choices, example.answer))
            output = example.choices[max(range(len(lls)), key=lambda i: (lls[i], -i))]
        if example.target is not None:
            gold = next(found)
            row.update(target_metrics(gold.logprob, gold.n_tokens))
        records.append(RecordScore(row, output, len(requests[0].context) if requests else 0))
    return records
