"""Family-wise error across a policy's rules: Holm's step-down correction.

A policy judges several rules at once; with nine independent rules at alpha = 0.05 each, a
candidate that regressed nowhere beyond its tolerances would be blocked ~37 % of the time at
the boundary. Holm's step-down adjusts the rules' *fail* p-values so that the chance of any
false block stays <= alpha (``family_wise: holm`` in a policy, applied by
:func:`service.gate.decision.family_wise`). It does not touch *pass* (non-inferiority is
shown per rule at alpha): the gate's two errors are a false block (family-wise, Holm) and a
false pass (per rule).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given.

    Rejecting every hypothesis whose adjusted p-value is < alpha keeps the family-wise
    error (any false rejection) <= alpha under any dependence between the tests.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, stepped)
    return [float(v) for v in adjusted]
