"""Small real checkpoint folders and archives for API tests (no model needed).

The folders hold real safetensors files written by ``safetensors.torch.save_file``
and real configs, so :func:`service.checkpoints.inspect_checkpoint` reads them
exactly as it reads a trained adapter. The hostile archives are built with
``tarfile``/``zipfile`` directly, member by member. The ``api_*`` helpers create
the family, dataset and candidates those folders are registered with, through
the API as any client would.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from fastapi.testclient import TestClient
from httpx import Response
from safetensors.torch import save_file

BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def write_lora_adapter(folder: Path, *, rank: int = 4, seed: int = 0) -> Path:
    """A LoRA adapter folder (adapter_config.json + adapter_model.safetensors) for q_proj."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file(
        {
            f"{prefix}.lora_A.weight": torch.randn(rank, 64, generator=generator),
            f"{prefix}.lora_B.weight": torch.randn(64, rank, generator=generator),
        },
        str(folder / "adapter_model.safetensors"),
    )
    config = {
        "peft_type": "LORA",
        "base_model_name_or_path": BASE_MODEL,
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": ["q_proj"],
        "task_type": "CAUSAL_LM",
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def write_full_checkpoint(folder: Path) -> Path:
    """A full-checkpoint folder (config.json + model.safetensors)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"model.embed_tokens.weight": torch.zeros(8, 4)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 4}))
    return folder


def tar_gz_folder(folder: Path, archive: Path, *, arcname: str = "adapter") -> Path:
    """A .tar.gz of ``folder`` with its files under ``arcname/``."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return archive


def zip_folder(folder: Path, archive: Path) -> Path:
    """A .zip of ``folder``'s files at the archive's top level."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder).as_posix())
    return archive


def tar_gz_with_member(
    folder: Path, archive: Path, member: tarfile.TarInfo, data: bytes = b""
) -> Path:
    """A .tar.gz of a valid ``folder`` plus one extra (hostile) ``member``."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="adapter")
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return archive


def symlink_member(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def file_member(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


# --- through the API ------------------------------------------------------------------

Headers = dict[str, str]
BUILTIN_BASE = "smollm2-135m-instruct"
DATASET_RECORDS: list[dict[str, Any]] = [
    {"generation": {"max_new_tokens": 16, "chat_template": False}},
    {"id": "greet", "input": "Say hello.", "reference": "Hello!", "cohort": "chit-chat"},
    {"id": "capital", "input": "Capital of France?", "reference": "Paris", "cohort": "geo"},
    {"id": "json", "input": "A JSON object with a name.", "domain": "out", "cohort": "geo"},
    {"heldout": "The quick brown fox jumps over the lazy dog."},
]


def api_family(client: TestClient, auth: Headers, name: str = "support-bot") -> dict[str, Any]:
    response = client.post(
        "/v1/families", json={"name": name, "base_model": BUILTIN_BASE}, headers=auth
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def api_dataset(
    client: TestClient,
    auth: Headers,
    name: str = "support",
    records: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    lines = "\n".join(json.dumps(r) for r in (records or DATASET_RECORDS))
    response = client.post(
        f"/v1/datasets/{name}/versions",
        content=lines.encode(),
        headers={**auth, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def api_candidate(
    client: TestClient,
    auth: Headers,
    checkpoint: Path,
    *,
    family: str = "support-bot",
    learning_rate: float = 1e-4,
    headers: Headers | None = None,
    **fields: Any,
) -> Response:
    """POST /v1/candidates; returns the response unchecked."""
    body = {"family": family, "checkpoint": str(checkpoint), "learning_rate": learning_rate}
    return client.post(
        "/v1/candidates", json={**body, **fields}, headers={**auth, **(headers or {})}
    )
