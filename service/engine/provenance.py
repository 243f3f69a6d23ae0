"""Where results come from: weight digests, library versions, and the cache key.

Two evaluations with the same cache key — same weights (by digest), same dataset
digest, same generation config and same evaluator versions — would produce the same
rows, so the second reuses the first's rows and runs no forward pass. Anything that
differs (another adapter, another dataset version) gives another key.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path

from service.checkpoints import sha256_file
from service.jsontypes import JSONObject

_LIBRARIES = ("tunegate", "torch", "transformers", "peft", "sentence-transformers", "numpy")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def folder_weight_digests(folder: Path) -> dict[str, str]:
    """sha256 of every ``*.safetensors`` file in a model folder, memoised beside the data.

    Base models are large (hundreds of MB); the digest is cached in a sidecar file
    keyed by each file's size and mtime so it is computed once per file version.
    """
    sidecar = folder / ".tunegate-digests.json"
    cached: JSONObject = {}
    if sidecar.is_file():
        try:
            cached = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            cached = {}
    digests: dict[str, str] = {}
    changed = False
    for path in sorted(folder.glob("*.safetensors")):
        stat = path.stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
        entry = cached.get(path.name)
        if isinstance(entry, dict) and entry.get("stamp") == stamp:
            digests[path.name] = str(entry["sha256"])
            continue
        digests[path.name] = sha256_file(path)
        cached[path.name] = {"stamp": stamp, "sha256": digests[path.name]}
        changed = True
    if changed:
        try:
            sidecar.write_text(json.dumps(cached, indent=1, sort_keys=True))
        except OSError:  # a read-only model folder: recompute next time
            pass
    return digests


def cache_key(
    *,
    base_digests: dict[str, str],
    candidate_digests: dict[str, str],
    dataset_digest: str,
    config: JSONObject,
    evaluator_versions: dict[str, str],
) -> str:
    payload = {
        "base": base_digests,
        "candidate": candidate_digests,
        "dataset": dataset_digest,
        "config": config,
        "evaluators": evaluator_versions,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
