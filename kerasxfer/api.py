"""kerasxfer from Python: the commands as functions, with the command line's defaults and option names.

    import kerasxfer
    r = kerasxfer.study("~/photos/flowers", out_dir="runs/flowers", epochs=5)
    print(r.verdict)          # the report's verdict sentence
    r.table                   # the side-by-side table as records (r.to_pandas() with pandas installed)
    clf = r.load()            # the model the study hands over: final/ (also kerasxfer.load("runs/flowers"))
    r.final                   # which arm it is, and its cross-validated accuracy and interval

Options are the flags' names without ``--`` (``kerasxfer.options_of("study")``
lists them with their defaults, which are the command line's: both read
:mod:`kerasxfer.commands`).  An unknown option is one sentence.  Progress
lines go to stderr (a notebook shows them) unless the caller configured
logging, and ``~`` is expanded in paths.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys

from kerasxfer import commands, options
from kerasxfer.errors import UserError

log = logging.getLogger("kerasxfer")


def options_of(command: str) -> dict:
    """The options of ``command`` (scratch, finetune, sweep, study) and their defaults."""
    return {name: spec.default for name, spec in commands.options_of(command).items()}


def show_progress() -> None:
    """kerasxfer's progress lines on stderr at INFO, unless the caller gave its logger or the root one a handler."""
    if log.handlers or logging.getLogger().handlers:
        if log.level == logging.NOTSET:
            log.setLevel(logging.INFO)
        return
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("[kerasxfer %(asctime)s] %(message)s", "%H:%M:%S"))
    log.addHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False


def _options(command: str, data, out_dir, options: dict) -> commands.Options:
    given = dict(options)
    if isinstance(data, tuple) and len(data) == 2:  # (images, labels) arrays
        from kerasxfer.datasets import register_arrays

        data = register_arrays(*data)
    elif data is not None and not isinstance(data, (str, os.PathLike)):
        raise UserError(
            f"data of type {type(data).__name__} is not a dataset: pass a folder, a CSV/TSV file, "
            "'digits', 'tfds:NAME' or a tuple (images, labels) of arrays."
        )
    if data is not None:
        given["dataset"] = os.fspath(data)
    if out_dir is not None:
        given["out_dir"] = out_dir
    return commands.resolve(command, given)


@dataclasses.dataclass
class RunResult:
    """A finished run: its folder and metrics.json (test accuracy, per-class scores, the confusion matrix)."""

    run_dir: str
    metrics: dict

    @property
    def test_accuracy(self) -> float:
        return self.metrics["test"]["accuracy"]

    def load(self):
        """The run's :class:`~kerasxfer.inference.Classifier`."""
        return load(self.run_dir)


def _train(recipe_name: str, data, out_dir, options) -> RunResult:
    from kerasxfer import recipes

    opts = _options(recipe_name, data, out_dir, options)
    exp = commands.experiment_from(recipes.RECIPES[recipe_name], opts.values).validate()
    show_progress()
    from kerasxfer.training import run_experiment

    metrics = run_experiment(
        exp, verbose=opts.values["verbose"], overwrite=opts.values["overwrite"], min_steps=commands.min_steps_of(opts)
    )
    return RunResult(exp.out_dir, metrics)


def scratch(data="digits", out_dir=None, **options) -> RunResult:
    """Train the scratch CNN on ``data`` as ``kerasxfer scratch`` would.

    ``data``: a folder of class sub-folders, a CSV/TSV file of ``path,label[,split]`` rows, ``digits``,
    ``tfds:NAME``, or ``(images, labels)`` arrays (uint8 or float images, integer or string labels).
    """
    return _train("scratch", data, out_dir, options)


def finetune(data="digits", out_dir=None, **options) -> RunResult:
    """Fine-tune a pretrained backbone on ``data`` as ``kerasxfer finetune`` would."""
    return _train("finetune", data, out_dir, options)


