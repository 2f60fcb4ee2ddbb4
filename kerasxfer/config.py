"""The :class:`Experiment`: one object that describes a run completely.

Entry points in ``experiments/`` turn flags into an ``Experiment`` through
the recipes of :mod:`kerasxfer.recipes`; the library reads nothing else.
``Experiment.to_dict()`` is what a run directory stores as ``config.json``
and ``Experiment.from_dict()`` reads it back, so a run can always be
repeated from its own folder.

Each section (:class:`DataConfig`, :class:`ModelConfig`,
:class:`PhaseConfig`, :class:`OptimConfig`) checks its own fields in
``validate()``; :meth:`Experiment.validate` calls them all, then checks what
spans sections, before any heavy work starts or any file is written.  A bad
value raises :class:`~kerasxfer.errors.UserError` with one sentence naming
the problem and the fix.  This module imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Optional

from kerasxfer.datasets import BUILTIN_DATASETS, TFDS_PREFIX, check_dataset  # noqa: F401  (re-exported)
from kerasxfer.errors import UserError
from kerasxfer.errors import check_choice as _choice
from kerasxfer.families import family_of
from kerasxfer.optim_config import OptimConfig  # the optim section (defined with its schedule formula)
from kerasxfer.phases import MAX_EPOCHS, PhaseConfig  # noqa: F401  (re-exported)

AUGMENT_MODES = ("none", "light", "strong")
RESIZE_MODES = ("squash", "crop", "pad")
BAD_IMAGE_MODES = ("skip", "error")
MODEL_KINDS = ("scratch", "transfer", "regnet")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
CALIBRATE_BN = ("auto", "always", "never")
MAX_FOLDS = 20
#: Images whose header declares more pixels are skipped like undecodable ones (a small PNG can decode to GB).
MAX_IMAGE_PIXELS = 40_000_000
#: Every phase of a study (and of scratch/finetune unless epochs are given) trains at least this many steps.
DEFAULT_MIN_STEPS = 300
#: --image_size=auto: chosen from the data and the backbone (kerasxfer.data.sizes) before anything is decoded.
AUTO_SIZE = "auto"


@dataclass
class DataConfig:
    """Where the images come from and how they are fed.

    ``dataset`` is a built-in name (``digits``, ``synthetic``), the path of
    a folder of class sub-folders or of a CSV/TSV file of ``path,label[,split]``
    rows, ``tfds:NAME`` (a TensorFlow Datasets dataset, read from
    ``tfds_data_dir``) or ``arrays:<hash>`` (arrays handed over from Python,
    :mod:`kerasxfer.datasets`).  ``synthetic_train``/
    ``synthetic_val`` size the procedural ``synthetic`` dataset.
    ``on_bad_image``: ``skip`` undecodable files (counted in data.json) or
    stop with their list (``error``).  ``augment`` (``none``, ``light``,
    ``strong``) adds random augmentation layers in front of the model (active
    in training only); ``mixup``/``cutmix`` are Beta(alpha, alpha)
    parameters (0: off) of batch mixing on the training split.
    ``cache_dir``: cache decoded images in files there instead of in memory.
    ``train_fraction``: train on that share of each class of the training
    split (a nested, stratified subset drawn with the run's seed, at least
    one image per class), for learning curves by data size.

    Three disjoint splits: train, validation (curves, best-epoch choice) and
    test (the reported numbers).  ``val_fraction``/``test_fraction`` are
    shares of each class where the source has no such split of its own (see
    :mod:`kerasxfer.data.sources`).  ``resize``: how images reach
    ``image_size`` x ``image_size``: ``squash`` (stretch), ``crop`` (centre
    square) or ``pad`` (letterbox, keeping the aspect ratio).
    """

    dataset: str = "digits"
    image_size: int = 64  # or AUTO_SIZE until kerasxfer.data.sizes resolves it; image_size_choice says why
    image_size_choice: str = ""
    batch_size: int = 32
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    synthetic_train: int = 12000
    synthetic_val: int = 1200
    synthetic_test: int = 1200
    # Seed of the train/val/test split; None: the experiment's seed.  Fixing it
    # keeps the same validation and test images across seeds (paired comparisons).
    split_seed: Optional[int] = None
    tfds_data_dir: Optional[str] = None
    tfds_download: bool = True  # download and prepare a tfds dataset that is not prepared yet
    on_bad_image: str = "skip"
    augment: str = "none"
    mixup: float = 0.0
    cutmix: float = 0.0
    cache_dir: Optional[str] = None
    resize: str = "squash"
    # Train on a stratified, nested subset of the training split (learning curves); val and test stay whole.
    train_fraction: float = 1.0
    # Images whose header declares more pixels are skipped like undecodable ones (decompression bombs).
    max_image_pixels: int = MAX_IMAGE_PIXELS
    # Cross-validation: with folds = K >= 2 every labelled image (train, val and test pooled) lies in one of K
    # stratified folds; this run tests on fold `fold` (1..K) and validates on val_fraction of the others.
    folds: int = 0
    fold: int = 0

    @property
    def soft_labels(self) -> bool:
        """Whether training labels are mixed (one-hot, categorical loss)."""
        return self.mixup > 0 or self.cutmix > 0

    def validate(self) -> None:
        """Check the data fields (the dataset must exist; a tfds dataset is opened only later)."""
        if self.image_size != AUTO_SIZE and (not isinstance(self.image_size, int) or not 8 <= self.image_size <= 1024):
            raise UserError(
                f"--image_size={self.image_size} is out of range: use an integer from 8 to 1024 "
                "(backbones need at least 32), or auto."
            )
        if not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= 65536:
            raise UserError(f"--batch_size={self.batch_size} is out of range: use a positive integer.")
        for name, v in (("val_fraction", self.val_fraction), ("test_fraction", self.test_fraction)):
            if not 0.0 < v < 1.0:
                raise UserError(f"--{name}={v} must lie strictly between 0 and 1, for example 0.2.")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise UserError(
                f"--val_fraction={self.val_fraction} and --test_fraction={self.test_fraction} leave "
                f"{1 - self.val_fraction - self.test_fraction:.0%} of the images to train on: keep their sum below 0.9."
            )
        if not (isinstance(self.train_fraction, (int, float)) and 0.0 < self.train_fraction <= 1.0):
            raise UserError(
                f"--train_fraction={self.train_fraction} must be above 0 and at most 1 (1: the whole training split), e.g. 0.25."
            )
        if not isinstance(self.max_image_pixels, int) or self.max_image_pixels < 64:
            raise UserError(
                f"--max_image_pixels={self.max_image_pixels} must be a whole number of pixels of at least "
                "64, e.g. 40000000 (40 megapixels)."
            )
        if not isinstance(self.folds, int) or self.folds == 1 or not 0 <= self.folds <= MAX_FOLDS:
            raise UserError(
                f"--folds={self.folds} must be an integer from 2 to {MAX_FOLDS} (cross-validation), "
                "or 1 for one train/val/test split."
            )
        # fold 0 of K: a study's final model, no fold held out (kerasxfer.data.splitting.FINAL_FOLD); not a flag
        if self.folds and not (isinstance(self.fold, int) and 0 <= self.fold <= self.folds):
            raise UserError(f"fold {self.fold} is not one of the {self.folds} folds (1 to {self.folds}).")
        if self.folds and self.dataset == "synthetic":
            raise UserError(
                "the synthetic dataset draws each split differently, so it cannot be cross-validated: pass --folds=1."
            )
        self._validate_dataset()
        _choice("on_bad_image", self.on_bad_image, BAD_IMAGE_MODES)
        _choice("augment", self.augment, AUGMENT_MODES)
        _choice("resize", self.resize, RESIZE_MODES)
        for name, alpha in (("mixup", self.mixup), ("cutmix", self.cutmix)):
            if not 0.0 <= alpha <= 10.0:
                raise UserError(f"--{name}={alpha} is out of range: use 0 (off) or a Beta alpha such as 0.2 (up to 10).")
        if self.cache_dir is not None and os.path.exists(self.cache_dir) and not os.path.isdir(self.cache_dir):
            raise UserError(f"--cache_dir={self.cache_dir!r} is a file, not a folder: choose a folder for the cache.")
        if self.split_seed is not None and not 0 <= self.split_seed < 2**31:
            raise UserError(f"--split_seed={self.split_seed} is out of range: use an integer from 0 to 2147483647.")

    def _validate_dataset(self) -> None:
        check_dataset(self)


@dataclass
class ModelConfig:
    """Which network is trained.

    ``kind="scratch"`` is the compact CNN (``widths`` and ``convs_per_block``
    shape it); ``kind="regnet"`` is a whole ``backbone`` with a new head,
    every layer trained (pretraining); ``kind="transfer"`` is ``backbone``
    (a name from :mod:`kerasxfer.families`) with a new head, starting from
    ``weights`` (``None`` for random initialisation, ``"imagenet"``, or the
    path of a weights file).
    """

    kind: str = "scratch"
    # scratch CNN
    widths: list = field(default_factory=lambda: [32, 64, 128])
    convs_per_block: int = 2
    # transfer
    backbone: str = "regnetx002"
    weights: Optional[str] = None
    # Re-estimate BatchNorm statistics of a *random* backbone before training
    # (see kerasxfer.models.transfer.calibrate_batchnorm).  "auto": only when
    # weights is None.
    calibrate_bn: str = "auto"
    # shared
    dropout: float = 0.3
    bn_momentum: float = 0.9

    @property
    def uses_backbone(self) -> bool:
        """Whether the network is built around a backbone family (transfer or whole-backbone training)."""
        return self.kind in ("transfer", "regnet")

    @property
    def is_transfer(self) -> bool:
        return self.kind == "transfer"

    @property
    def num_stages(self) -> int:
        """How many stages ``stages:K`` rules may count (0 for the scratch CNN)."""
        return len(family_of(self.backbone).stages) if self.uses_backbone else 0

    @property
    def display_name(self) -> str:
        """What reports call the network."""
        return self.backbone if self.uses_backbone else "scratch CNN"

    def validate(self, image_size: int) -> None:
        """Check the model fields for images of ``image_size`` pixels."""
        if self.kind not in MODEL_KINDS:
            raise UserError(f"model kind {self.kind!r} is unknown: use {', '.join(MODEL_KINDS)}.")
        _choice("calibrate_bn", self.calibrate_bn, CALIBRATE_BN)
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"--dropout={self.dropout} must be in [0, 1).")
        if self.kind == "scratch":
            if not self.widths or not all(isinstance(w, int) and 1 <= w <= 4096 for w in self.widths):
                raise UserError(f"--widths={self.widths} must be 1 or more integers from 1 to 4096, e.g. 32,64,128.")
            if not isinstance(self.convs_per_block, int) or not 1 <= self.convs_per_block <= 16:
                raise UserError(f"--convs_per_block={self.convs_per_block} must be an integer from 1 to 16.")
            if 2 ** len(self.widths) > image_size:
                raise UserError(
                    f"--widths={','.join(map(str, self.widths))} has {len(self.widths)} blocks, each halving the "
                    f"image, too many for --image_size={image_size}: use at most {image_size.bit_length() - 1} "
                    "blocks or larger images."
                )
            return
        family = family_of(self.backbone)
        if image_size < family.min_size:
            raise UserError(
                f"--image_size={image_size} is too small for a {family.title} backbone: use {family.min_size} or more."
            )
        if isinstance(self.weights, str) and self.weights != "imagenet" and not os.path.isfile(self.weights):
            raise UserError(
                f"--weights={self.weights!r} is not a readable file: pass --weights=imagenet, --weights=none or the "
                "path of a weights file."
            )


#: How a transfer model's frozen phase fits its head: solved to the optimum (kerasxfer.probe) or trained by epochs.
FROZEN_HEADS = ("solve", "epochs")


@dataclass
class Experiment:
    """Everything one run needs: data, model, phases, optimisation, output."""

    name: str
    out_dir: str
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    phases: list = field(default_factory=list)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    # Deterministic ops (tf.config.experimental.enable_op_determinism): the
    # same experiment gives the same numbers.  None: on when there is no GPU.
    deterministic: Optional[bool] = None
    # Keras dtype policy of the model ("mixed_float16" for GPUs with tensor
    # cores, "mixed_bfloat16" for TPUs and CPUs with AMX/AVX512-BF16); the
    # classifier's last layer always computes in float32.
    precision: str = "float32"
    # Compile the train step with XLA (model.compile(jit_compile=True)).
    jit_compile: bool = False
    # Frozen-backbone outputs computed once per image (kerasxfer.features): the head trains on pooled
    # features, the last stages on the activations where they begin.  None: wherever that is exact.
    cache_features: Optional[bool] = None
    # tf.distribute strategy (kerasxfer.distribute): auto, one_device, mirrored, multi_worker, tpu.
    # data.batch_size is the global batch, split across replicas.
    strategy: str = "auto"
    # End training after the first epoch that brings the run's training time to this many seconds (the
    # phases' epochs are then a cap): the sweep's fair time budget.  None: train every epoch.
    max_train_seconds: Optional[float] = None
    # End training after this epoch, the phases and their learning-rate schedules as planned: a study's final
    # model stops where its folds' best checkpoints lay (kerasxfer.final).  None: train every epoch.
    stop_after_epoch: Optional[int] = None
    # The phases' epochs were raised (with_min_steps) so each takes at least this many optimizer steps; 0: as given.
    min_steps: int = 0

    def features_valid(self) -> bool:
        """Whether head-only phases may train on cached backbone features (same result, far faster)."""
        return self.model.is_transfer and self.data.augment == "none" and not self.data.soft_labels

    def uses_cached_features(self, phase: PhaseConfig) -> bool:
        return phase.trainable == "head" and self.cache_features is not False and self.features_valid()

    def uses_cached_activations(self, phase: PhaseConfig) -> bool:
        """Whether a phase that trains the last stages trains them on cached activations (kerasxfer.phases)."""
        from kerasxfer.phases import activations_off

        return activations_off(self, phase) is None

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def with_min_steps(self, num_train: int, min_steps: int) -> "Experiment":
        """This experiment with every phase's epochs raised so it takes at least ``min_steps`` optimizer steps
        on ``num_train`` training images (a phase of 0 epochs stays 0; a phase that trains until converged has
        its minimum raised, under its cap); ``min_steps`` is recorded."""
        per_epoch = max(1, math.ceil(num_train / self.data.batch_size))
        raised = min(MAX_EPOCHS, math.ceil(min_steps / per_epoch))  # never past the epochs a phase may have
        phases = [
            p
            if p.solve  # solved: one entry whatever the steps
            else dataclasses.replace(p, epochs=max(p.epochs, raised) if p.epochs else 0)
            if not p.patience
            else dataclasses.replace(p, min_epochs=min(p.epochs, max(p.min_epochs, raised)))  # its cap stays
            for p in self.phases
        ]
        return dataclasses.replace(self, phases=phases, min_steps=min_steps)

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def complete(d: dict) -> dict:
        """A ``config.json`` with the fields a newer kerasxfer added at their defaults (older runs continue)."""
        return Experiment.from_dict(d).to_dict()

    @classmethod
    def from_dict(cls, d: dict) -> "Experiment":
        """The experiment a ``to_dict()`` (a run's ``config.json``) describes; missing fields take their defaults."""
        d = dict(d)
        for key, section in (("data", DataConfig), ("model", ModelConfig), ("optim", OptimConfig)):
            if key in d:
                d[key] = _section(section, d[key])
        d["phases"] = [_section(PhaseConfig, p) for p in d.get("phases", [])]
        return _section(cls, d)

    # ------------------------------------------------------------ validate
    def validate(self) -> "Experiment":
        """Check every section, then what spans them; raise :class:`UserError` naming the first bad field."""
        self.data.validate()
        self.model.validate(224 if self.data.image_size == AUTO_SIZE else self.data.image_size)  # auto: >= 96
        self.optim.validate()
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("precision", self.precision, PRECISIONS)
        if self.cache_features and self.model.is_transfer and not self.features_valid():
            raise UserError(
                "--cache_features needs images that are the same every epoch: pass --augment=none and no "
                "--mixup/--cutmix, or --nocache_features."
            )
        if not self.phases:
            raise UserError("the experiment has no training phase.")
        for p in self.phases:
            p.validate(self.model.num_stages)
            if p.solve and not self.model.is_transfer:
                raise UserError(f"the {p.name} phase is solved, which only a transfer model's frozen phase can be.")
            if not p.solve:  # a solved phase takes no optimizer step: no schedule to fit in it
                self.optim.validate_phase(p.name, p.epochs)
        if self.total_epochs == 0:
            raise UserError("every phase has 0 epochs: give at least one epoch to train.")
        if self.stop_after_epoch is not None and not (
            isinstance(self.stop_after_epoch, int) and 1 <= self.stop_after_epoch <= self.total_epochs
        ):
            raise UserError(f"stop_after_epoch={self.stop_after_epoch} must be an epoch from 1 to the run's {self.total_epochs}.")
        if self.max_train_seconds is not None and not self.max_train_seconds > 0:
            raise UserError(f"the time budget {self.max_train_seconds} s must be a positive number of seconds.")
        if not isinstance(self.min_steps, int) or not 0 <= self.min_steps <= 100_000:
            raise UserError(f"--min_steps={self.min_steps} must be an integer from 0 (off) to 100000.")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            raise UserError(f"--seed={self.seed} is out of range: use an integer from 0 to 2147483647.")
        from kerasxfer.rundir import check_out_dir, check_outside  # run-folder rules (rundir imports no config)

        check_out_dir(self.out_dir)
        if os.path.isdir(self.data.dataset):  # a folder of class folders: what is written there is read back
            check_outside(self.out_dir, self.data.dataset)
        return self


def _section(cls, d: dict):
    """``cls(**d)``, refusing keys that are not fields of ``cls`` with one sentence."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise UserError(
            f"the configuration has unknown {cls.__name__} field(s) {', '.join(unknown)}: it was written by "
            "another version of kerasxfer; pass --overwrite to start the run again with this one."
        )
    return cls(**d)
