"""Hostile input against a live server: each answer, how long it took, and the server's RSS.

    PYTHONPATH=. python benchmarks/faults/bad_input.py [--db sqlite|postgres]

Prints one line per case (status, error class, seconds), the server's peak RSS
(VmHWM) and what was left in the uploads folder; /readyz is checked after each.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from benchmarks.faults.load import database
from tests.checkpoint_files import write_lora_adapter
from tests.faults.live import LiveServer


def peak_rss_mb(server: LiveServer) -> float:
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def big_push(size: int) -> Iterator[bytes]:
    """About ``size`` bytes of ~1 KB lines, the last one broken: read whole as a stream,
    then refused naming that line (nothing stored)."""
    line = (json.dumps({"input": "x" * 1000, "reference": "y"}) + "\n").encode()
    lines = size // len(line)
    for _ in range(0, lines - 1, 256):  # 256 lines a chunk
        yield line * min(256, lines - 1 - _)
    yield b'{"input": "broken"\n'


def gzip_bomb(folder: Path) -> Path:
    adapter = write_lora_adapter(folder / "bomb" / "adapter")
    archive = folder / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(adapter, arcname="adapter")
        zeros = tarfile.TarInfo("adapter/zeros.bin")
        zeros.size = 1024**3
        with open("/dev/zero", "rb") as fh:
            tar.addfile(zeros, fh)
    return archive


def many_members(folder: Path, n: int) -> Path:
    archive = folder / "many.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for i in range(n):
            tar.addfile(tarfile.TarInfo(f"f/{i}"), io.BytesIO(b""))
    return archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--only", default="", help="run only the cases whose label holds this")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = LiveServer(folder / "data", database(args.db, folder))
        archives = not args.only or args.only in "gzip bomb / member tar"
        bomb = gzip_bomb(folder) if archives else folder  # built only when their case runs
        tar = many_members(folder, args.members) if archives else folder
        with server:
            auth = server.auth
            http = httpx.Client(base_url=server.url, headers=auth, timeout=600)
            http.post("/v1/families", json={"name": "f", "base_model": "smollm2-135m-instruct"})
            meta = {"metadata": json.dumps({"family": "f", "learning_rate": 1e-4})}
            ndjson = {"Content-Type": "application/x-ndjson"}
            deep = '{"input": ' + "[" * 100_000 + "]" * 100_000 + "}"
            cases: list[tuple[str, Callable[[], httpx.Response]]] = [
                (
                    "200 MB dataset push, its last line broken",
                    lambda: http.post(
                        "/v1/datasets/big/versions", content=big_push(200 * 1024**2), headers=ndjson
                    ),
                ),
                (
                    f"gzip bomb ({bomb.stat().st_size // 1024} KiB -> 1 GiB)"
                    if archives
                    else "gzip bomb",
                    lambda: http.post(
                        "/v1/candidates/upload",
                        data=meta,
                        files={"archive": ("b.tar.gz", bomb.open("rb"))},
                    ),
                ),
                (
                    f"{args.members:,}-member tar",
                    lambda: http.post(
                        "/v1/candidates/upload",
                        data=meta,
                        files={"archive": ("m.tar.gz", tar.open("rb"))},
                    ),
                ),
                (
                    "JSON 100,000 levels deep",
                    lambda: http.post(
                        "/v1/datasets/deep/versions", content=deep.encode(), headers=ndjson
                    ),
                ),
                (
                    "NaN in a policy",
                    lambda: http.post(
                        "/v1/families",
                        json={
                            "name": "g",
                            "base_model": "smollm2-135m-instruct",
                            "policy": "rules: [{kind: threshold, metric: m, min: .nan}]",
                        },
                    ),
                ),
                ("NUL in a name", lambda: http.get("/v1/candidates", params={"sweep": "a\x00"})),
                ("id 2^63", lambda: http.get(f"/v1/candidates/{2**63}")),
            ]
            for label, send in (case for case in cases if args.only in case[0]):
                start = time.perf_counter()
                response = send()
                seconds = time.perf_counter() - start
                ready = httpx.get(f"{server.url}/readyz", timeout=30).status_code
                answer = response.json() if response.content else {}
                detail = str(answer.get("detail", ""))[:60]
                print(
                    f"[{args.db}] {label}: {response.status_code} {answer.get('error', '')}"
                    f" ({detail}) in {seconds:.2f} s; /readyz {ready}"
                )
            left = [p for p in (server.data_dir / "uploads").rglob("*") if p.is_file()]
            print(
                f"[{args.db}] server peak RSS {peak_rss_mb(server):.0f} MB; "
                f"files left in uploads/: {len(left)}; tracebacks: "
                f"{'yes' if server.errors_logged() else 'none'}"
            )


if __name__ == "__main__":
    main()
