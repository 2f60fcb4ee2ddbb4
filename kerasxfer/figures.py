"""Every picture kerasxfer draws (matplotlib, Agg backend, no display and no TensorFlow).

* a run's TensorBoard images: :func:`confusion_png`, :func:`top_losses_png` (PNG bytes);
* ``make compare``'s report: :func:`report_curves`, :func:`report_learning_rates`, :func:`report_confusions`;
* a sweep: :func:`sweep_data_curves`, :func:`sweep_depth_curves`;
* ``make lr-find``: :func:`lr_find_curve`.

The numbers arrive computed (the reports and sweeps compute them); this module only draws.
"""

from __future__ import annotations

import io

import numpy as np

from kerasxfer.optim_config import learning_rate
from kerasxfer.reporting.stats import NOISE_P
from kerasxfer.reporting.text import ARM_TITLES, pct


def subplots(*args, figsize, **kwargs):
    """``(figure, axes)``: a :class:`matplotlib.figure.Figure` of its own, outside pyplot.

    Nothing global changes: no backend is chosen (PNGs are written by Agg whatever the user's backend is), no
    rcParams are set, and no figure is left in pyplot's registry, so a notebook's own plots look as before.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def text(value) -> str:
    """A user's string (class, run, dataset name) as matplotlib draws it literally: its ``$`` escaped, so a class
    named ``$\\frac{$`` is text, while kerasxfer's own labels (log-axis ticks: ``$\\mathdefault{10^{-3}}$``) are
    still typeset."""
    return str(value).replace("$", r"\$")


def _colors() -> list:
    import matplotlib

    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def draw_confusion(ax, cm, class_names, title: str, fontsize: int = 8) -> None:
    """A confusion matrix (rows: true class, columns: predicted) with its counts when there are at most 30 classes."""
    cm = np.asarray(cm)
    n = len(class_names)
    ax.imshow(cm, cmap="Blues")
    names = [text(c) for c in class_names]
    ax.set_xticks(range(n), names, rotation=90 if n > 10 else 0, fontsize=fontsize)
    ax.set_yticks(range(n), names, fontsize=fontsize)
    ax.set(xlabel="predicted", ylabel="true", title=text(title))
    if n <= 30 and cm.size:
        thresh = cm.max() / 2
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        int(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=fontsize,
                        color="white" if cm[i, j] > thresh else "black",
                    )


def save(fig, path: str, dpi: int = 110) -> None:
    """Write the figure to ``path`` as PNG, atomically."""
    from kerasxfer.fsio import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


# ------------------------------------------------------- a run (TensorBoard images)
def confusion_png(cm, class_names, title: str) -> bytes:
    """The confusion matrix as a PNG (rows: true class, columns: predicted)."""
    side = min(12, 2.5 + 0.45 * len(class_names))
    fig, ax = subplots(figsize=(side, side))
    draw_confusion(ax, cm, class_names, title)
    return png_bytes(fig)


def top_losses_png(images, true, pred, prob_true, class_names, title: str) -> bytes:
    """A grid of test images (the run's worst) with their true / predicted class and p(true)."""
    k = len(images)
    cols = min(4, max(1, k))
    rows = max(1, int(np.ceil(k / cols)))
    fig, axes = subplots(rows, cols, figsize=(2.6 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(k):
        ax = axes.ravel()[i]
        ax.imshow(np.clip(images[i], 0, 255).astype(np.uint8))
        names = text(class_names[true[i]]), text(class_names[pred[i]])
        ax.set_title(f"true {names[0]}\npred {names[1]}\np(true) {prob_true[i]:.2f}", fontsize=8)
    if k == 0:
        axes[0, 0].text(0.5, 0.5, "no misclassified image", ha="center", va="center")
    fig.suptitle(text(title))
    return png_bytes(fig)


# ------------------------------------------------------------- the compare report
def phase_rates(phase):
    """(x in epochs, learning rate) of every step the phase (a :class:`kerasxfer.records.Phase`) trained (the
    head's rate); a phase without a recorded schedule trained one constant step per epoch."""
    sch = phase.schedule
    kind, total, warmup, per_epoch = (
        (sch.kind, sch.total_steps, sch.warmup_steps, sch.steps_per_epoch) if sch else ("constant", 1, 0, 1)
    )
    trained = (phase.last_epoch - phase.first_epoch + 1) * per_epoch
    steps = np.arange(trained)
    rates = learning_rate(np, steps, phase.lr, kind, total, warmup)
    return phase.first_epoch - 1 + (steps + 1) / per_epoch, np.broadcast_to(rates, steps.shape)


def report_learning_rates(summaries, runs, path) -> None:
    """lr.png of a report: the learning rate of every step of every run, from the formula that trained."""
    save(learning_rates_figure(summaries, runs), path)


def learning_rates_figure(summaries, runs):
    """The figure of :func:`report_learning_rates` (its y axis is logarithmic)."""
    fig, ax = subplots(figsize=(9, 3.6))
    colors = _colors()
    styles = ["-", "--", ":", "-."]
    for i, (s, r) in enumerate(zip(summaries, runs)):
        for j, p in enumerate(r.history.phases):
            x, y = phase_rates(p)
            # equal schedules overlap: widths and dashes keep every run visible
            ax.plot(
                x,
                y,
                color=colors[i % len(colors)],
                ls=styles[i % len(styles)],
                lw=max(1.0, 3.5 - i),
                label=text(s.name) if j == 0 else None,
            )
    ax.set(xlabel="epoch", ylabel="learning rate (head)", title="learning rate of every step", yscale="log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def report_curves(summaries, runs, path) -> None:
    """curves.png of a report: accuracy and loss per epoch of every run (a cross-validated arm: one line per
    fold), the unfreeze marked."""
    fig, (ax_acc, ax_loss) = subplots(1, 2, figsize=(13, 4.8))
    colors = _colors()
    for i, (s, r) in enumerate(zip(summaries, runs)):
        name = text(s.name)
        c = colors[i % len(colors)]
        histories = r.fold_histories or (r.history,)
        folds = f" ({len(histories)} folds)" if len(histories) > 1 else ""
        for k, h in enumerate(histories):
            eps = h.epochs
            x = [e.epoch for e in eps]
            style = dict(ms=3, color=c, lw=1.5 if len(histories) == 1 else 1.0)
            val, train = (f"{name} val{folds}", f"{name} train{folds}") if k == 0 else (None, None)
            ax_acc.plot(x, [e.val_accuracy for e in eps], "-o", label=val, **style)
            ax_acc.plot(x, [e.accuracy for e in eps], "--", alpha=0.6, label=train, **style)
            ax_loss.plot(x, [e.val_loss for e in eps], "-o", label=val, **style)
            ax_loss.plot(x, [e.loss for e in eps], "--", alpha=0.6, label=train, **style)
        for p in s.phases[1:]:
            for ax in (ax_acc, ax_loss):
                ax.axvline(p.epochs[0] - 0.5, color=c, ls=":", lw=1)
            ax_acc.annotate(f"unfreeze ({name})", (p.epochs[0] - 0.5, 0.02), color=c, fontsize=8, rotation=90)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy (solid: val, dashed: train)", ylim=(0, 1.02))
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss (solid: val, dashed: train)")
    ax_loss.set_yscale("log")
    ax_acc.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save(fig, path)


def report_confusions(summaries, runs, path) -> None:
    """confusion.png of a report: every run's test confusion matrix side by side."""
    n = len(runs)
    k = len(runs[0].class_names)
    side = min(6.0, 1.5 + 0.35 * k)
    fig, axes = subplots(1, n, figsize=(side * n, side + 0.6), squeeze=False)
    for ax, s, r in zip(axes[0], summaries, runs):
        n = sum(map(sum, r.test.confusion_matrix))
        pooled = f", {len(s.folds)} folds pooled" if s.folds else ""
        title = f"{s.name}: test {pct(r.test.accuracy)} ({n} images{pooled})"
        draw_confusion(ax, r.test.confusion_matrix, r.class_names, title, 7)
    fig.tight_layout()
    save(fig, path)


def report_verdict(summaries, verdict, path) -> None:
    """verdict.png of a report: each run's test accuracy with its 95 % interval, the majority-class baseline's
    (a band), the arm the verdict names in bold; what the headline says, in one picture."""
    from kerasxfer.reporting.stats import wilson

    n = len(summaries)
    fig, ax = subplots(figsize=(8, 1.2 + 0.45 * n))
    b = verdict.baseline
    lo, hi = wilson(round(b.accuracy * verdict.num_images), verdict.num_images)
    ax.axvspan(100 * lo, 100 * hi, color="0.85", label=f"majority class ({text(b.class_name)}), 95 % interval")
    ax.axvline(100 * b.accuracy, color="0.5", ls="--", lw=1)
    chosen = verdict.winner or verdict.recommended
    colors = _colors()
    for i, s in enumerate(summaries):
        y = n - 1 - i
        a, (l, h) = 100 * s.test_accuracy, s.test_interval
        ax.errorbar([a], [y], xerr=[[a - 100 * l], [100 * h - a]], fmt="o", color=colors[i % len(colors)], capsize=4)
        ax.annotate(f"{a:.1f} %", (a, y), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=8)
    ax.set_yticks(range(n), [text(s.name) for s in reversed(summaries)])
    for label in ax.get_yticklabels():
        if label.get_text() == text(chosen):
            label.set_fontweight("bold")
    ax.set(xlabel="test accuracy (%), 95 % interval", xlim=(0, 102), ylim=(-0.7, n - 0.3))
    ax.set_title(f"{verdict.num_images} test images" + (f", out-of-fold over {verdict.folds} folds" if verdict.folds else ""))
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    save(fig, path)


# -------------------------------------------------------------------- a sweep
def sweep_data_curves(points, path: str, title: str) -> None:
    """curves_data.png of a data sweep: test accuracy by training images per class, McNemar p per size."""
    fig, ax = subplots(figsize=(9, 4.8))
    x = [p.images_per_class for p in points]
    low = min(s.min for p in points for s in p.arms.values())
    bottom = max(0.0, 10 * (int(100 * low) // 10) - 10)  # room below the lowest point for the p-values
    for arm, style in (("scratch", "-o"), ("frozen", "--s"), ("finetune", "-^")):
        pts = [(xi, p.arms[arm]) for xi, p in zip(x, points) if arm in p.arms]
        if not pts:
            continue
        xs = [a for a, _ in pts]
        (line,) = ax.plot(xs, [100 * s.mean for _, s in pts], style, label=ARM_TITLES[arm])
        if any(s.n > 1 for _, s in pts):
            ax.fill_between(xs, [100 * s.min for _, s in pts], [100 * s.max for _, s in pts], color=line.get_color(), alpha=0.15)
    for xi, p in zip(x, points):
        if p.mcnemar is not None:
            pv = p.mcnemar["p_value"]
            ax.annotate(f"p={pv:.2g}" + ("" if pv < NOISE_P else "\n(noise)"), (xi, bottom + 1), ha="center", fontsize=7)
    ax.set_xscale("log")
    ax.margins(x=0.08)
    ax.set(xlabel="training images per class (log scale)", ylabel="test accuracy (%)", ylim=(bottom, 101), title=text(title))
    ax.grid(True, which="both", alpha=0.3)
    ax.plot([], [], " ", label="p: McNemar, fine-tuned\nvs scratch (test split)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    save(fig, path)


def sweep_depth_curves(points, path: str, title: str) -> None:
    """curves_depth.png of a depth sweep: test accuracy and cost per unfreeze depth."""
    fig, (ax, ax_p) = subplots(1, 2, figsize=(12, 4.5))
    x = list(range(len(points)))
    labels = [text(p.depth) for p in points]
    ax.plot(x, [100 * p.mean for p in points], "-o")
    if any(len(p.runs) > 1 for p in points):
        ax.fill_between(x, [100 * p.min for p in points], [100 * p.max for p in points], alpha=0.2)
    ax.set_xticks(x, labels)
    ax.set(xlabel="stages unfrozen in phase 2", ylabel="test accuracy (%)", title=text(title))
    ax.grid(True, alpha=0.3)
    ax_p.bar(x, [p.trainable_params for p in points], color="tab:gray")
    ax_p.set_yscale("log")
    ax_p.set_xticks(x, labels)
    ax_p.set(
        xlabel="stages unfrozen in phase 2",
        ylabel="trainable parameters (log)",
        title="cost: trainable parameters (bars), training seconds (labels)",
    )
    for xi, p in zip(x, points):
        ax_p.annotate(f"{p.seconds:.0f} s", (xi, p.trainable_params), ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    save(fig, path)


# ------------------------------------------------------------------ lr-find
def lr_find_curve(result: dict, title: str, path: str) -> None:
    """lr_find.png: the loss against the learning rate, with the suggestions."""
    save(lr_find_figure(result, title), path)


def lr_find_figure(result: dict, title: str):
    """The figure of :func:`lr_find_curve` (its x axis is logarithmic)."""
    fig, ax = subplots(figsize=(7, 4))
    ax.plot(result["lrs"], result["losses"], color="0.7", lw=1, label="loss")
    ax.plot(result["lrs"], result["smoothed"], color="C0", label="smoothed loss")
    ax.axvline(result["valley"], color="C3", ls="--", label=f"suggested {result['valley']:.1e} (valley)")
    ax.axvline(result["minimum_over_10"], color="C2", ls=":", label=f"minimum / 10: {result['minimum_over_10']:.1e}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title=text(title))
    top = max(result["smoothed"][0], min(result["smoothed"])) * 1.6
    ax.set_ylim(min(result["smoothed"]) * 0.8, top)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
