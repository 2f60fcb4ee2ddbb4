"""Many runs in one process, one after the other, with one progress line and ETA: a study's arms, folds and
seeds, a sweep's members.

The data are decoded once (:class:`kerasxfer.data.SharedSources`); every run starts from a fresh Keras
session, so it gets the layer names and seeds it would get in a process of its own, and leaves the same
run directory (:func:`kerasxfer.training.run_experiment`).
"""

from __future__ import annotations

import gc
import logging

import keras

from kerasxfer import rundir
from kerasxfer.errors import UserError
from kerasxfer.forks import ForkAfterPhase
from kerasxfer.progress import StudyProgress, phase_of, phases_of
from kerasxfer.resume import saved_epoch
from kerasxfer.run_files import data_changes
from kerasxfer.training import run_experiment

log = logging.getLogger("kerasxfer")


def run_series(
    runs, sources, tag: str, overwrite: bool = False, verbose: int = 0, before=None, after=None, forks=None, ray=None
) -> None:
    """Train ``runs`` — ``(label, experiment, training images)`` — one after the other in this process.

    Every run reads ``sources`` (a :class:`kerasxfer.data.SharedSources`:
    the data decoded once, features shared) and starts from a fresh Keras
    session (the same layer names and seeds as in a process of its own);
    finished runs are skipped, interrupted ones continue; one progress line
    per epoch (:mod:`kerasxfer.progress`).  ``before(i)`` runs just before
    run ``i`` starts and may change its experiment (a sweep's time budget);
    ``after(i)`` runs when run ``i`` has finished, and when it returns True
    the runs after it are not trained (a study that knows its answer).
    ``forks`` ``{i: [j, ...]}``: runs ``j`` whose phases are the first ones
    of run ``i`` (:func:`kerasxfer.forks.same_prefix`) are written from it as
    those phases end, not trained again (:mod:`kerasxfer.forks`).
    ``ray`` (a :class:`kerasxfer.executors.RayConfig`): the same runs as tasks on a Ray cluster instead.
    """
    if ray is not None:
        return _on_ray(runs, sources, tag, overwrite, verbose, before, after, forks, ray)
    forks, forked = forks or {}, set()
    progress = StudyProgress([{"label": label, "phases": phases_of(exp, n)} for label, exp, n in runs], tag=tag)
    for i, (label, exp, n) in enumerate(runs):
        if before is not None:
            before(i)
            progress.set_run(i, phases_of(exp, n))
        exp.validate()
        again = overwrite and exp.out_dir not in forked
        keras.backend.clear_session()
        gc.collect()
        data = sources.splits(exp)
        # "finished earlier" only of a run that is reused: one made on other inputs is trained again (said below)
        finished = rundir.is_finished(exp.out_dir) and not again and not data_changes(exp.out_dir, data.splits, exp)
        log.info(
            "[%s] run %d of %d: %s (%s)%s",
            tag,
            i + 1,
            len(runs),
            exp.out_dir,
            label,
            (": forked from an earlier run's phases" if exp.out_dir in forked else ": finished earlier") if finished else "",
        )
        progress.start_run(i, 0 if finished or again else saved_epoch(exp.out_dir))
        fork = ForkAfterPhase(exp.out_dir, [(runs[j][1], data) for j in forks.get(i, ())], again)
        run_experiment(
            exp,
            data=data,
            verbose=verbose,
            overwrite=again,
            callbacks=[progress.callback(i, phase_of(exp))] + ([fork] if fork.targets else []),
            other_data="retrain",  # a study's own run made on other images is trained again, said in one line
        )
        forked.update(fork.forked)
        progress.finish_run(i, trained=not finished)
        if after is not None and after(i):
            log.info("[%s] the %d runs after run %d are not needed", tag, len(runs) - i - 1, i + 1)
            return


def _on_ray(runs, sources, tag, overwrite, verbose, before, after, forks, ray) -> None:
    """:func:`run_series` with ``ray``: the runs as tasks on a Ray cluster (:mod:`kerasxfer.executors`)."""
    from kerasxfer.executors import run_series_ray

    if before is not None:
        raise UserError(
            f"this {tag} sets each run's budget from the runs before it (--budget=time), so its "
            "runs cannot train at once: use --executor=local."
        )
    source_args = dict(split_seed=sources.split_seed, deterministic=sources.deterministic, activation_dir=sources.activation_dir)
    run_series_ray(runs, source_args, tag, ray, overwrite, verbose, after, forks, sources)
