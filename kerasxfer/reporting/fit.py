"""Did a run fit its own training images?  Underfitting is a diagnosis, not "overfits" (no TensorFlow).

A run is judged against what it could reach on its training images:

* a transfer or control run whose frozen phase was solved (:mod:`kerasxfer.probe`): the solved linear
  probe's training accuracy on the same frozen features, the optimum of its own head;
* a scratch CNN: 100 %, what a CNN with far more parameters than training images reaches when it trains
  long enough (it can fit even random labels);
* a transfer run whose head was trained by epochs (``--frozen_head=epochs``, or a run written before the
  solve existed): 100 % as well, the most any head can do.

The run's training accuracy at its best epoch (the checkpoint it kept and tested, as training measured
it) more than :data:`UNDERFIT_MARGIN` below that is ``underfits``; otherwise a validation accuracy more
than :data:`OVERFIT_GAP` below that training accuracy, with a higher validation loss, is ``overfits``;
else ``fits``.  :func:`fit_sentence` says it with the likely cause and the fix; the verdict
(:mod:`kerasxfer.reporting.verdict`) names no winner when a contender underfits.
"""

from __future__ import annotations

from kerasxfer.records import Fit
from kerasxfer.reporting.text import pct

#: A training accuracy this far below what the run could reach is underfitting (an epoch's training accuracy is
#: measured with dropout on, so a few points below the optimum are normal).
UNDERFIT_MARGIN = 0.10
#: A final validation accuracy this far below the training accuracy (and a higher validation loss) is overfitting.
OVERFIT_GAP = 0.05

PROBE = "probe"
CAPACITY = "capacity"


def diagnose(kind: str, train: float, val: float, losses: tuple, probe_train: float | None) -> Fit:
    """The :class:`~kerasxfer.records.Fit` of a run of ``kind`` (scratch, transfer, ...) from the training and
    validation accuracy of its best epoch, that epoch's (train, val) loss and its solved probe's training accuracy."""
    supported, basis = (probe_train, PROBE) if probe_train is not None else (1.0, CAPACITY)
    if train < supported - UNDERFIT_MARGIN:
        tag = "underfits"
    elif train - val > OVERFIT_GAP and losses[1] > losses[0]:
        tag = "overfits"
    else:
        tag = "fits"
    return Fit(
        tag=tag,
        train_accuracy=train,
        supported=supported,
        basis=basis,
        val_accuracy=val,
        train_loss=float(losses[0]),
        val_loss=float(losses[1]),
    )


def _reference(fit: Fit, kind: str) -> str:
    if fit.basis == PROBE:
        return f"the {pct(fit.supported)} that its own frozen features support (the solved linear probe's)"
    what = "a CNN with far more parameters than training images" if kind == "scratch" else "its head"
    return f"the {pct(fit.supported)} that {what} can reach"


def cause(fit: Fit, kind: str, solved: bool) -> str:
    """The likely cause of an underfit run and its fix."""
    if kind == "scratch":
        return (
            "it stopped before it fit its training images: give it more optimizer steps (--min_steps, --epochs) "
            "or a better learning rate (make lr-find finds one)"
        )
    if not solved:
        return (
            "its head was trained by epochs on unscaled features, which a frozen ImageNet backbone makes nearly "
            "constant on images far from ImageNet: --frozen_head=solve (the default) solves it on standardised features"
        )
    return (
        "fine-tuning moved it away from the head the frozen phase solved: lower --finetune_lr, or unfreeze fewer "
        "stages (--unfreeze_stages)"
    )


def fit_sentence(name: str, kind: str, fit: Fit) -> str | None:
    """The report's note on a run that does not fit its training images or that overfits; None when it fits."""
    if fit.tag == "underfits":
        return (
            f"**{name}** underfits: train accuracy {pct(fit.train_accuracy)} at its best epoch (the checkpoint "
            f"tested), below "
            f"{_reference(fit, kind)}; likely cause: {cause(fit, kind, fit.basis == PROBE)}."
        )
    if fit.tag == "overfits":
        return (
            f"**{name}** overfits: train accuracy {pct(fit.train_accuracy)} vs val {pct(fit.val_accuracy)} at its "
            f"best epoch, val_loss {fit.val_loss:.3f} vs train_loss {fit.train_loss:.3f}."
        )
    return None


def unfit_clause(arm) -> str:
    """The verdict's clause on a contender (a :class:`~kerasxfer.records.Arm`) that did not fit its training images:
    against what, the likely cause and the fix."""
    f = arm.fit
    basis = "its solved linear probe's, on the same frozen features" if f.basis == PROBE else "what it can reach"
    return (
        f"**{arm.name}** did not fit its training images (train accuracy {pct(f.train_accuracy)} at its best epoch "
        f"against {pct(f.supported)}, {basis}; likely cause: {cause(f, arm.kind, f.basis == PROBE)})"
    )
