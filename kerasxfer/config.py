"""The :class:`Experiment`: one object that describes a run completely.

Entry points in ``experiments/`` turn flags into an ``Experiment``; the
library reads nothing else.  ``Experiment.to_dict()`` is what a run directory
stores as ``config.json`` and ``Experiment.from_dict()`` reads it back, so a
run can always be repeated from its own folder.

:meth:`Experiment.validate` checks every field before any heavy work starts
and raises :class:`~kerasxfer.errors.UserError` with one sentence naming the
problem and the fix.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Optional

from kerasxfer.errors import UserError

BUILTIN_DATASETS = ("digits", "synthetic")
TFDS_PREFIX = "tfds:"
AUGMENT_MODES = ("none", "light", "strong")
BAD_IMAGE_MODES = ("skip", "error")
# The RegNet variants kerasxfer.models.regnet builds (it checks that the two
# lists agree); here so that flags are checked without importing TensorFlow.
REGNET_VARIANTS = tuple(
    f"regnet{kind}{size}" for kind in "xy"
    for size in ("002", "004", "006", "008", "016", "032", "040", "064", "080", "120", "160", "320")
)
MODEL_KINDS = ("scratch", "transfer", "regnet")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


@dataclass
class DataConfig:
    """Where the images come from and how they are fed.

    ``dataset`` is a built-in name (``digits``, ``synthetic``), the path of
    a folder of class sub-folders, or ``tfds:NAME`` (a TensorFlow Datasets
    dataset, read from ``tfds_data_dir``).  ``synthetic_train``/
    ``synthetic_val`` size the procedural ``synthetic`` dataset.
    ``on_bad_image``: ``skip`` undecodable files (counted in data.json) or
    stop with their list (``error``).  ``augment`` (``none``, ``light``,
    ``strong``) adds random augmentation layers in front of the model (active
    in training only); ``mixup``/``cutmix`` are Beta(alpha, alpha)
    parameters (0: off) of batch mixing on the training split.
    ``cache_dir``: cache decoded images in files there instead of in memory.
    """

    dataset: str = "digits"
    image_size: int = 64
    batch_size: int = 32
    val_fraction: float = 0.2
    shuffle_buffer: int = 2048
    synthetic_train: int = 12000
    synthetic_val: int = 1200
    # Seed of the train/val split; None: the experiment's seed.  Fixing it
    # keeps the same validation images across seeds (paired comparisons).
    split_seed: Optional[int] = None
    tfds_data_dir: Optional[str] = None
    tfds_download: bool = True  # download and prepare a tfds dataset that is not prepared yet
    on_bad_image: str = "skip"
    augment: str = "none"
    mixup: float = 0.0
    cutmix: float = 0.0
    cache_dir: Optional[str] = None

    @property
    def soft_labels(self) -> bool:
        """Whether training labels are mixed (one-hot, categorical loss)."""
        return self.mixup > 0 or self.cutmix > 0


@dataclass
class ModelConfig:
    """Which network is trained.

    ``kind="scratch"`` is the compact CNN (``widths`` and ``convs_per_block``
    shape it); ``kind="regnet"`` is a whole RegNet ``backbone`` with a new head,
    every layer trained (pretraining); ``kind="transfer"`` is ``backbone`` (a RegNet variant, lower
    case) with a new head, starting from ``weights`` (``None`` for random
    initialisation or the path of a weights file).
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


@dataclass
class PhaseConfig:
    """One training phase: ``epochs`` at learning rate ``lr``.

    ``trainable`` is ``"all"`` (scratch), ``"head"`` (backbone frozen) or
    ``"stages:K"`` (the last K backbone stages unfrozen, BatchNorm frozen).
    """

    name: str
    epochs: int
    lr: float
    trainable: str = "all"


