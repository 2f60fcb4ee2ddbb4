"""Matplotlib drawings shared by the run directory, TensorBoard and the report (no TensorFlow).

Every function draws into a figure it is given or returns, with the Agg
backend, so nothing needs a display.
"""

from __future__ import annotations

import io

import numpy as np


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_confusion(ax, cm, class_names, title: str, fontsize: int = 8) -> None:
    """A confusion matrix (rows: true class, columns: predicted) with its counts when there are at most 30 classes."""
    cm = np.asarray(cm)
    n = len(class_names)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=90 if n > 10 else 0, fontsize=fontsize)
    ax.set_yticks(range(n), class_names, fontsize=fontsize)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if n <= 30 and cm.size:
        thresh = cm.max() / 2
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=fontsize,
                            color="white" if cm[i, j] > thresh else "black")


def save(fig, path: str, dpi: int = 110) -> None:
    """Write the figure to ``path`` as PNG, atomically; the figure is closed."""
    from kerasxfer.fsio import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()
