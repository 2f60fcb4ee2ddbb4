"""The private Keras APIs of kerasxfer.keras_compat exist, with the signatures kerasxfer uses, on this Keras."""

import keras

from kerasxfer import keras_compat


def test_every_private_name_and_signature_is_where_kerasxfer_expects_it():
    assert keras_compat.check() == []


def test_check_names_what_changed(monkeypatch):
    monkeypatch.setitem(keras_compat.OVERRIDDEN, "_apply_weight_decay", ["self", "vars"])
    assert keras_compat.check() == [
        "keras.optimizers.Optimizer._apply_weight_decay now takes ['self', 'variables'], not ['self', 'vars']"
    ]


def test_accessors_work_on_real_objects():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="inner_dense")], name="inner")
    model = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(2, name="outer_dense")])
    assert {"inner_dense", "outer_dense"} <= {layer.name for layer in keras_compat.flatten_layers(model)}
    keras_compat.clear_distribute_strategy(model)
    assert model._distribute_strategy is None
    opt = keras.optimizers.Adam(use_ema=True, ema_momentum=0.5)
    opt.build(model.trainable_variables)
    keys = {keras_compat.variable_key(opt, v) for v in model.trainable_variables}
    assert len(keys) == len(model.trainable_variables)
    assert isinstance(keras_compat.keras_home(), str)
    swap = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
    model.compile(optimizer=opt, loss="mse")
    swap.set_model(model)
    v = model.trainable_variables[0]
    raw = keras.ops.convert_to_numpy(v)
    keras_compat.ema_finalize(swap)  # the optimiser's average := the weights
    v.assign(keras.ops.zeros_like(v))
    assert keras_compat.ema_in_model(swap) is False
    keras_compat.ema_swap(swap)  # the average in the model, the zeros in the optimiser
    assert (keras.ops.convert_to_numpy(v) == raw).all()
    keras_compat.ema_swap(swap)
    assert not keras.ops.convert_to_numpy(v).any()
    keras_compat.set_ema_in_model(swap, True)
    assert keras_compat.ema_in_model(swap) is True


def test_every_private_keras_name_the_code_touches_is_listed_with_its_reason():
    """Read from the source, not from the list: every private attribute keras_compat.py touches and every
    ``keras.src`` module it imports is in USED (or OVERRIDDEN) with a reason, and no other module of kerasxfer
    reaches into ``keras.src``."""
    import ast
    import pathlib
    import re

    src = pathlib.Path(keras_compat.__file__).read_text()
    touched = {n.attr for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Attribute) and re.fullmatch(r"_[a-z]\w*", n.attr)}
    listed = {name for _, name, why in keras_compat.USED if why.strip()} | set(keras_compat.OVERRIDDEN)
    assert touched - listed == set()
    imported = set(re.findall(r"keras\.src(?:\.[a-z_]+)+", src))
    assert all(any(where.startswith(m) for where, _, _ in keras_compat.USED) for m in imported), imported
    package = pathlib.Path(keras_compat.__file__).parent
    others = [p for p in package.rglob("*.py") if p.name != "keras_compat.py" and "keras.src" in p.read_text()]
    assert others == []
