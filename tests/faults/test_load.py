"""Bursts against a real uvicorn server on SQLite and PostgreSQL: nothing hangs, nothing is lost.

Concurrent idempotent candidate submissions (each key sent twice at once) and
concurrent reads, on a server squeezed to 8 handler threads and 3 connections with
a short pool time-out, so the saturated path (503 + Retry-After) is taken too.
Every request is answered — 2xx, or 503 with Retry-After that succeeds on retry —
each key stores exactly one candidate, and every stored candidate was
acknowledged to a client. The full-size figures: ``benchmarks/faults/load.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import create_engine, select

from service.db.models import Candidate
from tests.checkpoint_files import write_lora_adapter
from tests.faults.live import LiveServer
from tests.faults.load import read_burst, setup_family, submit_burst

KEYS = 80
READS = 80
SQUEEZED = {
    "TUNEGATE_API_THREADS": "8",
    "TUNEGATE_DB_POOL_SIZE": "3",
    "TUNEGATE_DB_POOL_TIMEOUT": "0.2",
}


def test_burst_of_idempotent_submissions_and_reads(tmp_path: Path, db_url: str) -> None:
    server = LiveServer(tmp_path / "data", db_url, env=SQUEEZED)
    adapter = write_lora_adapter(server.data_dir / "checkpoints" / "run" / "adapter")
    with server:
        setup_family(server.url, server.auth)
        burst, by_key = asyncio.run(submit_burst(server.url, server.auth, str(adapter), keys=KEYS))
        print("\n" + burst.summary(f"submit {KEYS} keys x 2"))
        reads = asyncio.run(read_burst(server.url, server.auth, n=READS))
        print(reads.summary(f"read x {READS}"))
        assert not server.errors_logged()

    assert burst.statuses == {201: 2 * KEYS}, burst.statuses
    assert reads.statuses == {200: READS}, reads.statuses
    assert not any(a.retry_after_missing for a in [*burst.answers, *reads.answers])
    acknowledged = set()
    for key, answers in by_key.items():
        ids = {a.body["id"] for a in answers}
        assert len(ids) == 1, (key, ids)  # both copies name the same candidate
        acknowledged |= ids
    engine = create_engine(db_url)
    with engine.connect() as conn:
        stored = list(conn.scalars(select(Candidate.id).where(Candidate.sweep == "burst")))
    engine.dispose()
    assert len(stored) == KEYS
    assert set(stored) == acknowledged  # every stored row was acknowledged to a client
