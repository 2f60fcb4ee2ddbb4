"""A model's variable values as numpy: saved as a plain ``.keras`` file, put back, and read once when frozen.

The best checkpoint (:class:`kerasxfer.callbacks.BestCheckpoint`) and the
resume state (:mod:`kerasxfer.resume`) both keep weights in memory between
writes; these are their shared pieces.
"""

from __future__ import annotations

import keras

from kerasxfer import fsio, keras_compat


def save_model(model: keras.Model, path: str) -> None:
    """Save ``model`` atomically without its optimiser and compile settings (plain Keras loads it)."""
    bare = keras.Model(model.inputs, model.outputs, name=model.name)
    with fsio.atomic_path(path) as tmp:
        bare.save(tmp)


def write_weights(model: keras.Model, values, path: str) -> None:
    """Save ``model`` as it would be with the variable ``values`` (its own are put back afterwards)."""
    now = [keras.ops.convert_to_numpy(v) for v in model.variables]
    try:
        for v, x in zip(model.variables, values):
            v.assign(x)
        save_model(model, path)
    finally:
        for v, x in zip(model.variables, now):
            v.assign(x)


def frozen_values(model: keras.Model) -> dict:
    """``{id(variable): value}`` of the variables of ``model``'s frozen layers: no phase step changes them
    (their layer does not train, so neither their weights nor a frozen BatchNorm's statistics move; random
    seed states always move and are left out), so a phase reads them once, not at every epoch's state."""
    out = {}
    for layer in keras_compat.flatten_layers(model):
        if not layer.trainable:
            for v in layer.weights:
                if "seed_generator" not in v.path:
                    out[id(v)] = keras.ops.convert_to_numpy(v)
    return out
