"""Typed records of what a run directory holds and what a report states (no TensorFlow).

A finished run directory is four JSON files (``config.json``,
``history.json``, ``metrics.json``, ``data.json``; ``timings.json`` beside
them since timings left the history); :func:`read_run` turns their contents
into one frozen :class:`Run`, read by attribute
(:func:`kerasxfer.reporting.runs.load_run` reads and checks the folder).
The reports (:mod:`kerasxfer.reporting`) compute :class:`RunSummary`, the
verdict's records (:class:`Arm`, :class:`Pair`, :class:`Learned`,
:class:`Baseline`, :class:`Verdict`), a study's :class:`StudyRun` and a
sweep's rows and points from runs, never from the JSON dicts, and
:func:`to_json` writes every record back as the JSON the report files hold
(``summary.json``, ``sweep.json``): a field's JSON name is its own unless its
metadata says otherwise.

One name per figure: the figures a verdict compares are named by
:data:`FIGURES` (``"accuracy"``, ``"balanced accuracy"``, as the sentences
say them); a record's field for a figure is :func:`field_of` that name.

Older run directories still load: every field a newer kerasxfer added has a
default (a run without ``timings.json`` has no seconds, one without a
schedule trained at a constant rate).
"""

from kerasxfer.records.base import FIGURES, field_of, to_json
from kerasxfer.records.report import (
    Arm,
    Baseline,
    FinalModel,
    Fit,
    Learned,
    Look,
    Pair,
    PhaseSummary,
    RunSummary,
    SeedGroup,
    Sequential,
    StudyRun,
    Verdict,
)
from kerasxfer.records.run import (
    Best,
    Data,
    Epoch,
    Evaluation,
    FoldResult,
    History,
    Phase,
    Run,
    Schedule,
    Setup,
    Split,
    read_history,
    read_run,
    read_setup,
)
from kerasxfer.records.sweep import ArmStats, DataPoint, DepthPoint, SweepRow

__all__ = [
    "Fit",
    "FinalModel",
    "FIGURES",
    "field_of",
    "to_json",
    "Arm",
    "Baseline",
    "Learned",
    "Look",
    "Sequential",
    "StudyRun",
    "Pair",
    "PhaseSummary",
    "RunSummary",
    "SeedGroup",
    "Verdict",
    "Best",
    "Data",
    "Epoch",
    "Evaluation",
    "FoldResult",
    "History",
    "Phase",
    "Run",
    "Schedule",
    "Setup",
    "Split",
    "read_history",
    "read_run",
    "read_setup",
    "ArmStats",
    "DataPoint",
    "DepthPoint",
    "SweepRow",
]
