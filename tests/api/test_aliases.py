"""Aliases and the promotion history (read side), on SQLite and PostgreSQL.

Alias moves belong to the promotion code; here the rows are written with the ORM
the way a promotion writes them, and read back through ``service.aliases`` and
``GET /v1/promotions``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.aliases import get_alias, list_promotions
from service.db.models import Alias, Promotion
from service.db.session import unit_of_work
from service.errors import InvalidRequest
from service.families import get_family
from tests.checkpoint_files import api_candidate, api_family, write_lora_adapter

Headers = dict[str, str]


def _move(client: TestClient, family: str, alias: str, to: int, **audit: Any) -> int:
    """Point ``alias`` at candidate ``to`` and record the move, as a promotion does."""
    with unit_of_work(client.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        fam = get_family(session, family)
        row = get_alias(session, fam, alias)
        before = row.candidate_id if row else None
        if row is None:
            session.add(Alias(family_id=fam.id, name=alias, candidate_id=to))
        else:
            row.candidate_id = to
        promotion = Promotion(
            family_id=fam.id,
            alias=alias,
            from_candidate_id=before,
            to_candidate_id=to,
            actor=audit.get("actor", "ci"),
            override=audit.get("override", False),
            reason=audit.get("reason"),
        )
        session.add(promotion)
        session.flush()
        return promotion.id


@pytest.fixture
def history(client: TestClient, auth: Headers, checkpoint_root: Path) -> dict[str, int]:
    api_family(client, auth, "support-bot")
    api_family(client, auth, "other-bot")
    ids = {}
    for name, family in (("a", "support-bot"), ("b", "support-bot"), ("c", "other-bot")):
        path = write_lora_adapter(checkpoint_root / name)
        ids[name] = api_candidate(client, auth, path, family=family).json()["id"]
    ids["p1"] = _move(client, "support-bot", "production", ids["a"])
    ids["p2"] = _move(client, "other-bot", "production", ids["c"])
    ids["p3"] = _move(
        client, "support-bot", "production", ids["b"], actor="alice", override=True, reason="hot"
    )
    ids["p4"] = _move(client, "support-bot", "staging", ids["a"])
    return ids


def test_get_alias_and_domain_listing(client: TestClient, history: dict[str, int]) -> None:
    with unit_of_work(client.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        family = get_family(session, "support-bot")
        production = get_alias(session, family, "production")
        assert production is not None
        assert production.candidate_id == history["b"]
        assert get_alias(session, family, "canary") is None
        rows = list_promotions(session, family.id)
        assert [r.id for r in rows] == [history["p4"], history["p3"], history["p1"]]
        assert [r.id for r in list_promotions(session, None, limit=2)] == [
            history["p4"],
            history["p3"],
        ]
        with pytest.raises(InvalidRequest):
            list_promotions(session, None, limit=0)


def test_promotion_history_endpoint(
    client: TestClient, auth: Headers, history: dict[str, int]
) -> None:
    def ids(**params: Any) -> list[int]:
        response = client.get("/v1/promotions", params=params, headers=auth)
        assert response.status_code == 200, response.text
        return [row["id"] for row in response.json()["items"]]

    assert ids() == [history[p] for p in ("p4", "p3", "p2", "p1")]
    assert ids(family="support-bot") == [history[p] for p in ("p4", "p3", "p1")]
    assert ids(family="other-bot") == [history["p2"]]
    assert ids(family="support-bot", alias="production") == [history["p3"], history["p1"]]
    assert ids(offset=1, limit=2) == [history["p3"], history["p2"]]

    rows = client.get("/v1/promotions?family=support-bot", headers=auth).json()["items"]
    override = rows[1]
    assert override["family"] == "support-bot"
    assert (override["from_candidate_id"], override["to_candidate_id"]) == (
        history["a"],
        history["b"],
    )
    assert (override["actor"], override["override"], override["reason"]) == ("alice", True, "hot")
    assert override["decision_id"] is None
    assert rows[2]["from_candidate_id"] is None
    assert override["created_at"].endswith("Z")

    response = client.get("/v1/promotions?family=nope", headers=auth)
    assert (response.status_code, response.json()["error"]) == (404, "FamilyNotFound")
    assert client.get("/v1/promotions?limit=501", headers=auth).status_code == 422


def test_empty_history_and_scopes(client: TestClient, token_for: Callable[[str], str]) -> None:
    read = {"Authorization": f"Bearer {token_for('read')}"}
    assert client.get("/v1/promotions").status_code == 401
    response = client.get("/v1/promotions", headers=read)
    assert response.status_code == 200
    assert response.json()["items"] == []
