"""Every private Keras API kerasxfer relies on, in one place: what a Keras upgrade must check.

Keras is pinned below 3.16 because of these.  Each accessor below is the
only place its private name is spelled; optimizer subclasses override the
private methods listed in :data:`OVERRIDDEN`.  ``tests/test_keras_compat.py``
checks every name and signature here against the installed Keras and fails,
naming the one that changed, before any training run would.
"""

from __future__ import annotations

import inspect

#: (where, private name, why kerasxfer needs it)
USED = (
    ("keras.src.backend.config", "keras_home", "the Keras cache folder, honouring KERAS_HOME (weights.cache_dir)"),
    ("keras.src.tree", "map_structure", "averaging per-replica logs across workers (distribute)"),
    (
        "keras.src.backend.tensorflow.trainer",
        "reduce_per_replica",
        "patched: Keras reduces multi-worker logs with axis=0, which they lack (distribute)",
    ),
    ("keras.Model", "_distribute_strategy", "unset so a multi-worker model builds its metrics in the traced step"),
    ("keras.Model", "_flatten_layers", "every nested layer, to put grouped convolutions on TF's own kernel"),
    ("keras.optimizers.Optimizer", "_var_key", "a variable's key, for per-stage learning-rate multipliers"),
    ("keras.callbacks.SwapEMAWeights", "_ema_weights_in_model", "whether the average is in the model (EMAWeights)"),
    ("keras.callbacks.SwapEMAWeights", "_swap_variables", "average <-> weights with the strategy's updates (EMAWeights)"),
    ("keras.callbacks.SwapEMAWeights", "_finalize_ema_values", "average := weights at a phase's end (EMAWeights)"),
)
#: Private optimizer methods kerasxfer's per-stage optimiser overrides or calls, with their parameters.
OVERRIDDEN = {
    "_apply_weight_decay": ["self", "variables"],
    "_use_weight_decay": ["self", "variable"],
    "update_step": ["self", "gradient", "variable", "learning_rate"],
}


def keras_home() -> str:
    """Keras' own home folder (``~/.keras`` or ``KERAS_HOME``)."""
    from keras.src.backend import config

    return config.keras_home()


def flatten_layers(model):
    """Every layer inside ``model``, nested models' layers too (not the model itself)."""
    return model._flatten_layers(include_self=False, recursive=True)


def clear_distribute_strategy(model) -> None:
    """Forget the strategy a model was built under, so ``fit`` takes it from the scope it runs in."""
    model._distribute_strategy = None


def ema_in_model(callback) -> bool:
    """Whether a ``SwapEMAWeights`` callback has put the average into the model."""
    return callback._ema_weights_in_model


def set_ema_in_model(callback, value: bool) -> None:
    callback._ema_weights_in_model = value


def ema_swap(callback) -> None:
    """Swap the model's weights and the optimiser's average (Keras' own swap, strategy-aware)."""
    callback._swap_variables()


def ema_finalize(callback) -> None:
    """Set the optimiser's average to the model's weights (Keras' end-of-training step, strategy-aware)."""
    callback._finalize_ema_values()


def variable_key(optimizer, variable):
    """The optimiser's key of ``variable`` (stable across steps)."""
    return optimizer._var_key(variable)


def patch_reduce_per_replica(make_replacement) -> None:
    """Replace Keras' TF trainer ``reduce_per_replica`` by ``make_replacement(original, map_structure)``, once."""
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "kerasxfer_patched", False):
        return
    replacement = make_replacement(original, tree.map_structure)
    replacement.kerasxfer_patched = True
    tf_trainer.reduce_per_replica = replacement


def check() -> list:
    """What of :data:`USED` and :data:`OVERRIDDEN` the installed Keras lacks or changed (empty: all present)."""
    import importlib

    import keras

    problems = []
    for where, name, why in USED:
        if where.startswith("keras.src"):
            holder = importlib.import_module(where)
        else:
            holder = {"keras.Model": keras.Model, "keras.callbacks.SwapEMAWeights": keras.callbacks.SwapEMAWeights}.get(
                where, keras.optimizers.Optimizer
            )
        if name in ("_distribute_strategy", "_ema_weights_in_model"):
            continue  # instance attributes: checked on real objects by the test
        if not hasattr(holder, name):
            problems.append(f"{where}.{name} is gone ({why})")
    for name, params in OVERRIDDEN.items():
        method = getattr(keras.optimizers.Optimizer, name, None)
        if method is None:
            problems.append(f"keras.optimizers.Optimizer.{name} is gone")
        elif list(inspect.signature(method).parameters) != params:
            problems.append(
                f"keras.optimizers.Optimizer.{name} now takes {list(inspect.signature(method).parameters)}, not {params}"
            )
    return problems
