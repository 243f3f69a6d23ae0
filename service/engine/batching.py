"""How many rows one forward pass takes: measured once per (model, device, dtype), not guessed.

A fixed batch is wrong both ways: too small and a CPU or GPU idles between weight reads
(decoding one token costs nearly the same for 8 rows as for 1), too large and it runs out
of memory. :func:`probe_generation_batch` measures it on the evaluation's real prompts:

1. **Memory bound.** The KV cache a row needs (prompt + new tokens, every layer) plus the
   prefill's activations and logits, from the model's config, against the free memory of the
   device (``torch.cuda.mem_get_info``; on CPU, ``psutil``'s available memory); half of it is
   the budget. On CUDA an out-of-memory error while probing also stops the search.
2. **Speed bound.** The longest real prompt is run through the model once (one row); its
   KV cache is repeated to ``b`` rows and decode steps are timed (the faster of 2 counts;
   in CPU seconds of the thread on a CPU with one torch thread, so a busy machine does not
   skew it) for ``b`` in 1, 4, 32. Decode steps are where batching pays (each step reads every
   weight once for the whole batch); prefill costs about the same per token at any batch.
   A line ``t(b) = a + c·b`` fitted to the step times (:func:`best_batch`) gives the largest
   power-of-two batch whose doubling still raises tokens per second by ``min_gain``: the
   largest batch that still speeds generation up. Fitting three sizes rather than racing
   every doubling keeps the choice stable on a machine shared with other work.

It takes a second or two on a 135M model on CPU and is cached per (model, device,
dtype) by :class:`BatchSizer`; ``cap`` (``TUNEGATE_BATCH_SIZE``) bounds it. Outputs never
depend on the batch (see :mod:`service.engine.generation`), so the choice changes speed only.

Log-likelihood passes (held-out perplexity, scoring by log-likelihood) hold
``rows × width × vocab`` float32 logits; :func:`loglik_token_budget` turns the same memory
budget into a bound on ``rows × width`` for them, and they take the same row cap.
"""

from __future__ import annotations

import copy
import inspect
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from service.engine.loading import LoadedModel

if TYPE_CHECKING:
    from service.engine.hf import CausalLM, KVCache


log = logging.getLogger("tunegate.batching")

#: Upper bound when nothing else caps the batch.
DEFAULT_MAX_BATCH = 256
#: Fraction of the device's free memory a batch may use.
MEMORY_FRACTION = 0.5
#: A doubling must raise decode throughput by this factor to be taken.
DEFAULT_MIN_GAIN = 1.15


@dataclass(frozen=True)
class BatchChoice:
    """The batch a model runs with and why (``limited_by``: speed | memory | cap)."""

    batch_size: int
    limited_by: str
    memory_rows: int
    tokens_per_second: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0


