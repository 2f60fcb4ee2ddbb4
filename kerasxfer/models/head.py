"""The classification head every kerasxfer model ends in, and the two ways the code reaches into it.

Scratch CNN, transfer model and pretraining classifier all end in
``GlobalAveragePooling2D -> Dropout -> Dense(softmax, float32)`` named
``head_gap``, ``head_dropout``, ``head_dense`` (the float32 output keeps
mixed-precision probabilities exact).  :func:`pooled_features` (the GAP
output: the backbone's features) and :func:`head_on` (the model's own
dropout and dense layers on other inputs: a head that trains on cached
features) are the only code that looks the layers up by name.
"""

from __future__ import annotations

import keras
from keras import layers

GAP, DROPOUT, DENSE = "head_gap", "head_dropout", "head_dense"


def add_head(x, num_classes: int, dropout: float):
    """Pool ``x`` (a feature map), drop out, classify: the model's output tensor."""
    x = layers.GlobalAveragePooling2D(name=GAP)(x)
    x = layers.Dropout(dropout, name=DROPOUT)(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name=DENSE)(x)


def pooled_features(model: keras.Model):
    """The pooled feature tensor of ``model`` (the input of its head's dropout)."""
    return model.get_layer(GAP).output


def head_on(model: keras.Model, features):
    """``model``'s own dropout and dense layers applied to ``features`` (shared weights, not a copy)."""
    return model.get_layer(DENSE)(model.get_layer(DROPOUT)(features))
