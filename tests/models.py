"""Real small models for tests, built or converted once and cached across runs.

The cache lives in ``TUNEGATE_TEST_CACHE`` (default ``~/.cache/tunegate-tests``) so
the SmolLM2 conversion (~20 s) and adapters trained in fixtures are paid once per
machine, not once per test run.
"""

from __future__ import annotations

import os
from pathlib import Path

from service.engine.builtin import SMOLLM2, ensure_builtin


def cache_root() -> Path:
    path = Path(os.environ.get("TUNEGATE_TEST_CACHE", Path.home() / ".cache" / "tunegate-tests"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct as a local safetensors folder."""
    return ensure_builtin(SMOLLM2, cache_root() / "models")


def tiny_llama_dir() -> Path:
    """A randomly initialised 2-layer Llama (~3M parameters) with the SmolLM2 tokenizer.

    Seeded, so every build is the same model; saved as safetensors like any
    user's full fine-tune folder.
    """
    target = cache_root() / "models" / "tiny-llama"
    if (target / "model.safetensors").is_file():
        return target
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    tmp = target.with_name(".tiny-llama-tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target
