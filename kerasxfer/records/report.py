"""What a compare report states: run summaries, seed groups and the verdict's records (no TensorFlow)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from kerasxfer.records.base import OMIT_NONE, field_of, json_name


# --------------------------------------------------------------------------- a report
@dataclass(frozen=True)
class Fit:
    """How well a run fit its own training images (:mod:`kerasxfer.reporting.fit`): its training accuracy at its
    best epoch against what it could reach (``supported``: the solved probe's on the frozen features, or what a CNN with
    more parameters than images reaches), and the diagnosis (``fits``, ``underfits``, ``overfits``)."""

    tag: str
    train_accuracy: float
    supported: float
    basis: str
    val_accuracy: float
    train_loss: float
    val_loss: float


@dataclass(frozen=True)
class PhaseSummary:
    name: str
    epochs: tuple
    learning_rate: float
    trainable: str
    trainable_params: int
    total_params: int
    best_val_accuracy: float
    best_epoch: int
    best_train_loss: float
    best_val_loss: float
    val_loss_min: float
    val_loss_max: float
    seconds: float | None
    images_per_sec: float | None
    schedule: str
    solved: bool = False  # the head solved (kerasxfer.probe), not trained by epochs


@dataclass(frozen=True)
class RunSummary:
    """Every number a report gives about one run (``summary.json``'s ``runs``)."""

    name: str
    dir: str
    kind: str
    backbone: str | None
    weights_file: str | None
    optimizer_steps: int | None
    min_steps: int
    train_counts: list
    folds: tuple | None
    planned_folds: int | None
    model: str
    weights: str
    preprocessing: str
    seed: int | None
    image_size: int | str | None
    image_size_choice: str
    dataset: str
    classes_missing: dict
    splits: dict
    num_train: int
    num_val: int
    num_test: int
    test_accuracy: float
    test_balanced_accuracy: float
    test_macro_f1: float
    test_loss: float
    test_interval: tuple
    best_val_accuracy: float
    best_val_loss: float
    best_epoch: int
    best_phase: str
    final_epoch: int
    final_train_accuracy: float
    final_train_loss: float
    final_val_accuracy: float
    final_val_loss: float
    accuracy_gap: float
    loss_gap: float
    total_params: int
    train_seconds: float | None
    phases: tuple
    recipe: str
    fit: Fit | None = None
    # from the per-image test labels and predictions (a cross-validated arm: pooled over its folds)
    test_confusion_matrix: list = field(default_factory=list)  # [true][predicted]; its total is num_test
    per_class: dict = field(default_factory=dict)  # class name -> precision, recall, f1, support


@dataclass(frozen=True)
class SeedGroup:
    """One approach over its seeds (``<name>-seed<k>``): each run's test accuracy, their mean and std."""

    runs: tuple
    seeds: tuple
    values: tuple
    mean: float
    std: float


# ------------------------------------------------------------------------- a verdict
@dataclass(frozen=True)
class Arm:
    """What :func:`kerasxfer.reporting.verdict.decide` reads of one run: its predictions and, for the
    did-not-learn cause and the cheaper-arm sentence, its cost and training."""

    name: str
    model: str
    kind: str
    predictions: list
    backbone: str | None = None
    weights: str | None = None
    weights_source: str | None = None
    train_seconds: float | None = None
    total_params: int | None = None
    optimizer_steps: int | None = None
    min_steps_default: int = 300
    final_train_loss: float | None = None
    final_train_accuracy: float | None = None
    train_counts: list | None = None
    frozen_only: bool = False
    fit: Fit | None = None


@dataclass(frozen=True)
class Baseline:
    """The majority-class predictor: always the most frequent test class."""

    class_index: int = field(metadata=json_name("class"))
    accuracy: float
    balanced_accuracy: float
    class_name: str | int | None = None

    def value(self, figure: str) -> float:
        return getattr(self, field_of(figure))


@dataclass(frozen=True)
class Pair:
    """``a`` minus ``b`` on a figure over the same test images: margin, interval, paired test, McNemar."""

    a: str
    b: str
    figure: str
    a_value: float
    b_value: float
    difference: float
    difference_points: float
    interval: tuple
    test: dict
    p_value: float
    mcnemar: dict
    #: the share of the test images on which both arms predict the same class (1.0: the same classifier)
    agreement: float = 1.0
    adjusted_p: float | None = field(default=None, metadata=OMIT_NONE)

    def oriented(self, first: str) -> Pair:
        """This pair as ``first`` minus the other."""
        if self.a == first:
            return self
        lo, hi = self.interval
        return dataclasses.replace(
            self,
            a=self.b,
            b=self.a,
            a_value=self.b_value,
            b_value=self.a_value,
            difference=-self.difference,
            difference_points=-self.difference_points,
            interval=(-hi, -lo),
        )


@dataclass(frozen=True)
class Learned:
    """Whether an arm beats the majority-class baseline beyond the noise, and if not, the tag and its why."""

    learned: bool
    value: float
    baseline: float
    p_value: float
    tag: str | None = field(default=None, metadata=OMIT_NONE)
    needed: int | None = field(default=None, metadata=OMIT_NONE)
    cause: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class Verdict:
    """The decision and every number behind its sentences (``summary.json``'s ``verdict``, less the sentences)."""

    figure: str
    imbalance: float
    baseline: Baseline
    roles: dict
    best_backbone: str | None
    winner: str | None
    learned: dict
    pairs: tuple
    controls: tuple
    main_pair: Pair | None
    num_images: int
    folds: int
    alpha: float
    # the arm the headline recommends (the winner, or within the noise the cheaper one); a study trains it as its
    # final model (kerasxfer.final)
    recommended: str | None = None
    sentences: tuple = field(default=(), metadata={"internal": True})


# ------------------------------------------------------------------------- a study
@dataclass(frozen=True)
class Look:
    """One look of a study's sequential rule: after ``fold``, the verdict at that fold's level."""

    fold: int
    fraction: float
    nominal_p: float
    boundary_z: float
    winner: str | None
    p_value: float | None


@dataclass(frozen=True)
class Sequential:
    """The group-sequential rule a study ran under and its looks (:mod:`kerasxfer.reporting.sequential`)."""

    rule: str
    fractions: list
    nominal_p: list
    boundaries_z: list
    looks: tuple
    stopped_after: int | None

    def level(self) -> float | None:
        """The level a winner must reach at the last look (None before any look)."""
        return self.nominal_p[self.looks[-1].fold - 1] if self.looks else None


@dataclass(frozen=True)
class StudyRun:
    """What a study did to be cheap, as its report states it (``summary.json``'s ``study``)."""

    shortcuts: tuple
    exhaustive: bool
    folds_planned: int | None
    folds_run: int | None
    sequential: Sequential | None = None

    @classmethod
    def from_json(cls, d: dict) -> StudyRun:
        """A ``study`` of a summary.json, e.g. to write its report again."""
        seq = d.get("sequential")
        if seq is not None:
            seq = Sequential(**{**seq, "looks": tuple(Look(**x) for x in seq["looks"])})
        return cls(**{**d, "shortcuts": tuple(d["shortcuts"]), "sequential": seq})


@dataclass(frozen=True)
class FinalModel:
    """The model a study hands over (``summary.json``'s ``final``, :mod:`kerasxfer.final`): which arm, where, and
    what to expect of it — the cross-validation's estimate, since it has no test split of its own."""

    arm: str | None  # None: no model handed over (``why`` says why)
    dir: str | None  # its run folder: <study>/final, or a one-split study's own run of the arm
    retrained: bool  # trained once more on every labelled image (cross-validated studies)
    why: str  # the sentence: which arm and why, or why none
    figure: str = "accuracy"
    estimate: float | None = None  # the arm's pooled out-of-fold (or test) figure: what to expect
    interval: tuple | None = None  # its 95 % Wilson interval
    folds: int = 0  # the folds the estimate pools (0: one test split)
    num_train: int | None = None
    num_val: int | None = None
    stop_epoch: int | None = None  # the epoch training ended at: the folds' median best epoch
    fold_best_epochs: tuple = ()
    train_seconds: float | None = None
    total_params: int | None = None
