"""The frozen phase solved: a linear probe fitted to the optimum on the frozen backbone's features (no TensorFlow).

With the backbone frozen, training the head is a convex problem on fixed
features, so it is solved rather than trained epoch by epoch (the CLIP
paper's linear-probe protocol; LP-FT then fine-tunes from this head):

* the features are standardised with the training images' mean and standard
  deviation (scikit-learn's ``StandardScaler`` rule: a feature that does not
  vary keeps scale 1), so their scale does not matter: an ImageNet backbone
  on images far from ImageNet (dark, low-contrast scans) gives pooled
  features that vary by ~0.01 across images, which a head trained by Adam on
  the raw features barely separates;
* L2-regularised multinomial logistic regression (L-BFGS, to convergence)
  is fitted for every inverse strength ``C`` of :data:`C_GRID` (weakest
  regularisation last, each fit warm-started from the one before), and the one
  with the best validation accuracy (ties: the lower validation loss, then
  the stronger regularisation) is kept.

:func:`solve` returns a :class:`Probe`: the standardisation and a softmax
layer's kernel and bias that compute exactly scikit-learn's probabilities,
so the transfer model's head (``head_norm`` -> ``head_dropout`` ->
``head_dense``) takes them as they are.

The fit runs on one BLAS/OpenMP thread, whatever the process has: a
multi-threaded matrix product sums in another order, and a last-bit
difference in the head is amplified by fine-tuning, so a run on a Ray worker
(which Ray starts with ``OMP_NUM_THREADS`` = its CPUs) would differ from the
same run on the machine's own process. On a few thousand images the single
thread costs well under a second.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings

import numpy as np

log = logging.getLogger("kerasxfer")

#: Inverse L2 strengths tried (log-spaced, 0.001 to 10, as the CLIP probe sweeps its regulariser).
C_GRID = tuple(float(10.0**k) for k in np.arange(-3.0, 1.01, 0.5))
#: L-BFGS iterations at most per fit (converged fits on a few hundred images take 10-100), and its tolerance
#: (tighter than scikit-learn's 1e-4: the head is the optimum, not near it).
MAX_ITER = 2000
TOL = 1e-6


@dataclasses.dataclass(frozen=True)
class Probe:
    """A solved linear head: standardise with ``mean``/``scale``, then softmax(x @ kernel + bias)."""

    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    kernel: np.ndarray  # (d, k): on standardised features
    bias: np.ndarray  # (k,)
    C: float
    train_accuracy: float
    train_loss: float
    val_accuracy: float
    val_loss: float
    grid: tuple  # ((C, val_accuracy, val_loss), ...) in the order tried
    seconds: float
    converged: bool

    @property
    def variance(self) -> np.ndarray:
        return self.scale**2

    def probabilities(self, features) -> np.ndarray:
        """Softmax probabilities of raw (unstandardised) ``features``, in float64."""
        z = (np.asarray(features, np.float64) - self.mean) / self.scale @ self.kernel + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def record(self) -> dict:
        """What history.json keeps of the solve (no arrays)."""
        return {
            "method": "L2 multinomial logistic regression (L-BFGS) on standardised features",
            "C": self.C,
            "train_accuracy": self.train_accuracy,
            "train_loss": self.train_loss,
            "val_accuracy": self.val_accuracy,
            "val_loss": self.val_loss,
            "grid": [list(g) for g in self.grid],
            "converged": self.converged,
        }


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, scale)`` of ``x``'s columns, as scikit-learn's ``StandardScaler`` computes them."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.asarray(x, np.float64))
    return scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64)


def _loss(probs: np.ndarray, y: np.ndarray, weights=None) -> float:
    p = np.clip(probs[np.arange(len(y)), y], 1e-15, 1.0)
    return float(np.average(-np.log(p), weights=weights)) if len(y) else float("nan")


def _accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(probs.argmax(axis=1) == y)) if len(y) else float("nan")


def _softmax_layer(model, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Kernel (d, k) and bias (k,) of a softmax layer with ``model``'s probabilities, over all ``num_classes``.

    A binary scikit-learn model holds one weight vector w (p(class 1) = sigmoid(w x + b)); softmax over
    (-w/2, w/2) is the same function.  A class with no training image gets weight 0 and a bias far below the
    others: it is never predicted, as scikit-learn cannot predict it.
    """
    coef, intercept = np.array(model.coef_, np.float64), np.array(model.intercept_, np.float64)
    classes = np.asarray(model.classes_, int)
    if coef.shape[0] == 1:  # binary
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    kernel = np.zeros((coef.shape[1], num_classes))
    bias = np.full(num_classes, float(intercept.min()) - 50.0)
    kernel[:, classes] = coef.T
    bias[classes] = intercept
    return kernel, bias


def solve(*args, **kwargs) -> Probe | None:
    """The probe with the best validation accuracy over ``grid`` (see the module docstring); None when the
    training images hold fewer than two classes (nothing to fit).

    Arguments as :func:`_solve`; the fit runs on one BLAS/OpenMP thread, so its result does not depend on
    the threads the process has.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _solve(*args, **kwargs)


def _solve(
    train_x,
    train_y,
    val_x,
    val_y,
    num_classes: int,
    grid=C_GRID,
    class_weight: str = "none",
    max_iter: int = MAX_ITER,
) -> Probe | None:
    """See :func:`solve`.

    ``class_weight``: ``"balanced"`` weights each image by ``n / (K * n_c)`` of its class in the fit (and the
    training loss it reports), as the epoch-trained head does.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    train_y, val_y = np.asarray(train_y, int), np.asarray(val_y, int)
    if len(np.unique(train_y)) < 2 or not len(val_y):
        return None
    mean, scale = standardisation(train_x)
    xt = (np.asarray(train_x, np.float64) - mean) / scale
    weights = None
    if class_weight == "balanced":
        counts = np.bincount(train_y, minlength=num_classes)
        weights = len(train_y) / (np.count_nonzero(counts) * counts[train_y])
    best: tuple | None = None
    tried = []
    # The grid as a regularisation path: each fit starts from the previous (more regularised) solution, which
    # converges to the same optimum several times faster than from zero.
    model = LogisticRegression(max_iter=max_iter, tol=TOL, warm_start=True)
    for c in sorted(grid):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.set_params(C=c).fit(xt, train_y, sample_weight=weights)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        kernel, bias = _softmax_layer(model, num_classes)
        probe = Probe(mean, scale, kernel, bias, float(c), 0.0, 0.0, 0.0, 0.0, (), 0.0, converged)
        pv = probe.probabilities(val_x)
        acc, loss = _accuracy(pv, val_y), _loss(pv, val_y)
        tried.append((float(c), acc, loss))
        # the best validation accuracy; ties: the lower validation loss, then the smaller C (stronger L2)
        if best is None or (acc, -loss) > (best[1], -best[2]):
            best = (probe, acc, loss)
    assert best is not None  # the grid is not empty
    probe, acc, loss = best
    pt = probe.probabilities(train_x)
    return dataclasses.replace(
        probe,
        train_accuracy=_accuracy(pt, train_y),
        train_loss=_loss(pt, train_y, weights),
        val_accuracy=acc,
        val_loss=loss,
        grid=tuple(tried),
        seconds=time.perf_counter() - t0,
    )
