"""What a sweep report states: its rows and points (no TensorFlow)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kerasxfer.records.base import OMIT_NONE, to_json


# --------------------------------------------------------------------------- a sweep
@dataclass(frozen=True)
class SweepRow:
    """One member of a sweep as ``sweep.csv`` holds it: accuracies to 4 decimals, the fraction as ``%g``."""

    sweep: str
    arm: str
    depth: int | str
    fraction: float
    seed: int
    train_images: int
    images_per_class: float
    epochs: int
    images_seen: int
    trainable_params: int
    best_epoch: int
    best_val_accuracy: float
    test_accuracy: float
    run: str

    def csv(self) -> dict:
        """The row's cells as sweep.csv and sweep.md write them."""
        return {
            **to_json(self),
            "fraction": f"{self.fraction:g}",
            "best_val_accuracy": f"{self.best_val_accuracy:.4f}",
            "test_accuracy": f"{self.test_accuracy:.4f}",
        }


@dataclass(frozen=True)
class ArmStats:
    """One arm's test accuracy at one point of a sweep, over its seeds."""

    mean: float
    min: float
    max: float
    n: int


@dataclass(frozen=True)
class DataPoint:
    """One training-set size of a data sweep; fine-tune vs scratch when both ran."""

    fraction: float
    images_per_class: float
    arms: dict
    difference_points: float | None = field(default=None, metadata=OMIT_NONE)
    mcnemar: dict | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class DepthPoint:
    """One unfreeze depth of a depth sweep: accuracy over the seeds, cost, and McNemar against the best depth."""

    depth: int | str
    mean: float
    min: float
    max: float
    trainable_params: int
    seconds: float
    runs: tuple
    mcnemar_vs_best: dict = field(default_factory=dict)
