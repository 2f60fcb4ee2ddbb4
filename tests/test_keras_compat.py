"""The private Keras APIs of kerasxfer.keras_compat exist, with the signatures kerasxfer uses, on this Keras."""

import keras
import pytest

from kerasxfer import keras_compat


def test_every_private_name_and_signature_is_where_kerasxfer_expects_it():
    assert keras_compat.check() == []


def test_check_names_what_changed(monkeypatch):
    monkeypatch.setitem(keras_compat.OVERRIDDEN, "_apply_weight_decay", ["self", "vars"])
    assert keras_compat.check() == ["keras.optimizers.Optimizer._apply_weight_decay now takes ['self', 'variables'], "
                                    "not ['self', 'vars']"]


def test_accessors_work_on_real_objects():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="inner_dense")], name="inner")
    model = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(2, name="outer_dense")])
    assert {"inner_dense", "outer_dense"} <= {layer.name for layer in keras_compat.flatten_layers(model)}
    keras_compat.clear_distribute_strategy(model)
    assert model._distribute_strategy is None
    opt = keras.optimizers.Adam(use_ema=True, ema_momentum=0.5)
    opt.build(model.trainable_variables)
    pairs = keras_compat.ema_pairs(opt)
    assert [v.path for v, _ in pairs] == [v.path for v in model.trainable_variables]
    assert all(a.shape == v.shape for v, a in pairs)  # one average per weight
    keys = {keras_compat.variable_key(opt, v) for v in model.trainable_variables}
    assert len(keys) == len(model.trainable_variables)
    assert isinstance(keras_compat.keras_home(), str)


@pytest.mark.parametrize("where, name, why", keras_compat.USED)
def test_each_use_is_explained(where, name, why):
    assert where.startswith("keras") and name.startswith(("_", "keras_home", "map_structure", "reduce")) and why
