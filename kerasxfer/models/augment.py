"""Random augmentation as Keras 3 layers at the front of a model.

The layers sit between the model's input and its first real layer, so they
run on the accelerator with the rest of the step, are active only in
training (``model.fit``), and are the identity in ``predict``/``evaluate``
and in a loaded ``.keras`` model used for inference.  Every layer has its own
seed, and its random state is a model variable, so a resumed run continues
the same random stream.  Inputs are raw pixels in [0, 255].

``light``: horizontal flip, rotation up to +-18 degrees, zoom and
translation up to 10 %, brightness and contrast jitter up to 10-20 %.
``strong``: the same, then RandAugment (2 random ops per image, magnitude
0.5).  Flips and rotations are wrong for data whose meaning depends on
orientation (digits, text): keep ``none`` there.
"""

from __future__ import annotations

from keras import layers

from kerasxfer.config import AUGMENT_MODES


def augmentation_layers(mode: str, seed: int = 0) -> list:
    """The augmentation layers of ``mode`` (empty for ``none``), seeded from ``seed``."""
    if mode not in AUGMENT_MODES:
        raise ValueError(f"augment mode {mode!r} is unknown: use one of {AUGMENT_MODES}")
    if mode == "none":
        return []
    s = seed * 100
    out = [
        layers.RandomFlip("horizontal", seed=s + 1, name="aug_flip"),
        layers.RandomRotation(0.05, fill_mode="reflect", seed=s + 2, name="aug_rotate"),
        layers.RandomZoom(0.1, fill_mode="reflect", seed=s + 3, name="aug_zoom"),
        layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=s + 4, name="aug_translate"),
        layers.RandomBrightness(0.1, value_range=(0, 255), seed=s + 5, name="aug_brightness"),
        layers.RandomContrast(0.2, value_range=(0, 255), seed=s + 6, name="aug_contrast"),
    ]
    if mode == "strong":
        out.append(layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.5, seed=s + 7, name="aug_randaugment"))
    return out


def apply_augmentation(x, mode: str, seed: int = 0):
    """``x`` through the augmentation layers of ``mode`` (functional API)."""
    for layer in augmentation_layers(mode, seed):
        x = layer(x)
    return x
