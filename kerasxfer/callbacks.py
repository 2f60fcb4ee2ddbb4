"""The callbacks of a training phase, in the order the trainer passes them to ``fit``.

The trainer builds the list with :func:`phase_callbacks` (at the end of this module); the callbacks that end
training early live in :mod:`kerasxfer.stopping`.

1. :class:`StopOnSignal`: Ctrl-C / SIGTERM stop at the next batch;
2. :class:`EpochRecorder`: one history record and one timing per epoch, the log line;
3. :class:`StopOnNonFinite`: a NaN or infinite loss ends training and is recorded;
4. :class:`StopAtTimeBudget` (only with a time budget): training ends once the run has trained that long;
   :class:`StopAtEpoch` (only a study's final model): training ends at the epoch its folds chose;
5. :class:`EarlyStopPhase` (only with ``--early_stopping``): the phase ends once val_accuracy stops improving;
   and (only for a phase with a patience, a study's frozen phase) once val_loss stops falling;
6. :class:`EMAWeights` (only with ``--ema``; Keras' ``SwapEMAWeights``): the averaged weights are validated and checkpointed;
7. :class:`BestCheckpoint`: ``model.keras`` holds the epoch with the best val_accuracy (written at most every
   few seconds; in between the weights wait in the resume state);
8. Keras' ``TensorBoard`` and :class:`StepLearningRate` (the rate of every step);
9. :meth:`EMAWeights.out`: the raw weights go back (at a phase's end the average stays);
10. the resume state's callback (:meth:`kerasxfer.resume.ResumeState.callback`), last.
"""

from __future__ import annotations

import logging
import os
import time

import keras
import numpy as np

from kerasxfer import keras_compat, rundir
from kerasxfer.phases import PhaseContext
from kerasxfer.snapshots import frozen_values, save_model, write_weights  # noqa: F401  (re-exported)
from kerasxfer.stopping import EarlyStopPhase, StopAtEpoch, StopAtTimeBudget, StopOnNonFinite, diverged

log = logging.getLogger("kerasxfer")


class EpochRecorder(keras.callbacks.Callback):
    """Appends one record per epoch to ``history`` (phase, metrics, lr) and to ``timings`` (speed).

    ``history.json`` holds only what the seed determines, so two equal runs
    write it byte for byte alike; seconds and images/s go to
    ``timings.json``.  It runs before the TensorBoard callback and adds
    ``learning_rate`` and ``phase`` (the phase's index: 0, 1, ...) to the
    epoch logs, so TensorBoard plots the learning rate and shows where each
    phase starts.
    """

    def __init__(self, history: dict, timings: dict, phase: str, num_train: int, total_epochs: int, phase_index: int = 0):
        super().__init__()
        self.history, self.timings, self.phase = history, timings, phase
        self.num_train, self.total_epochs, self.phase_index = num_train, total_epochs, phase_index

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._t_val = None

    def on_test_begin(self, logs=None):
        if getattr(self, "_t0", None) is not None and self._t_val is None:
            self._t_val = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        t1 = time.perf_counter()
        train_s = (self._t_val or t1) - self._t0
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        logs["learning_rate"] = lr
        logs["phase"] = float(self.phase_index)
        rec = {"epoch": epoch + 1, "phase": self.phase}
        rec.update({k: float(v) for k, v in logs.items() if k not in ("learning_rate", "phase")})
        rec["learning_rate"] = lr
        timing = {
            "epoch": epoch + 1,
            "seconds": round(t1 - self._t0, 3),
            "train_seconds": round(train_s, 3),
            "images_per_sec": round(self.num_train / train_s, 1) if train_s > 0 else None,
        }
        self.history["epochs"].append(rec)
        self.timings["epochs"].append(timing)
        phases = self.timings["phases"]
        phases[self.phase] = round(phases.get(self.phase, 0.0) + timing["seconds"], 3)
        self.timings["train_seconds"] = round(self.timings["train_seconds"] + timing["seconds"], 3)
        log.info(
            "epoch %d/%d [%s] loss %.4f acc %.4f | val_loss %.4f val_acc %.4f | lr %.1e | %.1fs, %s img/s",
            epoch + 1,
            self.total_epochs,
            self.phase,
            rec.get("loss", float("nan")),
            rec.get("accuracy", float("nan")),
            rec.get("val_loss", float("nan")),
            rec.get("val_accuracy", float("nan")),
            lr,
            timing["seconds"],
            timing["images_per_sec"],
        )


