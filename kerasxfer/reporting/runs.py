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

from kerasxfer import fsio, rundir
from kerasxfer.errors import UserError
from kerasxfer.reporting import folds, stats
from kerasxfer.reporting.text import shown


def load_runs(run_dirs, partial_folds: bool = False) -> list:
    """The runs of ``run_dirs``, ready to compare: one per arm when they are the fold runs of a study
    (``partial_folds``: of its first folds only, a study stopped by its sequential rule)."""
    _refuse_same_run(run_dirs)
    runs = [load_run(d) for d in run_dirs]
    if any(r["data"].get("folds") for r in runs):
        groups, k = folds.fold_groups(runs, partial_folds)
        for fold in range(1, k + 1):
            check_comparable([g[fold] for g in groups.values()])
        runs = [folds.pool(name, [g[fold] for fold in range(1, k + 1)], k) for name, g in groups.items()]
        for r in runs:
            recompute_test(r)
    check_comparable(runs)
    return runs


def load_run(run_dir: str) -> dict:
    """config, history, metrics and data of a finished run directory."""
    need = (rundir.CONFIG, rundir.HISTORY, rundir.METRICS, rundir.DATA)
    missing = [f for f in need if not os.path.isfile(os.path.join(run_dir, f))]
    if missing:
        raise UserError(
            f"{run_dir!r} is not a finished kerasxfer run (missing {', '.join(missing)}): "
            "train it first or pass another run directory."
        )
    run = {}
    for k in ("config", "history", "metrics", "data", "timings"):
        path = os.path.join(run_dir, f"{k}.json")
        if k == "timings" and not os.path.isfile(path):
            continue
        try:
            run[k] = fsio.read_json(path)
        except (OSError, ValueError) as e:
            raise UserError(f"{path} cannot be read ({type(e).__name__}): the run {run_dir!r} is damaged; train it "
                            "again (same command with --overwrite) or leave it out of --runs.") from None
        if not isinstance(run[k], dict) or (k == "history" and not isinstance(run[k].get("epochs"), list)):
            raise UserError(f"{path} does not hold what a kerasxfer run writes: the run {run_dir!r} is damaged; "
                            "train it again (same command with --overwrite) or leave it out of --runs.")
    if "test" not in run["metrics"] or "splits" not in run["data"]:
        raise UserError(
            f"{run_dir!r} was trained before kerasxfer held out a test split, so its numbers are not comparable: "
            "train it again (same command with --overwrite)."
        )
    if "timings" in run:
        _merge_timings(run["history"], run.pop("timings"))
    run["dir"] = run_dir
    _shown(run)
    recompute_test(run)
    return run


def _shown(run: dict) -> None:
    """The user's strings a report shows — class names, the dataset, the classes a split lacks — as text
    (:func:`kerasxfer.reporting.text.shown`): one line each, Markdown escaped."""
    data, metrics = run["data"], run["metrics"]
    if isinstance(data.get("class_names"), list):
        data["class_names"] = [shown(c) for c in data["class_names"]]
    if isinstance(metrics.get("class_names"), list):
        metrics["class_names"] = [shown(c) for c in metrics["class_names"]]
    if "source" in data:
        data["source"] = shown(data["source"])
    if isinstance(data.get("classes_missing"), dict):
        data["classes_missing"] = {k: [shown(c) for c in v] for k, v in data["classes_missing"].items()
                                   if isinstance(v, list)}


def recompute_test(run: dict) -> None:
    """The test figures from the stored per-image labels and predictions (never the stored accuracy)."""
    t, k = run["metrics"]["test"], len(run["data"]["class_names"])
    y, p = t.get("labels"), t.get("predictions")
    if not isinstance(y, list) or not isinstance(p, list) or len(y) != len(p) or len(y) != run["data"]["num_test"] \
            or not all(isinstance(v, int) and 0 <= v < k for v in (*y, *p)):
        raise UserError(
            f"{run['dir']!r} has no valid per-image test predictions in {rundir.METRICS} (one label and one "
            "prediction per test image): evaluate it again by training with --overwrite."
        )
    t["accuracy"] = stats.figure_of(y, p, "accuracy")
    t["balanced_accuracy"] = stats.figure_of(y, p, "balanced accuracy")
    t["macro_f1"] = stats.macro_f1(y, p)
    cm = [[0] * k for _ in range(k)]
    for a, b in zip(y, p):
        cm[a][b] += 1
    t["confusion_matrix"] = cm


def _merge_timings(history: dict, timings: dict) -> None:
    """Put timings.json's seconds and images/s back beside history.json's epochs and phases."""
    by_epoch = {t["epoch"]: t for t in timings.get("epochs", [])}
    for e in history["epochs"]:
        e.update({k: v for k, v in by_epoch.get(e["epoch"], {}).items() if k != "epoch"})
    for p in history["phases"]:
        p["seconds"] = timings.get("phases", {}).get(p["name"])
    history["train_seconds"] = timings.get("train_seconds")


def check_comparable(runs) -> None:
    """Refuse (one sentence) runs whose data differ: class names, source, split seed or test images."""
    checks = (
        ("class names", lambda r: r["data"]["class_names"]),
        ("datasets", lambda r: r["data"]["source"]),
        ("split seeds", lambda r: r["data"].get("split_seed")),
        ("test images", lambda r: r["data"]["splits"]["test"]["fingerprint"]),
        # the images' bytes: files rewritten in place between two runs (runs written before this check have none)
        ("test image contents", lambda r: r["data"]["splits"]["test"].get("content")),
        # paired tests need the same labels in the same order, also when a metrics.json was edited by hand
        ("test labels", lambda r: r["metrics"]["test"]["labels"]),
    )
    ref = runs[0]
    for r in runs[1:]:
        for what, get in checks:
            a, b = get(ref), get(r)
            if a != b and not (what == "test image contents" and None in (a, b)):
                shown = "" if what.startswith("test") else f" ({a!r} vs {b!r})"
                raise UserError(
                    f"{ref['dir']} and {r['dir']} cannot be compared: their {what} differ{shown}; compare runs "
                    "trained on the same data with the same --split_seed, so that they are tested on the same images."
                )


def _refuse_same_run(run_dirs) -> None:
    """A run given twice (also through a symlink or another spelling of its path) would be compared with itself."""
    seen = {}
    for d in run_dirs:
        real = os.path.realpath(d)
        if real in seen:
            raise UserError(f"{seen[real]} and {d} are the same run directory: a run compared with itself says "
                            "nothing; pass each run once.")
        seen[real] = d
