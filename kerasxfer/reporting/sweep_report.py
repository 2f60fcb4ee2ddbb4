"""A sweep's answer: ``sweep.csv``, the curves, and sentences computed from the numbers (no TensorFlow).

Writes into ``<out_dir>/<kind>/``::

    sweep.csv         one row per member: arm, depth, fraction, seed, images, epochs, images seen,
                      trainable parameters, best epoch, best val accuracy, test accuracy, run directory
    sweep_cost.csv    the seconds each member trained (apart: they change from machine to machine,
                      so sweep.csv stays byte-identical for equal flags)
    curves_data.png   (data) test accuracy against images per class, log x, a band over the seeds
    curves_depth.png  (depth) test accuracy, trainable parameters and seconds per depth
    sweep.md          the sentences, the tables and the picture
    sweep.json        every number the sentences state

Comparisons use McNemar's test on the held-out test split, pooled over the
seeds (each seed's pair of runs is tested on the same images, so pooling
repeats those images: with several seeds the p-value is optimistic).
"""

from __future__ import annotations

import os
import statistics
from dataclasses import replace

from kerasxfer import figures, fsio
from kerasxfer.records import ArmStats, DataPoint, DepthPoint, Run, SweepRow, to_json
from kerasxfer.reporting.runs import load_run
from kerasxfer.reporting.stats import NOISE_P, mcnemar
from kerasxfer.reporting.text import ARM_TITLES, csv_text, pct

COLUMNS = (
    "sweep",
    "arm",
    "depth",
    "fraction",
    "seed",
    "train_images",
    "images_per_class",
    "epochs",
    "images_seen",
    "trainable_params",
    "best_epoch",
    "best_val_accuracy",
    "test_accuracy",
    "run",
)


def member_row(kind: str, member, run: Run, root: str) -> SweepRow:
    """One line of sweep.csv, read back from the member's finished run directory."""
    h, data = run.history, run.data
    n, k = data.num_train, len(data.class_names)
    epochs = len(h.epochs)
    return SweepRow(
        sweep=kind,
        arm=member.arm,
        depth=member.depth if member.depth is not None else "",
        fraction=float(f"{member.fraction:g}"),
        seed=member.seed,
        train_images=n,
        images_per_class=round(n / k, 1),
        epochs=epochs,
        images_seen=epochs * n,
        trainable_params=h.phases[-1].trainable_params,
        best_epoch=h.best.epoch,
        best_val_accuracy=_as_csv(h.best.val_accuracy),
        test_accuracy=_as_csv(run.test.accuracy),
        run=os.path.relpath(run.dir, root),
    )


def _as_csv(x: float) -> float:
    """An accuracy as sweep.csv holds it (4 decimals): the means and sentences read that number."""
    return float(f"{x:.4f}")


def pooled_mcnemar(runs_a, runs_b) -> dict:
    """McNemar over the seeds' pairs (same test images in each pair), the pairs' predictions concatenated."""
    y, a, b = [], [], []
    for ra, rb in zip(runs_a, runs_b):
        y += ra.test.labels
        a += ra.test.predictions
        b += rb.test.predictions
    return mcnemar(y, a, b)


def _mean(rows, key="test_accuracy") -> float:
    return statistics.fmean(float(getattr(r, key)) for r in rows)


# ------------------------------------------------------------------ data
def data_points(rows: list[SweepRow], runs: dict) -> list[DataPoint]:
    """Per fraction: images per class, each arm's mean/min/max test accuracy, fine-tune vs scratch and its McNemar."""
    points = []
    for f in sorted({r.fraction for r in rows}):
        at = [r for r in rows if r.fraction == f]
        arms = {}
        for arm in ARM_TITLES:
            vals = [r.test_accuracy for r in at if r.arm == arm]
            if vals:
                arms[arm] = ArmStats(mean=statistics.fmean(vals), min=min(vals), max=max(vals), n=len(vals))
        p = DataPoint(fraction=f, images_per_class=at[0].images_per_class, arms=arms)
        if "finetune" in arms and "scratch" in arms:
            by_seed = {(r.arm, r.seed): runs[r.run] for r in at}
            seeds = sorted(s for a, s in by_seed if a == "finetune" and ("scratch", s) in by_seed)
            p = replace(
                p,
                difference_points=100 * (arms["finetune"].mean - arms["scratch"].mean),
                mcnemar=pooled_mcnemar([by_seed["finetune", s] for s in seeds], [by_seed["scratch", s] for s in seeds]),
            )
        points.append(p)
    return points