#: A better epoch's weights are written to model.keras at once only when the last write is this old; in between
#: they are kept in memory and in the resume state (a Keras save costs ~0.4 s, an epoch on cached features ~0.1 s).
CHECKPOINT_EVERY_S = 10.0


class BestCheckpoint(keras.callbacks.Callback):
    """Keeps the model of the best epoch in ``path`` (atomically): the epoch whose ``val_accuracy`` improves.

    Ties go to the later epoch only if its ``val_loss`` is lower.  The state
    lives in ``best`` so it carries across phases.  ``model`` is what to save
    when ``fit`` trains a part of it (the head on cached features).  A better
    epoch is written at once when the last write is older than
    :data:`CHECKPOINT_EVERY_S`; otherwise its weights wait in ``pending``
    (saved with the resume state every epoch, so no kill loses them) and are
    written when the phase ends (:meth:`flush`).
    """

    def __init__(self, path: str, best: dict, phase: str, model: keras.Model | None = None, frozen=None):
        super().__init__()
        self.path, self.best, self.phase = path, best, phase
        self.full_model = model
        self.pending = None  # variable values of a better epoch not written yet
        self.frozen = frozen or {}  # {id(variable): value} of the variables this phase cannot change
        self._written = -float("inf")

    @property
    def target(self) -> keras.Model:
        return self.full_model or self.model

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        acc, loss = logs.get("val_accuracy"), logs.get("val_loss", float("inf"))
        if acc is None or diverged(logs):
            return  # a diverged model is never the best one
        acc, loss = float(acc), float(loss)
        better = acc > self.best.get("val_accuracy", -1.0) or (
            acc == self.best.get("val_accuracy") and loss < self.best.get("val_loss", float("inf"))
        )
        if better:
            self.best.update(epoch=epoch + 1, phase=self.phase, val_accuracy=acc, val_loss=loss)
            if time.monotonic() - self._written >= CHECKPOINT_EVERY_S:
                save_model(self.target, self.path)
                self.pending, self._written = None, time.monotonic()
            else:
                self.pending = [
                    self.frozen[id(v)] if id(v) in self.frozen else keras.ops.convert_to_numpy(v) for v in self.target.variables
                ]

    def on_train_end(self, logs=None):
        self.flush()

    def flush(self) -> None:
        """Write the better epoch still waiting in memory, if any."""
        if self.pending is not None:
            write_weights(self.target, self.pending, self.path)
            self.pending, self._written = None, time.monotonic()


