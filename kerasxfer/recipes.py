"""The study's recipes as data: each returns the :class:`~kerasxfer.config.Experiment` of one arm.

    from kerasxfer import recipes
    from kerasxfer.training import run_experiment
    run_experiment(recipes.finetune(out_dir="runs/ft", weights=None, frozen_epochs=5))

* :func:`scratch`: the compact CNN from random weights, one phase;
* :func:`finetune`: a backbone with a new head, frozen for ``frozen_epochs``,
  then its last ``unfreeze_stages`` stages trained at ``finetune_lr``;
* :func:`pretrain`: a whole backbone trained on a source task (default the
  procedural ``synthetic`` dataset), exported afterwards for ``finetune``.

Every recipe takes the settings shared by all arms as keywords (:data:`COMMON`
plus ``data``, a :class:`~kerasxfer.config.DataConfig`); the entry points in
``experiments/`` pass flags of the same names.  A recipe only builds the
object: nothing is checked until ``Experiment.validate()``.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from kerasxfer.config import AUTO_SIZE, FROZEN_HEADS, DataConfig, Experiment, ModelConfig, OptimConfig, PhaseConfig
from kerasxfer.errors import UserError

#: The training recipe's knobs (the fields of OptimConfig: optimiser, schedule, ...), taken by every recipe.
OPTIM = tuple(f.name for f in dataclasses.fields(OptimConfig))
#: Settings every recipe takes, with the same meaning (see Experiment and OptimConfig).
COMMON = ("out_dir", "seed", "deterministic", "precision", "jit_compile", "strategy", *OPTIM)


def _experiment(
    name: str, model: ModelConfig, phases: list, data: Optional[DataConfig], out_dir: Optional[str], **common
) -> Experiment:
    optim = OptimConfig(**{k: common.pop(k) for k in OPTIM if k in common})
    return Experiment(
        name=name,
        out_dir=f"runs/{name}" if out_dir is None else out_dir,
        data=data or DataConfig(),
        model=model,
        phases=phases,
        optim=optim,
        **common,
    )


def scratch(
    epochs: int = 10,
    lr: float = 1e-3,
    widths=(32, 64, 128),
    convs_per_block: int = 2,
    dropout: float = 0.3,
    data: Optional[DataConfig] = None,
    out_dir: Optional[str] = None,
    **common,
) -> Experiment:
    """The scratch arm: the compact CNN, every layer trained for ``epochs`` at ``lr``.

    ``widths`` may be strings (a comma-separated flag): they must be integers.
    """
    try:
        widths = [int(w) for w in widths]
    except (TypeError, ValueError):
        raise UserError(f"--widths={','.join(map(str, widths))} must be comma-separated integers, e.g. 32,64,128.") from None
    model = ModelConfig(kind="scratch", widths=widths, convs_per_block=convs_per_block, dropout=dropout)
    return _experiment("scratch", model, [PhaseConfig("scratch", epochs, lr, "all")], data, out_dir, **common)


def finetune(
    backbone: str = "regnetx002",
    weights: Optional[str] = "imagenet",
    frozen_epochs: int = 10,
    finetune_epochs: int = 10,
    lr: float = 1e-3,
    finetune_lr: float = 1e-5,
    unfreeze_stages: int = 2,
    dropout: float = 0.3,
    cache_features: Optional[bool] = None,
    frozen_head: str = "solve",
    finetune_warmup: float = 0.0,
    data: Optional[DataConfig] = None,
    out_dir: Optional[str] = None,
    **common,
) -> Experiment:
    """The transfer arm: phase ``frozen`` fits the head; phase ``unfrozen`` trains the last stages too.

    ``frozen_head``: ``"solve"`` (the head solved to the optimum on the frozen backbone's standardised
    features, :mod:`kerasxfer.probe`; ``frozen_epochs`` > 0 only says that the phase runs) or ``"epochs"``
    (trained ``frozen_epochs`` epochs at ``lr``).  ``finetune_warmup``: epochs of linear learning-rate warm-up at
    the start of phase ``unfrozen`` (0: the recipe's ``warmup_epochs``).  ``weights``: ``"imagenet"``, ``None`` or ``"none"``
    (random backbone: the control) or a weights file.  BatchNorm stays in inference mode in both phases.
    """
    if weights is not None and weights.lower() in ("none", ""):
        weights = None
    if frozen_head not in FROZEN_HEADS:
        raise UserError(f"--frozen_head={frozen_head} is unknown: use solve (the default) or epochs.")
    solve = frozen_head == "solve"
    model = ModelConfig(kind="transfer", backbone=backbone.lower(), weights=weights, dropout=dropout)
    phases = [
        PhaseConfig("frozen", min(frozen_epochs, 1) if solve else frozen_epochs, lr, "head", solve=solve),
        PhaseConfig("unfrozen", finetune_epochs, finetune_lr, f"stages:{unfreeze_stages}", warmup_epochs=finetune_warmup),
    ]
    return _experiment("finetune", model, phases, data, out_dir, cache_features=cache_features, **common)


def pretrain(
    backbone: str = "regnetx002",
    epochs: int = 8,
    lr: float = 1e-3,
    dropout: float = 0.0,
    data: Optional[DataConfig] = None,
    out_dir: Optional[str] = None,
    **common,
) -> Experiment:
    """A whole backbone from random weights on a source task (default: 12,000 ``synthetic`` images).

    No dropout by default: pretraining has plenty of data.
    """
    model = ModelConfig(kind="regnet", backbone=backbone.lower(), dropout=dropout)
    data = data or DataConfig(dataset="synthetic")
    return _experiment("pretrain", model, [PhaseConfig("pretrain", epochs, lr, "all")], data, out_dir, **common)


#: The study's arms (``make study``, ``make sweep``, ``make demo``): EfficientNet-Lite0 from its published ImageNet
#: weights at the size the data call for (kerasxfer.data.sizes: 224 for photos, 96 for the digits), its frozen
#: phase solved, then 8 epochs with its last 4 stages unfrozen at 1e-4 after a 2-epoch warm-up from the solved head
#: (LP-FT).  Measured on the bench's 230 scans (5 folds): at 2e-4 without warm-up the unfrozen phase left the
#: solved head (94.78 % test accuracy against the head's own 96.52 %); at 1e-4 with the warm-up it improved on it.
STUDY_DEFAULTS = {
    "backbone": "efficientnet_lite0",
    "image_size": AUTO_SIZE,
    "frozen_epochs": 10,
    "finetune_epochs": 8,
    "unfreeze_stages": 4,
    "finetune_lr": 1e-4,
    "finetune_warmup": 2.0,
}
#: What each command sets apart from the config and recipe defaults (the one home of such defaults).
COMMAND_DEFAULTS: dict[str, dict[str, object]] = {
    "finetune": {"image_size": AUTO_SIZE},
    "study": STUDY_DEFAULTS,
    "sweep": STUDY_DEFAULTS,
}

#: Recipe name -> recipe, for entry points and studies.
RECIPES = {"scratch": scratch, "finetune": finetune, "pretrain": pretrain}
