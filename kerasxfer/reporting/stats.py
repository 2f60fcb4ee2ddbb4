"""How sure the verdict is: paired tests, intervals, baselines and corrections for classifiers on the same images.

Everything here is numpy on per-image labels and predictions (no TensorFlow),
so the report recomputes every figure from what a run stored and an edited
number cannot disagree with its own test.

* :func:`mcnemar`: the paired test of two classifiers' accuracies;
* :func:`paired_test`: McNemar for accuracy, a sign-flip permutation test
  (its generalisation to any figure that is a weighted sum over images) for
  balanced accuracy;
* :func:`paired_interval`: a seeded, class-stratified paired bootstrap of the
  difference of a figure between two classifiers;
* :func:`wilson`: the 95 % Wilson score interval of an accuracy;
* :func:`holm`: Holm's step-down correction of several p-values;
* :func:`images_needed`: how many test images McNemar needs to see a
  difference of the observed size (80 % power);
* :func:`majority`: the do-nothing baseline, and :func:`imbalance`.
"""

from __future__ import annotations

import math

import numpy as np

from kerasxfer.records import FIGURES, Baseline

#: p-values below this call a difference larger than the noise.
NOISE_P = 0.05
#: Largest over smallest class count above which accuracy alone misleads: the verdict uses balanced accuracy.
IMBALANCE_RATIO = 1.5
#: Resamples of the paired bootstrap and sign flips of the permutation test (seeded: the same numbers every time).
RESAMPLES = 4000
_Z95 = 1.959963984540054
_Z80 = 0.8416212335729143  # one-sided, for 80 % power


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
        return {"b": b, "c": c, "n": int(len(y)), "statistic": 0.0, "p_value": 1.0, "method": "none (no disagreement)"}
    if n < 25:
        k = min(b, c)
        p = min(1.0, 2.0 * sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n)
        return {"b": b, "c": c, "n": int(len(y)), "statistic": float(k), "p_value": p, "method": "exact binomial"}
    stat = (abs(b - c) - 1.0) ** 2 / n
    p = math.erfc(math.sqrt(stat / 2.0))  # chi-square, 1 degree of freedom
    return {"b": b, "c": c, "n": int(len(y)), "statistic": stat, "p_value": p, "method": "chi-square, continuity corrected"}


# ------------------------------------------------------------------ figures
def _weights(labels, figure: str) -> np.ndarray:
    """Per-image weights ``w`` such that the figure of a classifier is ``sum(w * correct)``."""
    y = np.asarray(labels)
    if figure == "accuracy":
        return np.full(len(y), 1.0 / max(len(y), 1))
    if figure != "balanced accuracy":
        raise ValueError(f"unknown figure {figure!r}: use one of {FIGURES}")
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return 1.0 / (len(classes) * counts[inverse])


def figure_of(labels, predictions, figure: str) -> float:
    """``accuracy`` or ``balanced accuracy`` (mean recall over the classes present in ``labels``)."""
    y, p = np.asarray(labels), np.asarray(predictions)
    return float(np.sum(_weights(y, figure) * (p == y))) if len(y) else float("nan")


def macro_f1(labels, predictions) -> float:
    """Unweighted mean F1 over the classes in ``labels`` or ``predictions`` (scikit-learn's ``average="macro"``)."""
    y, p = np.asarray(labels), np.asarray(predictions)
    f1 = []
    for c in np.union1d(y, p):
        tp = np.sum((p == c) & (y == c))
        denom = np.sum(p == c) + np.sum(y == c)
        f1.append(2.0 * tp / denom if denom else 0.0)
    return float(np.mean(f1)) if f1 else float("nan")


def per_class(labels, predictions, class_names) -> dict:
    """``{class: {precision, recall, f1, support}}`` of the predictions (0 where a class is never predicted or
    never present, as scikit-learn's ``zero_division=0``)."""
    y, p = np.asarray(labels), np.asarray(predictions)
    out = {}
    for c, name in enumerate(class_names):
        tp, predicted, support = int(np.sum((p == c) & (y == c))), int(np.sum(p == c)), int(np.sum(y == c))
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[str(name)] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return out


