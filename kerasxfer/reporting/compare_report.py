"""The side-by-side answer: tables, curves, confusion matrices, summary sentences.

:func:`write_report` reads two or more finished run directories (it never
needs the process that trained them) and writes::

    report.md      a table per run, a comparison table and an executive summary
    curves.png     accuracy and loss per epoch for every run (of every fold), phase boundaries marked
    lr.png         the learning rate of every step of every run (the schedules that trained)
    confusion.png  the confusion matrix of every run's best checkpoint on the test split (pooled over folds)
    verdict.png    each run's test accuracy with its interval and the majority-class baseline
    summary.json   every number the report states

Runs are compared only when they were tested on the same images
(:func:`check_comparable`).  Validation chose each run's best epoch; the
verdict (:mod:`kerasxfer.reporting.verdict`: a decision with its interval and paired
test, the majority-class baseline, did-not-learn flags, the control's own
sentence) and the seed table use the held-out test split.  Every test figure
is recomputed from the per-image predictions a run stored, so an edited
number in ``metrics.json`` cannot disagree with its own paired test.  Runs of
a cross-validated study (``data.json`` names their fold) are pooled per arm:
the verdict then reads the out-of-fold predictions of every image.  Runs from
several seeds of the same approach (``<name>-seed<k>``) are aggregated to
mean ± std.
"""

from __future__ import annotations

import os
import re
import statistics

from kerasxfer import figures, fsio, rundir
from kerasxfer.config import DEFAULT_MIN_STEPS
from kerasxfer.errors import UserError
from kerasxfer.families import family_of
from kerasxfer.records import (
    Arm,
    FinalModel,
    History,
    Phase,
    PhaseSummary,
    Run,
    RunSummary,
    SeedGroup,
    StudyRun,
    Verdict,
    to_json,
)
from kerasxfer.reporting import fit, html, stats, verdict
from kerasxfer.reporting.markdown import report_markdown
from kerasxfer.reporting.runs import load_runs
from kerasxfer.reporting.text import interval_text, recipe_sentence, schedule_cell, shown
from kerasxfer.reporting.text import pct as _pct


def _phase_summary(history: History, phase: Phase) -> PhaseSummary:
    eps = [e for e in history.epochs if e.phase == phase.name]
    best = max(eps, key=lambda e: (e.val_accuracy, -e.val_loss))
    speeds = [e.images_per_sec for e in eps[1:] or eps if e.images_per_sec]
    vl = [e.val_loss for e in eps]
    return PhaseSummary(
        name=phase.name,
        epochs=(phase.first_epoch, phase.last_epoch),
        learning_rate=phase.lr,
        trainable=phase.trainable,
        trainable_params=phase.trainable_params,
        total_params=phase.total_params,
        best_val_accuracy=best.val_accuracy,
        best_epoch=best.epoch,
        best_train_loss=best.loss,
        best_val_loss=best.val_loss,
        val_loss_min=min(vl),
        val_loss_max=max(vl),
        seconds=phase.seconds,
        images_per_sec=statistics.median(speeds) if speeds else None,
        schedule=schedule_cell(phase),
        solved=phase.probe is not None,
    )


def summarize_run(run: Run) -> RunSummary:
    """Every number the report gives about one run."""
    h, t, cfg, data = run.history, run.test, run.setup, run.data
    last, best = h.epochs[-1], h.best
    scratch = cfg.kind == "scratch"
    return RunSummary(
        name=shown(run.name or os.path.basename(os.path.normpath(run.dir))),
        dir=run.dir,
        kind=cfg.kind,
        backbone=None if scratch else cfg.backbone,
        weights_file=None if scratch else cfg.weights,
        optimizer_steps=_optimizer_steps(h),
        min_steps=cfg.min_steps,
        train_counts=list((data.train_per_class or {}).values()),
        folds=run.folds,
        planned_folds=run.planned_folds,
        model="scratch CNN" if scratch else str(cfg.backbone),
        weights=h.weights_source,
        preprocessing="Rescaling(1/255) inside the model" if scratch else family_of(str(cfg.backbone)).preprocessing,
        seed=cfg.seed,
        image_size=cfg.image_size,
        image_size_choice=cfg.image_size_choice,
        dataset=data.source,
        classes_missing=data.classes_missing,
        splits=data.splits,
        num_train=data.num_train,
        num_val=data.num_val,
        num_test=data.num_test,
        test_accuracy=t.accuracy,
        test_balanced_accuracy=t.balanced_accuracy,
        test_macro_f1=t.macro_f1,
        test_loss=t.loss,
        test_interval=stats.wilson(round(t.accuracy * data.num_test), data.num_test),
        best_val_accuracy=best.val_accuracy,
        best_val_loss=best.val_loss,
        best_epoch=best.epoch,
        best_phase=best.phase,
        final_epoch=last.epoch,
        final_train_accuracy=last.accuracy,
        final_train_loss=last.loss,
        final_val_accuracy=last.val_accuracy,
        final_val_loss=last.val_loss,
        accuracy_gap=last.accuracy - last.val_accuracy,
        loss_gap=last.val_loss - last.loss,
        total_params=run.total_params if run.total_params is not None else h.phases[-1].total_params,
        train_seconds=h.train_seconds,
        phases=tuple(_phase_summary(h, p) for p in h.phases),
        recipe=recipe_sentence(cfg, h),
        fit=_fit(run),
        test_confusion_matrix=t.confusion_matrix,
        per_class=stats.per_class(t.labels, t.predictions, run.data.class_names),
    )


