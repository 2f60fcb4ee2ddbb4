"""Finished run directories as the reports read them: loaded, checked comparable, fold runs pooled (no TensorFlow).

:func:`load_runs` is what :mod:`kerasxfer.reporting.compare_report` compares: each run's
config, history (with timings), metrics and data, every test figure
recomputed from the stored per-image predictions (:func:`recompute_test`),
runs given twice refused, the runs of a cross-validated study pooled per arm
(:mod:`kerasxfer.reporting.folds`), and runs tested on other images refused
(:func:`check_comparable`).
"""

from __future__ import annotations

import os
from dataclasses import replace

from kerasxfer import fsio, records, rundir
from kerasxfer.errors import UserError
from kerasxfer.records import Run
from kerasxfer.reporting import folds, stats
from kerasxfer.reporting.text import shown


def load_runs(run_dirs, partial_folds: bool = False) -> list[Run]:
    """The runs of ``run_dirs``, ready to compare: one per arm when they are the fold runs of a study
    (``partial_folds``: of its first folds only, a study stopped by its sequential rule)."""
    _refuse_same_run(run_dirs)
    runs = [load_run(d) for d in run_dirs]
    if any(r.data.folds for r in runs):
        groups, k = folds.fold_groups(runs, partial_folds)
        for fold in range(1, k + 1):
            check_comparable([g[fold] for g in groups.values()])
        runs = [recompute_test(folds.pool(name, [g[fold] for fold in range(1, k + 1)], k)) for name, g in groups.items()]
    check_comparable(runs)
    return runs


def load_run(run_dir: str) -> Run:
    """The :class:`~kerasxfer.records.Run` of a finished run directory, its test figures recomputed."""
    need = (rundir.CONFIG, rundir.HISTORY, rundir.METRICS, rundir.DATA)
    missing = [f for f in need if not os.path.isfile(os.path.join(run_dir, f))]
    if missing:
        raise UserError(
            f"{run_dir!r} is not a finished kerasxfer run (missing {', '.join(missing)}): "
            "train it first or pass another run directory."
        )
    files = {}
    for k in ("config", "history", "metrics", "data", "timings"):
        path = os.path.join(run_dir, f"{k}.json")
        if k == "timings" and not os.path.isfile(path):
            continue
        try:
            files[k] = fsio.read_json(path)
        except (OSError, ValueError) as e:
            raise UserError(
                f"{path} cannot be read ({type(e).__name__}): the run {run_dir!r} is damaged; train it "
                "again (same command with --overwrite) or leave it out of --runs."
            ) from None
        if not isinstance(files[k], dict):
            raise _damaged(path, run_dir)
    if "test" not in files["metrics"] or "splits" not in files["data"]:
        raise UserError(
            f"{run_dir!r} was trained before kerasxfer held out a test split, so its numbers are not comparable: "
            "train it again (same command with --overwrite)."
        )
    try:
        run = records.read_run(
            run_dir, files["config"], files["history"], files["metrics"], files["data"], files.get("timings"), shown=shown
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _damaged(os.path.join(run_dir, "*.json"), run_dir) from None
    return recompute_test(run)


def _damaged(path: str, run_dir: str) -> UserError:
    return UserError(
        f"{path} does not hold what a kerasxfer run writes: the run {run_dir!r} is damaged; "
        "train it again (same command with --overwrite) or leave it out of --runs."
    )


def recompute_test(run: Run) -> Run:
    """``run`` with its test figures from the stored per-image labels and predictions (never the stored
    accuracy)."""
    t, k = run.test, len(run.data.class_names)
    y, p = t.labels, t.predictions
    if (
        not isinstance(y, list)
        or not isinstance(p, list)
        or len(y) != len(p)
        or len(y) != run.data.num_test
        or not all(isinstance(v, int) and 0 <= v < k for v in (*y, *p))
    ):
        raise UserError(
            f"{run.dir!r} has no valid per-image test predictions in {rundir.METRICS} (one label and one "
            "prediction per test image): evaluate it again by training with --overwrite."
        )
    cm = [[0] * k for _ in range(k)]
    for a, b in zip(y, p):
        cm[a][b] += 1
    return replace(
        run,
        test=replace(
            t,
            accuracy=stats.figure_of(y, p, "accuracy"),
            macro_f1=stats.macro_f1(y, p),
            balanced_accuracy=stats.figure_of(y, p, "balanced accuracy"),
            confusion_matrix=cm,
        ),
    )


def check_comparable(runs) -> None:
    """Refuse (one sentence) runs whose data differ: class names, source, split seed or test images."""
    checks = (
        ("class names", lambda r: r.data.class_names),
        ("datasets", lambda r: r.data.source),
        ("split seeds", lambda r: r.data.split_seed),
        ("test images", lambda r: r.data.test_split.fingerprint),
        # the images' bytes: files rewritten in place between two runs (runs written before this check have none)
        ("test image contents", lambda r: r.data.test_split.content),
        # paired tests need the same labels in the same order, also when a metrics.json was edited by hand
        ("test labels", lambda r: r.test.labels),
    )
    ref = runs[0]
    for r in runs[1:]:
        for what, get in checks:
            a, b = get(ref), get(r)
            if a != b and not (what == "test image contents" and None in (a, b)):
                shown = "" if what.startswith("test") else f" ({a!r} vs {b!r})"
                raise UserError(
                    f"{ref.dir} and {r.dir} cannot be compared: their {what} differ{shown}; compare runs "
                    "trained on the same data with the same --split_seed, so that they are tested on the same images."
                )


def _refuse_same_run(run_dirs) -> None:
    """A run given twice (also through a symlink or another spelling of its path) would be compared with itself."""
    seen: dict[str, str] = {}
    for d in run_dirs:
        real = os.path.realpath(d)
        if real in seen:
            raise UserError(
                f"{seen[real]} and {d} are the same run directory: a run compared with itself says nothing; pass each run once."
            )
        seen[real] = d
