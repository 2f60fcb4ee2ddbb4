"""Significance of a difference between two classifiers tested on the same images."""

from __future__ import annotations

import math

import numpy as np

#: p-values below this call a difference larger than the noise.
NOISE_P = 0.05


def mcnemar(labels, pred_a, pred_b) -> dict:
    """McNemar's paired test of two classifiers on the same images.

    ``b``: images A gets right and B wrong; ``c``: the reverse.  With
    ``b + c < 25`` the exact two-sided binomial p-value is used, otherwise the
    chi-square statistic with continuity correction, ``(|b - c| - 1)^2 / (b + c)``.
    """
    y, a, b_ = (np.asarray(v) for v in (labels, pred_a, pred_b))
    if not (len(y) == len(a) == len(b_)):
        raise ValueError("McNemar needs predictions on the same images")
    ra, rb = a == y, b_ == y
    b = int(np.sum(ra & ~rb))
    c = int(np.sum(~ra & rb))
    n = b + c
    if n == 0:
        return {"b": b, "c": c, "statistic": 0.0, "p_value": 1.0, "method": "none (no disagreement)"}
    if n < 25:
        k = min(b, c)
        p = min(1.0, 2.0 * sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n)
        return {"b": b, "c": c, "statistic": float(k), "p_value": p, "method": "exact binomial"}
    stat = (abs(b - c) - 1.0) ** 2 / n
    p = math.erfc(math.sqrt(stat / 2.0))  # chi-square, 1 degree of freedom
    return {"b": b, "c": c, "statistic": stat, "p_value": p, "method": "chi-square, continuity corrected"}