def _versus(p: DataPoint, transfer_name: str = "") -> str:
    """One size's outcome: who beats whom by how much, or both within the noise."""
    assert p.mcnemar is not None and p.difference_points is not None  # a size where both arms ran
    d, pv, n = p.difference_points, p.mcnemar["p_value"], p.images_per_class
    ft, sc = p.arms["finetune"].mean, p.arms["scratch"].mean
    name = f" ({transfer_name})" if transfer_name else ""
    if pv >= NOISE_P:
        return (
            f"at {n:g} images per class fine-tuning{name} and scratch are within noise of each other "
            f"({pct(ft)} vs {pct(sc)}, McNemar p = {pv:.3g})"
        )
    win, lose = ("fine-tuning" + name, "scratch") if d > 0 else ("scratch", "fine-tuning" + name)
    return f"{win} beats {lose} by {abs(d):.1f} points at {n:g} images per class (McNemar p = {pv:.3g})"


def data_sentences(points: list[DataPoint], transfer_name: str, seeds: int) -> list:
    """The verdict in words, from :func:`data_points` only: the smallest size, where the noise takes over, the rest."""
    pts = [p for p in points if p.mcnemar is not None]
    if not pts:
        return []
    sig = [p.mcnemar is not None and p.mcnemar["p_value"] < NOISE_P for p in pts]
    lead = _versus(pts[0], transfer_name)
    lead = lead[0].upper() + lead[1:]
    last_sig = max((i for i, x in enumerate(sig) if x), default=None)
    tail = (
        ""
        if last_sig is None or last_sig == len(pts) - 1
        else (f"from {pts[last_sig + 1].images_per_class:g} images per class on, the difference is within noise")
    )
    if last_sig is None:
        lines = [lead + "; at every size tried the difference is within noise."]
    elif not sig[0]:
        lines = [
            lead + ".",
            "Larger than the noise only at: "
            + "; ".join(_versus(p) for p, x in zip(pts, sig) if x)
            + (f"; {tail}." if tail else "."),
        ]
    else:
        lines = [
            lead
            + (
                f"; {tail}."
                if tail
                else ""
                if len(pts) == 1
                else f"; {_versus(pts[-1])}, larger than the noise at the largest size."
            )
        ]
        between = [_versus(p) for p, x in zip(pts[1:-1], sig[1:-1]) if x]
        if between:
            lines.append("Also larger than the noise: " + "; ".join(between) + ".")
    small, big = points[0], points[-1]
    if "frozen" in big.arms and "finetune" in big.arms:
        frozen, finetune = big.arms["frozen"].mean, big.arms["finetune"].mean
        lines.append(
            f"The frozen backbone alone scores {pct(small.arms['frozen'].mean)} at {small.images_per_class:g} "
            f"and {pct(frozen)} at {big.images_per_class:g} images per class; unfreezing "
            f"moves the latter to {pct(finetune)} ({100 * (finetune - frozen):+.1f} points)."
        )
    if seeds > 1:
        lines.append(
            f"Every size was trained with {seeds} seeds: accuracies are their means, and McNemar pools their "
            "predictions on the same test images (so its p-values are optimistic)."
        )
    return lines


def budget_sentence(rows, cost, budget: str) -> str:
    """Each arm's epochs, images seen and seconds at the largest size: no verdict from unequal compute."""
    f = max(r.fraction for r in rows)
    parts = []
    for arm in ARM_TITLES:
        at = [r for r in rows if r.fraction == f and r.arm == arm]
        if at:
            secs = statistics.fmean(cost[r.run] for r in at)
            parts.append(
                f"{ARM_TITLES[arm]} {_mean(at, 'epochs'):.0f} epochs, {_mean(at, 'images_seen'):,.0f} images seen, {secs:.0f} s"
            )
    how = (
        "scratch was given the training time of the fine-tune of its size and seed (--budget=time)"
        if budget == "time"
        else "every arm trained for its epochs (--budget=epochs; --budget=time gives scratch the fine-tune's time)"
    )
    return f"Budgets at the largest size: {'; '.join(parts)}; {how}."


# ----------------------------------------------------------------- depth
def depth_points(rows, cost, runs) -> list[DepthPoint]:
    """Per depth: mean/min/max test accuracy, trainable parameters, mean seconds, its runs (by seed) and McNemar
    against the best depth's runs."""
    points = []
    for depth in dict.fromkeys(r.depth for r in rows):
        at = [r for r in rows if r.depth == depth]
        vals = [r.test_accuracy for r in at]
        points.append(
            DepthPoint(
                depth=depth,
                mean=statistics.fmean(vals),
                min=min(vals),
                max=max(vals),
                trainable_params=int(at[0].trainable_params),
                seconds=statistics.fmean(cost[r.run] for r in at),
                runs=tuple(r.run for r in sorted(at, key=lambda r: r.seed)),
            )
        )
    best = _best_depth(points)
    return [replace(p, mcnemar_vs_best=pooled_mcnemar([runs[r] for r in best.runs], [runs[r] for r in p.runs])) for p in points]


