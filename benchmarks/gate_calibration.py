"""Calibration of the gate's verdicts by simulation: 10,000 seeded draws per scenario.

    python benchmarks/gate_calibration.py [--draws 10000]

Prints, per scenario, the share of draws that fail / pass / stay inconclusive, where the
true paired change is known (alpha = 0.05, tolerance 0.03): at the boundary (-tolerance)
a fail is a false block and a pass a false pass; at -2 x tolerance with the n the power
formula asks for, the fail share is the power; nine rules at their boundary give the
family-wise false-block rate with and without Holm. Every draw runs the gate's own
:func:`service.gate.stats.paired_comparison` (see :mod:`service.gate.calibration`).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.gate.calibration import Rates, binary_rates, continuous_rates, family_false_block
from service.gate.power import required_n

TOL = 0.03
ALPHA = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=10_000)
    draws = parser.parse_args().draws
    mc = math.sqrt(ALPHA * (1 - ALPHA) / draws)
    print(f"{draws} draws per scenario; Monte Carlo s.e. at 5 %: {mc:.4f}; tolerance {TOL}")
    print(f"{'scenario':58} {'fail':>7} {'pass':>7} {'inconcl':>7}")
    start = time.perf_counter()
    rows: list[tuple[str, Rates]] = []
    for n in (16, 50, 200):
        rows.append((f"t: change -t, sd 0.1, n={n}", continuous_rates(-TOL, 0.1, n, TOL, draws, n)))
    rows.append(
        ("t: change 0, sd 0.1, n=50 (mde 0.036 > t)", continuous_rates(0, 0.1, 50, TOL, draws, 1))
    )
    n = required_n(0.1, TOL, ALPHA) or 0
    rows.append(
        (f"t: change -2t, sd 0.1, needed n={n}", continuous_rates(-2 * TOL, 0.1, n, TOL, draws, 2))
    )
    for p_loss, p_gain, size in ((0.08, 0.05, 67), (0.03, 0.0, 67), (0.05, 0.02, 200)):
        rates = binary_rates(p_loss, p_gain, size, TOL, draws, 3)
        rows.append((f"binary: change -t (lose {p_loss}, gain {p_gain}), n={size}", rates))
    rows.append(
        (
            "binary: change 0 (lose 0.02, gain 0.02), n=400",
            binary_rates(0.02, 0.02, 400, TOL, draws, 4),
        )
    )
    sd = math.sqrt(0.10 - 0.06**2)
    n = required_n(sd, TOL, ALPHA) or 0
    rows.append(
        (
            f"binary: change -2t (lose 0.08, gain 0.02), needed n={n}",
            binary_rates(0.08, 0.02, n, TOL, draws, 5),
        )
    )
    for name, r in rows:
        print(f"{name:58} {r.fail:7.2%} {r.passed:7.2%} {r.inconclusive:7.2%}")
    raw, holm = family_false_block(9, 0.1, 50, TOL, draws, 6)
    print(f"{'9 rules each at -t, n=50: any fail, no correction':58} {raw:7.2%}")
    print(f"{'9 rules each at -t, n=50: any fail, Holm':58} {holm:7.2%}")
    print(f"elapsed {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
