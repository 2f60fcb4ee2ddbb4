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

What makes the default study cheap (each stated in the report, and all off
with ``exhaustive``, the reference they are checked against):

* **computed once**: the frozen backbone's pooled features and the
  activations where the unfrozen stages begin, once per image for the whole
  study (every fold, seed and phase), in ``<out_dir>/cache``
  (:mod:`kerasxfer.features`; exact: a test shows the same history);
* **the cheap phase trains properly**: on cached features the frozen phase
  trains until its val_loss stops falling (:data:`FROZEN_PATIENCE`, capped
  at :data:`FROZEN_CAP` epochs, never under ``min_steps``), and the unfrozen
  phase, which starts from that converged head, trains at least
  :data:`FINETUNE_MIN_STEPS` steps instead of ``min_steps``;
* **stop when the answer is known**: folds run one at a time, and after
  each the pooled out-of-fold verdict is tested against a group-sequential
  boundary declared in advance (:mod:`kerasxfer.reporting.sequential`);
* **the control costs what its question is worth**: "did the pretrained
  weights help?" is answered on the frozen phase — the head on the random
  backbone's features (``control``) against the same head on the pretrained
  backbone's (``control-pretrained``) — instead of a second full transfer run;
  ``control-pretrained`` is that fold's transfer run stopped after its frozen
  phase, so it is written from it as the phase ends (:mod:`kerasxfer.forks`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from typing import TYPE_CHECKING, Optional

from kerasxfer.config import DEFAULT_MIN_STEPS, MAX_EPOCHS, MAX_FOLDS, Experiment
from kerasxfer.datasets import source_of
from kerasxfer.errors import UserError
from kerasxfer.final import check_choice
from kerasxfer.planning import FINETUNE_MIN_STEPS, FROZEN_CAP, FROZEN_PATIENCE, shortcuts
from kerasxfer.records import Look, Sequential, StudyRun

if TYPE_CHECKING:
    from kerasxfer.sweep import SweepConfig

log = logging.getLogger("kerasxfer")

#: ``folds=None``: cross-validate with this many folds when the pool is smaller than AUTO_FOLDS_BELOW images
#: (a 5-fold study trains every arm five times: about five single-split studies; the ETA counts every fold).
AUTO_FOLDS = 5
AUTO_FOLDS_BELOW = 1000


def dataset_name(dataset: str) -> str:
    """The folder name of a study of ``dataset``: ``digits``, the tfds name, or the folder's own name."""
    name = source_of(dataset).stem(dataset)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return name or "dataset"


def _check_minutes(minutes, exhaustive: bool) -> None:
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not 0 < minutes <= 100_000:
        raise UserError(f"--minutes={minutes} must be a positive number of minutes, e.g. 15 (0: no limit).")
    if exhaustive:
        raise UserError(
            "--exhaustive runs every fold and phase in full, so it cannot be fitted into --minutes: drop one of the two."
        )


@dataclasses.dataclass
class StudyConfig:
    """A study: the scratch and transfer arms (from the usual flags), the control, seeds, an optional sweep."""

    out_dir: str
    scratch: Experiment
    transfer: Experiment
    control: bool = True
    seeds: int = 1
    split_seed: int = 0
    sweep: Optional["SweepConfig"] = None  # run after the report
    more_transfers: tuple = ()  # further transfer arms (other backbones), each a contender beside ``transfer``
    folds: Optional[int] = None  # K-fold cross-validation; 1: one split; None: chosen from the pool (see above)
    min_steps: int = DEFAULT_MIN_STEPS  # every phase trains at least this many optimizer steps (0: epochs as given)
    exhaustive: bool = False  # every fold, the full control, no reuse, min_steps for every phase: the reference
    finetune_min_steps: int = FINETUNE_MIN_STEPS  # the unfrozen phase's minimum (not exhaustive)
    minutes: Optional[float] = None  # a time limit: folds and minimum steps planned to fit (kerasxfer.planning)
    planned: tuple = ()  # the sentences that say what the time limit gave up
    frozen_given: bool = False  # --frozen_epochs given: the frozen phase trains exactly that many epochs
    ray: Optional[object] = None  # a kerasxfer.executors.RayConfig: the runs as Ray tasks (--executor=ray)
    final: str = "auto"  # the model to deploy (kerasxfer.final): auto, none or a contender's name

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
        if self.minutes is not None:
            _check_minutes(self.minutes, self.exhaustive)
        check_choice(self.final, self)
        for _, exp in self.arms():
            exp.validate()
        if self.sweep is not None:
            self.sweep.validate()
        return self

    @property
    def sequential(self) -> bool:
        """Whether folds run one at a time with the group-sequential stopping rule."""
        return not self.exhaustive and (self.folds or 1) > 1

    def _converging(self, exp: Experiment) -> Experiment:
        """``exp`` with its frozen phase trained until converged, where its epochs are cheap (cached features)."""
        if self.exhaustive or self.frozen_given:
            return exp
        e = copy.deepcopy(exp)
        for i, p in enumerate(e.phases):
            if p.trainable == "head" and p.epochs and not p.solve and e.uses_cached_features(p):
                e.phases[i] = dataclasses.replace(
                    p, epochs=max(p.epochs, min(FROZEN_CAP, MAX_EPOCHS)), patience=FROZEN_PATIENCE, min_epochs=p.epochs
                )
        return e

    def controls(self) -> list:
        """``(label, experiment)`` of the control runs: the random backbone, and in the frozen design its
        pretrained reference."""
        if not self.control or self.transfer.model.weights is None:  # a random transfer arm is its own control
            return []
        several = len(self.more_transfers) > 0
        name = f"control-{self.transfer.model.backbone}" if several else "control"
        control = copy.deepcopy(self.transfer)  # of the first backbone only: one answer to "did ImageNet help?"
        control.model.weights = None
        if self.exhaustive or not control.features_valid():
            return [(name, control)]
        frozen = [p for p in self._converging(self.transfer).phases if p.trainable == "head"][:1]
        reference = copy.deepcopy(self.transfer)
        control.phases, reference.phases = copy.deepcopy(frozen), copy.deepcopy(frozen)
        return [(name, control), (f"{name}-pretrained", reference)]

    def arms(self) -> list:
        """``(label, experiment)`` of every run, in training order (fold by fold when cross-validated)."""
        transfers = (self.transfer, *self.more_transfers)
        several = len(transfers) > 1  # then each arm's folder names its backbone: transfer-resnet50
        base = [("scratch", self.scratch)]
        base += [(f"transfer-{t.model.backbone}" if several else "transfer", self._converging(t)) for t in transfers]
        base += self.controls()
        out, folds = [], self.folds or 1
        for fold in range(1, folds + 1):
            for k in range(self.seeds):
                for label, exp in base:
                    e = copy.deepcopy(exp)
                    e.seed = self.scratch.seed + k
                    e.data.split_seed = self.split_seed
                    if self.exhaustive and e.model.is_transfer:
                        e.cache_features = False  # the reference: every epoch through the whole model
                    name = label if self.seeds == 1 else f"{label}-seed{k}"
                    if folds > 1:
                        e.data.folds, e.data.fold = folds, fold
                        e.out_dir = os.path.join(self.out_dir, f"fold{fold}", name)
                        label_k = f"{label}, fold {fold} of {folds}"
                    else:
                        e.out_dir, label_k = os.path.join(self.out_dir, name), label
                    out.append((label_k, e))
        return out

    def raised(self, exp: Experiment, num_train: int, label: str) -> Experiment:
        """``exp`` with its phases raised to the study's minimum steps (the unfrozen phase to its own minimum)."""
        from kerasxfer.training import raise_to_min_steps

        if not self.min_steps:
            return exp
        if self.exhaustive or not exp.model.is_transfer or self.finetune_min_steps >= self.min_steps:
            return raise_to_min_steps(exp, num_train, self.min_steps, f"[study] {label}: ")
        low = self.finetune_min_steps
        heads, rest = exp.with_min_steps(num_train, self.min_steps), exp.with_min_steps(num_train, low)
        phases = [h if p.trainable == "head" else r for p, h, r in zip(exp.phases, heads.phases, rest.phases)]
        changed = [
            f"{a.name} {a.epochs} -> {b.epochs}" + (f" (unfrozen: at least {low} steps)" if a.trainable != "head" else "")
            for a, b in zip(exp.phases, phases)
            if a.epochs != b.epochs
        ]
        changed += [
            f"{a.name} at least {b.min_epochs} of at most {b.epochs} (until converged)"
            for a, b in zip(exp.phases, phases)
            if b.patience and a.min_epochs != b.min_epochs
        ]
        if changed:
            log.info(
                "[study] %s: epochs set so each phase takes at least its minimum of optimizer steps on %d training images (%s)",
                label,
                num_train,
                ", ".join(changed),
            )
        return dataclasses.replace(heads, phases=phases)

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
            return (
                f"cross-validation: {self.folds} folds over all {pool:,} labelled images ({why}): every image is "
                f"tested exactly once, and each arm trains {self.folds} times"
                + ("" if self.exhaustive else ", fold by fold until the answer is known")
            )
        return f"one train/val/test split ({why})"


def run_study(cfg: StudyConfig, overwrite: bool = False, verbose: int = 0) -> dict:
    """Train every arm that has not finished, write the report (and the sweep); return the report's summary."""
    from kerasxfer.data import SharedSources
    from kerasxfer.data.sizes import resolve_arms
    from kerasxfer.reporting.compare_report import write_report
    from kerasxfer.series import run_series
    from kerasxfer.training import determinism

    cfg.validate()
    cfg.scratch, cfg.transfer, *more = resolve_arms(cfg.scratch, cfg.transfer, *cfg.more_transfers)  # image_size=auto
    cfg.more_transfers = tuple(more)
    cache = None if cfg.exhaustive else os.path.join(cfg.out_dir, "cache")
    sources = SharedSources(cfg.split_seed, determinism(cfg.transfer), activation_dir=cache)
    whole = sources.decoded_for(cfg.transfer.data).src
    pool = len(whole.train) + len(whole.val) + len(whole.test)
    log.info("[study] %s", cfg.resolve_folds(pool, own_test=not whole.test.carved))
    if cfg.minutes:
        from kerasxfer.planning import fit_minutes

        fit_minutes(cfg, sources, len(whole.class_names), overwrite)
    series = [
        (label, cfg.raised(exp, sources.num_train(exp.data), label), sources.num_train(exp.data)) for label, exp in cfg.arms()
    ]
    stop = _SequentialStop(cfg, series, sources) if cfg.sequential else None
    run_series(series, sources, "study", overwrite, verbose, after=stop, forks=_forks(series), ray=cfg.ray)
    ran = stop.folds_run if stop is not None else None
    dirs = [exp.out_dir for _, exp, _ in series if ran is None or exp.data.fold <= ran]
    study = StudyRun(
        shortcuts=tuple(shortcuts(cfg, ran)),
        exhaustive=cfg.exhaustive,
        folds_planned=cfg.folds,
        folds_run=ran or cfg.folds,
        sequential=stop.record() if stop is not None else None,
    )
    for line in study.shortcuts:
        log.info("[study] %s", line)
    summary = write_report(dirs, os.path.join(cfg.out_dir, "report"), overwrite, study=study)
    from kerasxfer.final import train_final

    final = train_final(cfg, series, summary, sources, overwrite, verbose, ran)  # the report is written first: kept
    summary = write_report(dirs, os.path.join(cfg.out_dir, "report"), True, study=study, final=final)
    if cfg.sweep is not None:
        from kerasxfer.sweep import run_sweep

        summary["sweep"] = run_sweep(cfg.sweep, overwrite=overwrite, verbose=verbose)
    return summary


class _SequentialStop:
    """After the last run of each fold: the look at the pooled out-of-fold verdict; True stops the study."""

    def __init__(self, cfg: StudyConfig, series: list, sources):
        from kerasxfer.reporting import sequential

        self.cfg, self.series = cfg, series
        sizes = [
            _test_size(sources, exp.data) for _, exp, _ in series if exp.model.kind == "scratch" and exp.seed == cfg.scratch.seed
        ]  # one per fold
        self.fractions = sequential.fractions_of(sizes)
        self.levels = sequential.nominal_levels(self.fractions)
        self.bounds = sequential.boundaries(self.fractions)
        self.looks: list[Look] = []
        self.folds_run: int | None = None
        log.info(
            "[study] folds run one at a time; the study stops at the first fold whose verdict crosses the "
            "O'Brien-Fleming boundary (paired test below %s after folds 1..%d)",
            ", ".join(f"{p:.2g}" for p in self.levels),
            len(self.levels),
        )

    def __call__(self, i: int) -> bool:
        from kerasxfer.reporting.compare_report import interim_verdict

        fold = self.series[i][1].data.fold
        last_of_fold = i + 1 == len(self.series) or self.series[i + 1][1].data.fold != fold
        if not last_of_fold:
            return False
        dirs = [exp.out_dir for _, exp, _ in self.series[: i + 1]]
        v = interim_verdict(dirs, alpha=self.levels[fold - 1])
        main = v.main_pair
        self.looks.append(
            Look(
                fold=fold,
                fraction=self.fractions[fold - 1],
                nominal_p=self.levels[fold - 1],
                boundary_z=self.bounds[fold - 1],
                winner=v.winner,
                p_value=(main.p_value if main.adjusted_p is None else main.adjusted_p) if main else None,
            )
        )
        crossed = v.winner is not None
        log.info(
            "[study] look after fold %d of %d (%.0f %% of the pool tested): %s",
            fold,
            self.cfg.folds,
            100 * self.fractions[fold - 1],
            f"{v.winner} wins beyond the boundary (p below {self.levels[fold - 1]:.2g}): the study stops here"
            if crossed
            else f"no winner beyond the boundary (p below {self.levels[fold - 1]:.2g} needed)",
        )
        if crossed and fold < self.cfg.folds:
            self.folds_run = fold
            return True
        self.folds_run = fold
        return False

    def record(self) -> Sequential:
        return Sequential(
            rule="Lan-DeMets O'Brien-Fleming alpha spending, two-sided alpha 0.05",
            fractions=self.fractions,
            nominal_p=self.levels,
            boundaries_z=self.bounds,
            looks=tuple(self.looks),
            stopped_after=self.folds_run if self.folds_run and self.folds_run < (self.cfg.folds or 1) else None,
        )


def _forks(series) -> dict:
    """``{i: [j, ...]}``: the runs ``j`` whose training is the first phases of run ``i`` (a fold's
    control-pretrained is its transfer run's frozen phase), written from it instead of trained again."""
    from kerasxfer.forks import same_prefix

    out: dict[int, list[int]] = {}
    for j, (_, target, _) in enumerate(series):
        i = next((i for i, (_, source, _) in enumerate(series[:j]) if same_prefix(source, target)), None)
        if i is not None:
            out.setdefault(i, []).append(j)
    return out


def _test_size(sources, data) -> int:
    """How many images fold ``data.fold`` tests (from the split alone: nothing is sliced)."""
    from kerasxfer.data.splitting import fold_split

    whole = sources.decoded_for(dataclasses.replace(data, folds=0, fold=0)).src
    return len(fold_split(whole, data.folds, data.fold, data.val_fraction, sources.split_seed)[0].test)
