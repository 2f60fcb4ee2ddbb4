"""Continuing a run after any interruption: one object finds, restores, saves and clears its state.

While a run trains, ``<run>/resume/`` holds the state after the last
finished epoch: ``state-E.npz`` (every variable of the model — weights,
BatchNorm statistics, dropout seed states — and of the optimizer — slots,
step count, EMA copy — after epoch ``E``) and ``state-E.json`` (``E``, the
history and timings so far, which name the best checkpoint), with
``state.json`` a copy of the latest.  All are written through a temporary
name and a rename, the npz first, so a json always names a complete file.
The previous epoch's pair stays as a fallback: a state damaged later (a
truncated file, a full disk) costs one epoch, not the run.  Running the same
experiment again continues from there, whatever stopped it (Ctrl-C, SIGTERM,
SIGKILL, a crash); a finished run removes the folder.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import zipfile

import keras
import numpy as np

from kerasxfer import fsio, rundir
from kerasxfer.errors import UserError
from kerasxfer.models.head import refresh_standardisation
from kerasxfer.snapshots import frozen_values, write_weights

STATE = "state.json"
log = logging.getLogger("kerasxfer")


def saved_epoch(out: str) -> int:
    """The epoch the latest resume state in ``out`` records (0: none), from its small json alone.

    For progress lines and messages; :class:`ResumeState` itself checks
    every array before a run continues from it.
    """
    try:
        return int(fsio.read_json(os.path.join(out, rundir.RESUME, STATE))["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


class ResumeState:
    """The resume state of the run directory ``out`` (as Keras' ``BackupAndRestore`` keeps its job in one class).

    ``epoch``, ``history`` and ``timings`` are those of the state found
    when it was made (``epoch == 0`` and both ``None`` when there is none).
    """

    def __init__(self, out: str, probe: bool = True):
        self.out = out
        self.dir = os.path.join(out, rundir.RESUME)
        self.epoch, self.history, self.timings, self.arrays = 0, None, None, None
        self.frozen_arrays = None  # the phase's frozen layers' values, written once beside the epoch's arrays
        if probe and os.path.isdir(self.dir):
            self._find()

    def _find(self) -> None:
        """The newest complete state (``state.json``, then ``state-E.json`` newest first), every array read once."""
        names = os.listdir(self.dir)
        epochs = sorted((int(m.group(1)) for m in (re.fullmatch(r"state-(\d+)\.json", n) for n in names) if m), reverse=True)
        candidates = ([STATE] if STATE in names else []) + [f"state-{e}.json" for e in epochs]
        damaged = []
        for name in candidates:
            try:
                state = fsio.read_json(os.path.join(self.dir, name))
                arrays = os.path.join(self.dir, state["arrays"])
                frozen = os.path.join(self.dir, state["frozen"]) if state.get("frozen") else None
                for path in filter(None, (arrays, frozen)):
                    with np.load(path) as z:
                        for k in z.files:
                            z[k]  # noqa: B018  (reading checks every array's CRC)
            except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
                damaged.append(name)
                continue
            if damaged:
                log.warning(
                    "the resume state %s in %s is damaged: continuing from epoch %d instead",
                    ", ".join(damaged),
                    self.dir,
                    state["epoch"],
                )
            self.epoch, self.history, self.timings, self.arrays = (state["epoch"], state["history"], state["timings"], arrays)
            self.frozen_arrays = frozen
            return
        if damaged:
            from kerasxfer.errors import UserError

            raise UserError(
                f"the resume state in {self.dir} is damaged ({', '.join(damaged)} cannot be read) and no earlier "
                "epoch's state is intact: pass --overwrite to start the run again."
            )

    @property
    def found(self) -> bool:
        return self.arrays is not None

    # ----------------------------------------------------------- restore
    def _load(self) -> dict:
        """Every array of the state: the epoch's, and the phase's frozen layers' (stored once per phase)."""
        out = {}
        for path in filter(None, (self.frozen_arrays, self.arrays)):
            with np.load(path) as z:
                out.update({k: z[k] for k in z.files})
        return out

    def restore(self, model: keras.Model, optimizer_model: keras.Model | None = None) -> None:
        """Every variable of ``model``, and of ``optimizer_model``'s optimizer when given, from the saved state."""
        z = self._load()
        model_vars = model.variables
        n = sum(1 for k in z if k.startswith("m"))
        if n != len(model_vars):
            raise UserError(
                f"the saved state in {self.dir} does not fit this model ({n} variables saved, "
                f"{len(model_vars)} now): pass --overwrite to start the run again."
            )
        for i, v in enumerate(model_vars):
            v.assign(z[f"m{i}"])
        refresh_standardisation(model)
        if optimizer_model is None:
            return
        opt = optimizer_model.optimizer
        if not opt.built:
            opt.build(optimizer_model.trainable_variables)
        saved = sorted((k for k in z if k.startswith("o")), key=lambda k: int(k[1:]))
        if len(saved) != len(opt.variables):
            raise UserError(
                f"the optimizer state in {self.dir} does not fit this phase: pass --overwrite to start the run again."
            )
        for k, v in zip(saved, opt.variables):
            v.assign(z[k])

    # -------------------------------------------------------------- save
    def save(
        self, epoch: int, model: keras.Model, optimizer, history: dict, timings: dict, best=None, frozen=None, frozen_file=None
    ) -> str | None:
        """Write the state after ``epoch`` (1-based): ``model``'s and ``optimizer``'s variables, history, timings,
        and ``best``: the best epoch's variable values when model.keras does not hold them yet.  ``frozen``
        (:func:`kerasxfer.snapshots.frozen_values`) are written once per phase to ``frozen_file`` (returned)."""
        os.makedirs(self.dir, exist_ok=True)
        name = f"state-{epoch}.npz"
        frozen = frozen or {}
        index = {id(v): i for i, v in enumerate(model.variables)}
        if frozen and frozen_file is None:
            frozen_file = f"frozen-{epoch}.npz"
            with fsio.atomic_path(os.path.join(self.dir, frozen_file)) as tmp, open(tmp, "wb") as f:
                np.savez(f, **{f"m{index[k]}": v for k, v in frozen.items() if k in index})
        arrays = {f"m{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.variables) if id(v) not in frozen}
        arrays.update({f"o{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(optimizer.variables)})
        arrays.update({f"b{i}": v for i, (v, var) in enumerate(zip(best or (), model.variables)) if id(var) not in frozen})
        with fsio.atomic_path(os.path.join(self.dir, name)) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        state = {
            "epoch": epoch,
            "arrays": name,
            "history": history,
            "timings": timings,
            **({"frozen": frozen_file} if frozen else {}),
        }
        fsio.write_json(os.path.join(self.dir, f"state-{epoch}.json"), state)
        fsio.write_json(os.path.join(self.dir, STATE), state)
        keep = {f"state-{e}.{ext}" for e in (epoch, epoch - 1) for ext in ("npz", "json")} | {STATE}
        for kept in (f"state-{e}.json" for e in (epoch, epoch - 1)):  # and the frozen files they name
            try:
                keep.add(fsio.read_json(os.path.join(self.dir, kept)).get("frozen"))
            except (OSError, ValueError, AttributeError):
                pass
        for old in os.listdir(self.dir):
            if (old.startswith("state") or old.startswith("frozen-")) and old not in keep:
                os.remove(os.path.join(self.dir, old))
        return frozen_file if frozen else None

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


def write_best(state: ResumeState, model: keras.Model, path: str) -> bool:
    """Write the best epoch's model to ``path`` when ``state`` holds it (it had not been written when the
    run stopped); whether it did.  Frozen layers' values are the phase's (they did not move)."""
    z = state._load()
    if not any(k.startswith("b") for k in z):
        return False
    n = len(model.variables)
    if sum(1 for k in z if k.startswith("m")) != n:
        raise UserError(f"the saved state in {state.dir} does not fit this model: pass --overwrite to start the run again.")
    write_weights(model, [z.get(f"b{i}", z[f"m{i}"]) for i in range(n)], path)
    return True


class SaveEachEpoch(keras.callbacks.Callback):
    """What :meth:`ResumeState.callback` returns: after every epoch, history, timings and the state."""

    def __init__(self, state: ResumeState, history: dict, timings: dict, model):
        super().__init__()
        self.state, self.history, self.timings, self.full_model = state, history, timings, model

    checkpoint = None  # the phase's BestCheckpoint: its best weights not yet in model.keras are saved too
    frozen = None  # frozen_values() of the phase, read at its first save
    frozen_file = None  # where the state keeps them (written once per phase)

    def on_epoch_end(self, epoch, logs=None):
        out = self.state.out
        fsio.write_json(os.path.join(out, rundir.HISTORY), self.history)
        fsio.write_json(os.path.join(out, rundir.TIMINGS), self.timings)
        if self.history.get("stopped"):
            return  # a diverged epoch is not a state to continue from
        best = self.checkpoint.pending if self.checkpoint is not None else None
        model = self.full_model or self.model
        if self.frozen is None:
            self.frozen = frozen_values(model)
        self.frozen_file = self.state.save(
            epoch + 1, model, self.model.optimizer, self.history, self.timings, best, self.frozen, self.frozen_file
        )
