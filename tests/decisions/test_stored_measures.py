"""What a decision stores for the sweep view, the slice summary and the diffs equals what
the scores give when it is computed again (as it is for a decision stored before them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, func, select, update

from service.api.schemas.sweeps import SweepRuleOut
from service.db.models import DecisionPair, GateDecision
from service.db.session import unit_of_work
from tests.seeding import seed_sweeps

DIFF_QUERIES = (
    "",
    "metric=token_f1&cohort=billing",
    "domain=out&offset=20&limit=30",
    "offset=300&limit=50",  # the last, partial page (30 of 330)
    "offset=1000",  # past the end: no items, the total still counted
)


def test_stored_numbers_slices_and_diffs_equal_recomputed(
    client: TestClient, get: Callable[[str], Any]
) -> None:
    sessionmaker = client.app.state.sessionmaker  # type: ignore[attr-defined]
    with unit_of_work(sessionmaker) as session:
        seeded = seed_sweeps(session, family="stored", n_candidates=3, n_examples=60)
    url = f"/v1/sweeps/stored/{seeded.sweeps[0]}"

    statements: list[str] = []
    engine = client.app.state.engine  # type: ignore[attr-defined]
    record = lambda *args: statements.append(str(args[2]))  # noqa: E731
    event.listen(engine, "before_cursor_execute", record)
    try:
        stored = get(url)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # (the webhook sender polls on its own thread; SQLite's BEGIN is a statement here)
    statements = [s for s in statements if s.startswith("SELECT") and "webhook" not in s]
    assert len(statements) == 2, statements  # the token check and the sweep's one query
    assert not [s for s in statements if "FROM scores" in s]
    assert [r["decision_id"] for r in stored["rows"]] == seeded.decision_ids
    assert all(r["in_domain_lift"] is not None for r in stored["rows"])
    assert stored["rows"][-1]["lift_ci_low"] > 0  # the strongest run lifts significantly
    for row in stored["rows"]:  # each row: the charted numbers of its decision's rules
        full = get(f"/v1/decisions/{row['decision_id']}")["rules"]
        assert row["rules"] == [{k: r[k] for k in SweepRuleOut.model_fields} for r in full]
    slices = {d: get(f"/v1/decisions/{d}/slices") for d in seeded.decision_ids}
    assert all(len(s["slices"]) == 5 for s in slices.values())
    pages = [f"/v1/decisions/{d}/diff?{q}" for d in seeded.decision_ids for q in DIFF_QUERIES]
    diffs = {page: get(page) for page in pages}
    first = diffs[pages[0]]
    assert first["total"] == 60 * 4 + 30 * 3  # 4 metrics on every example, 3 on one half
    deltas = [item["delta"] for item in first["items"]]
    assert deltas == sorted(deltas)
    assert len(deltas) == 50
    assert len(diffs[pages[3]]["items"]) == 30
    assert diffs[pages[4]]["items"] == []
    assert diffs[pages[4]]["total"] == 330

    with unit_of_work(sessionmaker) as session:
        rows = session.scalars(select(GateDecision)).all()
        assert all(r.sweep_measures and r.slice_summary for r in rows)
        for row in rows:
            stored_pairs = select(func.count()).where(DecisionPair.decision_id == row.id)
            assert row.n_pairs == session.scalar(stored_pairs) == first["total"]
        session.execute(
            update(GateDecision).values(sweep_measures=None, slice_summary=None, n_pairs=None)
        )
    assert get(url) == stored  # computed from the scores: the same numbers
    assert {page: get(page) for page in pages} == diffs  # joined from the scores
    for decision_id, summary in slices.items():
        assert get(f"/v1/decisions/{decision_id}/slices") == summary
        named = get(f"/v1/decisions/{decision_id}/slices?metric={summary['metric']}")
        assert named == summary

    other = get(f"{url}?metric=relevance")  # another lift metric: computed, not the stored
    assert {r["lift_metric"] for r in other["rows"]} == {"relevance"}
    assert [r["in_domain_lift"] for r in other["rows"]] != [
        r["in_domain_lift"] for r in stored["rows"]
    ]