@dataclasses.dataclass
class StudyResult:
    """What a study or a comparison answered: the verdict, the side-by-side table, where everything is."""

    verdict: str
    sentences: list
    table: list  # one record (dict) per run: name, role, test accuracy and its interval, val, loss gap, cost
    report: str  # report.md
    report_html: str
    run_dirs: dict  # run name -> run directory (cross-validated: fold 1's run; the final model is ``final_dir``)
    summary: dict  # summary.json's content
    final: dict | None = None  # the model a study hands over (summary.json's "final"); None for compare
    final_dir: str | None = None  # its folder (<study>/final), None when the study hands over none

    def load(self, batch_size: int | None = None):
        """The study's final model as a :class:`~kerasxfer.inference.Classifier` (one sentence when it has none)."""
        if self.final_dir is None:
            why = (self.final or {}).get("why", "a comparison of runs trains no final model")
            raise UserError(f"this result hands over no model ({why.rstrip('.')}): load one of run_dirs instead.")
        return load(self.final_dir, batch_size)

    def to_pandas(self):
        """The side-by-side table as a pandas DataFrame (pandas must be installed)."""
        try:
            import pandas as pd
        except ImportError:
            raise UserError(
                "to_pandas needs pandas, which is not installed: pip install pandas (or use .table, a list of records)."
            ) from None
        return pd.DataFrame(self.table)

    def __str__(self) -> str:
        return self.verdict


_TABLE_FIELDS = (
    "name",
    "model",
    "weights",
    "test_accuracy",
    "test_interval",
    "test_balanced_accuracy",
    "test_macro_f1",
    "best_val_accuracy",
    "best_epoch",
    "best_phase",
    "final_train_loss",
    "final_val_loss",
    "accuracy_gap",
    "total_params",
    "train_seconds",
    "num_train",
    "num_test",
)


def _study_result(summary: dict, report_dir: str) -> StudyResult:
    roles = summary["verdict"].get("roles", {})
    table = []
    for s in summary["runs"]:
        row = {k: s.get(k) for k in _TABLE_FIELDS}
        row["role"] = roles.get(s["name"], "seed")
        table.append(row)
    plain = [line.replace("**", "") for line in summary["summary"]]
    return StudyResult(
        verdict=plain[0] if plain else "",
        sentences=plain,
        table=table,
        report=os.path.join(report_dir, "report.md"),
        report_html=os.path.join(report_dir, "report.html"),
        run_dirs={s["name"]: s["dir"] for s in summary["runs"]},
        summary=summary,
        final=summary.get("final"),
        final_dir=(summary.get("final") or {}).get("dir"),
    )


def study(data, out_dir=None, **options) -> StudyResult:
    """The whole study on ``data`` (scratch, transfer, control, report) as ``kerasxfer study`` would run it.

    ``data`` as for :func:`scratch`.  Returns a :class:`StudyResult`.
    """
    opts = _options("study", data, out_dir, options)
    cfg = commands.study_from(opts.values, opts.given)
    show_progress()
    from kerasxfer.studies import run_study

    summary = run_study(cfg, overwrite=opts.values["overwrite"], verbose=opts.values["verbose"])
    return _study_result(summary, os.path.join(cfg.out_dir, "report"))


def compare(runs, out_dir=None, overwrite: bool = False) -> StudyResult:
    """Compare finished run directories side by side (``kerasxfer compare``): the report and its verdict.

    ``out_dir`` defaults to ``kerasxfer compare``'s (``runs/report``), from the one options table."""
    from kerasxfer.reporting.compare_report import write_report

    runs = [runs] if isinstance(runs, (str, os.PathLike)) else runs
    if not isinstance(runs, (list, tuple)) or not all(isinstance(r, (str, os.PathLike)) for r in runs):
        raise UserError(
            f"runs={runs!r} ({type(runs).__name__}) is not a list of run directories: pass e.g. "
            "['runs/scratch', 'runs/finetune']."
        )
    runs = [os.path.expanduser(os.fspath(r)) for r in runs]
    table = commands.options_of("compare")
    out_dir = os.path.expanduser(_path("out_dir", table["out_dir"].default if out_dir is None else out_dir))
    overwrite = options.typed(table["overwrite"], overwrite)
    return _study_result(write_report(runs, out_dir, overwrite), out_dir)


def load(run_dir: str, batch_size: int | None = None):
    """The best model of a finished run as a :class:`~kerasxfer.inference.Classifier` (``predict``, ``predict_iter``);
    ``batch_size`` defaults to ``kerasxfer predict``'s."""
    from kerasxfer.inference import Classifier

    spec = commands.options_of("predict")["batch_size"]
    batch_size = spec.default if batch_size is None else options.typed(spec, batch_size)
    return Classifier.from_run(os.path.expanduser(_path("run_dir", run_dir)), batch_size=batch_size)


def _path(name: str, value) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise UserError(f"{name}={value!r} ({type(value).__name__}) is not a path: pass a string or a pathlib.Path.")
    return os.fspath(value)
