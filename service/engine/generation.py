"""Batched greedy generation with left padding.

Prompts are sorted by token length so each batch pads as little as possible,
and the outputs are returned in input order. Decoding is greedy with an explicit
``GenerationConfig`` (the model folder's sampling defaults are ignored), so the
same prompts give the same text whatever the batch size: left padding plus the
attention mask (from which the model derives position ids) make a padded row
compute what it would compute alone.

A batch decodes in segments of :data:`SEGMENT_TOKENS` new tokens, each a ``generate`` call
that continues from the last one's KV cache; rows that reached EOS are dropped from the
batch (and from its cache) between segments. Rows finish at different lengths, and a
finished row would otherwise be decoded until the longest one ends: on a CPU, where a step
costs about in proportion to its rows, that is work for nothing. A cache that cannot drop
rows (anything but a plain dynamic cache) decodes the rest of the batch in one call.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from evaluators.base import Example
from service.engine.loading import LoadedModel
from service.errors import ModelLoadError

if TYPE_CHECKING:
    from service.engine.hf import CausalLM, GenerationConfig, Tokenizer


#: New tokens per ``generate`` call of a batch; finished rows leave the batch in between.
SEGMENT_TOKENS = 8

#: PEFT's name for a row of a mixed-adapter batch that runs the base model alone.
BASE_ROW = "__base__"

#: A prompt: one user turn's text, or chat messages (``{"role", "content"}``, last the user's).
Prompt = str | Sequence[Mapping[str, str]]


@dataclass(frozen=True)
class GenerationOutput:
    """One prompt's answer and its token counts (the answer's count includes its EOS)."""

    text: str
    n_prompt_tokens: int
    n_new_tokens: int


def prompt_of(example: Example) -> Prompt:
    """What an example asks the model: its chat messages, or its input text."""
    return example.messages if example.messages is not None else example.input


def chat_messages(prompt: Prompt, system: str | None = None) -> list[dict[str, str]]:
    """The conversation a prompt stands for: a text is one user turn; ``system`` goes first
    unless the messages open with their own system message."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = [{"role": m["role"], "content": m["content"]} for m in prompt]
    if system is not None and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    return messages


def render_prompt(
    tokenizer: Tokenizer, prompt: Prompt, *, chat_template: bool, system: str | None = None
) -> str:
    """The text the model sees: the prompt (and ``system``) through the chat template, or,
    without a template, a text prompt as is.

    Raises ``ModelLoadError`` when the tokenizer has no chat template and ``ValueError``
    for chat messages or a system prompt without ``chat_template``.
    """
    if not chat_template:
        if not isinstance(prompt, str) or system is not None:
            raise ValueError("chat messages and a system prompt need chat_template=True")
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise ModelLoadError(
            "the tokenizer has no chat template; generate with chat_template=False"
        )
    text = tokenizer.apply_chat_template(
        chat_messages(prompt, system), add_generation_prompt=True, tokenize=False
    )
    return str(text)


def encode_prompts(
    tokenizer: Tokenizer,
    prompts: Sequence[Prompt],
    *,
    chat_template: bool,
    system: str | None = None,
) -> list[list[int]]:
    """Token ids per prompt. Special tokens come from the template, never added twice."""
    texts = [
        render_prompt(tokenizer, p, chat_template=chat_template, system=system) for p in prompts
    ]
    encoded = tokenizer(texts, add_special_tokens=not chat_template)
    return [list(ids) for ids in encoded["input_ids"]]


def _eos_ids(model: CausalLM, tokenizer: Tokenizer) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    ids = eos if isinstance(eos, list) else [eos]
    return [int(i) for i in ids if i is not None]


def _generation_config(
    model: CausalLM, tokenizer: Tokenizer, max_new_tokens: int
) -> GenerationConfig:
    from transformers import GenerationConfig

    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=_eos_ids(model, tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        return_dict_in_generate=True,
    )


def _prunable(cache: object) -> bool:
    """A plain dynamic cache (every layer a full-attention dynamic layer) can drop rows;
    transformers 4's caches, without per-layer objects, are never pruned."""
    from transformers import cache_utils

    layer_type = getattr(cache_utils, "DynamicLayer", None)
    layers = getattr(cache, "layers", None)
    return (
        layer_type is not None
        and type(cache) is cache_utils.DynamicCache
        and bool(layers)
        and all(type(layer) is layer_type for layer in layers or ())
    )


def _cache_kwarg() -> str:
    """``generate``'s name for a cache to continue from (``cache`` since transformers 5)."""
    from transformers.generation import utils

    return "cache" if "cache" in getattr(utils, "ALL_CACHE_NAMES", ()) else "past_key_values"


