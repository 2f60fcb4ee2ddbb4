"""The whole study in one call: scratch, transfer, the random-backbone control, the report (and a sweep).

:func:`run_study` trains, in this process, on one decoded source:

* ``scratch``: the compact CNN from random weights;
* ``transfer``: the backbone from the best weights available (``imagenet``
  by default: EfficientNet-Lite0's published weights need no download), frozen
  then partly unfrozen;
* ``control``: the same backbone and schedule from random weights, which says
  how much of the transfer run's result the pretrained weights bring (not
  when the transfer arm itself starts from random weights);

each ``seeds`` times (``<arm>-seed<k>``, the same split), then writes the
report of :mod:`kerasxfer.report` into ``<out_dir>/report`` and, with
``sweep``, the sweep of :mod:`kerasxfer.sweep` into ``<out_dir>/sweep``.
Finished runs are not trained again; an interrupted one continues.  While it
trains, :class:`kerasxfer.progress.StudyProgress` logs one study-level line
per epoch with the time left.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from typing import Optional

from kerasxfer.config import TFDS_PREFIX, Experiment
from kerasxfer.errors import UserError

log = logging.getLogger("kerasxfer")


def dataset_name(dataset: str) -> str:
    """The folder name of a study of ``dataset``: ``digits``, the tfds name, or the folder's own name."""
    if dataset.startswith(TFDS_PREFIX):
        name = dataset[len(TFDS_PREFIX):]
    else:
        name = os.path.basename(os.path.normpath(os.path.expanduser(dataset)))
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return name or "dataset"


@dataclasses.dataclass
class StudyConfig:
    """A study: the scratch and transfer arms (from the usual flags), the control, seeds, an optional sweep."""

    out_dir: str
    scratch: Experiment
    transfer: Experiment
    control: bool = True
    seeds: int = 1
    split_seed: int = 0
    sweep: Optional[object] = None  # a kerasxfer.sweep.SweepConfig, run after the report

    def validate(self) -> "StudyConfig":
        if not self.transfer.model.is_transfer:
            raise UserError("a study's transfer arm must be the finetune recipe.")
        if not isinstance(self.seeds, int) or not 1 <= self.seeds <= 100:
            raise UserError(f"--seeds={self.seeds} must be an integer from 1 to 100: how many seeds train each arm.")
        for _, exp in self.arms():
            exp.validate()
        if self.sweep is not None:
            self.sweep.validate()
        return self

    def arms(self) -> list:
        """``(label, experiment)`` of every run, in training order."""
        base = [("scratch", self.scratch), ("transfer", self.transfer)]
        if self.control and self.transfer.model.weights is not None:  # a random transfer arm is its own control
            control = copy.deepcopy(self.transfer)
            control.model.weights = None
            base.append(("control", control))
        out = []
        for k in range(self.seeds):
            for label, exp in base:
                e = copy.deepcopy(exp)
                e.seed = self.scratch.seed + k
                e.data.split_seed = self.split_seed
                name = label if self.seeds == 1 else f"{label}-seed{k}"
                e.out_dir = os.path.join(self.out_dir, name)
                out.append((label, e))
        return out


def run_study(cfg: StudyConfig, overwrite: bool = False, verbose: int = 0) -> dict:
    """Train every arm that has not finished, write the report (and the sweep); return the report's summary."""
    from kerasxfer.data import SharedSources
    from kerasxfer.report import write_report
    from kerasxfer.training import determinism, run_series

    cfg.validate()
    arms = cfg.arms()
    sources = SharedSources(cfg.split_seed, determinism(cfg.transfer))
    num_train = len(sources.decoded_for(cfg.transfer.data).src.train)
    run_series([(label, exp, num_train) for label, exp in arms], sources, "study", overwrite, verbose)
    summary = write_report([exp.out_dir for _, exp in arms], os.path.join(cfg.out_dir, "report"))
    if cfg.sweep is not None:
        from kerasxfer.sweep import run_sweep

        summary["sweep"] = run_sweep(cfg.sweep, overwrite=overwrite, verbose=verbose)
    return summary
