"""A study's final model: the arm it recommends, trained once more on every labelled image (``<study>/final``).

A cross-validated study leaves K models per arm, each trained on part of
the images.  After the verdict, :func:`train_final` trains the chosen arm's
recipe once more on the whole pool (fold :data:`~kerasxfer.data.splitting.FINAL_FOLD`:
no fold held out; ``val_fraction`` of the pool still solves the head's
strength and picks the checkpoint, as in every fold), and ends it at the
folds' median best epoch (``Experiment.stop_after_epoch``; the phases and
their learning-rate schedules as the folds planned them).  It has no test
split: what to expect of it is the arm's pooled out-of-fold accuracy and its
interval, labelled as the cross-validation's estimate.

The arm: ``--final=auto`` takes the verdict's recommendation (the winner;
within the noise, the cheaper of the two best once it learned; none when a
contender that did not fit decides it), ``--final=<arm>`` another arm,
``--final=none`` none.  A one-split study hands over its own run of the arm:
folding the test images back in would leave the model without the test
number that describes it.  A finished ``final/`` is reused by the next run.
"""

from __future__ import annotations

import copy
import logging
import os
import statistics

from kerasxfer import fsio, rundir
from kerasxfer.errors import UserError
from kerasxfer.records import FinalModel

log = logging.getLogger("kerasxfer")

FINAL_DIR = "final"
#: --final's values besides an arm's name
FINAL_CHOICES = ("auto", "none")


def contenders(cfg) -> list:
    """The names of the arms a study's verdict chooses among (and ``--final`` may name)."""
    transfers = (cfg.transfer, *cfg.more_transfers)
    several = len(transfers) > 1
    return ["scratch", *(f"transfer-{t.model.backbone}" if several else "transfer" for t in transfers)]


def check_choice(final: str, cfg) -> None:
    """Refuse a ``--final`` that is neither auto, none nor one of the contenders of the study ``cfg``."""
    arms = contenders(cfg)
    if final not in (*FINAL_CHOICES, *arms):
        raise UserError(
            f"--final={final} is not one of this study's arms: pass auto (the arm the verdict recommends), none, "
            f"or one of {', '.join(arms)}."
        )


def choose(final: str, verdict: dict) -> tuple:
    """``(arm or None, the sentence that says why)`` for ``--final=final`` and summary.json's ``verdict``."""
    if final == "none":
        return None, "--final=none: no final model was trained (pass --final=auto for the recommended arm)."
    if final != "auto":
        return final, f"--final={final} chose it"
    arm = verdict.get("recommended")
    if arm is None:
        return None, (
            "the verdict recommends no arm (no contender learned, or one that did not fit its training images "
            "decides it), so no final model was trained: pass --final=<arm> to train one anyway."
        )
    why = "the verdict's winner" if verdict.get("winner") == arm else "no clear winner: the headline recommends the cheaper arm"
    return arm, why


def stopping_point(fold_runs: list) -> tuple:
    """``(the median of the folds' best epochs, each fold's)``: where the final model's training ends."""
    best = tuple(int(fsio.read_json(os.path.join(exp.out_dir, rundir.HISTORY))["best"]["epoch"]) for exp in fold_runs)
    return int(statistics.median_low(best)), best


def final_experiment(fold_run, stop_epoch: int, out_dir: str):
    """The experiment of the final model: fold ``fold_run``'s recipe on the whole pool, ending at ``stop_epoch``."""
    from kerasxfer.data.splitting import FINAL_FOLD

    exp = copy.deepcopy(fold_run)
    exp.out_dir = os.path.join(out_dir, FINAL_DIR)
    exp.data.fold = FINAL_FOLD
    exp.stop_after_epoch = stop_epoch if stop_epoch < exp.total_epochs else None
    return exp


def train_final(cfg, series: list, summary: dict, sources, overwrite: bool, verbose: int, folds_run: int | None) -> FinalModel:
    """Train (or reuse) the study's final model; return what the report and summary.json say of it."""
    from kerasxfer.series import run_series

    arm, why = choose(cfg.final, summary["verdict"])
    if arm is not None and cfg.seeds > 1 and "-seed" not in arm:
        arm = f"{arm}-seed0"  # --final=transfer with --seeds: its first seed's recipe
    row = next((r for r in summary["runs"] if r["name"] == arm), None)
    if arm is None or row is None:
        if arm is not None:
            why = f"--final={arm} names no run of this report, so no final model was trained."
        log.info("[study] final model: %s", why)
        return FinalModel(arm=None, dir=None, retrained=False, why=why)
    mine = [(label, exp) for label, exp, _ in series if os.path.basename(os.path.normpath(exp.out_dir)) == arm]
    estimate = dict(figure="accuracy", estimate=row["test_accuracy"], interval=tuple(row["test_interval"]))
    if (cfg.folds or 1) == 1:
        why += (
            f"; a one-split study hands over its own run of {arm}: folding its test images back in would leave the "
            "model without the test number that describes it"
        )
        return FinalModel(arm=arm, dir=row["dir"], retrained=False, why=why, total_params=row.get("total_params"), **estimate)
    fold_runs = [exp for _, exp in mine if folds_run is None or exp.data.fold <= folds_run]
    stop, best = stopping_point(fold_runs)
    exp = final_experiment(fold_runs[0], stop, cfg.out_dir)
    n = sources.num_train(exp.data)
    log.info(
        "[study] final model: %s (%s), trained once more on every labelled image (%d train, the rest to choose its "
        "checkpoint), ending at epoch %d, the median of its folds' best epochs (%s), in %s",
        arm,
        why,
        n,
        stop,
        ", ".join(map(str, best)),
        exp.out_dir,
    )
    run_series([(f"{arm}, final model", exp, n)], sources, "final", overwrite, verbose)
    metrics = fsio.read_json(os.path.join(exp.out_dir, rundir.METRICS))
    timings = fsio.read_json(os.path.join(exp.out_dir, rundir.TIMINGS))
    data = fsio.read_json(os.path.join(exp.out_dir, rundir.DATA))
    return FinalModel(
        arm=arm,
        dir=exp.out_dir,
        retrained=True,
        why=why,
        folds=len(fold_runs),
        num_train=data["num_train"],
        num_val=data["num_val"],
        stop_epoch=stop,
        fold_best_epochs=best,
        train_seconds=timings.get("train_seconds"),
        total_params=metrics.get("total_params"),
        **estimate,
    )
