"""Backbone + new head, and the freeze / unfreeze rules of the study.

The backbone is a nested functional model.  Its BatchNormalization layers
are kept non-trainable by the freeze rules, and a non-trainable Keras 3
BatchNormalization runs in inference mode even while the model trains, so
unfreezing never lets a low-learning-rate phase disturb their moving
statistics (``--bn=frozen``, the default; ``--bn=train`` makes them trainable
in the phases that train the backbone).  The ``training=False`` of the
backbone's call does not hold inside ``fit``: Keras 3 hands the outer
``training`` flag to nested models, so the backbone's own dropout (drop
connect, stochastic depth) would be active while the head trains.  The
backbone's dropout layers are set to rate 0 (:func:`inference_mode`), so the
backbone is what the design says: a fixed function of the image wherever it
is frozen, which is what lets :mod:`kerasxfer.features` compute it once.
After any change of ``trainable`` the model must be compiled again;
:mod:`kerasxfer.training` does that for each phase.
"""

from __future__ import annotations

import keras
from keras import layers

from kerasxfer import keras_compat
from kerasxfer.families import family_of
from kerasxfer.models.augment import apply_augmentation
from kerasxfer.models.head import add_head


def build_transfer_model(
    backbone: str,
    input_shape,
    num_classes: int,
    weights=None,
    dropout: float = 0.3,
    augment: str = "none",
    seed: int = 0,
) -> keras.Model:
    """``backbone`` (a name from :mod:`kerasxfer.families`) without its top, then GAP, standardisation (the
    identity until the frozen phase is solved: :mod:`kerasxfer.probe`), dropout, dense.

    ``weights`` is ``None`` or a weights file for the backbone.  The returned
    model takes raw images in [0, 255] and has its backbone frozen.
    ``augment`` puts random augmentation layers (training only) in front.
    """
    base = family_of(backbone).load().build_backbone(backbone, input_shape, weights)
    inference_mode(base)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = base(apply_augmentation(inputs, augment, seed), training=False)
    outputs = add_head(x, num_classes, dropout, standardise=True)
    model = keras.Model(inputs, outputs, name=f"{backbone}_transfer")
    freeze(model)
    return model


def inference_mode(backbone: keras.Model) -> int:
    """Turn the backbone's own dropout layers (drop connect, stochastic depth) off; the number turned off.

    Keras 3 passes ``fit``'s ``training=True`` into nested models whatever their call said, so without this
    the frozen layers of EfficientNet-style backbones would drop residual branches at random while the head
    trains: the backbone would not be the fixed function of the image that the transfer recipe (and the
    features computed once) rely on.  BatchNorm is handled by the freeze rules.
    """
    n = 0
    for layer in keras_compat.flatten_layers(backbone):
        if isinstance(layer, layers.Dropout) and layer.rate:
            layer.rate = 0.0
            n += 1
    return n


def build_backbone_classifier(
    backbone: str, input_shape, num_classes: int, dropout: float = 0.0, augment: str = "none", seed: int = 0
) -> keras.Model:
    """A whole backbone (random weights) with GAP, dropout and a dense head, every layer trainable.

    Used to pretrain a backbone on a source task: unlike the transfer model
    the backbone runs in training mode, so its BatchNorm layers learn.  The
    nested backbone keeps the variant's name and layer names, so its weights
    load into :func:`build_transfer_model` (``weights=<file>``).
    """
    base = family_of(backbone).load().build_backbone(backbone, input_shape, None)
    zero_init_residuals(base)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = base(apply_augmentation(inputs, augment, seed))
    outputs = add_head(x, num_classes, dropout)
    return keras.Model(inputs, outputs, name=f"{backbone}_classifier")


