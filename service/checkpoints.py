"""Checkpoint validation: checkpoints are data, never code.

:func:`inspect_checkpoint` decides whether a folder may be loaded by reading
bytes only: it never imports, unpickles or executes anything from the folder,
and it reads safetensors headers without materialising a tensor. Everything it
refuses raises :class:`~service.errors.CheckpointRejected` with the reason.

Refused: a path (or any symlink inside the folder) that resolves outside every
allowed root, and special files (FIFOs, devices), both by
:mod:`service.checkpoint_paths`; pickle-format weights anywhere in the folder,
even beside safetensors; code (``*.py`` and compiled modules) or an
``auto_map`` in a config (both mean "remote code"); missing required files;
truncated or inconsistent safetensors files; a shard index naming a missing
shard or tensor.

:func:`check_adapter_matches_base` refuses a LoRA adapter trained on another
base, from the names and tensor shapes in the headers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from service.checkpoint_paths import resolve_within_roots, resolved_roots, walk_within_roots
from service.errors import CheckpointRejected
from service.jsontypes import JSONObject

CheckpointKind = Literal["lora", "full"]

PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"})
CODE_SUFFIXES = frozenset({".py", ".pyc", ".pyo", ".pyd", ".so"})
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MODEL_CONFIG = "config.json"
SHARD_INDEX = "model.safetensors.index.json"
_MAX_HEADER_BYTES = 100 * 1024 * 1024
_DTYPE_BYTES = {
    **dict.fromkeys(("BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2", "F8_E8M0"), 1),
    **dict.fromkeys(("I16", "U16", "F16", "BF16"), 2),
    **dict.fromkeys(("I32", "U32", "F32"), 4),
    **dict.fromkeys(("I64", "U64", "F64"), 8),
}


@dataclass(frozen=True)
class TensorMeta:
    """One tensor as described by a safetensors header."""

    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint folder that passed every check, with what was learnt reading it."""

    path: Path
    kind: CheckpointKind
    files: tuple[str, ...]
    digests: dict[str, str]
    base_model: str | None
    adapter_config: JSONObject | None
    config: JSONObject | None

    @property
    def digest(self) -> str:
        """One sha256 over every file's relative path and digest (stable across machines)."""
        h = hashlib.sha256()
        for rel in sorted(self.digests):
            h.update(f"{rel}\0{self.digests[rel]}\n".encode())
        return h.hexdigest()

    @property
    def weight_files(self) -> tuple[str, ...]:
        return tuple(f for f in self.files if f.endswith(".safetensors"))


def sha256_file(path: Path, chunk_size: int = 1024 * 1024) -> str:
    """The hex sha256 of a file, read in chunks (never whole into memory).

    Memoised per process by the file's identity and version (device, inode, size, mtime and
    ctime, which no user can set back): a base model's hundreds of MB are read once per
    process, not again at every load and every job's checks.
    """
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return _sha256_of(str(path), key, chunk_size)


