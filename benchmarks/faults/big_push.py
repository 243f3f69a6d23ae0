"""A 1 GB dataset push against a live server: wall time, rows/s and the server's peak RSS.

    PYTHONPATH=. python benchmarks/faults/big_push.py [--db sqlite|postgres] [--size-mb 1024]

The JSONL (about 1 KB a line: a prompt, a context paragraph, a reference, a cohort,
one held-out text every 1,000 lines) is generated as it is sent, in chunked
transfer, so neither side ever holds it whole. The server's RSS is sampled every
0.2 s while it reads and stores the push; its peak (VmHWM) is the figure, beside
its RSS at rest before the push. Then the same content is pushed again (200, the
same version: read and hashed, nothing stored), and the version's canonical JSONL is
read back (its sha256 must be the digest); the server must have left no spool file
behind. Target: peak RSS under 300 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from benchmarks.faults.load import POSTGRES, database
from service.jsontypes import JSONObject
from tests.faults.live import LiveServer

_WORDS = (
    "the parcel left the depot on monday and is expected within three working days unless "
    "the carrier reports a delay at the regional hub where customs checks may apply to "
).split()


def _text(i: int, words: int) -> str:
    return " ".join(_WORDS[(i * 7 + k) % len(_WORDS)] for k in range(words))


def jsonl_lines(size: int) -> Iterator[bytes]:
    """About ``size`` bytes of JSONL, one ~1 KB example a line."""
    yield json.dumps({"generation": {"max_new_tokens": 32}}).encode() + b"\n"
    sent, i = 0, 0
    while sent < size:
        i += 1
        if i % 1000 == 0:
            line = json.dumps({"heldout": _text(i, 60)})
        else:
            record = {
                "id": f"ex-{i}",
                "input": f"Where is order {i}? " + _text(i, 20),
                "context": _text(i + 1, 110),
                "reference": f"Order {i} is in transit.",
                "cohort": f"c{i % 17}",
                "domain": "out" if i % 5 == 0 else "in",
            }
            line = json.dumps(record)
        data = line.encode() + b"\n"
        sent += len(data)
        yield data


def chunks(size: int, chunk: int = 256 * 1024) -> Iterator[bytes]:
    pending: list[bytes] = []
    held = 0
    for line in jsonl_lines(size):
        pending.append(line)
        held += len(line)
        if held >= chunk:
            yield b"".join(pending)
            pending, held = [], 0
    if pending:
        yield b"".join(pending)


def _status(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler(threading.Thread):
    """Samples a process's RSS (MB) every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[float] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.samples.append(_status(self.pid, "VmRSS"))
            self._done.wait(self.interval)

    def stop(self) -> float:
        self._done.set()
        self.join()
        return max(self.samples, default=float("nan"))


def drop_database(url: str) -> None:
    """Drop the benchmark's PostgreSQL database (a gigabyte of rows); SQLite goes with tmp."""
    if url.startswith("postgresql"):
        admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
        admin.dispose()


def push(http: httpx.Client, pid: int, db: str, size_mb: int, label: str) -> JSONObject:
    """One push of ``size_mb`` MiB; prints its figures and returns the answer."""
    sampler = RssSampler(pid)
    sampler.start()
    start = time.perf_counter()
    response = http.post(
        "/v1/datasets/big/versions",
        content=chunks(size_mb * 1024**2),
        headers={"Content-Type": "application/x-ndjson"},
    )
    seconds = time.perf_counter() - start
    sampled = sampler.stop()
    body: JSONObject = response.json()
    examples, heldout = int(str(body.get("n_examples", 0))), int(str(body.get("n_heldout", 0)))
    print(
        f"[{db}] {label}: {size_mb} MiB -> {response.status_code} (version "
        f"{body.get('version')}, {examples:,} examples, {heldout:,} held-out) in "
        f"{seconds:.1f} s, {(examples + heldout) / seconds:,.0f} rows/s, "
        f"{size_mb / seconds:.1f} MiB/s; sampled peak RSS {sampled:.0f} MB",
        flush=True,
    )
    response.raise_for_status()
    return body


def read_back(http: httpx.Client, pid: int, db: str, digest: str) -> None:
    """GET the version's canonical JSONL as a stream; its sha256 must be the digest."""
    sampler = RssSampler(pid)
    sampler.start()
    start = time.perf_counter()
    hashed, size = hashlib.sha256(), 0
    with http.stream("GET", "/v1/datasets/big/versions/1/jsonl") as stream:
        for data in stream.iter_bytes():
            hashed.update(data)
            size += len(data)
    seconds = time.perf_counter() - start
    print(
        f"[{db}] canonical JSONL read back: {size / 1024**2:.0f} MiB in {seconds:.1f} s, "
        f"sha256 {'==' if hashed.hexdigest() == digest else '!='} digest; "
        f"sampled peak RSS {sampler.stop():.0f} MB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = database(args.db, folder)
        try:
            with LiveServer(folder / "data", url) as server:
                assert server.process is not None
                pid = server.process.pid
                http = httpx.Client(base_url=server.url, headers=server.auth, timeout=3600)
                rest = _status(pid, "VmRSS")
                body = push(http, pid, args.db, args.size_mb, "first push")
                push(http, pid, args.db, args.size_mb, "same content again")
                read_back(http, pid, args.db, str(body["digest"]))
                time.sleep(1)  # the JSONL file goes once its answer is sent
                left = [p for p in (server.data_dir / "uploads").rglob("*") if p.is_file()]
                print(
                    f"[{args.db}] server RSS at rest {rest:.0f} MB, peak (VmHWM) "
                    f"{_status(pid, 'VmHWM'):.0f} MB; spool files left: {len(left)}; "
                    f"tracebacks: {'yes' if server.errors_logged() else 'none'}"
                )
        finally:
            drop_database(url)


if __name__ == "__main__":
    main()
