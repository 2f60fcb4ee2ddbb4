"""The words and tables both reports share: percentages, markdown tables, CSV, a run's recipe in a sentence.

No TensorFlow; the reports' pictures are drawn by :mod:`kerasxfer.figures`.
"""

from __future__ import annotations

import csv
import io
import re

from kerasxfer.optim_config import OptimConfig
from kerasxfer.records import History, Phase, Setup

#: The arms of a sweep, as its sentences and pictures name them.
ARM_TITLES = {"scratch": "scratch CNN", "frozen": "frozen backbone", "finetune": "fine-tuned backbone"}


#: Line breaks (Unicode's included), other control characters and invisible direction marks: a user's string
#: never starts a line of a report (a heading, a picture) nor reorders what follows it.
_UNSHOWN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
#: Markdown's characters that could make a user's string a link, a picture, a table cell, code or emphasis.
MD_SPECIAL = re.compile(r"([\\`*\[\]|<>!#])")


def shown(value) -> str:
    """A user's string — class name, run folder, dataset — as the reports show it: one line (line breaks and
    control characters become a space) with Markdown's special characters escaped (``a|b`` -> ``a\\|b``), so
    it is text wherever it lands in report.md, report.html or a table."""
    return MD_SPECIAL.sub(r"\\\1", _UNSHOWN.sub(" ", str(value)))


def pct(x):
    """``0.9689`` -> ``"96.89 %"``."""
    return f"{100 * x:.2f} %"


def interval_text(s) -> str:
    """A run summary's test accuracy with its 95 % Wilson interval: ``96.00 % (95 % interval 90.2–98.4 %)``."""
    lo, hi = s.test_interval
    return f"{pct(s.test_accuracy)} (95 % interval {100 * lo:.1f}–{100 * hi:.1f} %)"


def recipe_sentence(setup: Setup, history: History) -> str:
    """How the run trained (optimiser, schedule, BatchNorm, EMA, ...), and where early stopping ended a phase."""
    known = OptimConfig.__dataclass_fields__
    text = OptimConfig(**{k: v for k, v in setup.optim.items() if k in known}).describe(setup.kind == "transfer")
    stops = [
        f"{p.name} stopped early after epoch {p.last_epoch} of {p.planned_last_epoch}" for p in history.phases if p.early_stopped
    ]
    return text + ("; " + ", ".join(stops) if stops else "")


def schedule_cell(phase: Phase) -> str:
    """The schedule column of a phase row: ``cosine, 34 warm-up steps``; older runs: ``constant``."""
    sch = phase.schedule
    if phase.probe:
        return f"solved: L2 logistic regression, C = {phase.probe['C']:g} (chosen on validation)"
    if not sch:
        return "constant"
    text = sch.kind + (f", {sch.warmup_steps} warm-up steps" if sch.warmup_steps else "")
    if phase.lr_stage_decay != 1.0:
        text += f", stage decay {phase.lr_stage_decay:g}"
    return text + (", backbone BatchNorm trains" if phase.bn == "train" else "")


def table(rows, header) -> str:
    """A markdown table: ``header`` then one line per row (cells through ``str``)."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def csv_text(rows, columns) -> str:
    """``rows`` (dicts) as CSV text with ``columns`` in that order, ``\\n`` line ends (equal rows, equal bytes)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
