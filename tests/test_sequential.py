"""The group-sequential stopping rule of a cross-validated study: its boundaries and its error rate."""

import numpy as np
import pytest

from kerasxfer.reporting import sequential, stats


@pytest.mark.parametrize(
    "fractions,published",
    [
        # Lan-DeMets O'Brien-Fleming-type boundaries, two-sided alpha 0.05, equally spaced looks, as tabulated in
        # Jennison & Turnbull (2000) and computed by R's ldbounds / gsDesign: an outside oracle for the integration.
        ([1.0], [1.960]),
        ([0.5, 1.0], [2.963, 1.969]),
        ([0.25, 0.5, 0.75, 1.0], [4.333, 2.963, 2.359, 2.014]),
        ([0.2, 0.4, 0.6, 0.8, 1.0], [4.877, 3.357, 2.680, 2.290, 2.031]),
    ],
)
def test_boundaries_match_the_published_obrien_fleming_values(fractions, published):
    assert sequential.boundaries(fractions) == pytest.approx(published, abs=2e-3)


def test_alpha_is_spent_once_in_total():
    levels = sequential.nominal_levels([0.2, 0.4, 0.6, 0.8, 1.0])
    assert levels == sorted(levels) and levels[-1] < 0.05 and levels[0] < 1e-4
    assert sequential.spent(1.0) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        sequential.boundaries([0.5, 0.4, 1.0])


def _simulate(p_a, p_b, fold_sizes, studies, seed):
    """Look after each fold at the pooled McNemar test (the real one of the report); the fold it stops at or 0."""
    rng = np.random.default_rng(seed)
    levels = sequential.nominal_levels(sequential.fractions_of(fold_sizes))
    n = sum(fold_sizes)
    ends = np.cumsum(fold_sizes)
    stopped = []
    for _ in range(studies):
        y = np.zeros(n, int)
        a = np.where(rng.random(n) < p_a, 0, 1)  # correct with probability p_a
        b = np.where(rng.random(n) < p_b, 0, 1)
        fold = 0
        for k, end in enumerate(ends, 1):
            if stats.mcnemar(y[:end], a[:end], b[:end])["p_value"] < levels[k - 1]:
                fold = k
                break
        stopped.append(fold)
    return np.asarray(stopped)


def test_no_true_difference_names_a_winner_at_most_five_percent_of_the_time():
    """4,000 simulated 5-fold studies of 230 images whose two arms are equally good (80 % each, independent)."""
    stopped = _simulate(0.8, 0.8, [46] * 5, 4000, seed=0)
    rate = float(np.mean(stopped > 0))
    assert rate <= 0.05, rate
    assert 0.01 < rate  # it is a test, not a rule that never stops
    naive = _naive_rate(0.8, 0.8, [46] * 5, 4000)  # looking at p < 0.05 after every fold would not keep 5 %
    assert naive > 0.06, naive


def _naive_rate(p_a, p_b, fold_sizes, studies):
    rng = np.random.default_rng(1)
    n, ends, hits = sum(fold_sizes), np.cumsum(fold_sizes), 0
    for _ in range(studies):
        y = np.zeros(n, int)
        a = np.where(rng.random(n) < p_a, 0, 1)
        b = np.where(rng.random(n) < p_b, 0, 1)
        hits += any(stats.mcnemar(y[:e], a[:e], b[:e])["p_value"] < 0.05 for e in ends)
    return hits / studies


def test_a_large_difference_stops_after_one_or_two_folds():
    stopped = _simulate(0.95, 0.55, [46] * 5, 500, seed=2)
    assert np.mean((stopped >= 1) & (stopped <= 2)) >= 0.9, np.bincount(stopped)