def _fit(run: Run):
    """How the checkpoint the run tested fit its training images (a pooled arm: the means over its folds)."""
    h = run.history
    best = h.best_epoch
    if run.fold_fit is not None:
        train, val, losses, probe = run.fold_fit
    else:
        train, val, losses, probe = best.accuracy, best.val_accuracy, (best.loss, best.val_loss), h.probe_train_accuracy
    return fit.diagnose(run.setup.kind, train, val, losses, probe)


def _optimizer_steps(history: History) -> int | None:
    """Optimizer steps the run took over all its phases (None for runs that did not record steps per epoch)."""
    total = 0
    for p in history.phases:
        per_epoch = p.schedule.steps_per_epoch if p.schedule else None
        if per_epoch is None:
            return None
        total += per_epoch * (p.last_epoch - p.first_epoch + 1)
    return total


def _approach(name: str) -> str:
    return re.sub(r"-seed\d+$", "", name)


# --------------------------------------------------------------- sentences
def _run_sentence(s) -> str:
    if len(s.phases) == 1:
        p = s.phases[0]
        return (
            f"The {s.model} run **{s.name}** reached val_acc {_pct(p.best_val_accuracy)} "
            f"(epoch {p.best_epoch}, train_loss {p.best_train_loss:.3f} / val_loss {p.best_val_loss:.3f}); "
            f"that checkpoint scores {interval_text(s)} on the {s.num_test} held-out test images."
        )
    parts = []
    for i, p in enumerate(s.phases):
        what = "frozen" if p.trainable == "head" else f"after unfreezing ({p.trainable})"
        what += " (solved)" if p.solved else ""
        swing = ""
        if i > 0 and p.val_loss_max - p.val_loss_min > 0.25 * max(p.val_loss_min, 1e-9):
            swing = f", val_loss swinging {p.val_loss_min:.3f}–{p.val_loss_max:.3f}"
        parts.append(f"{what} {_pct(p.best_val_accuracy)} (epoch {p.best_epoch}{swing})")
    return (
        f"{s.model} run **{s.name}** ({s.weights}): best val_acc "
        + "; ".join(parts)
        + f"; its best checkpoint scores {interval_text(s)} on the {s.num_test} held-out test images."
    )


def _notes(s) -> list:
    notes = []
    said = fit.fit_sentence(s.name, s.kind, s.fit)
    if said:
        notes.append(said)
    if s.final_val_accuracy < s.best_val_accuracy - 0.02:
        notes.append(
            f"**{s.name}** ended {100 * (s.best_val_accuracy - s.final_val_accuracy):.1f} points below its best "
            f"epoch ({s.best_epoch}); the saved model is the best checkpoint."
        )
    if len(s.phases) > 1:
        p1, p2 = s.phases[0], s.phases[-1]
        d = p2.best_val_accuracy - p1.best_val_accuracy
        notes.append(
            f"Unfreezing moved **{s.name}** from {_pct(p1.best_val_accuracy)} to {_pct(p2.best_val_accuracy)} "
            f"({'+' if d >= 0 else ''}{100 * d:.2f} points)."
        )
    return notes


def _verdict_arm(s: RunSummary, run: Run) -> Arm:
    """What :func:`kerasxfer.reporting.verdict.decide` reads of one run."""
    return Arm(
        name=s.name,
        model=s.model,
        kind=s.kind,
        backbone=s.backbone,
        weights=s.weights_file,
        weights_source=s.weights,
        predictions=run.test.predictions,
        train_seconds=s.train_seconds,
        total_params=s.total_params,
        optimizer_steps=s.optimizer_steps,
        min_steps_default=max(s.min_steps or 0, DEFAULT_MIN_STEPS),
        final_train_loss=s.final_train_loss,
        final_train_accuracy=s.final_train_accuracy,
        train_counts=s.train_counts,
        frozen_only=s.kind == "transfer" and all(p.trainable == "head" for p in s.phases),
        fit=s.fit,
    )


