"""Latency of the dashboard's endpoints on PostgreSQL with 1,000,000 stored scores.

    python benchmarks/dashboard_endpoints.py                 # ~1M scores, 200 candidates
    python benchmarks/dashboard_endpoints.py --sweeps 4      # smaller, quicker

What it does: makes a fresh PostgreSQL database (dropped at the end), migrates it to
head, seeds ``--sweeps`` sweeps of ``--candidates`` candidates × ``--examples`` examples
straight into the tables (tests/seeding.py: outputs, ~5 scores per example and
evaluation, model perplexity), computes every gate decision with the real gate, then
times the endpoints through the real app (in-process ASGI, bearer token checked on
every request): the sweep view (first request, then warm), a decision, the first page
of its diffs, a filtered and a deep page, the slice summary and the decision timeline.
Each endpoint is called ``--repeat`` times over varying decisions; p50 / p99 printed in
ms, with the CPU time this process (client and server) spent per request, which depends
less on the machine's load than the latency does. It also prints PostgreSQL's plan of
the diff page, to show which indexes answer it.
Figures depend on the machine's load: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from service.api.app import create_app
from service.db.migrate import upgrade_to_head
from service.db.models import Score
from service.db.session import make_engine, make_sessionmaker, unit_of_work
from service.settings import Settings
from tests.seeding import seed_sweeps

ADMIN_URL = os.environ.get(
    "TUNEGATE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(client: TestClient, headers: dict[str, str], path: str) -> float:
    start = time.perf_counter()
    response = client.get(path, headers=headers)
    elapsed = (time.perf_counter() - start) * 1000
    assert response.status_code == 200, (path, response.text)
    return elapsed


def measure(
    name: str, repeat: int, path_of: Callable[[int], str], client: TestClient, h: dict[str, str]
) -> None:
    cpu = time.process_time()
    times = [timed(client, h, path_of(i)) for i in range(repeat)]
    cpu_ms = (time.process_time() - cpu) * 1000 / repeat
    print(
        f"{name:<34} p50 {statistics.median(times):7.1f} ms   p99 {percentile(times, 0.99):7.1f} ms"
        f"   (n={repeat}; {cpu_ms:.1f} ms CPU of this process per request)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweeps", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    name = f"tunegate_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_to_head(url)
        engine = make_engine(url)
        started = time.perf_counter()
        with unit_of_work(make_sessionmaker(engine)) as session:
            seeded = seed_sweeps(
                session,
                n_sweeps=args.sweeps,
                n_candidates=args.candidates,
                n_examples=args.examples,
            )
        with engine.connect() as conn:
            n_scores = conn.scalar(select(func.count()).select_from(Score))
            conn.execute(text("ANALYZE"))
            conn.commit()
        print(
            f"seeded {n_scores:,} scores: {args.sweeps} sweeps × {args.candidates} candidates × "
            f"{args.examples} examples + 1 baseline, {len(seeded.decision_ids)} decisions, "
            f"in {time.perf_counter() - started:.0f} s"
        )
        with tempfile.TemporaryDirectory() as data:
            app = create_app(Settings(data_dir=Path(data), database_url=url, queue="none"))
            with TestClient(app) as client:
                token = (Path(data) / "admin.token").read_text().strip()
                h = {"Authorization": f"Bearer {token}"}
                run(client, h, seeded.family, seeded.sweeps, seeded.decision_ids, args.repeat)
                explain(engine, seeded.decision_ids[-1])
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(
    client: TestClient,
    h: dict[str, str],
    family: str,
    sweeps: list[str],
    decisions: list[int],
    repeat: int,
) -> None:
    cold = [timed(client, h, f"/v1/sweeps/{family}/{sweep}") for sweep in sweeps]
    print(
        f"{'sweep view, first request':<34} p50 {statistics.median(cold):7.1f} ms   "
        f"max {max(cold):7.1f} ms   (n={len(cold)}, one per sweep)"
    )
    n = len(decisions)
    measure(
        "sweep view (10 candidates)",
        repeat,
        lambda i: f"/v1/sweeps/{family}/{sweeps[i % len(sweeps)]}",
        client,
        h,
    )
    measure("decision", repeat, lambda i: f"/v1/decisions/{decisions[i % n]}", client, h)
    measure(
        "diff, first page (50)",
        repeat,
        lambda i: f"/v1/decisions/{decisions[i % n]}/diff",
        client,
        h,
    )
    measure(
        "diff, cohort + metric filter",
        repeat,
        lambda i: f"/v1/decisions/{decisions[i % n]}/diff?cohort=billing&metric=token_f1",
        client,
        h,
    )
    measure(
        "diff, deep page (offset 4000)",
        repeat,
        lambda i: f"/v1/decisions/{decisions[i % n]}/diff?offset=4000&limit=50",
        client,
        h,
    )
    measure(
        "slice summary", repeat, lambda i: f"/v1/decisions/{decisions[i % n]}/slices", client, h
    )
    measure(
        "decision timeline (100)", repeat, lambda i: f"/v1/families/{family}/decisions", client, h
    )


def explain(engine: object, decision_id: int) -> None:
    from service.db.models import GateDecision
    from service.diffs import DiffFilters, page_statements, pair_values

    sessionmaker = make_sessionmaker(engine)  # type: ignore[arg-type]
    with unit_of_work(sessionmaker) as session:
        decision = session.get_one(GateDecision, decision_id)
        stored = decision.n_pairs is not None
        statement = page_statements(stored, DiffFilters())[0].params(
            pair_values(decision, DiffFilters()),
            decision=decision.id,
            n_pairs=decision.n_pairs,
            offset=0,
            limit=50,
        )
        compiled = statement.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        plan = session.execute(text(f"EXPLAIN ANALYZE {compiled}")).scalars().all()
    print("\nplan of the diff page (first 50, with examples and outputs):")
    for line in plan:
        print("  " + line)


if __name__ == "__main__":
    main()
