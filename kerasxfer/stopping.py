"""The callbacks that end training early: a signal, a NaN loss, a time budget, a phase that stopped improving.

:func:`kerasxfer.callbacks.phase_callbacks` puts them in their places in a phase's list; each records in the
history why it stopped, so a rerun continues where it should.
"""

from __future__ import annotations

import logging
import signal

import keras
import numpy as np

log = logging.getLogger("kerasxfer")


def diverged(logs: dict) -> bool:
    """Whether an epoch's train or validation loss is NaN or infinite."""
    return not all(np.isfinite(float(logs[k])) for k in ("loss", "val_loss") if k in logs)


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training after an epoch whose loss is NaN or infinite, and records where in ``history["stopped"]``."""

    def __init__(self, history: dict, phase: str):
        super().__init__()
        self.history, self.phase = history, phase

    def on_epoch_end(self, epoch, logs=None):
        if diverged(logs or {}):
            self.model.stop_training = True
            self.history["stopped"] = {"epoch": epoch + 1, "phase": self.phase, "reason": "non-finite loss"}


class StopAtTimeBudget(keras.callbacks.Callback):
    """Ends training after the first epoch that brings the run's training seconds to ``seconds``.

    A fair budget: the sweep's ``--budget=time`` gives the scratch arm the
    wall-clock time its transfer rival took.  Where it stopped goes to
    ``history["ended_early"]`` (saved with the resume state, so a resumed run
    does not train on).
    """

    def __init__(self, history: dict, timings: dict, seconds: float):
        super().__init__()
        self.history, self.timings, self.seconds = history, timings, seconds

    def on_epoch_end(self, epoch, logs=None):
        if self.timings["train_seconds"] >= self.seconds and not self.history.get("ended_early"):
            self.model.stop_training = True
            self.history["ended_early"] = {"epoch": epoch + 1, "reason": f"time budget of {self.seconds:g} s reached"}
            log.info("time budget of %g s reached after epoch %d: training ends here", self.seconds, epoch + 1)


class StopAtEpoch(keras.callbacks.Callback):
    """Ends training after epoch ``last`` (the phases' schedules as planned), recorded like a time budget in
    ``history["ended_early"]``: a study's final model stops where its folds chose (:mod:`kerasxfer.final`)."""

    def __init__(self, history: dict, last: int):
        super().__init__()
        self.history, self.last = history, last

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.last and not self.history.get("ended_early"):
            self.model.stop_training = True
            self.history["ended_early"] = {
                "epoch": epoch + 1,
                "reason": f"the stopping point the folds chose (epoch {self.last})",
            }
            log.info("epoch %d is where the folds' best checkpoints lay: training ends here", epoch + 1)


class StopOnSignal(keras.callbacks.Callback):
    """Ctrl-C (SIGINT) and SIGTERM stop training at the next batch, from plain Python code.

    Used as a context manager around the phases.  The signal only sets a
    flag; this callback raises ``KeyboardInterrupt`` at the next batch or
    epoch boundary.  Raising straight from the handler can land inside a
    ``__del__`` during TensorFlow clean-up, where Python swallows it and
    training goes on.  A second signal stops at once.
    """

    def __init__(self):
        super().__init__()
        self.signum = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def check(self):
        if self.signum is not None:
            raise KeyboardInterrupt

    def on_train_batch_end(self, batch, logs=None):
        self.check()

    def on_test_batch_end(self, batch, logs=None):
        self.check()

    def on_epoch_begin(self, epoch, logs=None):
        self.check()

    def __exit__(self, exc_type, exc, tb):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        if exc_type is None and self.signum is not None:  # arrived after the last check: still a stop
            raise KeyboardInterrupt
        return False


class EarlyStopPhase(keras.callbacks.Callback):
    """Ends the phase after ``patience`` epochs of it without a better epoch (and not before ``min_epochs``).

    Better is what :class:`BestCheckpoint` calls better: a higher
    val_accuracy, or the same with a lower val_loss; with ``monitor="val_loss"``
    a val_loss lower by a relative 1e-4 (the phase has converged).  The count is read from
    ``history`` (the phase's epochs so far), so a resumed run decides exactly
    as an uninterrupted one; the phase's record gets ``early_stopped`` and
    its real ``last_epoch``.
    """

    def __init__(self, history: dict, phase: str, patience: int, monitor: str = "val_accuracy", min_epochs: int = 0):
        super().__init__()
        self.history, self.phase, self.patience = history, phase, patience
        self.monitor, self.min_epochs = monitor, min_epochs

    def _best(self, eps) -> int:
        """Index of the phase's best epoch so far (the first of equals)."""
        if self.monitor == "val_loss":  # converged: no val_loss lower by a relative 1e-4 or more
            best = 0
            for i, e in enumerate(eps):
                if e.get("val_loss", float("inf")) < eps[best].get("val_loss", float("inf")) * (1 - 1e-4):
                    best = i
            return best
        keys = [(e.get("val_accuracy", float("-inf")), -e.get("val_loss", float("inf"))) for e in eps]
        return max(range(len(keys)), key=lambda i: (keys[i], -i)) if keys else 0

    def on_epoch_end(self, epoch, logs=None):
        eps = [e for e in self.history["epochs"] if e["phase"] == self.phase]
        keys, best = eps, self._best(eps)
        record = next(p for p in self.history["phases"] if p["name"] == self.phase)
        if len(keys) - 1 - best >= self.patience and len(keys) >= self.min_epochs and epoch + 1 < record["last_epoch"]:
            record.update(
                early_stopped=True,
                planned_last_epoch=record.get("planned_last_epoch", record["last_epoch"]),
                last_epoch=epoch + 1,
            )
            self.model.stop_training = True
            what = "lower val_loss" if self.monitor == "val_loss" else "better epoch"
            log.info(
                "early stopping: no %s in the %d since epoch %d: the %s phase ends after epoch %d",
                what,
                self.patience,
                eps[best]["epoch"],
                self.phase,
                epoch + 1,
            )
