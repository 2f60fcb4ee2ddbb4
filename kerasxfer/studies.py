"""The whole study in one call: scratch, transfer, the random-backbone control, the report (and a sweep).

:func:`run_study` trains, in this process, on one decoded source:

* ``scratch``: the compact CNN from random weights;
* ``transfer``: the backbone from the best weights available (``imagenet``
  by default: EfficientNet-Lite0's published weights need no download), frozen
  then partly unfrozen;
* ``more_transfers``: further backbones (``--backbones``), each its own transfer
  arm and contender (``transfer-<backbone>``); the verdict corrects for the
  extra comparisons and says which backbone served best;
* ``control``: the (first) backbone and schedule from random weights, which says
  how much of the transfer run's result the pretrained weights bring (not
  when the transfer arm itself starts from random weights);

each ``seeds`` times (``<arm>-seed<k>``, the same split), then writes the
report of :mod:`kerasxfer.reporting.compare_report` into ``<out_dir>/report`` and, with
``sweep``, the sweep of :mod:`kerasxfer.sweep` into ``<out_dir>/sweep``.

Small sets: every phase of every arm trains at least ``min_steps`` optimizer
steps (its epochs are raised on small training splits), and with ``folds``
= K >= 2 every arm trains once per fold of a stratified K-fold split of all
labelled images (``<out_dir>/fold<k>/<arm>``), so every image is tested
exactly once and the verdict reads the out-of-fold predictions of the whole
pool.  ``folds=None`` chooses: K = :data:`AUTO_FOLDS` when the pool has
fewer than :data:`AUTO_FOLDS_BELOW` images and the data bring no test split
of their own, one split otherwise.
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

from kerasxfer.config import DEFAULT_MIN_STEPS, MAX_FOLDS, TFDS_PREFIX, Experiment
from kerasxfer.errors import UserError

log = logging.getLogger("kerasxfer")

#: ``folds=None``: cross-validate with this many folds when the pool is smaller than AUTO_FOLDS_BELOW images
#: (a 5-fold study trains every arm five times: about five single-split studies; the ETA counts every fold).
AUTO_FOLDS = 5
AUTO_FOLDS_BELOW = 1000


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
    more_transfers: tuple = ()  # further transfer arms (other backbones), each a contender beside ``transfer``
    folds: Optional[int] = None  # K-fold cross-validation; 1: one split; None: chosen from the pool (see above)
    min_steps: int = DEFAULT_MIN_STEPS  # every phase trains at least this many optimizer steps (0: epochs as given)

    def validate(self) -> "StudyConfig":
        if not all(t.model.is_transfer for t in (self.transfer, *self.more_transfers)):
            raise UserError("a study's transfer arm must be the finetune recipe.")
        backbones = [t.model.backbone for t in (self.transfer, *self.more_transfers)]
        if len(set(backbones)) < len(backbones):
            raise UserError(f"--backbones={','.join(backbones)} names a backbone twice: name each once.")
        if not isinstance(self.seeds, int) or not 1 <= self.seeds <= 100:
            raise UserError(f"--seeds={self.seeds} must be an integer from 1 to 100: how many seeds train each arm.")
        if self.folds is not None and (not isinstance(self.folds, int) or not 1 <= self.folds <= MAX_FOLDS):
            raise UserError(f"--folds={self.folds} must be an integer from 1 (one split) to {MAX_FOLDS}, or auto.")
        if not isinstance(self.min_steps, int) or not 0 <= self.min_steps <= 100_000:
            raise UserError(f"--min_steps={self.min_steps} must be an integer from 0 (off) to 100000.")
        for _, exp in self.arms():
            exp.validate()
        if self.sweep is not None:
            self.sweep.validate()
        return self

    def arms(self) -> list:
        """``(label, experiment)`` of every run, in training order (fold by fold when cross-validated)."""
        transfers = (self.transfer, *self.more_transfers)
        several = len(transfers) > 1  # then each arm's folder names its backbone: transfer-resnet50
        base = [("scratch", self.scratch)]
        base += [(f"transfer-{t.model.backbone}" if several else "transfer", t) for t in transfers]
        if self.control and self.transfer.model.weights is not None:  # a random transfer arm is its own control
            control = copy.deepcopy(self.transfer)  # of the first backbone only: one answer to "did ImageNet help?"
            control.model.weights = None
            base.append((f"control-{control.model.backbone}" if several else "control", control))
        out, folds = [], self.folds or 1
        for fold in range(1, folds + 1):
            for k in range(self.seeds):
                for label, exp in base:
                    e = copy.deepcopy(exp)
                    e.seed = self.scratch.seed + k
                    e.data.split_seed = self.split_seed
                    name = label if self.seeds == 1 else f"{label}-seed{k}"
                    if folds > 1:
                        e.data.folds, e.data.fold = folds, fold
                        e.out_dir = os.path.join(self.out_dir, f"fold{fold}", name)
                        label_k = f"{label}, fold {fold} of {folds}"
                    else:
                        e.out_dir, label_k = os.path.join(self.out_dir, name), label
                    out.append((label_k, e))
        return out

    def resolve_folds(self, pool: int, own_test: bool) -> str:
        """Choose ``folds`` when it is None (auto) from the pool's size; return the sentence that says why."""
        if self.folds is None:
            if own_test:
                self.folds, why = 1, "auto: the data bring their own test split"
            elif pool < AUTO_FOLDS_BELOW:
                self.folds, why = AUTO_FOLDS, f"auto: {AUTO_FOLDS} folds below {AUTO_FOLDS_BELOW:,} labelled images"
            else:
                self.folds, why = 1, f"auto: one split from {AUTO_FOLDS_BELOW:,} labelled images up"
            why += "; --folds=K to choose"
        else:
            why = f"--folds={self.folds}"
        if self.folds > 1:
            return (f"cross-validation: {self.folds} folds over all {pool:,} labelled images ({why}): every image is "
                    f"tested exactly once, and each arm trains {self.folds} times")
        return f"one train/val/test split ({why})"


def run_study(cfg: StudyConfig, overwrite: bool = False, verbose: int = 0) -> dict:
    """Train every arm that has not finished, write the report (and the sweep); return the report's summary."""
    from kerasxfer.data import SharedSources
    from kerasxfer.data.sizes import resolve_arms
    from kerasxfer.reporting.compare_report import write_report
    from kerasxfer.series import run_series
    from kerasxfer.training import determinism, raise_to_min_steps

    cfg.validate()
    cfg.scratch, cfg.transfer, *more = resolve_arms(cfg.scratch, cfg.transfer, *cfg.more_transfers)  # image_size=auto
    cfg.more_transfers = tuple(more)
    sources = SharedSources(cfg.split_seed, determinism(cfg.transfer))
    whole = sources.decoded_for(cfg.transfer.data).src
    pool = len(whole.train) + len(whole.val) + len(whole.test)
    log.info("[study] %s", cfg.resolve_folds(pool, own_test=not whole.test.carved))
    series = []
    for label, exp in cfg.arms():
        n = sources.num_train(exp.data)
        if cfg.min_steps:
            exp = raise_to_min_steps(exp, n, cfg.min_steps, f"[study] {label}: ")
        series.append((label, exp, n))
    run_series(series, sources, "study", overwrite, verbose)
    summary = write_report([exp.out_dir for _, exp, _ in series], os.path.join(cfg.out_dir, "report"), overwrite)
    if cfg.sweep is not None:
        from kerasxfer.sweep import run_sweep

        summary["sweep"] = run_sweep(cfg.sweep, overwrite=overwrite, verbose=verbose)
    return summary
