"""inspect_checkpoint and friends against real (and really hostile) folders."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from service.checkpoint_paths import resolve_within_roots
from service.checkpoints import (
    check_adapter_matches_base,
    inspect_checkpoint,
    read_safetensors_header,
    sha256_file,
    tensor_shapes,
)
from service.errors import CheckpointRejected
from tests.models import smollm2_dir


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def adapter(root: Path, adapter_a: Path) -> Path:
    """A copy of a real trained adapter inside the allowed root."""
    return Path(shutil.copytree(adapter_a, root / "adapter"))


@pytest.fixture
def full(root: Path, tiny_base: Path) -> Path:
    """A copy of the tiny Llama as a full fine-tune inside the allowed root."""
    return Path(shutil.copytree(tiny_base, root / "full"))


def rejected(path: Path, roots: list[Path], match: str, **kw: object) -> None:
    with pytest.raises(CheckpointRejected, match=match):
        inspect_checkpoint(path, roots, **kw)  # type: ignore[arg-type]


def test_accepts_a_trained_adapter_with_digests(adapter: Path, root: Path) -> None:
    info = inspect_checkpoint(adapter, [root])
    assert info.kind == "lora"
    assert info.path == adapter.resolve()
    assert "adapter_model.safetensors" in info.files
    assert info.digests["adapter_model.safetensors"] == sha256_file(
        adapter / "adapter_model.safetensors"
    )
    assert info.adapter_config is not None
    assert info.adapter_config["peft_type"] == "LORA"
    assert info.base_model == info.adapter_config["base_model_name_or_path"]
    assert len(info.digest) == 64


def test_accepts_full_checkpoint_and_refuses_kind_mismatch(full: Path, root: Path) -> None:
    info = inspect_checkpoint(full, [root])
    assert info.kind == "full"
    assert info.config is not None
    assert info.config["model_type"] == "llama"
    rejected(full, [root], "expected a lora checkpoint", kind="lora")


def test_sharded_checkpoint_and_missing_shard(root: Path, tiny_base: Path) -> None:
    from transformers import AutoModelForCausalLM

    folder = root / "sharded"
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    model.save_pretrained(folder, max_shard_size="4MB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1
    info = inspect_checkpoint(folder, [root], kind="full")
    assert "model.safetensors.index.json" in info.files
    shards[0].unlink()
    rejected(folder, [root], "missing shard")


def test_refuses_real_pickle_next_to_safetensors(adapter: Path, root: Path) -> None:
    torch.save({"weight": torch.zeros(2)}, adapter / "pytorch_model.bin")
    rejected(adapter, [root], r"pytorch_model\.bin: pickle")


def test_refuses_pickle_in_a_subfolder(adapter: Path, root: Path) -> None:
    (adapter / "extra").mkdir()
    torch.save({"step": 1}, adapter / "extra" / "optimizer.pt")
    rejected(adapter, [root], r"extra/optimizer\.pt: pickle")


def test_refuses_symlinked_weights_outside_the_root(
    adapter: Path, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    weights = adapter / "adapter_model.safetensors"
    real = Path(shutil.move(weights, outside / "adapter_model.safetensors"))
    os.symlink(real, weights)
    rejected(adapter, [root], "outside the allowed roots")
    weights.unlink()
    os.symlink("/etc/passwd", weights)
    rejected(adapter, [root], "outside the allowed roots")


def test_symlink_inside_the_root_is_followed(adapter: Path, root: Path) -> None:
    weights = adapter / "adapter_model.safetensors"
    moved = Path(shutil.move(weights, root / "weights.safetensors"))
    os.symlink(moved, weights)
    info = inspect_checkpoint(adapter, [root])
    assert info.digests["adapter_model.safetensors"] == sha256_file(moved)


def test_refuses_dotdot_and_symlinked_folder_escapes(
    adapter: Path, root: Path, tmp_path: Path
) -> None:
    outside = Path(shutil.copytree(adapter, tmp_path / "elsewhere"))
    rejected(root / ".." / "elsewhere", [root], "outside the allowed roots")
    with pytest.raises(CheckpointRejected, match="outside"):
        resolve_within_roots(root / "adapter" / ".." / ".." / "elsewhere", [root])
    os.symlink(outside, root / "link")
    rejected(root / "link", [root], "outside the allowed roots")
    # `..` that stays inside the root is fine: only the real path counts
    assert resolve_within_roots(root / "adapter" / ".." / "adapter", [root]) == adapter.resolve()


def test_refuses_missing_things(adapter: Path, root: Path) -> None:
    rejected(root / "nope", [root], "does not exist")
    rejected(adapter / "adapter_config.json", [root], "not a directory")
    (adapter / "adapter_model.safetensors").unlink()
    rejected(adapter, [root], "missing")
    empty = root / "empty"
    empty.mkdir()
    rejected(empty, [root], "not a checkpoint")
    rejected(adapter, [], "no allowed checkpoint roots")


def test_refuses_full_checkpoint_without_safetensors(full: Path, root: Path) -> None:
    (full / "model.safetensors").unlink()
    rejected(full, [root], r"no \*\.safetensors")


@pytest.mark.parametrize("config", ["config.json", "adapter_config.json", "tokenizer_config.json"])
def test_refuses_auto_map(adapter: Path, root: Path, config: str) -> None:
    path = adapter / config
    data = json.loads(path.read_text()) if path.exists() else {}
    data["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    path.write_text(json.dumps(data))
    rejected(adapter, [root], "remote code")


def test_refuses_python_files(full: Path, root: Path) -> None:
    (full / "modeling_custom.py").write_text("import os\nos.system('echo pwned')\n")
    rejected(full, [root], "code in a checkpoint")


def test_refuses_invalid_json_config(adapter: Path, root: Path) -> None:
    (adapter / "adapter_config.json").write_text("{not json")
    rejected(adapter, [root], "not valid JSON")


def test_refuses_fifo(adapter: Path, root: Path) -> None:
    os.mkfifo(adapter / "pipe")
    rejected(adapter, [root], "not a regular file")


def test_refuses_truncated_safetensors(adapter: Path, root: Path) -> None:
    weights = adapter / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-10])
    rejected(adapter, [root], "truncated or corrupt")
    weights.write_bytes(data + b"\0" * 8)
    rejected(adapter, [root], "truncated or corrupt")
    weights.write_bytes(data[:5])
    rejected(adapter, [root], "no header length")


def test_refuses_corrupt_headers(adapter: Path, root: Path) -> None:
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    rejected(adapter, [root], "does not fit")
    header = b"not json at all!"
    weights.write_bytes(len(header).to_bytes(8, "little") + header)
    rejected(adapter, [root], "not JSON")
    header = json.dumps({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    weights.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    rejected(adapter, [root], "do not match its shape")
    header = json.dumps(
        {
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
        }
    ).encode()
    weights.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 12)
    rejected(adapter, [root], "overlaps")


def test_header_reader_matches_real_file(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    save_file({"w": torch.zeros(3, 5), "s": torch.tensor(1.0)}, str(path))
    header = read_safetensors_header(path)
    assert header["w"].shape == (3, 5)
    assert header["s"].shape == ()
    assert header["w"].dtype == "F32"


def test_adapter_fits_its_own_base(adapter: Path, root: Path, tiny_base: Path) -> None:
    info = inspect_checkpoint(adapter, [root])
    check_adapter_matches_base(info, tensor_shapes(tiny_base))


def test_refuses_adapter_trained_on_another_base(adapter: Path, root: Path) -> None:
    info = inspect_checkpoint(adapter, [root])
    with pytest.raises(CheckpointRejected, match="trained on a different base model"):
        check_adapter_matches_base(info, tensor_shapes(smollm2_dir()))


def test_refuses_adapter_for_missing_module(adapter: Path, root: Path, tiny_base: Path) -> None:
    info = inspect_checkpoint(adapter, [root])
    shapes = {k: v for k, v in tensor_shapes(tiny_base).items() if "layers.1." not in k}
    with pytest.raises(CheckpointRejected, match="does not have"):
        check_adapter_matches_base(info, shapes)


def test_base_name_check_is_strict_for_hub_ids_and_lenient_for_paths(
    adapter: Path, root: Path, tiny_base: Path
) -> None:
    shapes = tensor_shapes(tiny_base)
    names = ["HuggingFaceTB/SmolLM2-135M-Instruct"]
    config_path = adapter / "adapter_config.json"
    config = json.loads(config_path.read_text())
    for recorded, ok in [
        ("meta-llama/Llama-3.1-8B", False),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", True),
        ("smollm2-135m-instruct", True),
        ("/home/ci/models/whatever", True),
        (None, True),
    ]:
        config_path.write_text(json.dumps({**config, "base_model_name_or_path": recorded}))
        info = inspect_checkpoint(adapter, [root])
        if ok:
            check_adapter_matches_base(info, shapes, base_names=names)
        else:
            with pytest.raises(CheckpointRejected, match=r"Llama-3\.1-8B"):
                check_adapter_matches_base(info, shapes, base_names=names)


def test_memoised_digest_follows_a_rewrite_that_keeps_size_and_mtime(tmp_path: Path) -> None:
    import hashlib
    import time

    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"a" * 1000)
    first = sha256_file(path)
    assert sha256_file(path) == first == hashlib.sha256(b"a" * 1000).hexdigest()
    stat = path.stat()
    time.sleep(0.01)
    path.write_bytes(b"b" * 1000)  # same size ...
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and the old mtime put back
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    assert sha256_file(path) == hashlib.sha256(b"b" * 1000).hexdigest()
