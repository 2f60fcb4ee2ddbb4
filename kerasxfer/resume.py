"""Continuing a run after any interruption: one object finds, restores, saves and clears its state.

While a run trains, ``<run>/resume/`` holds the state after the last
finished epoch: ``state-E.npz`` (every variable of the model — weights,
BatchNorm statistics, dropout seed states — and of the optimizer — slots,
step count — after epoch ``E``) and ``state.json`` (``E``, the history and
timings so far, which name the best checkpoint).  Both are written through a
temporary name and a rename, the npz first, so ``state.json`` always names a
complete file.  Running the same experiment again continues from there,
whatever stopped it (Ctrl-C, SIGTERM, SIGKILL, a crash); a finished run
removes the folder.
"""

from __future__ import annotations

import os
import shutil

import keras
import numpy as np

from kerasxfer import rundir
from kerasxfer.errors import UserError

STATE = "state.json"


class ResumeState:
    """The resume state of the run directory ``out`` (as Keras' ``BackupAndRestore`` keeps its job in one class).

    ``epoch``, ``history`` and ``timings`` are those of the state found
    when it was made (``epoch == 0`` and both ``None`` when there is none).
    """

    def __init__(self, out: str):
        self.out = out
        self.dir = os.path.join(out, rundir.RESUME)
        self.epoch, self.history, self.timings, self.arrays = 0, None, None, None
        path = os.path.join(self.dir, STATE)
        if os.path.isfile(path):
            state = rundir.read_json(path)
            arrays = os.path.join(self.dir, state["arrays"])
            if os.path.isfile(arrays):
                self.epoch, self.history, self.timings, self.arrays = (
                    state["epoch"], state["history"], state["timings"], arrays)

    @property
    def found(self) -> bool:
        return self.arrays is not None

    # ----------------------------------------------------------- restore
    def restore(self, model: keras.Model, optimizer_model: keras.Model | None = None) -> None:
        """Every variable of ``model``, and of ``optimizer_model``'s optimizer when given, from the saved state."""
        with np.load(self.arrays) as z:
            model_vars = model.variables
            n = sum(1 for k in z.files if k.startswith("m"))
            if n != len(model_vars):
                raise UserError(
                    f"the saved state in {self.dir} does not fit this model ({n} variables saved, "
                    f"{len(model_vars)} now): pass --overwrite to start the run again."
                )
            for i, v in enumerate(model_vars):
                v.assign(z[f"m{i}"])
            if optimizer_model is None:
                return
            opt = optimizer_model.optimizer
            if not opt.built:
                opt.build(optimizer_model.trainable_variables)
            saved = sorted((k for k in z.files if k.startswith("o")), key=lambda k: int(k[1:]))
            if len(saved) != len(opt.variables):
                raise UserError(
                    f"the optimizer state in {self.dir} does not fit this phase: pass --overwrite to start the "
                    "run again."
                )
            for k, v in zip(saved, opt.variables):
                v.assign(z[k])

    # -------------------------------------------------------------- save
    def save(self, epoch: int, model: keras.Model, optimizer, history: dict, timings: dict) -> None:
        """Write the state after ``epoch`` (1-based): ``model``'s and ``optimizer``'s variables, history, timings."""
        os.makedirs(self.dir, exist_ok=True)
        name = f"state-{epoch}.npz"
        arrays = {f"m{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.variables)}
        arrays.update({f"o{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(optimizer.variables)})
        with rundir.atomic_path(os.path.join(self.dir, name)) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        rundir.write_json(
            os.path.join(self.dir, STATE),
            {"epoch": epoch, "arrays": name, "history": history, "timings": timings},
        )
        for old in os.listdir(self.dir):
            if old.startswith("state-") and old.endswith(".npz") and old != name:
                os.remove(os.path.join(self.dir, old))

    def callback(self, history: dict, timings: dict, model: keras.Model | None = None) -> keras.callbacks.Callback:
        """A callback that writes ``history.json``, ``timings.json`` and this state after every epoch.

        It must be the last callback, so everything else of epoch ``E`` is on
        disk when ``state.json`` says ``E``.  ``model`` is whose variables are
        saved when ``fit`` trains a part of it (the head on cached features).
        """
        return SaveEachEpoch(self, history, timings, model)

    def clear(self) -> None:
        """Remove the state (the run has finished)."""
        shutil.rmtree(self.dir, ignore_errors=True)


class SaveEachEpoch(keras.callbacks.Callback):
    """What :meth:`ResumeState.callback` returns: after every epoch, history, timings and the state."""

    def __init__(self, state: ResumeState, history: dict, timings: dict, model):
        super().__init__()
        self.state, self.history, self.timings, self.full_model = state, history, timings, model

    def on_epoch_end(self, epoch, logs=None):
        out = self.state.out
        rundir.write_json(os.path.join(out, rundir.HISTORY), self.history)
        rundir.write_json(os.path.join(out, rundir.TIMINGS), self.timings)
        if self.history.get("stopped"):
            return  # a diverged epoch is not a state to continue from
        self.state.save(epoch + 1, self.full_model or self.model, self.model.optimizer, self.history, self.timings)
