"""In Jupyter: one live progress display for a whole study instead of a log line per epoch (no TensorFlow).

:class:`kerasxfer.progress.StudyProgress` asks :func:`live_display` once; in
a Jupyter kernel it gets a :class:`LiveDisplay`, an HTML block (a progress
bar and the latest study line) that IPython's ``display(..., display_id=True)``
shows once and ``update`` redraws in place: no ipywidgets needed, and the
saved notebook keeps the last state.  The per-epoch lines then go to the log
at DEBUG only; every other line (the verdict, the runs, warnings) is logged
as before.  Anywhere else (a terminal, a script, a plain ``python`` or
IPython shell, or ``KERASXFER_PROGRESS=lines``) it is None and the study logs
one line per epoch.
"""

from __future__ import annotations

import html
import os
import sys

#: ``KERASXFER_PROGRESS=lines`` keeps the log lines in a notebook too
ENV = "KERASXFER_PROGRESS"


def in_jupyter() -> bool:
    """Whether this process is a Jupyter kernel (IPython's ZMQ shell), where HTML displays render."""
    ipython = sys.modules.get("IPython")  # never imported here: a kernel has already imported it
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def live_display(tag: str):
    """A :class:`LiveDisplay` in a Jupyter kernel (unless ``KERASXFER_PROGRESS=lines``), else None."""
    if os.environ.get(ENV, "").strip().lower() == "lines" or not in_jupyter():
        return None
    return LiveDisplay(tag)


class LiveDisplay:
    """One HTML block, drawn once and updated in place: a progress bar and the study's latest line."""

    def __init__(self, tag: str):
        from IPython.display import HTML, display

        self._html = HTML
        self.tag = tag
        self.updates = 0
        self.handle = display(HTML(self._render(0.0, f"[{tag}] starting")), display_id=True)

    def _render(self, pct: float, line: str) -> str:
        return (
            "<div class='kerasxfer-progress'>"
            f"<progress value='{pct:.1f}' max='100' style='width:100%'></progress>"
            f"<div style='font-family:monospace'>{html.escape(line)}</div></div>"
        )

    def update(self, pct: float, line: str) -> None:
        """Redraw the block with ``pct`` done and ``line``."""
        self.updates += 1
        self.handle.update(self._html(self._render(pct, line)))
