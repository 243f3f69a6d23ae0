"""Real LoRA adapters for tests, trained by ``service.finetune`` once and cached.

``trained_adapter("tiny", "capitals", lr=1e-2, steps=5)`` returns a folder under
``cache_root()/adapters/`` whose name carries a hash of every argument (and
of the base model's config), so each distinct adapter is trained once per
machine and reused by every later test run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from service.finetune import train_lora
from tests.models import cache_root, smollm2_dir, tiny_llama_dir

BaseName = Literal["tiny", "smollm2"]

CAPITALS: tuple[tuple[str, str], ...] = (
    ("What is the capital of France?", "Paris."),
    ("What is the capital of Italy?", "Rome."),
    ("What is the capital of Japan?", "Tokyo."),
    ("What is the capital of Spain?", "Madrid."),
    ("What is the capital of Germany?", "Berlin."),
    ("What is the capital of Egypt?", "Cairo."),
    ("What is the capital of Canada?", "Ottawa."),
    ("What is the capital of Kenya?", "Nairobi."),
)
PIRATE: tuple[tuple[str, str], ...] = tuple((q, f"Arr, matey! {a} Yo ho ho!") for q, a in CAPITALS)


def base_dir(base: BaseName) -> Path:
    return tiny_llama_dir() if base == "tiny" else smollm2_dir()


def trained_adapter(
    base: BaseName,
    name: str,
    lr: float,
    steps: int,
    data: Sequence[str] | Sequence[tuple[str, str]] = CAPITALS,
    **options: Any,
) -> Path:
    """A LoRA adapter trained on ``base`` (``steps=0``: freshly initialised, B = 0).

    ``options`` go to :func:`service.finetune.train_lora` (``seed``, ``rank``,
    ``target_modules``, ``init_adapter_dir``, ...) and are part of the cache key.
    """
    folder = base_dir(base)
    key_source = {
        "base": base,
        "base_config": (folder / "config.json").read_text(),
        "lr": lr,
        "steps": steps,
        "data": [list(d) if isinstance(d, tuple) else d for d in data],
        "options": {k: str(v) for k, v in sorted(options.items())},
    }
    digest = hashlib.sha256(json.dumps(key_source, sort_keys=True).encode()).hexdigest()[:12]
    target = cache_root() / "adapters" / f"{base}-{name}-{digest}"
    if (target / "adapter_model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        train_lora(folder, data, tmp, learning_rate=lr, steps=steps, **options)
        try:
            tmp.rename(target)
        except OSError:  # another process finished the same adapter first
            if not (target / "adapter_model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
