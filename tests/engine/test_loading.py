"""ModelPool: one base load, adapters swapped, base evaluated with adapters disabled."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from service.engine.loading import LoadedModel, ModelPool
from service.errors import CheckpointRejected, ModelLoadError

PROBE = "The capital of France is Paris, and the capital of Italy is"


def logits(loaded: LoadedModel) -> torch.Tensor:
    batch = loaded.tokenizer([PROBE], return_tensors="pt")
    with torch.inference_mode():
        return loaded.model(**batch).logits[0, -1].clone()


def test_base_loaded_once_adapters_swapped(
    tiny_base: Path, adapter_a: Path, adapter_b: Path, cache_root: list[Path]
) -> None:
    pool = ModelPool(device="cpu", roots=cache_root)
    with pool.acquire(tiny_base) as base:
        assert base.adapter_name is None
        assert base.dtype == torch.float32
        assert base.device.type == "cpu"
        assert base.tokenizer.padding_side == "left"
        assert base.tokenizer.pad_token is not None
        base_logits = logits(base)
    with pool.acquire(tiny_base, adapter_a) as a:
        a_name = a.adapter_name
        a_logits = logits(a)
    with pool.acquire(tiny_base, adapter_b) as b:
        b_logits = logits(b)
    assert pool.base_loads == 1
    assert pool.adapter_loads == 2
    assert not torch.allclose(a_logits, base_logits)
    assert not torch.allclose(a_logits, b_logits)
    # switching back reuses the loaded adapter and gives the same logits
    with pool.acquire(tiny_base, adapter_a) as again:
        assert again.adapter_name == a_name
        assert torch.equal(logits(again), a_logits)
    assert pool.adapter_loads == 2
    # the base, once adapters are loaded on it, runs with them disabled
    with pool.acquire(tiny_base) as base_again:
        assert base_again.adapter_name is None
        assert torch.equal(logits(base_again), base_logits)
    # ...and the adapter is active again afterwards
    with pool.acquire(tiny_base, adapter_b) as b_again:
        assert torch.equal(logits(b_again), b_logits)
    assert pool.base_loads == 1


def test_adapter_name_defaults_to_content_digest(
    tiny_base: Path, adapter_a: Path, adapter_b: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(adapter_a, tmp_path / "copy"))
    pool = ModelPool(device="cpu")
    with pool.acquire(tiny_base, adapter_a) as a:
        name = a.adapter_name
    with pool.acquire(tiny_base, copy) as c:
        assert c.adapter_name == name  # same bytes, same adapter: not loaded twice
    assert pool.adapter_loads == 1
    with pool.acquire(tiny_base, adapter_a, adapter_name="mine") as named:
        assert named.adapter_name == "mine"
    with pytest.raises(CheckpointRejected, match="already used"):
        with pool.acquire(tiny_base, adapter_b, adapter_name="mine"):
            pass
    with pytest.raises(CheckpointRejected, match="without dots"):
        with pool.acquire(tiny_base, adapter_a, adapter_name="a.b"):
            pass


def test_lru_evicts_and_full_fine_tune_is_its_own_base(
    tiny_base: Path, context_model_dir: Path
) -> None:
    pool = ModelPool(max_bases=1, device="cpu")
    with pool.acquire(tiny_base):
        pass
    with pool.acquire(context_model_dir) as full:
        assert full.base_dir == context_model_dir.resolve()
    assert pool.loaded_bases() == [context_model_dir.resolve()]
    with pool.acquire(tiny_base):
        pass
    assert pool.base_loads == 3
    two = ModelPool(max_bases=2, device="cpu")
    for folder in (tiny_base, context_model_dir, tiny_base, context_model_dir):
        with two.acquire(folder):
            pass
    assert two.base_loads == 2


def test_refuses_folders_outside_roots_and_pickles(
    tiny_base: Path, adapter_a: Path, tmp_path: Path, cache_root: list[Path]
) -> None:
    pool = ModelPool(device="cpu", roots=[tmp_path])
    with pytest.raises(CheckpointRejected, match="outside the allowed roots"):
        with pool.acquire(tiny_base):
            pass
    pickled = Path(shutil.copytree(adapter_a, tmp_path / "pickled"))
    torch.save({"x": torch.zeros(1)}, pickled / "adapter_model.bin")
    pool = ModelPool(device="cpu", roots=[*cache_root, tmp_path])
    with pytest.raises(CheckpointRejected, match="pickle"):
        with pool.acquire(tiny_base, pickled):
            pass


def test_refuses_adapter_for_another_base(
    context_model_dir: Path, tmp_path: Path, adapter_a: Path
) -> None:
    # an adapter whose lora_A expects 32 in-features on a 64-wide model
    bad = Path(shutil.copytree(adapter_a, tmp_path / "bad"))
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file(
        {
            f"{prefix}.lora_A.weight": torch.zeros(8, 32),
            f"{prefix}.lora_B.weight": torch.zeros(64, 8),
        },
        str(bad / "adapter_model.safetensors"),
    )
    pool = ModelPool(device="cpu")
    with pytest.raises(CheckpointRejected, match="different base model"):
        with pool.acquire(context_model_dir, bad):
            pass
    assert pool.adapter_loads == 0


def test_library_errors_become_model_load_error(tmp_path: Path, tiny_base: Path) -> None:
    unknown = Path(shutil.copytree(tiny_base, tmp_path / "unknown"))
    config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**config, "model_type": "no-such-model"}))
    pool = ModelPool(device="cpu")
    with pytest.raises(ModelLoadError, match="could not load the model") as info:
        with pool.acquire(unknown):
            pass
    assert info.value.__cause__ is not None
    # valid safetensors whose tensors are not the model's: refused, not randomly initialised
    wrong = Path(shutil.copytree(tiny_base, tmp_path / "wrong"))
    save_file({"something.else": torch.zeros(2)}, str(wrong / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="do not fit its config"):
        with pool.acquire(wrong):
            pass
    assert pool.base_loads == 0
