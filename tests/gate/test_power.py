"""Power figures: Student quantiles, the examples needed found by fixed point."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from service.gate.power import minimum_detectable_effect, required_n


def test_power_figures_use_student_quantiles() -> None:
    q = stats.t.ppf(0.95, 99) + stats.t.ppf(0.8, 99)
    assert minimum_detectable_effect(0.2, 100, 0.05) == pytest.approx(q * 0.02)
    n = required_n(0.2, 0.05, 0.05)
    assert n is not None
    q_n = stats.t.ppf(0.95, n - 1) + stats.t.ppf(0.8, n - 1)
    assert n == math.ceil((q_n * 0.2 / 0.05) ** 2)
    assert required_n(0.2, 0.0, 0.05) is None