@dataclass
class OptimConfig:
    optimizer: str = "adam"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0


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
    # Frozen-backbone phases train the head on backbone features computed once
    # per image.  None: whenever that is exact (no augmentation, no mixing).
    cache_features: Optional[bool] = None
    # tf.distribute strategy (kerasxfer.distribute): auto, one_device, mirrored, multi_worker, tpu.
    # data.batch_size is the global batch, split across replicas.
    strategy: str = "auto"

    def features_valid(self) -> bool:
        """Whether head-only phases may train on cached backbone features (same result, far faster)."""
        return self.model.kind == "transfer" and self.data.augment == "none" and not self.data.soft_labels

    def uses_cached_features(self, phase: "PhaseConfig") -> bool:
        return phase.trainable == "head" and self.cache_features is not False and self.features_valid()

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Experiment":
        d = dict(d)
        model = dict(d.get("model", {}))
        return cls(
            name=d["name"],
            out_dir=d["out_dir"],
            data=DataConfig(**d.get("data", {})),
            model=ModelConfig(**model),
            phases=[PhaseConfig(**p) for p in d.get("phases", [])],
            optim=OptimConfig(**d.get("optim", {})),
            seed=d.get("seed", 0),
            deterministic=d.get("deterministic"),
            precision=d.get("precision", "float32"),
            jit_compile=d.get("jit_compile", False),
            cache_features=d.get("cache_features"),
            strategy=d.get("strategy", "auto"),
        )

    # ------------------------------------------------------------ validate
    def validate(self) -> "Experiment":
        """Check every field; raise :class:`UserError` naming the first bad one."""
        d, m = self.data, self.model
        if not isinstance(d.image_size, int) or not 8 <= d.image_size <= 1024:
            raise UserError(
                f"--image_size={d.image_size} is out of range: use an integer "
                "from 8 to 1024 (RegNet needs at least 32)."
            )
        if not isinstance(d.batch_size, int) or not 1 <= d.batch_size <= 65536:
            raise UserError(
                f"--batch_size={d.batch_size} is out of range: use a positive integer."
            )
        if not 0.0 < d.val_fraction < 1.0:
            raise UserError(
                f"--val_fraction={d.val_fraction} must lie strictly between 0 and 1, "
                "for example 0.2."
            )
        if d.dataset.startswith(TFDS_PREFIX):
            if not d.dataset[len(TFDS_PREFIX):].strip():
                raise UserError("--dataset=tfds: needs a dataset name, e.g. --dataset=tfds:tf_flowers.")
            if d.tfds_data_dir is not None and not os.path.isdir(d.tfds_data_dir):
                raise UserError(
                    f"--tfds_data_dir={d.tfds_data_dir!r} is not a folder: pass the folder that holds the "
                    "prepared tfds datasets (default ~/tensorflow_datasets)."
                )
        elif d.dataset not in BUILTIN_DATASETS and not os.path.isdir(d.dataset):
            what = "is a file, not a folder" if os.path.exists(d.dataset) else "does not exist"
            raise UserError(
                f"--dataset={d.dataset!r} is neither a built-in dataset "
                f"({', '.join(BUILTIN_DATASETS)}) nor a folder ({what}): pass "
                "--dataset=digits, --dataset=tfds:NAME or the path of a folder of class sub-folders."
            )
        if d.on_bad_image not in BAD_IMAGE_MODES:
            raise UserError(f"--on_bad_image={d.on_bad_image!r} is unknown: use skip or error.")
        if d.augment not in AUGMENT_MODES:
            raise UserError(f"--augment={d.augment!r} is unknown: use none, light or strong.")
        for name, alpha in (("mixup", d.mixup), ("cutmix", d.cutmix)):
            if not 0.0 <= alpha <= 10.0:
                raise UserError(f"--{name}={alpha} is out of range: use 0 (off) or a Beta alpha such as 0.2 (up to 10).")
        if d.cache_dir is not None and os.path.exists(d.cache_dir) and not os.path.isdir(d.cache_dir):
            raise UserError(f"--cache_dir={d.cache_dir!r} is a file, not a folder: choose a folder for the cache.")
        if m.kind not in MODEL_KINDS:
            raise UserError(f"model kind {m.kind!r} is unknown: use one of {MODEL_KINDS}.")
        if d.dataset == "synthetic" and not (d.synthetic_train >= 24 and d.synthetic_val >= 24):
            raise UserError("the synthetic dataset needs at least 24 train and 24 val images (one per class).")
        if m.kind in ("transfer", "regnet"):
            if m.backbone not in REGNET_VARIANTS:
                raise UserError(
                    f"--backbone={m.backbone!r} is not a known RegNet: use one of "
                    f"{', '.join(REGNET_VARIANTS)}."
                )
            if d.image_size < 32:
                raise UserError(
                    f"--image_size={d.image_size} is too small for a RegNet "
                    "backbone: use 32 or more."
                )
            if m.weights not in (None, "imagenet") and not os.path.isfile(m.weights):
                raise UserError(
                    f"--weights={m.weights!r} is not a readable file: pass "
                    "--weights=imagenet, --weights=none or the path of a weights file."
                )
        if m.kind == "scratch" and (
            not m.widths or not all(isinstance(w, int) and 1 <= w <= 4096 for w in m.widths)
        ):
            raise UserError(f"--widths={m.widths} must be 1 or more integers from 1 to 4096, e.g. 32,64,128.")
        if m.calibrate_bn not in ("auto", "always", "never"):
            raise UserError(f"calibrate_bn={m.calibrate_bn!r} is unknown: use auto, always or never.")
        if not 0.0 <= m.dropout < 1.0:
            raise UserError(f"--dropout={m.dropout} must be in [0, 1).")
        if self.strategy not in STRATEGIES:
            raise UserError(
                f"--strategy={self.strategy!r} is unknown: use auto, one_device, mirrored, multi_worker or tpu."
            )
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision={self.precision!r} is unknown: use float32, mixed_float16 or mixed_bfloat16.")
        if self.cache_features and m.kind == "transfer" and not self.features_valid():
            raise UserError(
                "--cache_features needs images that are the same every epoch: pass --augment=none and no "
                "--mixup/--cutmix, or --nocache_features."
            )
        if not self.phases:
            raise UserError("the experiment has no training phase.")
        for p in self.phases:
            if not isinstance(p.epochs, int) or p.epochs < 0:
                raise UserError(
                    f"the {p.name} phase has {p.epochs} epochs: use 0 or a positive integer."
                )
            if not (p.lr > 0.0 and p.lr < 10.0):
                raise UserError(
                    f"the {p.name} phase learning rate {p.lr} must be a positive number below 10."
                )
            parse_trainable(p.trainable)
        if sum(p.epochs for p in self.phases) == 0:
            raise UserError("every phase has 0 epochs: give at least one epoch to train.")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            raise UserError(f"--seed={self.seed} is out of range: use an integer from 0 to 2147483647.")
        if self.data.split_seed is not None and not 0 <= self.data.split_seed < 2**31:
            raise UserError(
                f"--split_seed={self.data.split_seed} is out of range: use an integer from 0 to 2147483647."
            )
        parent = os.path.dirname(os.path.abspath(self.out_dir)) or "."
        probe = self.out_dir if os.path.isdir(self.out_dir) else parent
        while not os.path.exists(probe):
            probe = os.path.dirname(probe)
        if not os.path.isdir(probe):
            raise UserError(
                f"--out_dir={self.out_dir!r} cannot be created because {probe} is a file, not a folder: "
                "choose another folder."
            )
        if not os.access(probe, os.W_OK):
            raise UserError(
                f"--out_dir={self.out_dir!r} cannot be written ({probe} is not "
                "writable): choose another folder."
            )
        return self


def parse_trainable(rule: str):
    """``"all"`` -> ("all", None); ``"head"`` -> ("head", None); ``"stages:K"`` -> ("stages", K)."""
    if rule in ("all", "head"):
        return rule, None
    if rule.startswith("stages:"):
        try:
            k = int(rule.split(":", 1)[1])
        except ValueError:
            k = -1
        if 0 <= k <= 4:
            return "stages", k
        raise UserError(
            f"--unfreeze_stages must be an integer from 0 to 4 (RegNet has 4 stages), got {rule[7:]!r}."
        )
    raise UserError(f"trainable rule {rule!r} is unknown: use all, head or stages:K.")

