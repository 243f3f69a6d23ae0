"""A test whose services are down skips on a developer's machine and fails under CI."""

from __future__ import annotations

import pytest

from tests.services import require


def test_a_missing_service_fails_under_ci_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true and .*Redis not reachable"):
        require(None, "Redis not reachable at redis://nowhere")
    require(None, None)  # all up: carries on


def test_a_missing_service_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Redis not reachable"):
        require("Redis not reachable at redis://nowhere")
