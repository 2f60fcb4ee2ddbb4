"""The classification head every kerasxfer model ends in, and the two ways the code reaches into it.

Scratch CNN, transfer model and pretraining classifier all end in
``GlobalAveragePooling2D -> Dropout -> Dense(softmax, float32)`` named
``head_gap``, ``head_dropout``, ``head_dense`` (the float32 output keeps
mixed-precision probabilities exact).  A transfer model also standardises
its pooled features (``head_norm``, a plain Keras ``Normalization`` with
fixed statistics, the identity until :func:`set_standardisation` sets the
training images' mean and variance): the head the frozen phase solves
(:mod:`kerasxfer.probe`) works on standardised features, and the unfrozen
phase fine-tunes from it with features on the same scale.
:func:`pooled_features` (the GAP output: the backbone's features) and
:func:`head_on` (the model's own head layers on other inputs: a head that
trains on cached features) are the only code that looks the layers up by name.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

GAP, NORM, DROPOUT, DENSE = "head_gap", "head_norm", "head_dropout", "head_dense"


def add_head(x, num_classes: int, dropout: float, standardise: bool = False):
    """Pool ``x`` (a feature map), (``standardise``: standardise,) drop out, classify: the model's output tensor."""
    x = layers.GlobalAveragePooling2D(name=GAP)(x)
    if standardise:
        x = layers.Normalization(axis=-1, name=NORM)(x)  # mean 0, variance 1: the identity until set
    x = layers.Dropout(dropout, name=DROPOUT)(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name=DENSE)(x)


def pooled_features(model: keras.Model):
    """The pooled feature tensor of ``model`` (the input of its head's dropout)."""
    return model.get_layer(GAP).output


def _norm(model: keras.Model):
    """The model's ``head_norm`` layer, or None (scratch CNNs, and transfer models saved before it existed)."""
    return next((layer for layer in model.layers if layer.name == NORM), None)


def head_on(model: keras.Model, features):
    """``model``'s own head layers after the pooling (standardisation, dropout, dense) applied to ``features``
    (shared weights, not a copy)."""
    norm = _norm(model)
    if norm is not None:
        features = norm(features)
    return model.get_layer(DENSE)(model.get_layer(DROPOUT)(features))


def set_standardisation(model: keras.Model, mean, variance) -> None:
    """Set ``head_norm``'s fixed mean and variance (a frozen-phase solve: the training images' statistics)."""
    norm = _norm(model)
    norm.adapt_mean.assign(np.asarray(mean, np.float32))
    norm.adapt_variance.assign(np.asarray(variance, np.float32))
    norm.finalize_state()


def refresh_standardisation(model: keras.Model) -> None:
    """After the model's variables were assigned (a resumed run): ``head_norm`` reads its statistics again
    (Keras' ``Normalization`` keeps them as tensors made from its variables when they were last set)."""
    norm = _norm(model)
    if norm is not None:
        norm.finalize_state()


def set_linear_head(model: keras.Model, probe) -> None:
    """Write a solved probe (:class:`kerasxfer.probe.Probe`) into ``model``'s head: its standardisation into
    ``head_norm``, its softmax layer into ``head_dense`` (the model then computes the probe's probabilities)."""
    set_standardisation(model, probe.mean, probe.variance)
    dense = model.get_layer(DENSE)
    dense.set_weights([np.asarray(probe.kernel, np.float32), np.asarray(probe.bias, np.float32)])
