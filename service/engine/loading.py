"""Model loading: each base model loaded once, LoRA adapters swapped on it.

A :class:`ModelPool` keeps an LRU of loaded bases keyed by their real folder.
The first adapter on a base wraps it with PEFT; later adapters are added to the
same wrapper under their content digest and switched with ``set_adapter``. A
full fine-tune is loaded as a base of its own.

:meth:`ModelPool.acquire` is a context manager, so the adapter state is set for
exactly the body of the ``with``: acquiring the base of a PEFT-wrapped model
runs the body inside ``disable_adapter()``, and nothing outside the pool can
evaluate "the base" with an adapter still active. A per-base lock keeps two
threads from switching adapters under each other.

Every folder is validated by :func:`~service.checkpoints.inspect_checkpoint`
before it is loaded; weights are read with ``use_safetensors=True`` and
``trust_remote_code=False``, and nothing is fetched from a hub.
"""

from __future__ import annotations

import gc
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from service.checkpoint_paths import resolve_within_roots
from service.checkpoints import (
    CheckpointInfo,
    CheckpointKind,
    check_adapter_matches_base,
    inspect_checkpoint,
)
from service.errors import CheckpointRejected, ModelLoadError

if TYPE_CHECKING:
    from service.engine.hf import CausalLM, Tokenizer


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run: the base with ``adapter_name`` active, or with none."""

    model: CausalLM
    tokenizer: Tokenizer
    dtype: torch.dtype
    device: torch.device
    base_dir: Path
    adapter_name: str | None


@dataclass
class _Base:
    info: CheckpointInfo
    model: CausalLM
    tokenizer: Tokenizer
    shapes: dict[str, tuple[int, ...]]
    stamp: tuple[tuple[str, int, int], ...]
    adapters: dict[str, str] = field(default_factory=dict)  # adapter name -> content digest
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def is_peft(self) -> bool:
        return hasattr(self.model, "peft_config")


def _stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and mtimes of a folder's files: a loaded base is re-inspected
    (and its 100s of MB re-hashed) only when this changes."""
    out = []
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            out.append((os.path.join(dirpath, name), st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


def pick_device(device: str = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(device: torch.device) -> torch.dtype:
    """fp32 on CPU; bf16 on CUDA when the GPU supports it, else fp16."""
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_tokenizer(folder: Path) -> Tokenizer:
    """The folder's tokenizer, padding on the left, with a pad token (eos when it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            folder, trust_remote_code=False, local_files_only=True, padding_side="left"
        )
    except Exception as exc:
        raise ModelLoadError(f"could not load the tokenizer from {folder}: {exc}") from exc
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"the tokenizer in {folder} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class ModelPool:
    """An LRU of loaded base models, with LoRA adapters swapped on them.

    ``roots`` confines every folder the pool loads (bases, adapters, full
    fine-tunes). When ``None`` each folder is still fully inspected (no pickle,
    no code, no symlink leaving it, valid safetensors) but its location is
    trusted: the caller has confined it already. Adapters are checked against
    the base's tensor shapes before loading; the base *name* an adapter records
    is checked at registration (``check_adapter_matches_base(base_names=...)``),
    where the family's base name is known. ``base_loads`` and
    ``adapter_loads`` count real loads, for benchmarks and tests.
    """

    def __init__(
        self, max_bases: int = 2, device: str = "auto", roots: Sequence[Path] | None = None
    ) -> None:
        if max_bases < 1:
            raise ValueError("max_bases must be at least 1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.max_bases = max_bases
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device)
        self.roots = list(roots) if roots is not None else None
        self.base_loads = 0
        self.adapter_loads = 0
        self._bases: OrderedDict[Path, _Base] = OrderedDict()
        self._lock = threading.Lock()

    def _inspect(self, folder: Path, kind: CheckpointKind) -> CheckpointInfo:
        return inspect_checkpoint(
            folder, self.roots if self.roots is not None else [folder], kind=kind
        )

    @contextmanager
    def acquire(
        self, base_dir: Path, adapter_dir: Path | None = None, adapter_name: str | None = None
    ) -> Iterator[LoadedModel]:
        """Hold ``base_dir`` with ``adapter_dir`` active (or with no adapter) for the block.

        ``adapter_name`` defaults to the adapter's content digest, so a changed
        file on disk is a new adapter. Raises ``CheckpointRejected`` for a folder
        that fails inspection or an adapter that does not fit the base, and
        ``ModelLoadError`` when the libraries cannot load it.
        """
        entry = self._base(Path(base_dir))
        with entry.lock, ExitStack() as stack:
            name: str | None = None
            if adapter_dir is not None:
                name = self._activate(entry, Path(adapter_dir), adapter_name)
            elif entry.is_peft:
                stack.enter_context(entry.model.disable_adapter())
            entry.model.eval()
            yield LoadedModel(
                model=entry.model,
                tokenizer=entry.tokenizer,
                dtype=self.dtype,
                device=self.device,
                base_dir=entry.info.path,
                adapter_name=name,
            )

    @contextmanager
    def acquire_mixed(
        self, base_dir: Path, adapter_dirs: Sequence[Path]
    ) -> Iterator[tuple[LoadedModel, list[str]]]:
        """Hold ``base_dir`` with every adapter of ``adapter_dirs`` loaded, for batches that
        name each row's adapter (``generate(adapter_names=...)``); yields the model and the
        adapters' names in order. Nothing is disabled: a row without a name runs every active
        adapter, so callers name each row (``"__base__"`` for the base)."""
        entry = self._base(Path(base_dir))
        with entry.lock:
            names = [self._activate(entry, Path(folder), None) for folder in adapter_dirs]
            entry.model.eval()
            yield (
                LoadedModel(
                    model=entry.model,
                    tokenizer=entry.tokenizer,
                    dtype=self.dtype,
                    device=self.device,
                    base_dir=entry.info.path,
                    adapter_name=None,
                ),
                names,
            )

    def loaded_bases(self) -> list[Path]:
        """The bases in memory, least recently used first."""
        with self._lock:
            return list(self._bases)

    def _base(self, folder: Path) -> _Base:
        real = resolve_within_roots(folder, self.roots if self.roots is not None else [folder])
        with self._lock:
            entry = self._bases.get(real)
            if entry is not None and entry.stamp == _stamp(real):
                self._bases.move_to_end(real)
                return entry
            info = self._inspect(real, "full")
            self._bases.pop(real, None)
            while len(self._bases) >= self.max_bases:
                self._bases.popitem(last=False)
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            entry = self._load_base(info)
            self._bases[real] = entry
            return entry

    def _load_base(self, info: CheckpointInfo) -> _Base:
        from transformers import AutoModelForCausalLM

        try:
            model, report = AutoModelForCausalLM.from_pretrained(
                info.path,
                trust_remote_code=False,
                use_safetensors=True,
                local_files_only=True,
                dtype=self.dtype,
                output_loading_info=True,
            )
        except Exception as exc:
            raise ModelLoadError(f"could not load the model in {info.path}: {exc}") from exc
        # transformers initialises missing weights randomly and carries on: refuse instead.
        missing = sorted(report.get("missing_keys", ())) + sorted(report.get("mismatched_keys", ()))
        if missing:
            raise ModelLoadError(
                f"the weights in {info.path} do not fit its config: missing or mismatched "
                f"{len(missing)} tensors, e.g. {missing[:3]}"
            )
        model.to(self.device)
        model.eval()
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        self.base_loads += 1
        return _Base(info, model, load_tokenizer(info.path), shapes, _stamp(info.path))

    def _activate(self, entry: _Base, adapter_dir: Path, adapter_name: str | None) -> str:
        info = self._inspect(adapter_dir, "lora")
        name = adapter_name or f"a{info.digest[:16]}"
        if "." in name or not name:
            raise CheckpointRejected(f"adapter name {name!r} must be non-empty without dots")
        known = entry.adapters.get(name)
        if known is not None and known != info.digest:
            raise CheckpointRejected(f"adapter name {name!r} is already used by other weights")
        if known is None:
            check_adapter_matches_base(info, entry.shapes)
            self._load_adapter(entry, info, name)
        entry.model.set_adapter(name)
        return name

    def _load_adapter(self, entry: _Base, info: CheckpointInfo, name: str) -> None:
        from peft import PeftModel

        try:
            if entry.is_peft:
                entry.model.load_adapter(info.path, adapter_name=name, is_trainable=False)
            else:
                entry.model = PeftModel.from_pretrained(
                    entry.model, info.path, adapter_name=name, is_trainable=False
                )
        except Exception as exc:
            if not entry.is_peft:  # a failed first wrap may leave half-injected layers
                with self._lock:
                    self._bases.pop(entry.info.path, None)
            raise ModelLoadError(f"could not load the adapter in {info.path}: {exc}") from exc
        entry.model.to(self.device)
        entry.adapters[name] = info.digest
        self.adapter_loads += 1