@lru_cache(maxsize=4096)
def _sha256_of(path: str, version: tuple[int, ...], chunk_size: int) -> str:
    del version  # part of the memo's key only
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _read_json(path: Path, rel: str) -> JSONObject:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointRejected(f"{rel} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointRejected(f"{rel} must hold a JSON object")
    return data


def _has_key(data: object, key: str) -> bool:
    if isinstance(data, dict):
        return key in data or any(_has_key(v, key) for v in data.values())
    if isinstance(data, list):
        return any(_has_key(v, key) for v in data)
    return False


def read_safetensors_header(path: Path) -> dict[str, TensorMeta]:
    """Validate a safetensors file's framing and return its tensors' dtypes and shapes.

    Reads the 8-byte little-endian header length and the JSON header only. The
    tensors' byte ranges must be contiguous from 0, each exactly dtype size ×
    elements long, and the file must end where the last tensor ends: a
    truncated or padded file is refused. Raises ``CheckpointRejected``.
    """
    name = path.name
    size = path.stat().st_size
    with path.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise CheckpointRejected(f"{name}: truncated safetensors (no header length)")
        n = int.from_bytes(prefix, "little")
        if n > _MAX_HEADER_BYTES or 8 + n > size:
            raise CheckpointRejected(f"{name}: header length {n} does not fit a {size}-byte file")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointRejected(f"{name}: safetensors header is not JSON") from exc
    if not isinstance(header, dict):
        raise CheckpointRejected(f"{name}: safetensors header is not a JSON object")
    tensors: dict[str, TensorMeta] = {}
    spans: list[tuple[int, int, str]] = []
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = meta["dtype"], meta["shape"], meta["data_offsets"]
            dims = tuple(int(d) for d in shape)
            if not (isinstance(begin, int) and isinstance(end, int)) or any(d < 0 for d in dims):
                raise TypeError
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointRejected(f"{name}: malformed header entry for {key!r}") from exc
        if dtype not in _DTYPE_BYTES:
            raise CheckpointRejected(f"{name}: unknown dtype {dtype!r} for {key!r}")
        elements = 1
        for d in dims:
            elements *= d
        if not 0 <= begin <= end or end - begin != elements * _DTYPE_BYTES[dtype]:
            raise CheckpointRejected(f"{name}: data_offsets of {key!r} do not match its shape")
        tensors[key] = TensorMeta(dtype, dims)
        spans.append((begin, end, key))
    position = 0
    for begin, end, key in sorted(spans):
        if begin != position:
            raise CheckpointRejected(f"{name}: tensor {key!r} overlaps or leaves a gap")
        position = end
    if size != 8 + n + position:
        raise CheckpointRejected(
            f"{name}: file is {size} bytes but its header describes {8 + n + position} "
            "(truncated or corrupt)"
        )
    return tensors


def _check_with_safetensors(path: Path, expected: Collection[str]) -> None:
    """Second opinion from the safetensors library itself (memory-maps, loads nothing)."""
    from safetensors import safe_open

    try:
        # numpy, not pt: listing keys needs no torch (an API process never imports it)
        with safe_open(str(path), framework="numpy") as fh:
            keys = set(fh.keys())
    except Exception as exc:  # the Rust side raises SafetensorError and friends
        raise CheckpointRejected(f"{path.name}: safetensors refused the file: {exc}") from exc
    if keys != set(expected):
        raise CheckpointRejected(f"{path.name}: tensor names disagree with the header")


def _detect_kind(names: set[str], requested: CheckpointKind | None) -> CheckpointKind:
    found: CheckpointKind | None = None
    if ADAPTER_CONFIG in names:
        found = "lora"
    elif MODEL_CONFIG in names:
        found = "full"
    if requested is not None and found is not None and found != requested:
        raise CheckpointRejected(f"expected a {requested} checkpoint but found a {found} one")
    kind = requested or found
    if kind is None:
        raise CheckpointRejected(
            f"not a checkpoint: neither {ADAPTER_CONFIG} (LoRA) nor {MODEL_CONFIG} (full) found"
        )
    top = {n for n in names if "/" not in n}
    if kind == "lora":
        missing = [f for f in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if f not in top]
        if missing:
            raise CheckpointRejected(f"LoRA adapter is missing {missing}")
    else:
        if MODEL_CONFIG not in top:
            raise CheckpointRejected(f"full checkpoint is missing {MODEL_CONFIG}")
        if not any(n.endswith(".safetensors") for n in top):
            raise CheckpointRejected("full checkpoint has no *.safetensors weights")
    return kind


def _check_shard_index(folder: Path, headers: Mapping[str, Mapping[str, TensorMeta]]) -> None:
    index = _read_json(folder / SHARD_INDEX, SHARD_INDEX)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointRejected(f"{SHARD_INDEX} has no weight_map")
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str) or shard not in headers:
            raise CheckpointRejected(f"{SHARD_INDEX} maps {tensor!r} to missing shard {shard!r}")
        if tensor not in headers[shard]:
            raise CheckpointRejected(f"{SHARD_INDEX} maps {tensor!r} to {shard}, which lacks it")


def inspect_checkpoint(
    path: Path, roots: Sequence[Path], *, kind: CheckpointKind | None = None
) -> CheckpointInfo:
    """Validate a checkpoint folder without loading or executing anything from it.

    ``kind`` is detected when ``None`` (``adapter_config.json`` → ``"lora"``,
    ``config.json`` → ``"full"``); a mismatch is refused. Returns the resolved
    folder, its files and their sha256 digests, and the parsed configs.
    Raises ``CheckpointRejected`` with the reason for anything unsafe or broken.
    """
    real_roots = resolved_roots(roots)
    folder = resolve_within_roots(path, real_roots)
    if not folder.is_dir():
        raise CheckpointRejected(f"checkpoint {str(path)!r} is not a directory")
    files = dict(walk_within_roots(folder, real_roots))
    for rel in files:
        suffix = Path(rel).suffix.lower()
        if suffix in PICKLE_SUFFIXES:
            raise CheckpointRejected(f"{rel}: pickle-format weights are refused (safetensors only)")
        if suffix in CODE_SUFFIXES:
            raise CheckpointRejected(f"{rel}: code in a checkpoint is refused (no remote code)")
    configs = {rel: _read_json(real, rel) for rel, real in files.items() if rel.endswith(".json")}
    for rel, data in configs.items():
        if Path(rel).name.endswith("config.json") and _has_key(data, "auto_map"):
            raise CheckpointRejected(f"{rel} asks for remote code (auto_map)")
    detected = _detect_kind(set(files), kind)
    headers = {
        rel: read_safetensors_header(real)
        for rel, real in files.items()
        if rel.endswith(".safetensors")
    }
    for rel, tensors in headers.items():
        _check_with_safetensors(files[rel], tensors)
    if detected == "full" and SHARD_INDEX in files:
        _check_shard_index(folder, headers)
    adapter_config = configs.get(ADAPTER_CONFIG) if detected == "lora" else None
    base_model = adapter_config.get("base_model_name_or_path") if adapter_config else None
    return CheckpointInfo(
        path=folder,
        kind=detected,
        files=tuple(sorted(files)),
        digests={rel: sha256_file(real) for rel, real in sorted(files.items())},
        base_model=base_model if isinstance(base_model, str) and base_model else None,
        adapter_config=adapter_config,
        config=configs.get(MODEL_CONFIG),
    )


