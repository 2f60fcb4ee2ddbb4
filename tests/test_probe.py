"""The solved frozen phase (kerasxfer.probe): scikit-learn's optimum, written into a Keras head exactly.

The fast tests here use real features without TensorFlow (the 8x8 digits' pixels, and the same pixels
squeezed to a ~0.01 spread as an ImageNet backbone's pooled features are on dark, low-contrast scans);
tests/test_transfer.py's solved-head test runs the real EfficientNet-Lite0 path.
"""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler

from kerasxfer import probe


def _digits(classes, n=300, seed=0, squeeze=1.0):
    d = load_digits()
    keep = np.isin(d.target, classes)
    x, y = d.data[keep].astype(np.float64), d.target[keep]
    y = np.searchsorted(np.asarray(classes), y)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))[:n]
    x, y = x[idx] * squeeze + 0.5, y[idx]  # squeeze: features that barely vary around an offset
    a, b = int(0.6 * len(y)), int(0.8 * len(y))
    return (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])


@pytest.mark.parametrize("classes", [(1, 7), (0, 3, 5, 8)])
def test_the_solved_probe_is_scikit_learns_standardised_logistic_regression(classes):
    (xt, yt), (xv, yv), (xs, ys) = _digits(classes)
    p = probe.solve(xt, yt, xv, yv, len(classes))
    assert p is not None and p.converged and p.C in probe.C_GRID
    ref = LogisticRegression(C=p.C, max_iter=5000, tol=1e-8)
    scaler = StandardScaler().fit(xt)
    ref.fit(scaler.transform(xt), yt)
    want = ref.predict_proba(scaler.transform(xs))
    got = p.probabilities(xs)
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.99
    assert abs(log_loss(ys, got, labels=range(len(classes))) - log_loss(ys, want, labels=range(len(classes)))) < 1e-3
    # what it reports is what its probabilities give
    assert p.train_accuracy == pytest.approx(np.mean(p.probabilities(xt).argmax(1) == yt))
    assert p.val_accuracy == pytest.approx(np.mean(p.probabilities(xv).argmax(1) == yv))
    # and the C it kept has the best validation accuracy of the grid
    assert p.val_accuracy == max(acc for _, acc, _ in p.grid)


def test_features_that_barely_vary_are_fitted_once_standardised():
    """Pooled features with a spread of ~0.01 (the scans' regime): the standardised probe fits its training
    images, and its standardisation undoes the squeeze (the same solution as on the unsqueezed pixels)."""
    (xt, yt), (xv, yv), (xs, ys) = _digits((1, 7), squeeze=0.0006)
    assert xt.std(0).mean() < 0.01
    p = probe.solve(xt, yt, xv, yv, 2)
    assert p.train_accuracy >= 0.97
    assert np.mean(p.probabilities(xs).argmax(1) == ys) >= 0.9
    (ut, _), (uv, _), (us, _) = _digits((1, 7))
    same = probe.solve(ut, yt, uv, yv, 2)
    assert same.C == p.C and np.allclose(same.probabilities(us), p.probabilities(xs), atol=1e-4)


def test_a_class_missing_from_training_is_never_predicted_and_one_class_is_no_problem_to_solve():
    (xt, yt), (xv, yv), _ = _digits((0, 3, 5))
    keep = yt != 2
    p = probe.solve(xt[keep], yt[keep], xv, yv, 3)
    assert p.kernel.shape == (64, 3) and np.all(p.kernel[:, 2] == 0)
    assert not np.any(p.probabilities(xv).argmax(1) == 2)
    assert probe.solve(xt[yt == 0], yt[yt == 0], xv, yv, 3) is None


def test_balanced_class_weights_count_a_rare_class_as_much_as_a_common_one():
    (xt, yt), (xv, yv), _ = _digits((1, 7), n=360)
    rare = np.flatnonzero(yt == 1)[:8]
    keep = np.concatenate([rare, np.flatnonzero(yt == 0)])
    plain = probe.solve(xt[keep], yt[keep], xv, yv, 2, grid=(0.001,))
    balanced = probe.solve(xt[keep], yt[keep], xv, yv, 2, grid=(0.001,), class_weight="balanced")
    p_plain = plain.probabilities(xv)[yv == 1, 1].mean()
    p_bal = balanced.probabilities(xv)[yv == 1, 1].mean()
    assert p_bal > p_plain + 0.05


def test_ties_on_validation_accuracy_go_to_the_lower_loss():
    (xt, yt), (xv, yv), _ = _digits((0, 1))  # every C separates 0 from 1 on validation
    p = probe.solve(xt, yt, xv, yv, 2)
    tied = [(c, loss) for c, acc, loss in p.grid if acc == p.val_accuracy]
    assert len(tied) > 1
    assert p.val_loss == pytest.approx(min(loss for _, loss in tied))
    rec = p.record()
    assert rec["C"] == p.C and len(rec["grid"]) == len(probe.C_GRID) and "logistic regression" in rec["method"]


def test_the_solution_does_not_depend_on_the_threads_the_process_has():
    """A Ray worker starts with OMP_NUM_THREADS = its CPUs, the machine's own process with all of them: the
    solved head must be the same to the last bit either way, or fine-tuning amplifies the difference and the
    study on a cluster is not the local study."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    d = load_digits()
    # 1,280 features per image as EfficientNet-Lite0 pools them: the digits' pixels through a fixed projection
    x = np.tanh(d.data[:900] @ rng.normal(0, 0.05, (64, 1280))) * 0.01 + 0.3
    y = d.target[:900]
    solved = []
    for threads in (1, 2, 8):
        with threadpool_limits(limits=threads):
            p = probe.solve(x[:700], y[:700], x[700:], y[700:], 10, grid=probe.C_GRID[-3:])
        solved.append((p.kernel.tobytes(), p.bias.tobytes(), p.mean.tobytes(), p.scale.tobytes(), p.C))
    assert solved[0] == solved[1] == solved[2]
