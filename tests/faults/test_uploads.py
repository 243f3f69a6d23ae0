"""Hostile uploads leave nothing behind: refused archives, gzip bombs, million-member tars.

Every refusal is a 4xx naming the problem, the uploads folder holds nothing
afterwards (no spooled archive, no scratch folder, no ``uploads/<sha>``), and the
server is still ready. An accepted upload is the only thing kept.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.archives import sweep_orphans
from service.settings import Settings
from tests.checkpoint_files import api_family, tar_gz_folder, write_lora_adapter

Headers = dict[str, str]
METADATA = json.dumps({"family": "support-bot", "learning_rate": 1e-4})


def _upload(client: TestClient, auth: Headers, archive: Path) -> tuple[int, str]:
    with archive.open("rb") as fh:
        response = client.post(
            "/v1/candidates/upload",
            files={"archive": (archive.name, fh, "application/gzip")},
            data={"metadata": METADATA},
            headers=auth,
        )
    return response.status_code, response.text


def _upload_good_adapter(client: TestClient, auth: Headers, tmp_path: Path) -> Path:
    """Create the family, upload a valid LoRA adapter (asserted: 201); returns where the
    server keeps it."""
    api_family(client, auth)
    archive = tar_gz_folder(write_lora_adapter(tmp_path / "ok" / "adapter"), tmp_path / "ok.tgz")
    status, text = _upload(client, auth, archive)
    assert status == 201, text
    return Path(json.loads(text)["checkpoint_path"])


def _left_on_disk(settings: Settings) -> list[str]:
    root = settings.uploads_dir
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _pickle_bomb(tmp_path: Path) -> Path:
    """A valid adapter plus a pickle .bin and a 64 MiB member of zeros (a gzip bomb in small)."""
    adapter = write_lora_adapter(tmp_path / "bomb" / "adapter")
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(adapter, arcname="adapter")
        zeros = tarfile.TarInfo("adapter/zeros.safetensors.part")
        zeros.size = 64 * 1024**2
        tar.addfile(zeros, io.BytesIO(bytes(zeros.size)))
        pickle = tarfile.TarInfo("adapter/pytorch_model.bin")
        pickle.size = 4
        tar.addfile(pickle, io.BytesIO(b"\x80\x04N."))
    return archive


def test_refused_upload_leaves_nothing(
    client: TestClient, auth: Headers, settings: Settings, tmp_path: Path
) -> None:
    api_family(client, auth)
    archive = _pickle_bomb(tmp_path)
    assert archive.stat().st_size < 1024**2  # 64 MiB of zeros compress to ~64 KiB
    status, text = _upload(client, auth, archive)
    assert status == 422, text
    assert "pytorch_model.bin" in text
    assert _left_on_disk(settings) == []
    assert client.get("/readyz").status_code == 200


def test_million_member_tar_is_refused_early(
    client: TestClient, auth: Headers, settings: Settings, tmp_path: Path
) -> None:
    api_family(client, auth)
    archive = tmp_path / "many.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(12_000):  # past the limit: refused before any is extracted
            tar.addfile(tarfile.TarInfo(f"f/{i}"), io.BytesIO(b""))
    start = time.perf_counter()
    status, text = _upload(client, auth, archive)
    assert status == 422, text
    assert "more than 10000 members" in text
    assert time.perf_counter() - start < 30
    assert _left_on_disk(settings) == []


def test_accepted_upload_is_kept_under_its_digest(
    client: TestClient, auth: Headers, settings: Settings, tmp_path: Path
) -> None:
    path = _upload_good_adapter(client, auth, tmp_path)
    assert path.parent.parent == settings.uploads_dir
    assert sorted(p.name for p in path.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert all(not f.startswith((".scratch/", ".incoming/")) for f in _left_on_disk(settings))


def test_orphan_sweep_removes_only_old_unreferenced_leftovers(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    for path in (uploads / "kept", uploads / "orphan", uploads / ".scratch" / "unpack-x"):
        path.mkdir(parents=True)
        (path / "f").write_bytes(b"x")
    (uploads / ".incoming").mkdir()
    (uploads / ".incoming" / "y.archive").write_bytes(b"y")
    (uploads / "fresh").mkdir()
    old = time.time() - 2 * 86400
    for path in (
        uploads / "kept",
        uploads / "orphan",
        uploads / ".scratch" / "unpack-x",
        uploads / ".incoming" / "y.archive",
    ):
        os.utime(path, (old, old))
    removed = sweep_orphans(uploads, {"kept"}, older_than=86400)
    assert sorted(p.name for p in removed) == ["orphan", "unpack-x", "y.archive"]
    assert sorted(p.name for p in uploads.iterdir()) == [".incoming", ".scratch", "fresh", "kept"]


@pytest.fixture(autouse=True)
def _quiet(settings: Settings) -> None:  # the uploads folder of each test starts empty
    assert not settings.uploads_dir.exists() or _left_on_disk(settings) == []


def test_sweep_keeps_what_candidates_refer_to(
    client: TestClient, auth: Headers, settings: Settings, tmp_path: Path
) -> None:
    from service.upload_sweeper import sweep_uploads

    kept = _upload_good_adapter(client, auth, tmp_path)
    orphan = settings.uploads_dir / ("0" * 64)
    orphan.mkdir()
    factory = client.app.state.sessionmaker  # type: ignore[attr-defined]
    removed = sweep_uploads(factory, settings.uploads_dir, max_age=-1)
    assert orphan in removed
    assert kept.is_dir()