# --- does an adapter fit a base? ----------------------------------------------------

_LORA_PARTS = {
    "lora_A": ("in", 1),
    "lora_B": ("out", 0),
    "lora_embedding_A": ("rows", 1),
    "lora_embedding_B": ("cols", 0),
}


def _model_name(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1].lower()


def _looks_local(name: str) -> bool:
    """A recorded base that is a filesystem path rather than a hub id (``org/name``)."""
    return (
        name.startswith(("/", ".", "~"))
        or "\\" in name
        or name.count("/") > 1
        or name.startswith("~")
        or Path(name).exists()
    )


def tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape across a folder's safetensors files, read from headers only."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        shapes.update({k: m.shape for k, m in read_safetensors_header(file).items()})
    return shapes


def check_adapter_matches_base(
    info: CheckpointInfo,
    base_shapes: Mapping[str, tuple[int, ...]],
    *,
    base_names: Collection[str] = (),
) -> None:
    """Refuse a LoRA adapter that was not trained on this base.

    Names: ``base_model_name_or_path`` is compared with ``base_names`` (the names
    the base is known by, e.g. ``HuggingFaceTB/SmolLM2-135M-Instruct``) on their
    last path component, case-insensitively. It is *not* compared when it is
    missing, when ``base_names`` is empty, or when it is a local path: PEFT
    records the folder the trainer loaded, which says nothing on another machine.

    Shapes (always checked): every ``lora_A`` must take the in-features and every
    ``lora_B`` produce the out-features of the base Linear it targets (embedding
    LoRA likewise), and every targeted module must exist in the base.
    ``base_shapes`` maps base parameter names (``model.layers.0.self_attn.q_proj.weight``)
    to shapes — :func:`tensor_shapes` of the base folder, or a loaded model's
    state dict. Raises ``CheckpointRejected``.
    """
    if info.kind != "lora":
        raise CheckpointRejected(f"{info.path} is a {info.kind} checkpoint, not a LoRA adapter")
    named = info.base_model
    if named and base_names and not _looks_local(named):
        if _model_name(named) not in {_model_name(n) for n in base_names}:
            raise CheckpointRejected(
                f"adapter was trained on {named!r}, not on this base ({sorted(base_names)})"
            )
    shapes = dict(base_shapes)
    if "lm_head.weight" not in shapes and "model.embed_tokens.weight" in shapes:
        shapes["lm_head.weight"] = shapes["model.embed_tokens.weight"]  # tied embeddings
    adapter = read_safetensors_header(info.path / ADAPTER_WEIGHTS)
    checked = 0
    for key, meta in adapter.items():
        module, _, part = (
            key.removeprefix("base_model.model.").removesuffix(".weight").rpartition(".")
        )
        if part not in _LORA_PARTS:
            continue
        base_key = f"{module}.weight"
        if base_key not in shapes:
            raise CheckpointRejected(f"adapter targets {module!r}, which the base does not have")
        out_f, in_f = shapes[base_key][0], shapes[base_key][-1]
        side, axis = _LORA_PARTS[part]
        want = {"in": in_f, "out": out_f, "rows": out_f, "cols": in_f}[side]
        if len(meta.shape) != 2 or meta.shape[axis] != want:
            raise CheckpointRejected(
                f"adapter tensor {key} has shape {list(meta.shape)} but the base's {base_key} "
                f"is {list(shapes[base_key])}: trained on a different base model"
            )
        checked += 1
    if checked == 0:
        raise CheckpointRejected(f"{ADAPTER_WEIGHTS} holds no LoRA tensors")
