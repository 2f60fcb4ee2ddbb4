"""Backbone families as data: the one table that names them.

The config (which ``--backbone`` values exist, how many stages
``--unfreeze_stages`` may count), the transfer model (which layers a stage
holds), the report and the CLI read this table; nothing else names a family.
It imports no TensorFlow, so flags are checked before TensorFlow loads.

Adding a family is one module plus one entry here.  The module (``module``)
provides, for each of its ``variants``:

* ``build_backbone(variant, input_shape, weights) -> keras.Model``: the
  network without its classifier, named ``variant``, taking raw images in
  [0, 255] (preprocessing inside), ``weights`` being ``None``, ``"imagenet"``
  or a weights file;
* ``stage_of(layer_name) -> int | None``: the index in ``stages`` of the
  stage a backbone layer belongs to (``None`` for the stem);
* ``imagenet_weights_file(variant, include_top) -> str``: the local path of
  the ImageNet weights, fetched once (one-sentence error when it cannot be);
* ``residual_bns(backbone) -> list``: the last BatchNormalization of every
  residual branch (the one right before the branch is added to its skip), so
  training from random weights can start each residual block as the
  identity (:func:`kerasxfer.models.transfer.zero_init_residuals`).

:class:`FamilyModule` writes that interface down; :meth:`BackboneFamily.load`
checks a module against it.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Protocol, runtime_checkable

from kerasxfer.errors import UserError
from kerasxfer.models import efficientnet_lite_specs, keras_apps_specs, regnet_specs


@runtime_checkable
class FamilyModule(Protocol):
    """What a family's module provides (see the module docstring)."""

    def build_backbone(self, variant: str, input_shape, weights=None): ...

    def stage_of(self, layer_name: str): ...

    def imagenet_weights_file(self, variant: str, include_top: bool) -> str: ...

    def residual_bns(self, backbone) -> list: ...


@dataclasses.dataclass(frozen=True)
class BackboneFamily:
    """One family of backbones: its variants, its stages and where its weights come from."""

    name: str
    title: str  # how sentences name it ("RegNet")
    module: str  # the module that builds it (see the module docstring for what it provides)
    variants: tuple  # lower-case --backbone values
    stages: tuple  # stage names, input to output: --unfreeze_stages=K unfreezes the last K
    min_size: int  # smallest --image_size the network accepts
    imagenet: str  # where --weights=imagenet comes from, in words (reports say it)
    preprocessing: str  # what the model does to raw [0, 255] pixels, in words
    native: dict = dataclasses.field(default_factory=dict)  # variant -> the image size its ImageNet weights saw

    def load(self) -> FamilyModule:
        """The family's builder (imports Keras), checked against :class:`FamilyModule`.

        ``module`` is a module's name, or ``module:NAME`` for an object in it (a keras.applications family).
        """
        name, _, attr = self.module.partition(":")
        module = importlib.import_module(name)
        if attr:
            module = module.FAMILY_OBJECTS[attr]
        if not isinstance(module, FamilyModule):
            missing = [
                n
                for n in ("build_backbone", "stage_of", "imagenet_weights_file", "residual_bns")
                if not callable(getattr(module, n, None))
            ]
            raise TypeError(f"{self.module} does not provide {', '.join(missing)} (see kerasxfer.families)")
        return module


REGNET = BackboneFamily(
    name="regnet",
    title="RegNet",
    module="kerasxfer.models.regnet",
    variants=tuple(f"regnet{key}" for key in regnet_specs.CONFIGS),
    stages=("Stage_0", "Stage_1", "Stage_2", "Stage_3"),
    min_size=32,
    imagenet="keras-applications {variant}_notop.h5",
    preprocessing="Rescaling(1/255) to [0, 1], as tf-keras' RegNet code does",
    native={f"regnet{key}": 224 for key in regnet_specs.CONFIGS},
)

EFFICIENTNET_LITE = BackboneFamily(
    name="efficientnet_lite",
    title="EfficientNet-Lite",
    module="kerasxfer.models.efficientnet_lite",
    variants=tuple(efficientnet_lite_specs.VARIANTS),
    stages=("block1", "block2", "block3", "block4", "block5", "block6", "block7", "top"),
    min_size=32,
    imagenet="EfficientNet-Lite published weights for {variant}",
    preprocessing="ImageNet mean/std normalisation of [0, 1] pixels, inside the model",
    native={v: spec[2] for v, spec in efficientnet_lite_specs.VARIANTS.items()},
)


def _keras_app_family(name: str) -> BackboneFamily:
    title, stages, _, _, mode = keras_apps_specs.FAMILIES[name]
    variants = keras_apps_specs.variants_of(name)
    return BackboneFamily(
        name=name,
        title=title,
        module=f"kerasxfer.models.keras_apps:{name}",
        variants=variants,
        stages=stages,
        min_size=32,
        imagenet="the keras.applications notop file of {variant} (downloaded once by kerasxfer)",
        preprocessing=keras_apps_specs.PREPROCESSING_WORDS[mode],
        native={v: keras_apps_specs.VARIANTS[v][2] for v in variants},
    )


KERAS_APPS = tuple(_keras_app_family(name) for name in keras_apps_specs.FAMILIES)
FAMILIES = {f.name: f for f in (REGNET, EFFICIENTNET_LITE, *KERAS_APPS)}


def all_backbones() -> tuple:
    """Every ``--backbone`` value, family by family."""
    return tuple(v for f in FAMILIES.values() for v in f.variants)


def family_of(backbone: str) -> BackboneFamily:
    """The family of ``backbone`` (e.g. ``"regnetx002"``); a one-sentence :class:`UserError` if unknown."""
    for f in FAMILIES.values():
        if backbone in f.variants:
            return f
    names = "; ".join(f"{f.title}: {', '.join(f.variants)}" for f in FAMILIES.values())
    raise UserError(f"--backbone={backbone!r} is not a known backbone: use one of these ({names}).")
