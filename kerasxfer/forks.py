"""A run whose phases are the first phases of another run is not trained twice: it is forked from it.

A study's ``control-pretrained`` (the head on the pretrained backbone's
features, the frozen phase only) is, setting for setting and seed for seed,
the first phase of its fold's ``transfer`` run.  Training it again would
repeat that phase to the last bit (the test shows it), so :class:`ForkAfterPhase`
writes its run directory from the transfer run's as the phase ends: the
history and timings of the epochs so far, the best checkpoint of that phase,
the TensorBoard logs, its own config.json; then the run is evaluated and
finished like any other (:func:`kerasxfer.training.finish_trained`).

Only an exact prefix forks (:func:`same_prefix`: every setting equal but the
folder, the phases a leading part of the source's).  A fork that cannot be
written (its folder holds a run of other settings, a resumed source that
did not train that phase here) is skipped, and the run trains itself later,
as it would have without this module.
"""

from __future__ import annotations

import logging
import os
import shutil

import keras

from kerasxfer import fsio, rundir
from kerasxfer.config import Experiment
from kerasxfer.errors import UserError

log = logging.getLogger("kerasxfer")

_PLACE = ("out_dir",)


def same_prefix(source: Experiment, target: Experiment) -> bool:
    """Whether ``target`` is ``source`` stopped after its first phases: every other setting equal."""
    a, b = source.to_dict(), target.to_dict()
    pa, pb = a.pop("phases"), b.pop("phases")
    for d in (a, b):
        for k in _PLACE:
            d.pop(k, None)
    return a == b and 0 < len(pb) < len(pa) and pa[: len(pb)] == pb


class ForkAfterPhase(keras.callbacks.Callback):
    """After each phase of the run in ``source``: write and finish the ``targets`` — ``(experiment, data)`` —
    whose phases end there.  Runs last among a phase's callbacks (the best checkpoint and history are on disk)."""

    def __init__(self, source: str, targets: list, overwrite: bool = False):
        super().__init__()
        self.source, self.targets, self.overwrite = source, list(targets), overwrite
        self.forked = []  # out_dir of every target written here

    def on_train_end(self, logs=None):
        history = fsio.read_json(os.path.join(self.source, rundir.HISTORY))
        for exp, data in self.targets:
            if len(exp.phases) == len(history["phases"]) and fork(self.source, exp, data, self.overwrite):
                self.forked.append(exp.out_dir)


def fork(source: str, exp: Experiment, data, overwrite: bool = False) -> bool:
    """Write ``exp``'s run directory from the run in ``source`` as it stands now, and finish it; False when
    it cannot be (``exp`` then trains itself when its turn comes)."""
    from kerasxfer.run_files import write_run_files
    from kerasxfer.training import finish_trained

    out = exp.out_dir
    with rundir.locked(out):
        try:
            status = rundir.inspect_run_dir(out, exp.to_dict(), overwrite, Experiment.complete)
        except UserError as e:
            log.info("%s is not forked from %s: %s", out, source, e)
            return False
        if status == "finished":
            return False
        rundir.remove_run_outputs(out)
        write_run_files(out, exp, data, {})
        shutil.copyfile(os.path.join(source, rundir.ENVIRONMENT), os.path.join(out, rundir.ENVIRONMENT))
        shutil.copyfile(os.path.join(source, rundir.MODEL), os.path.join(out, rundir.MODEL))
        shutil.copytree(os.path.join(source, rundir.TB), os.path.join(out, rundir.TB), dirs_exist_ok=True)
        history = fsio.read_json(os.path.join(source, rundir.HISTORY))
        fsio.write_json(os.path.join(out, rundir.HISTORY), {**history, "run": exp.name})
        fsio.write_json(os.path.join(out, rundir.TIMINGS), fsio.read_json(os.path.join(source, rundir.TIMINGS)))
        log.info(
            "%s: its phases (%s) are the ones %s has just trained, with every other setting equal: its run "
            "directory is written from them, not trained again",
            out,
            ", ".join(p.name for p in exp.phases),
            source,
        )
        finish_trained(exp, data)
    return True
