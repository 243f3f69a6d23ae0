"""What a causal LM really ran, counted by a forward hook on the model itself.

Tests use it to prove work was (or was not) done, without trusting a counter the job
keeps: a global ``torch`` forward hook sees every ``*ForCausalLM`` forward pass in this
process, adapters (PEFT) included. A generation's first pass (the prompt: after it, the
KV cache holds exactly its tokens) carries one row per example generated; the decoding
steps after it, and scoring passes (perplexity, probes, log-likelihoods) that hand the
model no cache, are counted as passes only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.nn.modules.module import register_module_forward_hook


@dataclass
class ForwardCount:
    passes: int = 0
    """Every forward pass of a causal LM."""
    examples_generated: int = 0
    """Rows of the prompt passes of ``generate`` (one per example generated)."""


@contextmanager
def counting_forward_passes(
    on_generate: Callable[[int], None] | None = None,
) -> Iterator[ForwardCount]:
    """Count causal-LM forward passes in this process while the block runs;
    ``on_generate(n)`` is told of every prompt pass (``n`` examples)."""
    count = ForwardCount()

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], _: Any) -> None:
        if not type(module).__name__.endswith("ForCausalLM"):
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            return
        count.passes += 1
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if cache is not None and int(cache.get_seq_length()) == int(ids.shape[1]):
            count.examples_generated += int(ids.shape[0])
            if on_generate is not None:
                on_generate(int(ids.shape[0]))

    handle = register_module_forward_hook(hook, with_kwargs=True)
    try:
        yield count
    finally:
        handle.remove()
