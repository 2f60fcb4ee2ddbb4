"""The compact CNN trained from random weights (the "scratch" arm of the study)."""

from __future__ import annotations

import keras
from keras import layers

from kerasxfer.models.augment import apply_augmentation
from kerasxfer.models.head import add_head


def build_scratch_cnn(
    input_shape,
    num_classes: int,
    widths=(32, 64, 128),
    convs_per_block: int = 2,
    dropout: float = 0.3,
    bn_momentum: float = 0.9,
    name: str = "scratch_cnn",
    augment: str = "none",
    seed: int = 0,
) -> keras.Model:
    """Conv-BN-ReLU blocks, each closed by 2x2 max pooling, then GAP, dropout, dense.

    The model takes raw images in [0, 255] (``Rescaling`` is its first layer)
    and returns class probabilities (float32, also under mixed precision).
    ``bn_momentum`` defaults to 0.9 rather than Keras' 0.99: with a small
    dataset there are few steps per epoch, and 0.99 leaves the moving
    statistics unsettled for many epochs.  ``augment`` puts the random
    augmentation layers of :mod:`kerasxfer.models.augment` (seeded from
    ``seed``) in front; they are active in training only.
    """
    if not widths:
        raise ValueError("widths must name at least one block")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = apply_augmentation(inputs, augment, seed)
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(x)
    for b, width in enumerate(widths):
        for c in range(convs_per_block):
            prefix = f"block{b + 1}_conv{c + 1}"
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=prefix)(x)
            x = layers.BatchNormalization(momentum=bn_momentum, name=prefix + "_bn")(x)
            x = layers.ReLU(name=prefix + "_relu")(x)
        x = layers.MaxPooling2D(2, name=f"block{b + 1}_pool")(x)
    outputs = add_head(x, num_classes, dropout)
    return keras.Model(inputs, outputs, name=name)
