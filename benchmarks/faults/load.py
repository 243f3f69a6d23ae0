"""Load: concurrent idempotent candidate submissions and concurrent reads against a live server.

    PYTHONPATH=. python benchmarks/faults/load.py --db sqlite --keys 250 --reads 200
    PYTHONPATH=. python benchmarks/faults/load.py --db postgres

Prints statuses, retries and p50/p99 latency; checks exactly one candidate per key
and that every stored candidate was acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from service.db.models import Candidate
from tests.checkpoint_files import write_lora_adapter
from tests.faults.live import LiveServer
from tests.faults.load import read_burst, setup_family, submit_burst

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def database(kind: str, folder: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder / 'tunegate.db'}"
    name = f"tunegate_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--keys", type=int, default=250)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = database(args.db, folder)
        server = LiveServer(folder / "data", url)
        adapter = write_lora_adapter(server.data_dir / "checkpoints" / "run" / "adapter")
        with server:
            setup_family(server.url, server.auth)
            burst, by_key = asyncio.run(
                submit_burst(server.url, server.auth, str(adapter), keys=args.keys)
            )
            print(f"[{args.db}] " + burst.summary(f"submit {args.keys} keys x 2"))
            reads = asyncio.run(read_burst(server.url, server.auth, n=args.reads))
            print(f"[{args.db}] " + reads.summary(f"read x {args.reads}"))
            errors = server.errors_logged()
        acknowledged = {
            a.body["id"]
            for answers in by_key.values()
            for a in answers
            if isinstance(a.body, dict) and "id" in a.body
        }
        split = sum(
            len({a.body.get("id") for a in answers if isinstance(a.body, dict)}) != 1
            for answers in by_key.values()
        )
        engine = create_engine(url)
        with engine.connect() as conn:
            burst = Candidate.sweep == "burst"
            stored = set(conn.scalars(select(Candidate.id).where(burst)))
            count = conn.scalar(select(func.count()).select_from(Candidate).where(burst))
        engine.dispose()
        print(
            f"[{args.db}] stored {count} candidates for {args.keys} keys; "
            f"keys answered with two ids: {split}; "
            f"stored but unacknowledged: {len(stored - acknowledged)}; "
            f"server tracebacks: {'yes' if errors else 'none'}"
        )
        if errors:
            print(errors[-3000:])


if __name__ == "__main__":
    main()
