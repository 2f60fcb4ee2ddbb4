"""The report's pictures (curves, learning rates, confusion matrices) and its words about each run's recipe.

Reads what :mod:`kerasxfer.report` loaded from run directories; no TensorFlow.
"""

from __future__ import annotations

import numpy as np

from kerasxfer import plots
from kerasxfer.optim import OptimConfig, learning_rate


def pct(x):
    """``0.9689`` -> ``"96.89 %"``."""
    return f"{100 * x:.2f} %"


def recipe_sentence(config: dict, history: dict) -> str:
    """How the run trained (optimiser, schedule, BatchNorm, EMA, ...), and where early stopping ended a phase."""
    known = OptimConfig.__dataclass_fields__
    transfer = config.get("model", {}).get("kind") == "transfer"
    text = OptimConfig(**{k: v for k, v in config.get("optim", {}).items() if k in known}).describe(transfer)
    stops = [f"{p['name']} stopped early after epoch {p['last_epoch']} of {p['planned_last_epoch']}"
             for p in history["phases"] if p.get("early_stopped")]
    return text + ("; " + ", ".join(stops) if stops else "")


def schedule_cell(phase: dict) -> str:
    """The schedule column of a phase row: ``cosine, 34 warm-up steps``; older runs: ``constant``."""
    sch = phase.get("schedule")
    if not sch:
        return "constant"
    text = sch["kind"] + (f", {sch['warmup_steps']} warm-up steps" if sch["warmup_steps"] else "")
    if phase.get("lr_stage_decay", 1.0) != 1.0:
        text += f", stage decay {phase['lr_stage_decay']:g}"
    return text + (", backbone BatchNorm trains" if phase.get("bn") == "train" else "")


def phase_rates(phase: dict):
    """(x in epochs, learning rate) of every step the phase trained (the head's rate)."""
    sch = phase.get("schedule") or {"kind": "constant", "warmup_steps": 0, "total_steps": 1, "steps_per_epoch": 1}
    per_epoch = sch["steps_per_epoch"]
    trained = (phase["last_epoch"] - phase["first_epoch"] + 1) * per_epoch
    steps = np.arange(trained)
    rates = learning_rate(np, steps, phase["lr"], sch["kind"], sch["total_steps"], sch["warmup_steps"])
    return phase["first_epoch"] - 1 + (steps + 1) / per_epoch, np.broadcast_to(rates, steps.shape)


def lr_png(summaries, runs, path):
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    for i, (s, r) in enumerate(zip(summaries, runs)):
        for j, p in enumerate(r["history"]["phases"]):
            x, y = phase_rates(p)
            # equal schedules overlap: widths and dashes keep every run visible
            ax.plot(x, y, color=colors[i % len(colors)], ls=styles[i % len(styles)], lw=max(1.0, 3.5 - i),
                    label=s["name"] if j == 0 else None)
    ax.set(xlabel="epoch", ylabel="learning rate (head)", title="learning rate of every step", yscale="log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    plots.save(fig, path)

def curves_png(summaries, runs, path):
    plt = plots.pyplot()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(13, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (s, r) in enumerate(zip(summaries, runs)):
        eps = r["history"]["epochs"]
        x = [e["epoch"] for e in eps]
        c = colors[i % len(colors)]
        ax_acc.plot(x, [e["val_accuracy"] for e in eps], "-o", ms=3, color=c, label=f"{s['name']} val")
        ax_acc.plot(x, [e["accuracy"] for e in eps], "--", color=c, alpha=0.6, label=f"{s['name']} train")
        ax_loss.plot(x, [e["val_loss"] for e in eps], "-o", ms=3, color=c, label=f"{s['name']} val")
        ax_loss.plot(x, [e["loss"] for e in eps], "--", color=c, alpha=0.6, label=f"{s['name']} train")
        for p in s["phases"][1:]:
            for ax in (ax_acc, ax_loss):
                ax.axvline(p["epochs"][0] - 0.5, color=c, ls=":", lw=1)
            ax_acc.annotate(f"unfreeze ({s['name']})", (p["epochs"][0] - 0.5, 0.02), color=c, fontsize=8, rotation=90)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy (solid: val, dashed: train)", ylim=(0, 1.02))
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss (solid: val, dashed: train)")
    ax_loss.set_yscale("log")
    ax_acc.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    plots.save(fig, path)


def confusion_png(summaries, runs, path):
    n = len(runs)
    k = len(runs[0]["metrics"]["class_names"])
    side = min(6.0, 1.5 + 0.35 * k)
    fig, axes = plots.pyplot().subplots(1, n, figsize=(side * n, side + 0.6), squeeze=False)
    for ax, s, r in zip(axes[0], summaries, runs):
        m = r["metrics"]
        title = f"{s['name']}: test {pct(m['test']['accuracy'])}"
        plots.draw_confusion(ax, m["test"]["confusion_matrix"], m["class_names"], title, 7)
    fig.tight_layout()
    plots.save(fig, path)
