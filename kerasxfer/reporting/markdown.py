"""report.md of a compare report: the executive summary, the study's shortcuts, the side-by-side table, the data,
the folds, a section per run and the seeds (no TensorFlow).  The numbers and sentences come from
:mod:`kerasxfer.reporting.compare_report`."""

from __future__ import annotations

from kerasxfer.reporting import folds, stats
from kerasxfer.reporting.text import interval_text, table
from kerasxfer.reporting.text import pct as _pct


def _run_section(s) -> list:
    """The report's section about one run: where it came from, and a row per phase."""
    md = [
        "",
        f"## {s.name}",
        "",
        f"{s.model} on {s.dataset} ({s.num_train} train / {s.num_val} val / {s.num_test} test "
        f"images), seed {s.seed}. Image size: {s.image_size} px ({s.image_size_choice}). "
        f"Weights: {s.weights}. Preprocessing: {s.preprocessing}. "
        f"Training: {s.recipe}. Run directory: `{s.dir}`.",
        "",
    ]
    md.append(
        table(
            [
                [
                    p.name,
                    f"{p.epochs[0]}–{p.epochs[1]}",
                    f"{p.learning_rate:g}",
                    p.schedule,
                    p.trainable,
                    f"{p.trainable_params:,} / {p.total_params:,}",
                    _pct(p.best_val_accuracy),
                    p.best_epoch,
                    f"{p.val_loss_min:.3f}–{p.val_loss_max:.3f}",
                    f"{p.seconds:.0f}" if p.seconds is not None else "–",
                    f"{p.images_per_sec:.0f}" if p.images_per_sec else "–",
                ]
                for p in s.phases
            ],
            [
                "phase",
                "epochs",
                "peak lr",
                "schedule",
                "trains",
                "trainable / total params",
                "best val_acc",
                "best epoch",
                "val_loss range",
                "seconds",
                "train images/s",
            ],
        )
    )
    md += [
        "",
        f"Final epoch {s.final_epoch}: train accuracy {_pct(s.final_train_accuracy)}, "
        f"val accuracy {_pct(s.final_val_accuracy)}, train loss {s.final_train_loss:.4f}, "
        f"val loss {s.final_val_loss:.4f}.",
    ]
    return md


def _data_sentence(s) -> str:
    """How many images each split holds and where it came from (the same for every compared run)."""
    parts = [f"{name} {split.count} ({split.origin})" for name, split in s.splits.items()]
    missing = "".join(
        f" **The {name} split holds no image of {', '.join(cs)}**: its numbers say nothing about "
        f"{'that class' if len(cs) == 1 else 'those classes'}."
        for name, cs in s.classes_missing.items()
    )
    return (
        f"Data: {s.dataset}; " + ", ".join(parts) + ". Validation chose each run's best epoch; every "
        "accuracy called *test* is measured on the test split, which no run trained on or was selected on." + missing
    )


def _side_by_side(summaries, v) -> list:
    """The comparison table: one row per run, and the majority-class baseline's row."""
    imbalanced = v.figure == "balanced accuracy"
    header = ["run", "role", "model", "weights", "test accuracy (95 % interval)"]
    header += ["balanced accuracy", "macro-F1"] if imbalanced else []
    header += ["best val_acc", "best epoch", "final train / val loss", "train-val acc gap (points)", "parameters", "train s"]
    rows = []
    for s in summaries:
        role = v.roles.get(s.name, "seed")  # seeds not chosen for the verdict have no role
        if s.name in v.learned and not v.learned[s.name].learned:
            role += f", **{v.learned[s.name].tag}**"
        row = [s.name, role, s.model, s.weights, interval_text(s)]
        row += [_pct(s.test_balanced_accuracy), f"{s.test_macro_f1:.3f}"] if imbalanced else []
        row += [
            _pct(s.best_val_accuracy),
            f"{s.best_epoch} ({s.best_phase})",
            f"{s.final_train_loss:.3f} / {s.final_val_loss:.3f}",
            f"{100 * s.accuracy_gap:+.2f}",
            f"{s.total_params:,}",
            f"{s.train_seconds:.0f}" if s.train_seconds else "–",
        ]
        rows.append(row)
    b = v.baseline
    lo, hi = stats.wilson(round(b.accuracy * v.num_images), v.num_images)
    row = [
        f"majority class ({b.class_name})",
        "baseline",
        "–",
        "–",
        f"{_pct(b.accuracy)} (95 % interval {100 * lo:.1f}–{100 * hi:.1f} %)",
    ]
    row += [_pct(b.balanced_accuracy), "–"] if imbalanced else []
    rows.append(row + ["–"] * 6)
    return [table(rows, header)]


def final_section(f) -> list:
    """The report's "The model to deploy" section: which model a study hands over, what to expect, its cost."""
    md = ["## The model to deploy", ""]
    if f.arm is None:
        return md + [f"No final model: {f.why}", ""]
    lo, hi = f.interval
    expect = f"Expected {f.figure}: **{_pct(f.estimate)}** (95 % interval {100 * lo:.1f}–{100 * hi:.1f} %), " + (
        f"the cross-validation's estimate (its {f.folds} folds' out-of-fold predictions); this model has no "
        "test split of its own, since every labelled image trained it."
        if f.retrained
        else "measured on the study's test split."
    )
    if f.retrained:
        cost = f"{f.train_seconds:.0f} s of training" if f.train_seconds is not None else "its training time"
        where = (
            f"**{f.arm}** ({f.why}), trained once more on every labelled image ({f.num_train} to train, {f.num_val} "
            f"to choose its checkpoint and head), ending at epoch {f.stop_epoch}, the median of its folds' best "
            f"epochs ({', '.join(map(str, f.fold_best_epochs))}); {cost}, {f.total_params:,} parameters."
        )
    else:
        where = f"**{f.arm}** ({f.why})."
    use = f"Folder: `{f.dir}`; `kerasxfer predict --run=<this study's folder>` and `kerasxfer.load(<study folder>)` use it."
    return md + [where, "", expect, "", use, ""]


def report_markdown(summaries, groups, lines, v, study=None, final=None) -> str:
    md = ["# Scratch or transfer? — kerasxfer report", ""]
    md += ["## Executive summary", ""] + [f"- {l}" for l in lines] + [""]
    md += ["![each arm's test accuracy with its interval, and the majority-class baseline](verdict.png)", ""]
    md += final_section(final) if final is not None else []
    if study:
        md += ["## How this study ran", ""] + [f"- {l}" for l in study.shortcuts] + [""]
    md += ["## Side by side", ""] + _side_by_side(summaries, v)
    md += ["", _data_sentence(summaries[0])]
    if summaries[0].folds:
        md += folds.markdown(summaries, table)
    for s in summaries:
        md += _run_section(s)
    if any(len(g.seeds) > 1 for g in groups.values()):
        md += ["", "## Seeds", ""]
        md.append(
            table(
                [
                    [n, len(g.seeds), _pct(g.mean), f"{100 * g.std:.2f}", ", ".join(_pct(v) for v in g.values)]
                    for n, g in groups.items()
                ],
                ["approach", "seeds", "mean test accuracy", "std (points)", "per seed"],
            )
        )
    md += ["", "![curves](curves.png)", "", "![learning rate](lr.png)", "", "![confusion matrices](confusion.png)", ""]
    return "\n".join(md)
