"""Stopping a cross-validated study when the answer is known: a group-sequential rule declared before any fold runs.

A study with K folds tests its arms fold after fold; after fold k the pooled
out-of-fold predictions of folds 1..k hold a share ``t_k`` of the pool (the
*information fraction*).  Looking at the paired test after every fold and
stopping at the first p below 0.05 would call a winner far more often than
5 % when there is none.  The Lan–DeMets alpha-spending rule with the
O'Brien–Fleming-type spending function

    alpha(t) = 4 - 4 * Phi(z_{1 - alpha/4} / sqrt(t))    (two-sided: alpha/2 on each side)

spends almost nothing early and nearly all of ``alpha`` at the last look:
:func:`boundaries` gives, for the planned fractions, the |z| each look must
reach so that the chance of crossing at *any* look when the arms do not
differ is ``alpha`` overall (computed by numerical integration of the
Brownian motion the cumulative statistic follows).  A look *crosses* when
the usual verdict names a winner with its paired test below the look's
nominal level (:func:`nominal_levels`); the last look uses its own level
too, so the whole procedure, final verdict included, keeps its error rate
(``tests/test_sequential.py`` simulates it).  No TensorFlow.
"""

from __future__ import annotations

import math

import numpy as np

#: Overall two-sided false-winner rate of the sequential rule.
ALPHA = 0.05
_GRID = 0.005  # step of the integration grid on the Brownian motion's value
_SPAN = 8.0  # the grid covers [-_SPAN, _SPAN] (standard deviations at t = 1)


def _phi(x):
    return np.exp(-0.5 * np.asarray(x, float) ** 2) / math.sqrt(2 * math.pi)


def _z(p: float) -> float:
    """The standard normal quantile: Phi(_z(p)) = p (bisection on erfc; no SciPy needed)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def spent(t: float, alpha: float = ALPHA) -> float:
    """alpha(t): the error the O'Brien–Fleming-type spending function allows by information fraction ``t``."""
    if t <= 0:
        return 0.0
    return min(alpha, 2.0 * math.erfc(_z(1 - alpha / 4) / math.sqrt(t) / math.sqrt(2)))


def _beyond(s, b):
    """The share of each grid cell [s - h/2, s + h/2] that lies beyond +-b (so the boundary moves continuously)."""
    return np.clip((s + _GRID / 2 - b) / _GRID, 0, 1) + np.clip((-b - s + _GRID / 2) / _GRID, 0, 1)


def _crossing(f, s, b) -> float:
    """The probability mass of the density ``f`` on the grid ``s`` beyond +-b."""
    return float(np.sum(f * _beyond(s, b)) * _GRID)


def boundaries(fractions, alpha: float = ALPHA) -> list:
    """The two-sided |z| boundary of each look at the increasing information ``fractions`` (the last 1)."""
    t = [float(f) for f in fractions]
    if not t or any(b <= a for a, b in zip(t, t[1:])) or not 0 < t[0] or abs(t[-1] - 1.0) > 1e-9:
        raise ValueError(f"information fractions must increase from above 0 to 1, got {fractions}")
    s = np.arange(-_SPAN, _SPAN + _GRID / 2, _GRID)  # the Brownian motion's value B(t)
    density, prev_t, prev_spent, out = None, 0.0, 0.0, []
    for tk in t:
        dt = tk - prev_t
        if density is None:
            f = _phi(s / math.sqrt(dt)) / math.sqrt(dt)
        else:  # the continuing paths' density, carried forward by an N(0, dt) step
            kernel = _phi((s[:, None] - s[None, :]) / math.sqrt(dt)) / math.sqrt(dt)
            f = kernel @ density * _GRID
        target = spent(tk, alpha) - prev_spent
        z_scale = math.sqrt(tk)

        lo, hi = 0.0, _SPAN / z_scale
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if _crossing(f, s, mid * z_scale) > target:
                lo = mid
            else:
                hi = mid
        c = 0.5 * (lo + hi)
        out.append(c)
        density = f * (1.0 - _beyond(s, c * z_scale))
        prev_t, prev_spent = tk, prev_spent + _crossing(f, s, c * z_scale)
    return out


def nominal_levels(fractions, alpha: float = ALPHA) -> list:
    """The two-sided p-value each look's paired test must fall below: 2 * (1 - Phi(boundary))."""
    return [math.erfc(c / math.sqrt(2)) for c in boundaries(fractions, alpha)]


def fractions_of(fold_sizes) -> list:
    """Information fractions of the looks after each fold: the share of the pool tested so far."""
    total = float(sum(fold_sizes))
    return [float(v) / total for v in np.cumsum(fold_sizes)]


def rule_sentence(folds: int, alpha: float = ALPHA) -> str:
    """How the rule is described in the report and the log."""
    return (
        f"a group-sequential rule declared before the first fold: after each of the {folds} folds the pooled "
        f"out-of-fold result is tested against a Lan–DeMets O'Brien–Fleming boundary (overall two-sided alpha "
        f"{alpha:g}); the study stops at the first fold whose verdict crosses it"
    )