def wilson(correct: int, n: int, z: float = _Z95) -> tuple:
    """The Wilson score interval of ``correct`` successes out of ``n`` (95 % by default)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def majority(labels) -> Baseline:
    """The majority-class baseline: the class a do-nothing classifier predicts, and the share it scores."""
    y = np.asarray(labels)
    counts = np.bincount(y) if len(y) else np.zeros(1, int)
    cls = int(np.argmax(counts))
    return Baseline(
        class_index=cls,
        accuracy=float(counts[cls] / max(len(y), 1)),
        balanced_accuracy=1.0 / max(int(np.count_nonzero(counts)), 1),
    )


def imbalance(labels) -> float:
    """Largest over smallest count of the classes present in ``labels`` (1 for balanced classes)."""
    counts = np.bincount(np.asarray(labels))
    counts = counts[counts > 0]
    return float(counts.max() / counts.min()) if len(counts) else 1.0


# ------------------------------------------------------------- paired tests
def paired_test(labels, pred_a, pred_b, figure: str = "accuracy", seed: int = 0) -> dict:
    """Is the difference of ``figure`` between A and B on the same images larger than the noise?

    Accuracy: McNemar (:func:`mcnemar`).  Balanced accuracy: a two-sided
    sign-flip permutation test, which asks the same question as McNemar: under
    "no difference" each image's two predictions are exchangeable, so the
    difference is compared with those of :data:`RESAMPLES` random swaps
    (seeded).  Both return ``p_value``, ``b`` and ``c``.
    """
    if figure == "accuracy":
        return mcnemar(labels, pred_a, pred_b)
    y, a, b = (np.asarray(v) for v in (labels, pred_a, pred_b))
    if not (len(y) == len(a) == len(b)):
        raise ValueError("a paired test needs predictions on the same images")
    d = _weights(y, figure) * ((a == y).astype(float) - (b == y).astype(float))
    observed = float(d.sum())
    disagree = int(np.count_nonzero(d))
    out = {
        "b": int(np.sum((a == y) & (b != y))),
        "c": int(np.sum((a != y) & (b == y))),
        "n": int(len(y)),
        "statistic": observed,
        "method": f"sign-flip permutation ({RESAMPLES} swaps)",
    }
    if disagree == 0:
        return dict(out, p_value=1.0, method="none (no disagreement)")
    rng = np.random.default_rng(seed)
    nz = d[d != 0]
    step = max(1, 2_000_000 // len(nz))  # sign flips per block: at most 2 million at a time
    null = np.concatenate(
        [
            np.abs((rng.integers(0, 2, size=(min(step, RESAMPLES - lo), len(nz)), dtype=np.int8) * 2 - 1) @ nz)
            for lo in range(0, RESAMPLES, step)
        ]
    )
    p = (1 + int(np.sum(null >= abs(observed) - 1e-12))) / (1 + RESAMPLES)
    return dict(out, p_value=min(1.0, p))


def paired_interval(labels, pred_a, pred_b, figure: str = "accuracy", seed: int = 0, level: float = 0.95) -> tuple:
    """The ``level`` interval of figure(A) - figure(B): a paired bootstrap over images, stratified by class.

    Each resample draws, within each class, as many of its images as it has,
    with replacement, and scores both classifiers on the same draw (paired);
    the class counts stay fixed, so balanced accuracy is defined in every
    resample.  Percentile interval of :data:`RESAMPLES` resamples, seeded.
    """
    y, a, b = (np.asarray(v) for v in (labels, pred_a, pred_b))
    d = (a == y).astype(float) - (b == y).astype(float)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    means = np.empty((len(classes), RESAMPLES))
    for i, c in enumerate(classes):
        dc = d[y == c]
        step = max(1, 2_000_000 // len(dc))  # resamples per block: at most 2 million draws (16 MB) at a time
        for lo in range(0, RESAMPLES, step):
            k = min(step, RESAMPLES - lo)
            means[i, lo : lo + k] = dc[rng.integers(0, len(dc), size=(k, len(dc)))].mean(axis=1)
    if figure == "accuracy":
        diffs = (counts[:, None] * means).sum(axis=0) / counts.sum()
    else:
        diffs = means.mean(axis=0)
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


def holm(p_values) -> list:
    """Holm's step-down adjusted p-values (same order as given): family-wise error kept at the nominal level."""
    p = list(p_values)
    order = sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def images_needed(b: int, c: int, n: int) -> int | None:
    """Test images McNemar needs to call a difference of the observed size real (p < 0.05) with 80 % power.

    From the observed rate of disagreements ``q = (b + c) / n`` and difference
    ``d = (b - c) / n`` (Connor's formula): ``n = (z_a sqrt(q) + z_b
    sqrt(q - d^2))^2 / d^2``.  None when no difference was observed at all.
    """
    if n <= 0 or b == c:
        return None
    q, d = (b + c) / n, abs(b - c) / n
    return int(math.ceil((_Z95 * math.sqrt(q) + _Z80 * math.sqrt(max(q - d * d, 0.0))) ** 2 / (d * d)))