def executive_summary(
    summaries: list[RunSummary], runs: list[Run], groups: dict, alpha: float = stats.NOISE_P
) -> tuple[list[str], Verdict]:
    """Plain sentences, the verdict first (:mod:`kerasxfer.reporting.verdict`), then each run, seeds, notes, cost."""
    # one run per approach (seeds of one approach are not rivals), chosen on validation, never on test
    best_of: dict[str, RunSummary] = {}
    for s in sorted(summaries, key=lambda s: s.name):
        a = _approach(s.name)
        if a not in best_of or s.best_val_accuracy > best_of[a].best_val_accuracy:
            best_of[a] = s
    by = {s.name: r for s, r in zip(summaries, runs)}
    chosen = list(best_of.values())
    first = by[chosen[0].name]
    v = verdict.decide(
        [_verdict_arm(s, by[s.name]) for s in chosen],
        first.test.labels,
        first.data.class_names,
        folds=first.num_folds or 0,
        alpha=alpha,
        planned_folds=first.planned_folds or 0,
    )
    lines = list(v.sentences)
    lines += [_run_sentence(s) for s in summaries]
    for name, g in groups.items():
        if len(g.seeds) > 1:
            lines.append(
                f"Over {len(g.seeds)} seeds, **{name}** scored {_pct(g.mean)} ± {100 * g.std:.2f} points on the test split."
            )
    for s in summaries:
        lines += _notes(s)
    fast = sorted(summaries, key=lambda s: s.train_seconds or 0)
    if len(fast) >= 2 and fast[0].train_seconds:
        lines.append(
            "Cost: "
            + ", ".join(f"{s.name} trained for {s.train_seconds:.0f} s ({s.total_params:,} parameters)" for s in fast)
            + "."
        )
    return lines, v


# ------------------------------------------------------------------ report
def _seed_groups(summaries) -> dict[str, SeedGroup]:
    """Runs of one approach over several seeds (``<name>-seed<k>``): their test accuracy, mean and std."""
    members: dict[str, list] = {}
    for s in summaries:
        members.setdefault(_approach(s.name), []).append(s)
    return {
        name: SeedGroup(
            runs=tuple(s.name for s in ss),
            seeds=tuple(s.seed for s in ss),
            values=tuple(s.test_accuracy for s in ss),
            mean=statistics.fmean(s.test_accuracy for s in ss),
            std=statistics.stdev(s.test_accuracy for s in ss) if len(ss) > 1 else 0.0,
        )
        for name, ss in members.items()
    }


#: The files a report writes (nothing else in its folder is touched).
REPORT_FILES = ("report.md", "report.html", "summary.json", "curves.png", "lr.png", "confusion.png", "verdict.png")


def _study_alpha(study: StudyRun | None) -> float:
    """The level a winner must reach: the sequential rule's at the last fold that ran, else the usual."""
    level = study.sequential.level() if study is not None and study.sequential is not None else None
    return stats.NOISE_P if level is None else level


def interim_verdict(run_dirs, alpha: float) -> Verdict:
    """The verdict over the finished fold runs ``run_dirs`` (folds 1..k of a study), a winner needing ``alpha``."""
    runs = load_runs(run_dirs, partial_folds=True)
    summaries = [summarize_run(r) for r in runs]
    return executive_summary(summaries, runs, _seed_groups(summaries), alpha)[1]


def write_report(
    run_dirs, out_dir: str, overwrite: bool = False, study: StudyRun | None = None, final: FinalModel | None = None
) -> dict:
    """Compare the runs in ``run_dirs``; write ``out_dir``; return summary.json's content.

    ``study``: what a study did to be cheap (its ``shortcuts`` sentences, its sequential looks), stated in
    the report; a study stopped by its sequential rule passes the fold runs that ran.  ``final``: the model the
    study hands over (:mod:`kerasxfer.final`), its own section.

    Runs of a cross-validated study (every fold of every arm) are pooled per
    arm first (:func:`kerasxfer.reporting.folds.pool_runs`).  ``out_dir`` may not
    be a run, nor hold files of the report's names that kerasxfer did not
    write (unless ``overwrite``): :func:`kerasxfer.rundir.claim_output_folder`.
    """
    if len(run_dirs) < 2:
        raise UserError("compare needs at least two run directories, e.g. --runs=runs/scratch,runs/finetune.")
    stopped = study is not None and study.sequential is not None and study.sequential.stopped_after is not None
    runs = load_runs(run_dirs, partial_folds=stopped)
    summaries = [summarize_run(r) for r in runs]
    names = [s.name for s in summaries]
    if len(set(names)) != len(names):
        raise UserError(f"two runs share the folder name {names}: give each run directory its own name.")
    groups = _seed_groups(summaries)
    lines, v = executive_summary(summaries, runs, groups, _study_alpha(study))
    rundir.claim_output_folder(out_dir, REPORT_FILES, "report", overwrite)
    pictures = {
        "curves.png": figures.report_curves,
        "lr.png": figures.report_learning_rates,
        "confusion.png": figures.report_confusions,
    }
    for name, draw in pictures.items():
        draw(summaries, runs, os.path.join(out_dir, name))
    figures.report_verdict(summaries, v, os.path.join(out_dir, "verdict.png"))
    md = report_markdown(summaries, groups, lines, v, study, final)
    fsio.write_text(os.path.join(out_dir, "report.md"), md)
    drawn = (*pictures, "verdict.png")
    fsio.write_text(os.path.join(out_dir, "report.html"), html.render(md, out_dir, summaries, drawn))
    summary = to_json(
        {
            "runs": summaries,
            "verdict": v,
            "comparisons": v.pairs + v.controls,
            "baseline": v.baseline,
            "figure": v.figure,
            "approaches": groups,
            "summary": lines,
            "study": study,
            "final": final,
        }
    )
    fsio.write_json(os.path.join(out_dir, "summary.json"), summary)
    return summary
