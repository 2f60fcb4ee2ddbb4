"""What a training run writes into its directory, and the history schema (no TensorFlow).

:mod:`kerasxfer.training` runs the phases; this module owns the files
that describe them: the first files of a run (:func:`write_run_files`),
``history.json`` as a run begins (:func:`new_history`) and as each phase
begins (:func:`phase_record`), the timings' frozen-backbone passes
(:func:`charge`), and reading back what a finished or trained run wrote
(:func:`finished_metrics`, :func:`trained_record`).  The records the reports
read (:mod:`kerasxfer.records`) are this schema's readers.
"""

from __future__ import annotations

import logging
import os

from kerasxfer import fsio, rundir
from kerasxfer.errors import UserError
from kerasxfer.provenance import weights_fingerprint, weights_source

log = logging.getLogger("kerasxfer")


def write_run_files(out: str, exp, data, strategy: dict) -> None:
    """The marker first (the folder is a run, so its files are ours to replace), then config, environment, data."""
    os.makedirs(out, exist_ok=True)
    rundir.write_marker(out, "training")
    fsio.write_json(os.path.join(out, rundir.CONFIG), exp.to_dict())
    fsio.write_json(os.path.join(out, rundir.ENVIRONMENT), {**rundir.environment(), **strategy})
    fsio.write_json(
        os.path.join(out, rundir.DATA),
        {
            "source": data.description,
            "class_names": data.class_names,
            "num_train": data.num_train,
            "num_val": data.num_val,
            "num_test": data.num_test,
            "image_size": data.image_size,
            "resize": exp.data.resize,
            "split_seed": exp.data.split_seed if exp.data.split_seed is not None else exp.seed,
            "splits": data.splits,
            **data.info,
            "weights_sha256": weights_fingerprint(exp),  # --weights=PATH: the bytes it held (data_changes)
        },
    )


def new_history(exp, model_name: str, bn_calibrated: bool, deterministic: bool) -> dict:
    """history.json of a run before its first epoch: only what the seed determines (equal runs, equal bytes)."""
    m = exp.model
    return {
        "run": exp.name,
        "model": model_name,
        "weights": m.weights if m.is_transfer else None,
        "weights_source": weights_source(exp),
        "bn_calibrated": bn_calibrated,
        "deterministic": deterministic,
        "phases": [],
        "epochs": [],
        "best": {},
    }


def new_timings() -> dict:
    """timings.json of a run before its first epoch."""
    return {"epochs": [], "phases": {}, "train_seconds": 0.0}


def phase_record(
    exp, phase, first: int, last: int, trainable: int, total: int, cached, steps: dict, steps_per_epoch: int
) -> dict:
    """history.json's record of a phase as it begins (``cached``: True, ``"activations"`` or False)."""
    o = exp.optim
    trains_backbone = exp.model.is_transfer and phase.trainable != "head"
    return {
        "name": phase.name,
        "first_epoch": first + 1,
        "last_epoch": last,
        "lr": phase.lr,
        "trainable": phase.trainable,
        "trainable_params": trainable,
        "total_params": total,
        "cached_features": cached is True,
        "cached_activations": cached == "activations",
        "schedule": {**steps, "steps_per_epoch": steps_per_epoch},
        "lr_stage_decay": o.lr_stage_decay if trains_backbone else 1.0,
        # the backbone's BatchNorm (transfer models; the scratch CNN and pretraining always train theirs)
        "bn": (o.bn if trains_backbone else "frozen") if exp.model.is_transfer else None,
    }


def charge(timings: dict, name: str, seconds: float) -> None:
    """A frozen-backbone pass counts as training time (it replaces part of every epoch)."""
    timings[name] = round(timings.get(name, 0.0) + seconds, 3)
    timings["train_seconds"] = round(timings["train_seconds"] + seconds, 3)


def data_changes(out: str, splits: dict, exp=None) -> list:
    """What differs between the inputs the run in ``out`` was made on (its data.json) and ``splits`` (a
    :class:`~kerasxfer.data.DataSplits`' ``splits``) and ``exp``'s weights file, in words; [] when the same (or
    nothing to compare)."""
    try:
        recorded = fsio.read_json(os.path.join(out, rundir.DATA))
        old = recorded["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        return []  # no data.json (a run that died before writing it): nothing was trained on other images
    changes = []
    if exp is not None and recorded.get("weights_sha256") not in (None, weights_fingerprint(exp)):
        changes.append(f"the weights file {exp.model.weights} holds other bytes")
    for name, new in splits.items():
        before = old.get(name) if isinstance(old, dict) else None
        if not isinstance(before, dict):
            continue
        if before.get("fingerprint") != new.get("fingerprint"):
            changes.append(
                f"the {name} split holds other images or labels ({before.get('count')} images then, {new.get('count')} now)"
            )
        elif before.get("content") not in (None, new.get("content")):
            changes.append(f"the {name} split's images changed (same names, other bytes)")
    return changes


def stale_error(out: str, changes: list) -> UserError:
    return UserError(
        f"{out} was trained on other inputs than it is given now ({'; '.join(changes)}): pass --overwrite to "
        "train it again on these, or choose another --out_dir to keep both."
    )


def finished_metrics(exp):
    """metrics.json of the finished run in ``exp.out_dir`` (made with ``exp``'s settings), None if damaged."""
    if rundir.inspect_run_dir(exp.out_dir, exp.to_dict(), complete=type(exp).complete) != "finished":
        return None
    try:
        metrics = fsio.read_json(os.path.join(exp.out_dir, rundir.METRICS))
        test = metrics["test"]  # None: a study's final model, which has no test split
        log.info(
            "%s is already finished (%s, best epoch %d); pass --overwrite to train it again",
            exp.out_dir,
            f"test accuracy {test['accuracy']:.4f}" if test is not None else "no test split",
            metrics["best_epoch"],
        )
        return metrics
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("%s of the finished run %s is damaged: evaluating its best checkpoint again", rundir.METRICS, exp.out_dir)
        return None


def trained_record(out: str) -> tuple[dict, dict]:
    """history.json and timings.json of a trained run (what finishing it reads), or one sentence when damaged."""
    try:
        history, timings = (fsio.read_json(os.path.join(out, name)) for name in (rundir.HISTORY, rundir.TIMINGS))
        if isinstance(history["best"]["epoch"], int) and isinstance(timings["epochs"], list):
            return history, timings
        raise TypeError("unexpected contents")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(
            f"{out} was trained but its {rundir.HISTORY} or {rundir.TIMINGS} is damaged "
            f"({type(e).__name__}), so its outputs cannot be written: pass --overwrite to train it "
            "again from the start."
        ) from None


def diverged_error(history: dict, model_path: str) -> UserError:
    """The sentence for a run whose loss became NaN or infinite, saying what was kept and what to change."""
    stop, best = history["stopped"], history["best"]
    kept = (
        (f"the best checkpoint so far (epoch {best['epoch']}, val_accuracy {best['val_accuracy']:.4f}) is kept in {model_path}")
        if best
        else "no epoch before it was usable, so no model was kept"
    )
    return UserError(
        f"the loss became NaN or infinite in epoch {stop['epoch']} ({stop['phase']} phase), so training "
        f"stopped; {kept}: lower the learning rate (--lr) and run again with --overwrite."
    )
