"""How every phase trains: the optimiser, its learning-rate schedule and the other recipe knobs.

:class:`OptimConfig` is the ``optim`` section of an
:class:`~kerasxfer.config.Experiment` (``config.json``).  The schedule's
formula, :func:`learning_rate`, is written once over an array module
(``numpy`` for the report's pictures, ``keras.ops`` inside the optimiser), so
the curve the report draws is the one that trained.  This module imports no
TensorFlow; :mod:`kerasxfer.optimizers` builds the Keras objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from kerasxfer.errors import UserError
from kerasxfer.errors import check_choice as _choice

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")
BN_MODES = ("frozen", "train")
CLASS_WEIGHTS = ("none", "balanced")

#: One-cycle (fastai's ``fit_one_cycle``): start at peak / ONECYCLE_DIV, end at peak / ONECYCLE_FINAL_DIV,
#: warm up for ONECYCLE_WARMUP of the phase unless --warmup_epochs says otherwise.
ONECYCLE_DIV, ONECYCLE_FINAL_DIV, ONECYCLE_WARMUP = 25.0, 1e5, 0.25


@dataclass
class OptimConfig:
    """The optimiser of every phase (a fresh one per phase, at the phase's learning rate), and the recipe knobs.

    ``schedule``: the learning rate within each phase — ``constant``,
    ``cosine`` (to 0 at the phase's end) or ``onecycle`` (up from peak/25,
    then down to peak/1e5); ``warmup_epochs`` of linear warm-up at the start
    of each phase (one-cycle: its rising part, default a quarter of the
    phase).  ``lr_stage_decay`` D: in phases that train the backbone, its
    i-th stage from the top trains at ``lr * D**i`` (the head at ``lr``, the
    stem below the lowest stage).  ``weight_decay`` (decoupled; adamw and
    sgd), ``label_smoothing``, ``grad_clip`` (global norm; 0: off).  ``bn``:
    the backbone's BatchNorm layers in phases that train the backbone —
    ``frozen`` (inference mode, statistics kept) or ``train`` (batch
    statistics, moving averages and scale/offset updated, as fastai does).
    ``ema``: keep an exponential moving average of the weights with this
    momentum (the optimiser's own ``use_ema``), validate and save it instead
    of the raw weights; None: off.  ``early_stopping`` P: a phase ends after P
    epochs without a better val_accuracy (0: off); the best checkpoint is kept.
    ``class_weight``: ``balanced`` weights each training image's loss by
    ``n / (K * n_c)`` of its class (scikit-learn's rule), so rare classes count
    as much as common ones; ``none``: every image counts the same.
    """

    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    lr_stage_decay: float = 1.0
    label_smoothing: float = 0.0
    grad_clip: float = 0.0
    bn: str = "frozen"
    ema: Optional[float] = None
    early_stopping: int = 0
    class_weight: str = "none"

    def validate(self) -> None:
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("bn", self.bn, BN_MODES)
        if not 0.0 <= self.weight_decay < 1.0:
            raise UserError(f"--weight_decay={self.weight_decay} must be in [0, 1), e.g. 1e-4.")
        if self.weight_decay and self.optimizer == "adam":
            raise UserError(f"--weight_decay={self.weight_decay} needs decoupled weight decay: pass --optimizer=adamw (or sgd).")
        if not 0.0 <= self.warmup_epochs <= 1000:
            raise UserError(f"--warmup_epochs={self.warmup_epochs} must be 0 or a positive number of epochs, e.g. 1.")
        if not 0.0 <= self.lr_stage_decay <= 1.0:
            raise UserError(
                f"--lr_stage_decay={self.lr_stage_decay} must be in [0, 1] (1: every stage at the phase's rate), e.g. 0.5."
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(f"--label_smoothing={self.label_smoothing} must be in [0, 1), e.g. 0.1.")
        if not 0.0 <= self.grad_clip <= 1e6:
            raise UserError(f"--grad_clip={self.grad_clip} must be 0 (off) or a positive global norm, e.g. 1.0.")
        if self.ema is not None and not 0.0 <= self.ema < 1.0:
            raise UserError(f"--ema={self.ema} must be a momentum in [0, 1), e.g. 0.999 (leave it unset for no EMA).")
        if not isinstance(self.early_stopping, int) or self.early_stopping < 0:
            raise UserError(f"--early_stopping={self.early_stopping} must be 0 (off) or a patience in epochs, e.g. 5.")

    def validate_phase(self, name: str, epochs: int) -> None:
        """Check what depends on a phase's length: the warm-up must leave epochs to train at the full rate."""
        if epochs and self.warmup_epochs and self.warmup_epochs >= epochs and self.schedule != "onecycle":
            raise UserError(
                f"--warmup_epochs={self.warmup_epochs:g} leaves no epoch of the {name} phase ({epochs} epochs) after "
                "the warm-up: use fewer warm-up epochs."
            )

    def describe(self, transfer: bool = True) -> str:
        """``"adam, cosine schedule, 1 warm-up epoch, ..."``: what the report prints for the run."""
        parts = [
            self.optimizer + (f" (weight decay {self.weight_decay:g})" if self.weight_decay else ""),
            f"{self.schedule} schedule" + (f", {self.warmup_epochs:g} warm-up epoch(s)" if self.warmup_epochs else ""),
        ]
        if self.lr_stage_decay != 1.0 and transfer:
            parts.append(f"stage i from the top at lr x {self.lr_stage_decay:g}^i")
        if self.label_smoothing:
            parts.append(f"label smoothing {self.label_smoothing:g}")
        if self.grad_clip:
            parts.append(f"gradients clipped to norm {self.grad_clip:g}")
        if transfer:
            parts.append(f"backbone BatchNorm {'trained' if self.bn == 'train' else 'frozen'}")
        if self.ema is not None:
            parts.append(f"EMA of the weights (momentum {self.ema:g}) validated and saved")
        if self.early_stopping:
            parts.append(f"early stopping after {self.early_stopping} epochs without a better val_accuracy")
        if self.class_weight == "balanced":
            parts.append("loss weighted by class (balanced)")
        return ", ".join(parts)


def schedule_steps(cfg: OptimConfig, epochs: int, steps_per_epoch: int, phase_warmup: float = 0.0) -> dict:
    """A phase's schedule in steps: ``{"kind", "total_steps", "warmup_steps"}`` (what history.json records).
    ``phase_warmup``: the phase's own warm-up epochs, in place of ``cfg.warmup_epochs`` when not 0."""
    total = max(1, epochs * steps_per_epoch)
    warmup_epochs = phase_warmup or cfg.warmup_epochs
    if cfg.schedule == "onecycle" and not warmup_epochs:
        warmup = int(round(ONECYCLE_WARMUP * total))
    else:
        warmup = min(total, int(round(warmup_epochs * steps_per_epoch)))
    return {"kind": cfg.schedule, "total_steps": total, "warmup_steps": warmup}


def learning_rate(xp, step, peak: float, kind: str, total_steps: int, warmup_steps: int):
    """The learning rate at ``step`` (0-based, within the phase) of a phase with peak rate ``peak``.

    ``xp`` is ``numpy`` or ``keras.ops`` (``step`` an array or a tensor).
    constant/cosine warm up linearly: ``peak * (step + 1) / warmup_steps``
    for the first ``warmup_steps`` steps (so the last warm-up step is at
    ``peak``); cosine then falls to 0 at ``total_steps``.  One-cycle rises
    from ``peak / 25`` to ``peak`` along a half cosine over ``warmup_steps``
    and falls to ``peak / 1e5`` along another.
    """
    s = xp.cast(step, "float32") if hasattr(xp, "cast") else step.astype("float32")
    w, t = float(warmup_steps), float(max(total_steps, 1))
    if kind == "onecycle":
        start, end = peak / ONECYCLE_DIV, peak / ONECYCLE_FINAL_DIV
        up = xp.clip(s / max(w, 1.0), 0.0, 1.0)
        down = xp.clip((s - w) / max(t - w, 1.0), 0.0, 1.0)
        rising = start + (peak - start) * 0.5 * (1.0 - xp.cos(math.pi * up))
        falling = end + (peak - end) * 0.5 * (1.0 + xp.cos(math.pi * down))
        return xp.where(s < w, rising, falling)
    if kind == "cosine":
        progress = xp.clip((s - w) / max(t - w, 1.0), 0.0, 1.0)
        after = peak * 0.5 * (1.0 + xp.cos(math.pi * progress))
    else:
        after = s * 0.0 + peak
    if warmup_steps <= 0:
        return after
    return xp.where(s < w, peak * (s + 1.0) / w, after)


def class_weights(mode: str, labels, num_classes: int) -> Optional[dict]:
    """Keras' ``class_weight`` for ``mode``: ``balanced`` -> ``{c: n / (K * n_c)}`` over the training labels."""
    if mode != "balanced":
        return None
    counts = [0] * num_classes
    for y in labels:
        counts[int(y)] += 1
    present = [c for c in counts if c]
    return {c: (len(labels) / (len(present) * n) if n else 0.0) for c, n in enumerate(counts)}