def _decode(
    model: CausalLM,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    config: GenerationConfig,
    eos: set[int],
    extra: dict[str, list[str]],
) -> list[list[int]]:
    """Greedy new ids per row of a left-padded batch, in segments that drop finished rows
    while the cache can drop them; otherwise the rest in one call, finished rows riding along
    (what they generate after their EOS is not kept)."""
    total = int(config.max_new_tokens)
    rows = list(range(input_ids.shape[0]))  # the batch's rows, by their index in the input
    new: list[list[int]] = [[] for _ in rows]
    finished: set[int] = set()
    names = extra.get("adapter_names")
    sequences, cache = input_ids, None
    done = 0
    segment = copy.copy(config)
    while len(finished) < len(new) and done < total:
        pruning = done == 0 or _prunable(cache)
        segment.max_new_tokens = min(SEGMENT_TOKENS, total - done) if pruning else total - done
        kwargs: dict[str, object] = {} if cache is None else {_cache_kwarg(): cache}
        if names is not None:
            kwargs["adapter_names"] = [names[r] for r in rows]
        out = model.generate(
            input_ids=sequences, attention_mask=mask, generation_config=segment, **kwargs
        )
        fresh = out.sequences[:, sequences.shape[1] :]
        if not fresh.shape[1]:
            break
        done += fresh.shape[1]
        for k, row in enumerate(rows):
            if row not in finished:
                ids = _answer_ids(fresh[k].tolist(), eos)
                new[row] += ids
                if ids and ids[-1] in eos:
                    finished.add(row)
        sequences = out.sequences
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], fresh.shape[1]))], dim=1)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        keep = [k for k, row in enumerate(rows) if row not in finished]
        if keep and len(keep) < len(rows) and _prunable(cache):
            index = torch.tensor(keep, device=sequences.device)
            cache.batch_select_indices(index)  # type: ignore[union-attr]
            sequences, mask = sequences[index], mask[index]
            rows = [rows[k] for k in keep]
    return new


def _left_pad(batch: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        if ids:
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
    return input_ids, mask


def _answer_ids(row: list[int], eos: set[int]) -> list[int]:
    """The generated ids up to and including the first EOS; padding after it dropped."""
    for i, token in enumerate(row):
        if token in eos:
            return row[: i + 1]
    return row


@contextmanager
def _rows_adapters(model: CausalLM, names: Sequence[str] | None) -> Iterator[dict[str, list[str]]]:
    """The extra ``generate`` arguments for a batch whose rows run ``names``: a batch of one
    adapter runs it as the active adapter (or with adapters disabled, for the base), the
    plain forward; only a batch that mixes adapters names each row (``adapter_names``)."""
    if names is None:
        yield {}
    elif len(set(names)) > 1:
        yield {"adapter_names": list(names)}
    elif names[0] == BASE_ROW:
        with model.disable_adapter():
            yield {}
    else:
        model.set_adapter(names[0])
        yield {}


def generate(
    loaded: LoadedModel,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int = 64,
    chat_template: bool = True,
    system: str | None = None,
    batch_size: int = 8,
    seed: int = 0,
    adapter_names: Sequence[str] | None = None,
) -> list[GenerationOutput]:
    """Greedy answers to ``prompts``, in input order.

    ``adapter_names`` (one per prompt) runs each row through its own LoRA adapter of a
    PEFT model in the same batch (PEFT's mixed-adapter batches; :data:`BASE_ROW` for the
    base model): one pass serves several candidates, each row computing what it would
    compute alone. A batch whose rows all name one adapter runs it as the active adapter
    (which it stays after the call).

    Batches of ``batch_size`` prompts of similar length, left-padded, under
    ``torch.inference_mode()``; text decoded without special tokens and
    stripped. ``seed`` seeds torch first so anything stochastic in a model is
    reproducible too. Raises ``ModelLoadError`` when asked for a chat template
    the tokenizer lacks, or when the model fails to generate.
    """
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError("batch_size and max_new_tokens must be positive")
    if adapter_names is not None and len(adapter_names) != len(prompts):
        raise ValueError("adapter_names needs one name per prompt")
    model, tokenizer = loaded.model, loaded.tokenizer
    encoded = encode_prompts(tokenizer, prompts, chat_template=chat_template, system=system)
    if any(not ids for ids in encoded):
        raise ValueError("a prompt encodes to no tokens")
    config = _generation_config(model, tokenizer, max_new_tokens)
    eos = set(_eos_ids(model, tokenizer))
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i))
    results: dict[int, GenerationOutput] = {}
    torch.manual_seed(seed)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            input_ids, mask = _left_pad([encoded[i] for i in chunk], tokenizer.pad_token_id)
            names = None if adapter_names is None else [adapter_names[i] for i in chunk]
            try:
                with _rows_adapters(model, names) as extra:
                    answers = _decode(
                        model,
                        input_ids.to(loaded.device),
                        mask.to(loaded.device),
                        config,
                        eos,
                        extra,
                    )
            except Exception as exc:
                raise ModelLoadError(f"generation failed: {exc}") from exc
            for row, index in enumerate(chunk):
                ids = answers[row]
                text = tokenizer.decode(ids, skip_special_tokens=True).strip()
                results[index] = GenerationOutput(text, len(encoded[index]), len(ids))
    return [results[i] for i in range(len(encoded))]