def zero_init_residuals(backbone: keras.Model) -> int:
    """Zero the scale of the last BatchNorm of every residual branch; the number of layers zeroed.

    Each residual block then starts as the identity (Goyal et al., 2017), so
    training from random weights starts stable and learns several times
    faster.  The family's ``residual_bns`` names the layers (``tests/test_transfer.py`` and
    ``tests/test_keras_apps.py`` check, for every family, that they end the residual branches).
    """
    bns = family_of(backbone.name).load().residual_bns(backbone)
    for layer in bns:
        layer.gamma.assign(keras.ops.zeros_like(layer.gamma))
    return len(bns)


def get_backbone(model: keras.Model) -> keras.Model:
    """The nested backbone model of a transfer model."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    raise ValueError(f"{model.name} has no nested backbone model")


def freeze(model: keras.Model) -> None:
    """Freeze the whole backbone; only the head trains."""
    get_backbone(model).trainable = False


def backbone_stages(model: keras.Model):
    """``(layer, stage)`` for every layer of the transfer model's backbone: stage 0..K-1, None for the stem."""
    backbone = get_backbone(model)
    stage_of = family_of(backbone.name).load().stage_of
    return [(layer, stage_of(layer.name)) for layer in backbone.layers]


def unfreeze(model: keras.Model, stages: int, stem: bool = False, train_bn: bool = False) -> None:
    """Unfreeze the last ``stages`` backbone stages (0 .. the family's stage count); BatchNorm stays frozen.

    ``train_bn``: every BatchNorm layer of the backbone trains instead (fastai's
    ``train_bn``), the frozen stages' too.
    ``stages=0`` leaves the backbone frozen; all stages unfreezes every
    stage but not the stem, unless ``stem`` (the whole backbone, the
    ``all`` rule of a transfer model).  The family's table names the stages
    and its module's ``stage_of`` says which layer belongs to which.
    """
    backbone = get_backbone(model)
    family = family_of(backbone.name)
    num_stages = len(family.stages)
    if not 0 <= stages <= num_stages:
        raise ValueError(f"stages must be in 0..{num_stages}, got {stages}")
    if stages == 0 and not train_bn:
        backbone.trainable = False
        return
    first = num_stages - stages
    backbone.trainable = True
    for layer, s in backbone_stages(model):
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = train_bn
        else:
            layer.trainable = (s is not None and s >= first) or (stem and stages == num_stages)


def calibrate_batchnorm(model: keras.Model, dataset, max_batches: int = 50) -> int:
    """Re-estimate the backbone's BatchNorm moving statistics on ``dataset``.

    A randomly initialised backbone carries placeholder statistics (mean 0,
    variance 1); run in inference mode, as the frozen phase does, its
    activations then grow block after block through the residual adds and the
    "random features" are badly scaled.  This forward-only pass (no weight
    changes) sets every moving mean/variance to the average of its batch
    statistics over up to ``max_batches`` batches of ``dataset``, so a random
    backbone gives properly normalised random features.  One compiled forward
    pass per batch (momentum 0: the moving statistics are that batch's), the
    average taken in float64.  Returns the number of batches used.
    """
    import numpy as np
    import tensorflow as tf

    backbone = get_backbone(model)
    bns = [l for l in keras_compat.flatten_layers(backbone) if isinstance(l, layers.BatchNormalization)]
    saved = [(l.trainable, l.momentum) for l in bns]
    stats = [v for l in bns for v in (l.moving_mean, l.moving_variance)]
    sums, n = [np.zeros(v.shape, np.float64) for v in stats], 0
    try:
        for l in bns:
            l.trainable, l.momentum = True, 0.0  # Keras 3 BN uses batch statistics only when trainable
        forward = tf.function(lambda x: backbone(x, training=True), reduce_retracing=True)
        for x, _ in dataset.take(max_batches):
            forward(x)
            n += 1
            for total, v in zip(sums, stats):
                total += keras.ops.convert_to_numpy(v)
        for total, v in zip(sums, stats):
            if n:
                v.assign((total / n).astype(v.dtype))
    finally:
        for l, (t, m) in zip(bns, saved):
            l.trainable, l.momentum = t, m
    return n
