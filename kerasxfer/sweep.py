"""Sweeps: where transfer stops paying (training-set size) and how deep to unfreeze.

``data``: the scratch CNN, the frozen backbone (phase 1 alone) and the
fine-tuned backbone trained on nested, stratified subsets of the training
split (:func:`kerasxfer.data.splitting.nested_subset`), every one tested on the
same whole validation and test splits, over ``seeds``.

``depth``: the fine-tune with 0..K of the backbone's K stages unfrozen in
phase 2, and the whole network (``all``).

Every member is an ordinary run directory under ``out_dir`` (resumable,
deterministic, comparable with ``compare``), trained in this process one
after the other; a finished member is not trained again, so rerunning a
sweep trains only what has not finished.  The source is decoded once per
image size, and the frozen backbone's features once per backbone
(:mod:`kerasxfer.features`).  At the end :mod:`kerasxfer.reporting.sweep_report`
writes ``sweep.csv``, the curves and the sentences.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
from typing import Optional

import numpy as np

from kerasxfer import fsio, rundir
from kerasxfer.config import Experiment
from kerasxfer.errors import UserError

log = logging.getLogger("kerasxfer")

SWEEPS = ("data", "depth")
BUDGETS = ("epochs", "time")
DEFAULT_FRACTIONS = (0.05, 0.1, 0.25, 0.5, 1.0)
#: With --budget=time the scratch arm may run up to this many times its epochs to fill its rival's time.
TIME_BUDGET_EPOCH_CAP = 4


@dataclasses.dataclass
class SweepConfig:
    """What to sweep (``kind``), over what, and the two arms' base experiments (from the usual flags).

    ``min_steps``: a phase trained on a small subset gets more epochs, so
    that it takes at least that many optimizer steps (0: the epochs as
    given).  ``budget="time"`` gives each scratch member the training time
    of the fine-tune member of its size and seed (its epochs become a cap of
    ``TIME_BUDGET_EPOCH_CAP`` times as many).  ``depths``: ``None`` for
    every depth 0..K and ``all``.
    """

    kind: str
    out_dir: str
    scratch: Experiment
    transfer: Experiment
    fractions: tuple = DEFAULT_FRACTIONS
    depths: Optional[list] = None
    depth_fraction: float = 1.0
    seeds: int = 1
    budget: str = "epochs"
    min_steps: int = 100
    split_seed: int = 0
    ray: Optional[object] = None  # a kerasxfer.executors.RayConfig: the runs as Ray tasks (--executor=ray)

    @property
    def num_stages(self) -> int:
        return self.transfer.model.num_stages

    def depth_list(self) -> list:
        """The depths as strings: ``"0"`` .. ``"K"`` and ``"all"``."""
        if self.depths is None:
            return [str(k) for k in range(self.num_stages + 1)] + ["all"]
        return [str(d).strip().lower() for d in self.depths]

    def validate(self) -> "SweepConfig":
        if self.kind not in SWEEPS:
            raise UserError(f"--sweep={self.kind!r} is unknown: use {', '.join(SWEEPS)}.")
        if self.budget not in BUDGETS:
            raise UserError(f"--budget={self.budget!r} is unknown: use {', '.join(BUDGETS)}.")
        if self.budget == "time" and self.kind != "data":
            raise UserError("--budget=time applies to the data sweep (scratch against transfer): use --sweep=data.")
        fr = list(self.fractions)
        if not fr or any(not 0.0 < f <= 1.0 for f in fr) or len(set(fr)) != len(fr):
            raise UserError(
                f"--fractions={','.join(map(str, fr))} must be distinct numbers above 0 and at most 1, e.g. 0.05,0.1,0.25,0.5,1."
            )
        if not 0.0 < self.depth_fraction <= 1.0:
            raise UserError(f"--depth_fraction={self.depth_fraction} must be above 0 and at most 1.")
        if not isinstance(self.seeds, int) or not 1 <= self.seeds <= 100:
            raise UserError(f"--seeds={self.seeds} must be an integer from 1 to 100: how many seeds train each member.")
        if not isinstance(self.min_steps, int) or not 0 <= self.min_steps <= 100_000:
            raise UserError(f"--min_steps={self.min_steps} must be an integer from 0 (off) to 100000.")
        if not self.transfer.model.is_transfer or len(self.transfer.phases) != 2:
            raise UserError("a sweep's transfer arm must be the finetune recipe (a frozen and an unfrozen phase).")
        k, depths = self.num_stages, self.depth_list()
        allowed = [str(i) for i in range(k + 1)] + ["all"]
        bad = [d for d in depths if d not in allowed]
        if bad or not depths or len(set(depths)) != len(depths):
            raise UserError(
                f"--depths={','.join(depths)} is not a list of distinct depths: use stage counts from 0 to {k} "
                f"(the backbone has {k} stages) and/or 'all', e.g. 0,1,2,{k},all."
            )
        for exp in (self.scratch, self.transfer):
            exp.validate()
        return self


@dataclasses.dataclass
class Member:
    """One run of a sweep: which arm, on what share of the training split, with which seed (and depth)."""

    arm: str  # scratch | frozen | finetune
    fraction: float
    seed: int
    exp: Experiment
    depth: Optional[str] = None


def subset_size(counts, fraction: float) -> int:
    """How many images :func:`~kerasxfer.data.splitting.nested_subset` keeps of classes of ``counts`` images."""
    return sum(max(1, int(math.floor(fraction * n + 0.5))) for n in counts)


def _member(
    base: Experiment,
    out: str,
    fraction: float,
    seed: int,
    counts,
    cfg: SweepConfig,
    trainable: Optional[str] = None,
    unfrozen_epochs: Optional[int] = None,
) -> Experiment:
    exp = copy.deepcopy(base)
    exp.out_dir, exp.seed = out, seed
    exp.data.train_fraction, exp.data.split_seed = fraction, cfg.split_seed
    exp = exp.with_min_steps(subset_size(counts, fraction), cfg.min_steps)
    if unfrozen_epochs is not None:
        exp.phases[1].epochs = unfrozen_epochs
    if trainable is not None:
        exp.phases[1].trainable = trainable
    return exp


def plan(cfg: SweepConfig, counts) -> list:
    """The members of the sweep, in the order they train; ``counts``: images per class of the whole train split."""
    members, root = [], os.path.join(cfg.out_dir, cfg.kind)
    for seed in range(cfg.scratch.seed, cfg.scratch.seed + cfg.seeds):
        if cfg.kind == "data":
            for f in cfg.fractions:
                d = os.path.join(root, f"f{f:g}")
                members += [
                    Member(
                        "frozen",
                        f,
                        seed,
                        _member(cfg.transfer, os.path.join(d, f"frozen-seed{seed}"), f, seed, counts, cfg, unfrozen_epochs=0),
                    ),
                    Member(
                        "finetune", f, seed, _member(cfg.transfer, os.path.join(d, f"finetune-seed{seed}"), f, seed, counts, cfg)
                    ),
                    Member(
                        "scratch", f, seed, _member(cfg.scratch, os.path.join(d, f"scratch-seed{seed}"), f, seed, counts, cfg)
                    ),
                ]
        else:
            f = cfg.depth_fraction
            for depth in cfg.depth_list():
                rule = "all" if depth == "all" else "head" if depth == "0" else f"stages:{depth}"
                out = os.path.join(root, f"d{depth}-seed{seed}")
                members.append(
                    Member("finetune", f, seed, _member(cfg.transfer, out, f, seed, counts, cfg, trainable=rule), depth=depth)
                )
    return members


def _time_budget(member: Member, members: list) -> None:
    """``--budget=time``: the scratch member trains as long as the fine-tune member of its size and seed did."""
    rival = next(m for m in members if m.arm == "finetune" and m.fraction == member.fraction and m.seed == member.seed)
    timings = fsio.read_json(os.path.join(rival.exp.out_dir, rundir.TIMINGS))
    member.exp.max_train_seconds = round(float(timings["train_seconds"]), 1)
    member.exp.phases[0].epochs *= TIME_BUDGET_EPOCH_CAP


def run_sweep(cfg: SweepConfig, overwrite: bool = False, verbose: int = 0) -> dict:
    """Train every member of the sweep that has not finished, then write its report; return sweep.json's content."""
    from kerasxfer.data import SharedSources
    from kerasxfer.data.sizes import resolve_arms
    from kerasxfer.reporting.sweep_report import write_sweep_report
    from kerasxfer.series import run_series
    from kerasxfer.training import determinism

    cfg.validate()
    cfg.scratch, cfg.transfer = resolve_arms(cfg.scratch, cfg.transfer)  # --image_size=auto
    sources = SharedSources(cfg.split_seed, determinism(cfg.transfer))
    counts = np.bincount(sources.decoded_for(cfg.transfer.data).src.train.y)
    counts = counts[counts > 0]
    members = plan(cfg, counts)

    def label(m):
        what = m.arm if m.depth is None else f"depth {m.depth}"
        return f"{what}, {m.fraction:g} of the training split, seed {m.seed}"

    def before(i):
        if members[i].arm == "scratch" and cfg.budget == "time":
            _time_budget(members[i], members)

    run_series(
        [(label(m), m.exp, subset_size(counts, m.fraction)) for m in members],
        sources,
        "sweep",
        overwrite,
        verbose,
        before if cfg.budget == "time" else None,
        ray=cfg.ray,
    )
    return write_sweep_report(cfg, members)
