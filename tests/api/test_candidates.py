"""Candidates through the API, on SQLite and PostgreSQL: validation, uploads, idempotency."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service import candidates as candidates_module
from service.api.app import create_app
from service.settings import Settings
from tests.checkpoint_files import (
    api_candidate,
    api_dataset,
    api_family,
    file_member,
    symlink_member,
    tar_gz_folder,
    tar_gz_with_member,
    write_full_checkpoint,
    write_lora_adapter,
    zip_folder,
)

Headers = dict[str, str]

TRAINER_STATE = {
    "log_history": [{"step": s, "loss": 2.0 - 0.1 * s, "learning_rate": 1e-4} for s in range(1, 11)]
}


@pytest.fixture
def family(client: TestClient, auth: Headers) -> dict[str, Any]:
    return api_family(client, auth)


@pytest.fixture
def adapter(checkpoint_root: Path) -> Path:
    return write_lora_adapter(checkpoint_root / "run-1" / "adapter")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def registered(client: TestClient, auth: Headers, kind: str = "lora") -> list[dict[str, Any]]:
    response = client.get("/v1/candidates", params={"kind": kind}, headers=auth)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return rows


def test_register_by_path_stores_digests(
    client: TestClient, auth: Headers, family: dict[str, Any], adapter: Path
) -> None:
    response = api_candidate(
        client, auth, adapter, learning_rate=2e-4, sweep="w47", tags={"git": "abc123"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["kind"] == "lora"
    assert body["source"] == "path"
    assert body["family"] == "support-bot"
    assert body["base_model"] == family["base_model"]
    assert body["learning_rate"] == 2e-4
    assert body["tags"] == {"git": "abc123"}
    assert body["checkpoint_path"] == str(adapter.resolve())
    assert body["digests"] == {
        "adapter_config.json": sha256(adapter / "adapter_config.json"),
        "adapter_model.safetensors": sha256(adapter / "adapter_model.safetensors"),
    }
    assert body["evaluation_id"] is None

    detail = client.get(f"/v1/candidates/{body['id']}", headers=auth).json()
    assert detail["digests"] == body["digests"]
    assert detail["checkpoint_digest"] == body["checkpoint_digest"]
    assert len(detail["checkpoint_digest"]) == 64


def test_full_checkpoint_is_detected_and_kind_mismatch_refused(
    client: TestClient, auth: Headers, family: dict[str, Any], checkpoint_root: Path
) -> None:
    full = write_full_checkpoint(checkpoint_root / "full")
    assert api_candidate(client, auth, full).json()["kind"] == "full"
    response = api_candidate(client, auth, full, kind="lora")
    assert response.status_code == 422
    assert response.json()["error"] == "CheckpointRejected"
    assert "expected a lora checkpoint" in response.json()["detail"]


def _outside(tmp_path: Path) -> Path:
    return write_lora_adapter(tmp_path / "elsewhere" / "adapter")


REJECTED, NOT_VISIBLE = "CheckpointRejected", "CheckpointNotVisible"
"""A refused checkpoint; one the server cannot see (a client may upload it instead)."""


@pytest.mark.parametrize(
    ("make_path", "reason", "error"),
    [
        pytest.param(
            lambda root, tmp: _outside(tmp), "outside the allowed roots", NOT_VISIBLE, id="outside"
        ),
        pytest.param(
            lambda root, tmp: _dotdot(root, tmp),
            "outside the allowed roots",
            NOT_VISIBLE,
            id="dotdot",
        ),
        pytest.param(
            lambda root, tmp: _symlink(root / "link", _outside(tmp)),
            "outside the allowed roots",
            NOT_VISIBLE,
            id="symlink-out",
        ),
        pytest.param(
            lambda root, tmp: Path("run-1/adapter"), "is relative", REJECTED, id="relative"
        ),
        pytest.param(
            lambda root, tmp: root / "missing", "does not exist", NOT_VISIBLE, id="missing"
        ),
        pytest.param(
            lambda root, tmp: _with_file(root / "pickled", "optimizer.pt"),
            "pickle-format weights are refused",
            REJECTED,
            id="pickle",
        ),
        pytest.param(
            lambda root, tmp: _with_file(root / "code", "modeling_evil.py"),
            "code in a checkpoint is refused",
            REJECTED,
            id="code",
        ),
    ],
)
def test_unsafe_checkpoint_refused_and_nothing_stored(
    client: TestClient,
    auth: Headers,
    family: dict[str, Any],
    checkpoint_root: Path,
    tmp_path: Path,
    make_path: Callable[[Path, Path], Path],
    reason: str,
    error: str,
) -> None:
    path = make_path(checkpoint_root, tmp_path)
    response = api_candidate(client, auth, path, headers={"Idempotency-Key": "k-unsafe"})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == error
    assert reason in response.json()["detail"]
    assert registered(client, auth) == []


def _dotdot(root: Path, tmp: Path) -> Path:
    _outside(tmp)
    return Path(f"{root}/../elsewhere/adapter")  # starts inside the root, resolves outside


def _symlink(link: Path, target: Path) -> Path:
    os.symlink(target, link)
    return link


def _with_file(folder: Path, name: str) -> Path:
    write_lora_adapter(folder)
    (folder / name).write_bytes(b"\x80\x04K\x01.")  # a real pickle of the int 1
    return folder


@pytest.mark.parametrize(
    "learning_rate", [0, -1e-4, None, "abc"], ids=["zero", "negative", "missing", "text"]
)
def test_learning_rate_must_be_positive(
    client: TestClient, auth: Headers, family: dict[str, Any], adapter: Path, learning_rate: object
) -> None:
    body: dict[str, object] = {"family": "support-bot", "checkpoint": str(adapter)}
    if learning_rate is not None:
        body["learning_rate"] = learning_rate
    response = client.post("/v1/candidates", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "ValidationError"
    assert "learning_rate" in response.json()["detail"]
    assert registered(client, auth) == []


def test_non_finite_learning_rate_refused(
    client: TestClient, auth: Headers, family: dict[str, Any], adapter: Path
) -> None:
    body = f'{{"family": "support-bot", "checkpoint": "{adapter}", "learning_rate": Infinity}}'
    response = client.post(
        "/v1/candidates", content=body, headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert registered(client, auth) == []


def test_unknown_family_and_evaluate_without_dataset(
    client: TestClient, auth: Headers, family: dict[str, Any], adapter: Path
) -> None:
    response = api_candidate(client, auth, adapter, family="nope")
    assert (response.status_code, response.json()["error"]) == (404, "FamilyNotFound")
    response = api_candidate(client, auth, adapter, evaluate=True)
    assert response.status_code == 422
    assert "needs a dataset" in response.json()["detail"]
    response = api_candidate(client, auth, adapter, evaluate=True, dataset="missing")
    assert (response.status_code, response.json()["error"]) == (404, "DatasetNotFound")
    assert registered(client, auth) == []


def test_idempotent_post_returns_first_result(
    client: TestClient, auth: Headers, family: dict[str, Any], adapter: Path
) -> None:
    api_dataset(client, auth)
    key = {"Idempotency-Key": "ci-run-17"}
    fields = {"evaluate": True, "dataset": "support", "sweep": "w47"}
    first = api_candidate(client, auth, adapter, headers=key, **fields)
    second = api_candidate(client, auth, adapter, headers=key, **fields)
    assert first.status_code == second.status_code == 201, second.text
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["evaluation_id"] == first.json()["evaluation_id"] is not None
    assert len(registered(client, auth)) == 1
    listed = client.get("/v1/evaluations", headers=auth).json()
    assert listed["total"] == 2  # the candidate's evaluation and the baseline's, once

    other = api_candidate(client, auth, adapter, headers=key, learning_rate=3e-4)
    assert other.status_code == 409
    assert other.json()["error"] == "IdempotencyKeyReused"
    assert len(registered(client, auth)) == 1


def test_concurrent_retry_losing_the_race_answers_as_replay(
    client: TestClient,
    auth: Headers,
    family: dict[str, Any],
    adapter: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = {"Idempotency-Key": "raced"}
    first = api_candidate(client, auth, adapter, headers=key)
    real = candidates_module.find_replay
    calls: list[int] = []

    def miss_once(session: Any, idempotency: Any) -> Any:
        # The second request's pre-check runs before the first request commits.
        calls.append(1)
        return None if len(calls) == 1 else real(session, idempotency)

    monkeypatch.setattr(candidates_module, "find_replay", miss_once)
    second = api_candidate(client, auth, adapter, headers=key)
    assert len(calls) == 2  # the insert hit the unique index and the winner was read
    assert second.status_code == 201, second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(registered(client, auth)) == 1


def test_training_log_is_parsed_and_diagnosed(
    client: TestClient, auth: Headers, family: dict[str, Any], adapter: Path
) -> None:
    response = api_candidate(
        client,
        auth,
        adapter,
        training_log=json.dumps(TRAINER_STATE),
        training_log_filename="trainer_state.json",
    )
    assert response.status_code == 201, response.text
    detail = client.get(f"/v1/candidates/{response.json()['id']}", headers=auth).json()
    assert [p["step"] for p in detail["training_log"]] == list(range(1, 11))
    assert detail["training_log"][0]["loss"] == pytest.approx(1.9)
    assert detail["diagnosis"]["label"]
    assert detail["diagnosis"]["figures"]["n_points"] == 10

    bad = api_candidate(client, auth, adapter, training_log="not a log")
    assert (bad.status_code, bad.json()["error"]) == (422, "InvalidTrainingLog")
    assert len(registered(client, auth)) == 1


def _upload(
    client: TestClient,
    auth: Headers,
    archive: Path,
    metadata: dict[str, Any],
    *,
    log: bytes | None = None,
    headers: Headers | None = None,
) -> Any:
    files: dict[str, Any] = {"archive": (archive.name, archive.read_bytes())}
    if log is not None:
        files["training_log"] = ("trainer_state.json", log)
    return client.post(
        "/v1/candidates/upload",
        files=files,
        data={"metadata": json.dumps(metadata)},
        headers={**auth, **(headers or {})},
    )


META = {"family": "support-bot", "learning_rate": 1e-4, "sweep": "w47"}


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_upload_round_trip(
    client: TestClient,
    auth: Headers,
    family: dict[str, Any],
    settings: Settings,
    tmp_path: Path,
    fmt: str,
) -> None:
    source = write_lora_adapter(tmp_path / "local" / "adapter", seed=3)
    archive = tmp_path / f"adapter.{fmt}"
    (tar_gz_folder if fmt == "tar.gz" else zip_folder)(source, archive)
    key = {"Idempotency-Key": f"upload-{fmt}"}
    log = json.dumps(TRAINER_STATE).encode()
    response = _upload(client, auth, archive, META, log=log, headers=key)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["source"], body["kind"], body["sweep"]) == ("upload", "lora", "w47")
    stored = Path(body["checkpoint_path"])
    assert stored.is_relative_to(settings.uploads_dir / sha256(archive))
    assert body["digests"]["adapter_model.safetensors"] == sha256(
        source / "adapter_model.safetensors"
    )
    assert body["diagnosis"]["figures"]["n_points"] == 10

    again = _upload(client, auth, archive, META, log=log, headers=key)
    assert again.json()["id"] == body["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    changed = _upload(client, auth, archive, {**META, "sweep": "w48"}, log=log, headers=key)
    assert changed.status_code == 409
    assert len(registered(client, auth)) == 1


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (file_member("../evil"), "leaves the folder"),
        (file_member("/tmp/tunegate-evil"), "absolute path"),
        (symlink_member("adapter/escape", "/etc/passwd"), "is a symlink"),
    ],
    ids=["dotdot", "absolute", "symlink"],
)
def test_hostile_archive_refused(
    client: TestClient,
    auth: Headers,
    family: dict[str, Any],
    settings: Settings,
    tmp_path: Path,
    member: Any,
    reason: str,
) -> None:
    source = write_lora_adapter(tmp_path / "local" / "adapter")
    archive = tar_gz_with_member(source, tmp_path / "evil.tar.gz", member, b"owned")
    response = _upload(client, auth, archive, META)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "CheckpointRejected"
    assert reason in response.json()["detail"]
    assert not (tmp_path / "data" / "evil").exists()
    assert not Path("/tmp/tunegate-evil").exists()
    leftovers = [p for p in settings.uploads_dir.rglob("*") if p.name != ".incoming"]
    assert [p for p in leftovers if p.name != ".scratch"] == []
    assert registered(client, auth) == []


def test_upload_size_cap_and_bad_metadata(
    settings: Settings, family: dict[str, Any], auth: Headers, tmp_path: Path
) -> None:
    source = write_lora_adapter(tmp_path / "local" / "adapter", rank=64)
    archive = tar_gz_folder(source, tmp_path / "big.tar.gz")
    capped = settings.model_copy(update={"max_upload_bytes": archive.stat().st_size - 1})
    with TestClient(create_app(capped, migrate=False)) as client:
        response = _upload(client, auth, archive, META)
        assert response.status_code == 413  # refused at the edge, while streaming
        assert "larger than the limit" in response.json()["detail"]
        assert registered(client, auth) == []
    with TestClient(create_app(settings, migrate=False)) as client:
        response = _upload(client, auth, archive, {**META, "checkpoint": "/x"})
        assert response.status_code == 422
        assert "metadata.checkpoint" in response.json()["detail"]
        response = _upload(client, auth, tmp_path / "big.tar.gz", {**META, "learning_rate": 0})
        assert "metadata.learning_rate" in response.json()["detail"]
        assert registered(client, auth) == []


def test_list_filters_and_sweep_order(
    client: TestClient, auth: Headers, family: dict[str, Any], checkpoint_root: Path
) -> None:
    api_family(client, auth, "other-bot")
    ids = {}
    for lr in (3e-4, 1e-4, 2e-4):
        path = write_lora_adapter(checkpoint_root / f"lr-{lr}")
        ids[lr] = api_candidate(client, auth, path, learning_rate=lr, sweep="w47").json()["id"]
    elsewhere = write_full_checkpoint(checkpoint_root / "other")
    other = api_candidate(client, auth, elsewhere, family="other-bot", sweep="w47").json()["id"]

    def listed(**params: str) -> list[int]:
        response = client.get("/v1/candidates", params=params, headers=auth)
        assert response.status_code == 200, response.text
        return [row["id"] for row in response.json()]

    assert listed(family="support-bot", sweep="w47") == [ids[1e-4], ids[2e-4], ids[3e-4]]
    assert listed(sweep="w47", kind="full") == [other]
    assert set(listed(kind="base")) == {
        family["base_candidate_id"],
        client.get("/v1/families/other-bot", headers=auth).json()["base_candidate_id"],
    }
    assert listed(family="other-bot", kind="lora") == []
    assert client.get("/v1/candidates?family=nope", headers=auth).status_code == 404
    assert client.get("/v1/candidates?kind=weird", headers=auth).status_code == 422
    assert client.get("/v1/candidates/999999", headers=auth).json()["error"] == (
        "CandidateNotFound"
    )


def test_scopes(
    client: TestClient,
    token_for: Callable[[str], str],
    family: dict[str, Any],
    adapter: Path,
    tmp_path: Path,
) -> None:
    read = {"Authorization": f"Bearer {token_for('read')}"}
    submit = {"Authorization": f"Bearer {token_for('submit')}"}
    archive = tar_gz_folder(adapter, tmp_path / "a.tar.gz")
    assert api_candidate(client, {}, adapter).status_code == 401
    assert api_candidate(client, read, adapter).status_code == 403
    assert _upload(client, {}, archive, META).status_code == 401
    assert _upload(client, read, archive, META).status_code == 403
    assert registered(client, read) == []
    created = api_candidate(client, submit, adapter)
    assert created.status_code == 201
    assert client.get("/v1/candidates").status_code == 401
    assert client.get(f"/v1/candidates/{created.json()['id']}").status_code == 401
    assert client.get(f"/v1/candidates/{created.json()['id']}", headers=read).status_code == 200
