"""A finished run directory as one frozen :class:`Run` (:func:`read_run`; no TensorFlow)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kerasxfer.records.base import OMIT_NONE, json_name, pick


# ------------------------------------------------------------------ a run directory
@dataclass(frozen=True)
class Schedule:
    """How a phase's learning rate moved (``history.json`` phase ``schedule``)."""

    kind: str
    total_steps: int | None = None
    warmup_steps: int = 0
    steps_per_epoch: int | None = None


@dataclass(frozen=True)
class Phase:
    """One training phase of a run (frozen head, unfrozen stages, or the scratch CNN's one phase)."""

    name: str
    first_epoch: int
    last_epoch: int
    lr: float
    trainable: str
    trainable_params: int
    total_params: int
    schedule: Schedule | None = None
    lr_stage_decay: float = 1.0
    bn: str | None = None
    early_stopped: bool = False
    planned_last_epoch: int | None = None
    seconds: float | None = None
    probe: dict | None = None  # a solved frozen phase: kerasxfer.probe.Probe.record() (C, train/val accuracy, grid)


@dataclass(frozen=True)
class Epoch:
    """One epoch of ``history.json``, with its seconds and images/s from ``timings.json`` when recorded."""

    epoch: int
    phase: str
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: float | None = None
    seconds: float | None = None
    images_per_sec: float | None = None


@dataclass(frozen=True)
class Best:
    """The epoch validation chose: its checkpoint is the saved model."""

    epoch: int
    phase: str
    val_accuracy: float
    val_loss: float


@dataclass(frozen=True)
class History:
    epochs: tuple
    phases: tuple
    best: Best
    weights_source: str = "unknown"
    train_seconds: float | None = None

    @property
    def best_epoch(self) -> Epoch:
        """The epoch whose checkpoint the run kept and tested (the last one when the history does not say)."""
        return next((e for e in self.epochs if e.epoch == self.best.epoch), self.epochs[-1])

    @property
    def probe_train_accuracy(self) -> float | None:
        """The solved frozen phase's training accuracy: what the frozen features support (None: not solved)."""
        return next((p.probe["train_accuracy"] for p in self.phases if p.probe), None)


@dataclass(frozen=True)
class Evaluation:
    """The test split's per-image labels and predictions and the figures recomputed from them."""

    labels: list
    predictions: list
    loss: float
    accuracy: float = 0.0
    balanced_accuracy: float = 0.0
    macro_f1: float = 0.0
    confusion_matrix: list = field(default_factory=list)


@dataclass(frozen=True)
class Split:
    """One split of ``data.json``: how many images, where they came from, which ones."""

    count: int
    origin: str = field(metadata=json_name("from"))
    fingerprint: str = ""
    content: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class Data:
    """What a run trained and was tested on (``data.json``)."""

    source: str
    class_names: tuple
    num_train: int
    num_val: int
    num_test: int
    splits: dict
    split_seed: int | None = None
    image_size: int | None = None
    fold: int | None = None
    folds: int | None = None
    classes_missing: dict = field(default_factory=dict)
    train_per_class: dict = field(default_factory=dict)

    @property
    def test_split(self) -> Split:
        return self.splits["test"]


@dataclass(frozen=True)
class Setup:
    """What ``config.json`` says that the reports state: the model, the seed, the size and the recipe."""

    kind: str
    backbone: str | None
    weights: str | None
    seed: int | None
    min_steps: int
    image_size: int | str | None
    image_size_choice: str
    optim: dict


@dataclass(frozen=True)
class FoldResult:
    """One fold's run of a cross-validated arm, as the report's Folds table shows it."""

    fold: int
    dir: str
    num_test: int
    test_accuracy: float
    best_epoch: int
    best_val_accuracy: float
    train_seconds: float | None


@dataclass(frozen=True)
class Run:
    """A finished run directory (or an arm's fold runs pooled into one: ``folds`` then lists them)."""

    dir: str
    setup: Setup
    history: History
    test: Evaluation
    class_names: tuple
    total_params: int | None
    data: Data
    name: str | None = None
    folds: tuple | None = None
    num_folds: int = 0
    planned_folds: int | None = None
    # a pooled arm: the means over its folds of the best epoch's train and val accuracy and (train, val) loss, and
    # of the probe's train accuracy (None: not every fold solved its frozen phase)
    fold_fit: tuple | None = None
    fold_histories: tuple = ()  # a pooled arm: each fold's History, in fold order (the report's curves per fold)


def read_setup(config: dict) -> Setup:
    model, data = config["model"], config.get("data") or {}
    return Setup(
        kind=model["kind"],
        backbone=model.get("backbone"),
        weights=model.get("weights"),
        seed=config.get("seed"),
        min_steps=config.get("min_steps", 0) or 0,
        image_size=data.get("image_size"),
        image_size_choice=data.get("image_size_choice") or "given",
        optim=config.get("optim") or {},
    )


def read_history(history: dict, timings: dict | None) -> History:
    """``history.json`` with ``timings.json``'s seconds and images/s put back beside its epochs and phases."""
    timings = timings or {}
    by_epoch = {t["epoch"]: t for t in timings.get("epochs", [])}
    epochs = tuple(
        pick(Epoch, {**e, **{k: v for k, v in by_epoch.get(e["epoch"], {}).items() if k != "epoch"}}) for e in history["epochs"]
    )
    phases = tuple(
        pick(
            Phase,
            p,
            schedule=pick(Schedule, p["schedule"]) if p.get("schedule") else None,
            seconds=(timings.get("phases") or {}).get(p["name"]),
        )
        for p in history["phases"]
    )
    return History(
        epochs=epochs,
        phases=phases,
        best=pick(Best, history["best"]),
        weights_source=history.get("weights_source", "unknown"),
        train_seconds=timings.get("train_seconds"),
    )


def _without(d: dict, *keys) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def read_run(run_dir: str, config: dict, history: dict, metrics: dict, data: dict, timings: dict | None, shown=str) -> Run:
    """One :class:`Run` from the JSON of its files; ``shown`` renders the user's strings (class names, dataset).

    Raises KeyError, TypeError or ValueError when a file lacks what kerasxfer writes."""
    test = metrics["test"]
    splits = {name: pick(Split, s) for name, s in data["splits"].items()}
    missing = data.get("classes_missing")
    missing = {k: [shown(c) for c in v] for k, v in missing.items() if isinstance(v, list)} if isinstance(missing, dict) else {}
    d = pick(
        Data,
        _without(data, "splits", "class_names", "source", "classes_missing"),
        splits=splits,
        source=shown(data["source"]),
        class_names=tuple(shown(c) for c in data["class_names"]),
        classes_missing=missing,
    )
    t = Evaluation(labels=test.get("labels"), predictions=test.get("predictions"), loss=test.get("loss"))
    return Run(
        dir=run_dir,
        setup=read_setup(config),
        history=read_history(history, timings),
        test=t,
        class_names=tuple(shown(c) for c in metrics.get("class_names") or data["class_names"]),
        total_params=metrics.get("total_params"),
        data=d,
    )