def _config_dims(model: CausalLM) -> tuple[int, int, int, int, int]:
    """(layers, kv heads, head dim, hidden size, vocab) from the model's config."""
    cfg = getattr(model.config, "text_config", None) or model.config
    layers = int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 1))
    heads = int(getattr(cfg, "num_attention_heads", 0) or getattr(cfg, "n_head", 1))
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
    hidden = int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "n_embd", 1))
    head_dim = int(getattr(cfg, "head_dim", None) or hidden // max(heads, 1))
    vocab = int(getattr(cfg, "vocab_size", 1))
    return layers, kv_heads, head_dim, hidden, vocab


def free_memory_bytes(device: torch.device) -> int:
    """What the device can still hold: CUDA's free memory, or the host's available RAM."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def row_bytes(model: CausalLM, dtype: torch.dtype, prompt_tokens: int, new_tokens: int) -> int:
    """Memory one generated row needs at its peak: KV cache, prefill activations, logits."""
    layers, kv_heads, head_dim, hidden, vocab = _config_dims(model)
    item = int(torch.finfo(dtype).bits) // 8
    kv = 2 * layers * kv_heads * head_dim * (prompt_tokens + new_tokens) * item
    activations = 16 * hidden * prompt_tokens * item
    logits = vocab * 4 * 2  # last position's logits in float32, and the processed copy
    return kv + activations + logits


def memory_rows(loaded: LoadedModel, prompt_tokens: int, new_tokens: int) -> int:
    """How many rows of this length fit in the memory budget (at least 1)."""
    per_row = row_bytes(loaded.model, loaded.dtype, prompt_tokens, new_tokens)
    budget = MEMORY_FRACTION * free_memory_bytes(loaded.device)
    return max(1, int(budget // per_row))


def loglik_token_budget(loaded: LoadedModel) -> int:
    """A bound on ``rows × width`` for one log-likelihood pass (float32 logits, plus a copy)."""
    _layers, _kv, _hd, hidden, vocab = _config_dims(loaded.model)
    item = int(torch.finfo(loaded.dtype).bits) // 8
    per_token = vocab * 4 * 2 + 16 * hidden * item
    return max(1, int(MEMORY_FRACTION * free_memory_bytes(loaded.device) // per_token))


#: Batch sizes whose decode step is timed (those above the upper bound are skipped).
PROBE_SIZES = (1, 4, 32)


def best_batch(step_seconds: dict[int, float], upper: int, min_gain: float) -> int:
    """The largest power of two ``b <= upper`` whose doubling from ``b/2`` still gains
    (``upper`` itself when every batch up to it does).

    A decode step costs ``t(b) = a + c·b`` (a: reading the weights and launching work,
    paid once per step; c: each row's arithmetic), fitted by least squares to the timed
    steps. Throughput ``b / t(b)`` then gains ``(2a + cb) / (a + cb)`` from ``b/2`` to ``b``,
    which is at least ``min_gain`` while ``b <= a(2 - g) / (c(g - 1))``. A fit with no
    per-row cost (``c <= 0``: the device is far from busy) gives ``upper`` too.
    """
    sizes = sorted(step_seconds)
    if len(sizes) < 2:
        return min(upper, sizes[0] if sizes else 1)
    n = len(sizes)
    mean_b = sum(sizes) / n
    mean_t = sum(step_seconds[b] for b in sizes) / n
    var = sum((b - mean_b) ** 2 for b in sizes)
    c = sum((b - mean_b) * (step_seconds[b] - mean_t) for b in sizes) / var
    a = mean_t - c * mean_b
    if c <= 0:
        return upper
    limit = max(a, 0.0) * (2 - min_gain) / (c * (min_gain - 1))
    if limit >= upper:
        return upper
    best = 1
    while best * 2 <= min(limit, upper):
        best *= 2
    return best


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _cache_kwarg(model: CausalLM) -> str:
    """The forward's name for the KV cache: ``cache`` (transformers >= 5.2x) or the older
    ``past_key_values``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _cache_of(out: object) -> KVCache:
    cache: KVCache | None = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values")  # noqa: B009


def _decode_step_seconds(
    loaded: LoadedModel, prefilled: KVCache, next_token: torch.Tensor, length: int, rows: int
) -> float:
    """Seconds of one decode step for ``rows`` copies of a prefilled row.

    One untimed step warms the shape up; of 2 timed steps the fastest counts (other
    processes on the machine only ever slow a step down). On a CPU with one torch thread
    the step is timed in this thread's CPU seconds: the work it costs, not the time other
    processes held the cores (a wall clock on a busy machine stretched long steps more than
    short ones, and the choice swung between 16 and 64 from one probe to the next).
    """
    cache = copy.deepcopy(prefilled)
    cache.batch_repeat_interleave(rows)
    tokens = next_token.repeat(rows, 1)
    fastest = float("inf")
    name = _cache_kwarg(loaded.model)
    single_thread_cpu = loaded.device.type == "cpu" and torch.get_num_threads() == 1
    clock = time.thread_time if single_thread_cpu else time.perf_counter
    for step in range(3):
        mask = torch.ones((rows, length + step + 1), dtype=torch.long, device=loaded.device)
        if loaded.device.type == "cuda":
            torch.cuda.synchronize(loaded.device)
        start = clock()
        out = loaded.model(input_ids=tokens, attention_mask=mask, use_cache=True, **{name: cache})
        cache = _cache_of(out)
        tokens = out.logits[:, -1:].argmax(-1)
        if loaded.device.type == "cuda":
            torch.cuda.synchronize(loaded.device)
        if step:
            fastest = min(fastest, clock() - start)
    return fastest


def probe_generation_batch(
    loaded: LoadedModel,
    encoded: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    cap: int | None = None,
    min_gain: float = DEFAULT_MIN_GAIN,
) -> BatchChoice:
    """The largest batch that fits memory and still speeds decoding up (see the module doc).

    ``encoded`` are the evaluation's prompts as token ids (their lengths as they are);
    ``cap`` bounds the answer (the caller also never batches more rows than it has: the
    choice is cached for later, larger evaluations). Runs under ``inference_mode``; an
    out-of-memory error while probing is not raised: that size is simply not taken.
    """
    started = time.perf_counter()
    if not encoded:
        raise ValueError("the batch probe needs at least one prompt")
    longest = max(encoded, key=len)
    mem_rows = memory_rows(loaded, len(longest), max_new_tokens)
    upper = min(cap or DEFAULT_MAX_BATCH, mem_rows)
    limits = {"cap": cap or DEFAULT_MAX_BATCH, "memory": mem_rows}
    limited_by = min(limits, key=lambda k: (limits[k], k != "memory"))
    measured: dict[int, float] = {}
    if upper <= 1:
        return BatchChoice(1, limited_by, mem_rows, measured, time.perf_counter() - started)
    ids = torch.tensor([list(longest)], dtype=torch.long, device=loaded.device)
    steps: dict[int, float] = {}
    with torch.inference_mode():
        out = loaded.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
        prefilled, first = _cache_of(out), out.logits[:, -1:].argmax(-1)
        for size in sorted({min(b, upper) for b in PROBE_SIZES}):
            try:
                steps[size] = _decode_step_seconds(loaded, prefilled, first, len(longest), size)
            except RuntimeError as exc:
                if not _is_oom(exc):
                    raise
                upper, limited_by = max(1, size // 2), "memory"
                break
            finally:
                if loaded.device.type == "cuda":
                    torch.cuda.empty_cache()
    best = best_batch(steps, upper, min_gain)
    if best < upper:
        limited_by = "speed"
    rates = {b: b / t for b, t in steps.items()}
    return BatchChoice(best, limited_by, mem_rows, rates, time.perf_counter() - started)


class BatchSizer:
    """The batch per (model, device, dtype), probed once and then remembered.

    ``cap`` is ``TUNEGATE_BATCH_SIZE``: a number bounds the probe's answer. Thread-safe.
    """

    def __init__(self, cap: int | None = None, min_gain: float = DEFAULT_MIN_GAIN) -> None:
        self.cap = cap
        self.min_gain = min_gain
        self.choices: dict[tuple[str, str, str], BatchChoice] = {}
        self.probes = 0
        self._lock = threading.Lock()

    @staticmethod
    def key(loaded: LoadedModel) -> tuple[str, str, str]:
        return (str(loaded.base_dir), str(loaded.device), str(loaded.dtype))

    def known(self, loaded: LoadedModel) -> BatchChoice | None:
        with self._lock:
            return self.choices.get(self.key(loaded))

    def for_generation(
        self, loaded: LoadedModel, encoded: Sequence[Sequence[int]], max_new_tokens: int
    ) -> BatchChoice:
        """The cached choice for this model, or a probe on ``encoded`` (then cached)."""
        with self._lock:
            key = self.key(loaded)
            choice = self.choices.get(key)
            if choice is None:
                choice = probe_generation_batch(
                    loaded,
                    encoded,
                    max_new_tokens=max_new_tokens,
                    cap=self.cap,
                    min_gain=self.min_gain,
                )
                self.probes += 1
                self.choices[key] = choice
                log.info(
                    "batch %d for %s on %s/%s (limited by %s; tok/s %s; probe %.2f s)",
                    choice.batch_size,
                    key[0],
                    key[1],
                    key[2],
                    choice.limited_by,
                    {b: round(r, 1) for b, r in choice.tokens_per_second.items()},
                    choice.seconds,
                )
            return choice

    def rows(self, loaded: LoadedModel) -> int:
        """The row cap for a pass on this model when no probe ran yet: the cap, or 8."""
        choice = self.known(loaded)
        if choice is not None:
            return choice.batch_size
        return self.cap or 8
