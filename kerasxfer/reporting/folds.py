"""Cross-validated studies in the report: the fold runs of each arm pooled into out-of-fold predictions.

A study with ``--folds=K`` trains every arm once per fold
(``<study>/fold<k>/<arm>``; :func:`kerasxfer.data.splitting.fold_split` makes
the splits): fold k tests on the k-th of K stratified folds of every labelled
image.  :func:`fold_groups` checks that every arm has every fold;
:func:`pool` joins an arm's K test splits in fold order into one run whose
test split is the whole pool, so the verdict, the intervals and McNemar read
every image once (:func:`kerasxfer.reporting.runs.load_runs` checks that the arms of
one fold were tested on the same images).  No TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
import statistics
from dataclasses import replace

from kerasxfer.errors import UserError
from kerasxfer.records import Evaluation, FoldResult, Run, Split


def fold_groups(runs, partial: bool = False) -> tuple:
    """``{arm name: {fold: run}}`` and K, refusing a mix of fold and plain runs, other Ks or a fold given twice.

    ``partial``: a study stopped early by its sequential rule: every arm has folds 1..k of K (k is returned).
    """
    groups: dict[str, dict[int, Run]] = {}
    ks: set[int] = set()
    for r in runs:
        k, n = r.data.fold, r.data.folds
        if not n:
            raise UserError(
                f"{r.dir} is not a fold of a cross-validated study, unlike the other runs: compare fold "
                "runs with fold runs (a study's fold<k>/ folders) or single-split runs with each other."
            )
        ks.add(n)
        name = os.path.basename(os.path.normpath(r.dir))
        if k in groups.setdefault(name, {}):
            raise UserError(f"two runs of {name!r} are fold {k}: pass each fold's run once.")
        groups[name][k] = r
    if len(ks) > 1:
        raise UserError(
            f"the runs were cross-validated with different numbers of folds ({sorted(ks)}): compare runs of one study."
        )
    folds = ks.pop()
    if partial:
        folds = max(max(g) for g in groups.values())
    for name, g in groups.items():
        missing = sorted(set(range(1, folds + 1)) - set(g))
        if missing:
            raise UserError(
                f"the cross-validated arm {name!r} lacks fold(s) {', '.join(map(str, missing))} of "
                f"{folds}: finish the study (run the same command again) or pass every fold's run."
            )
    return groups, folds


def pool(name: str, fold_runs: list[Run], folds: int) -> Run:
    """One run of arm ``name`` whose test split is the test folds of ``fold_runs`` in fold order (all K, or the
    first k of a study its sequential rule stopped); its test figures are recomputed by the caller."""
    first = fold_runs[0]
    planned = first.data.folds or folds
    tests = [r.test for r in fold_runs]
    labels = [v for t in tests for v in t.labels]
    n = len(labels)
    fp = hashlib.sha256("".join(r.data.test_split.fingerprint for r in fold_runs).encode()).hexdigest()
    origin = (
        (f"out-of-fold: every one of the {n} labelled images tested once, by the fold that held it out ({folds} folds)")
        if folds == planned
        else (
            f"out-of-fold over the first {folds} of {planned} folds (the study stopped when its answer was "
            f"known): {n} labelled images, each tested once"
        )
    )
    data = replace(first.data, num_test=n, splits={**first.data.splits, "test": Split(count=n, fingerprint=fp, origin=origin)})
    seconds = [r.history.train_seconds for r in fold_runs]
    history = replace(first.history, train_seconds=None if None in seconds else sum(s or 0.0 for s in seconds))
    test = Evaluation(
        labels=labels,
        predictions=[v for t in tests for v in t.predictions],
        loss=sum(t.loss * len(t.labels) for t in tests) / max(n, 1),
    )
    per_fold = tuple(
        FoldResult(
            fold=k,
            dir=r.dir,
            num_test=len(t.labels),
            test_accuracy=t.accuracy,
            best_epoch=r.history.best.epoch,
            best_val_accuracy=r.history.best.val_accuracy,
            train_seconds=r.history.train_seconds,
        )
        for k, (r, t) in enumerate(zip(fold_runs, tests), 1)
    )
    lasts = [r.history.best_epoch for r in fold_runs]  # the checkpoints tested
    probes = [r.history.probe_train_accuracy for r in fold_runs]
    fold_fit = (
        sum(e.accuracy for e in lasts) / len(lasts),
        sum(e.val_accuracy for e in lasts) / len(lasts),
        (sum(e.loss for e in lasts) / len(lasts), sum(e.val_loss for e in lasts) / len(lasts)),
        None if None in probes else sum(probes) / len(probes),  # type: ignore[arg-type]
    )
    return replace(
        first,
        name=name,
        history=history,
        test=test,
        data=data,
        folds=per_fold,
        num_folds=folds,
        planned_folds=planned,
        fold_fit=fold_fit,
        fold_histories=tuple(r.history for r in fold_runs),
    )


def markdown(summaries, table) -> list:
    """The report's "Folds" section: each arm's test accuracy per fold, their mean ± std and the pooled figure."""
    k = len(summaries[0].folds)
    rows = []
    for s in summaries:
        accs = [f.test_accuracy for f in s.folds]
        rows.append(
            [
                s.name,
                *(f"{100 * a:.2f} %" for a in accs),
                f"{100 * statistics.fmean(accs):.2f} ± {100 * statistics.pstdev(accs):.2f}",
                f"{100 * s.test_accuracy:.2f} %",
            ]
        )
    header = ["arm", *(f"fold {i}" for i in range(1, k + 1)), "mean ± std (points)", "pooled (all images)"]
    planned = summaries[0].planned_folds or k
    if planned == k:
        what = (
            f"Each arm trained {k} times; fold k tested on the k-th of {k} stratified folds of every labelled "
            "image, so every image was tested exactly once."
        )
    else:
        what = (
            f"Each arm trained {k} times of the {planned} planned; fold k tested on the k-th of {planned} "
            f"stratified folds, and the study stopped after fold {k} when its sequential rule said the answer "
            "was known, so the images of the other folds were not tested."
        )
    return [
        "",
        "## Folds",
        "",
        what + " The verdict uses the pooled out-of-fold predictions; the curves show every fold, the confusion "
        "matrices and per-class scores count every pooled test image, and the sections below describe each arm's "
        "fold-1 run.",
        "",
        table(rows, header),
    ]