def _best_depth(points) -> DepthPoint:
    return max(points, key=lambda p: (p.mean, -p.trainable_params))


def depth_sentences(points: list[DepthPoint], num_stages: int) -> list:
    best = _best_depth(points)
    within = [p for p in points if p.depth == best.depth or p.mcnemar_vs_best["p_value"] >= NOISE_P]
    cheap = min(within, key=lambda p: (p.trainable_params, p.seconds))

    def what(p):
        return "the whole network" if p.depth == "all" else f"{p.depth} of {num_stages} stages"

    lines = [
        f"The best depth is {what(best)} unfrozen (test {pct(best.mean)}, "
        f"{best.trainable_params:,} trainable parameters, {best.seconds:.0f} s)."
    ]
    if cheap.depth == best.depth:
        lines.append("Every cheaper depth is worse by more than the noise (McNemar p < 0.05 against the best).")
    else:
        lines.append(
            f"The cheapest depth within noise of it is {what(cheap)} (test {pct(cheap.mean)}, McNemar p = "
            f"{cheap.mcnemar_vs_best['p_value']:.3g} against the best, {cheap.trainable_params:,} trainable "
            f"parameters, {cheap.seconds:.0f} s)."
        )
    return lines


# ---------------------------------------------------------------- report
def write_sweep_report(cfg, members) -> dict:
    """Read every member's run directory and write the sweep's files into ``<cfg.out_dir>/<cfg.kind>``."""
    root = os.path.join(cfg.out_dir, cfg.kind)
    runs, rows, cost = {}, [], {}
    for m in members:
        run = load_run(m.exp.out_dir)
        row = member_row(cfg.kind, m, run, root)
        rows.append(row)
        runs[row.run] = run
        cost[row.run] = float(run.history.train_seconds or 0.0)
    fsio.write_text(os.path.join(root, "sweep.csv"), csv_text([r.csv() for r in rows], COLUMNS))
    fsio.write_text(
        os.path.join(root, "sweep_cost.csv"),
        csv_text([{"run": k, "train_seconds": f"{v:.1f}"} for k, v in cost.items()], ("run", "train_seconds")),
    )
    t = cfg.transfer.model
    weights = "ImageNet" if t.weights == "imagenet" else os.path.basename(t.weights) if t.weights else "random"
    transfer_name = f"{t.backbone}, {weights} weights"
    dataset = runs[rows[0].run].data.source
    short = dataset.split(" (")[0]
    if cfg.kind == "data":
        points: list = data_points(rows, runs)
        lines = data_sentences(points, transfer_name, cfg.seeds) + [budget_sentence(rows, cost, cfg.budget)]
        picture = "curves_data.png"
        figures.sweep_data_curves(points, os.path.join(root, picture), f"{short}: scratch or transfer, by training-set size")
    else:
        points = depth_points(rows, cost, runs)
        lines = depth_sentences(points, cfg.num_stages)
        picture = "curves_depth.png"
        figures.sweep_depth_curves(points, os.path.join(root, picture), f"{short}: {t.backbone}, how deep to unfreeze")
    summary = to_json(
        {
            "sweep": cfg.kind,
            "dataset": dataset,
            "transfer": transfer_name,
            "seeds": cfg.seeds,
            "budget": cfg.budget,
            "min_steps": cfg.min_steps,
            "points": points,
            "sentences": lines,
        }
    )
    fsio.write_json(os.path.join(root, "sweep.json"), summary)
    fsio.write_text(os.path.join(root, "sweep.md"), _markdown(cfg, dataset, lines, rows, cost, picture))
    return summary


def _markdown(cfg, dataset, lines, rows, cost, picture) -> str:
    title = "where transfer stops paying" if cfg.kind == "data" else "how deep to unfreeze"
    md = [
        f"# kerasxfer sweep: {title}",
        "",
        f"Data: {dataset}. Test accuracy on the whole held-out test split; validation chose each run's best epoch.",
        "",
    ]
    md += [f"- {line}" for line in lines] + ["", f"![{cfg.kind} sweep]({picture})", ""]
    cols = [c for c in COLUMNS if c not in ("sweep",)] + ["train_seconds"]
    md.append("| " + " | ".join(cols) + " |")
    md.append("|" + "---|" * len(cols))
    for r in rows:
        cells = r.csv()
        md.append("| " + " | ".join(str(cells[c]) if c != "train_seconds" else f"{cost[r.run]:.0f}" for c in cols) + " |")
    return "\n".join(md) + "\n"