class EMAWeights(keras.callbacks.SwapEMAWeights):
    """The optimiser's moving average of the weights (``use_ema``), swapped into the model where it counts.

    Keras' own :class:`~keras.callbacks.SwapEMAWeights` (``swap_on_epoch``) does the swapping, with its
    distribution-strategy handling: the average is in the model for validation and, from the epoch's end,
    for the checkpoint and TensorBoard.  :meth:`out` (a second callback, before the resume state is saved)
    puts the raw weights back, except after the phase's last epoch — planned or ended by early stopping,
    which Keras does not know about — where the average stays (and the optimiser's copy is set to it).
    """

    def __init__(self, last_epoch: int, history: dict, phase: str):
        super().__init__(swap_on_epoch=True)
        self.last_epoch, self.history, self.phase = last_epoch, history, phase

    @property
    def swapped(self) -> bool:
        """Whether the average is in the model now."""
        return keras_compat.ema_in_model(self)

    def _ends_phase(self, epoch: int) -> bool:
        record = next((p for p in self.history["phases"] if p["name"] == self.phase), {})
        return epoch + 1 >= self.last_epoch or bool(record.get("early_stopped"))

    def out(self) -> keras.callbacks.Callback:
        """The callback that takes the average out of the model again at the epoch's end (or keeps it at the last)."""
        ema = self

        class Out(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if not ema.swapped:
                    return
                if ema._ends_phase(epoch):
                    keras_compat.ema_finalize(ema)  # the optimiser's average := the model's weights (the average)
                else:
                    keras_compat.ema_swap(ema)
                keras_compat.set_ema_in_model(ema, False)

        return Out()


class StepLearningRate(keras.callbacks.Callback):
    """Writes the learning rate of every step of the epoch to TensorBoard (``learning_rate_step``).

    ``rate(steps)`` gives the phase's rates at phase steps ``steps`` (the
    schedule the optimiser uses); ``first_epoch`` is the phase's first epoch
    (0-based), so the global step continues across phases.
    """

    def __init__(self, tb_dir: str, rate, steps_per_epoch: int, first_epoch: int):
        super().__init__()
        self.tb_dir, self.rate, self.steps, self.first = tb_dir, rate, steps_per_epoch, first_epoch
        self.writer = None

    def on_epoch_end(self, epoch, logs=None):
        from kerasxfer import tensorboard

        if self.writer is None:
            self.writer = tensorboard.scalar_writer(self.tb_dir)
        local = np.arange((epoch - self.first) * self.steps, (epoch - self.first + 1) * self.steps)
        tensorboard.write_scalars(self.writer, "learning_rate_step", epoch * self.steps + local % self.steps, self.rate(local))

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def phase_callbacks(ctx: PhaseContext, *, tensorboard, stop_on_signal, state_callback, extra=()) -> list:
    """The callbacks of one phase, in the order this module's docstring lists (optional ones only when asked for).

    ``ctx.model`` is the whole network (checkpointed to the run's ``model.keras`` and saved in the resume state,
    whatever ``fit`` trains); ``tensorboard`` Keras' callback (the rate of every step is logged beside it);
    ``state_callback`` the resume state's; ``extra`` last.
    """
    from kerasxfer.optim_config import learning_rate

    exp, (index, phase, first, last), history, steps = ctx.exp, ctx.span, ctx.history, ctx.steps
    o = exp.optim
    frozen = frozen_values(ctx.model)  # read once: the checkpoint and the resume state reuse them every epoch
    checkpoint = BestCheckpoint(os.path.join(ctx.out, rundir.MODEL), history["best"], phase.name, model=ctx.model, frozen=frozen)
    if hasattr(state_callback, "checkpoint"):
        state_callback.checkpoint = checkpoint  # its waiting best weights go into the resume state
        state_callback.frozen = frozen
    ema_in = EMAWeights(last, history, phase.name) if o.ema is not None else None
    ema_out = ema_in.out() if ema_in is not None else None
    rate = lambda k: learning_rate(np, k, phase.lr, steps["kind"], steps["total_steps"], steps["warmup_steps"])  # noqa: E731
    return [
        c
        for c in (
            stop_on_signal,
            EpochRecorder(history, ctx.timings, phase.name, ctx.num_train, exp.total_epochs, index),
            StopOnNonFinite(history, phase.name),
            StopAtTimeBudget(history, ctx.timings, exp.max_train_seconds) if exp.max_train_seconds else None,
            StopAtEpoch(history, exp.stop_after_epoch) if exp.stop_after_epoch else None,
            EarlyStopPhase(history, phase.name, o.early_stopping) if o.early_stopping else None,
            EarlyStopPhase(history, phase.name, phase.patience, "val_loss", phase.min_epochs) if phase.patience else None,
            ema_in,
            checkpoint,
            tensorboard,
            StepLearningRate(os.path.join(ctx.out, rundir.TB, "train"), rate, ctx.steps_per_epoch, first),
            ema_out,
            state_callback,
            *extra,
        )
        if c is not None
    ]
