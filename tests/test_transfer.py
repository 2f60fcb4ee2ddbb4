"""Freeze / unfreeze rules and BatchNorm behaviour of the transfer model."""

import keras
import numpy as np
import pytest

from kerasxfer.models import build_transfer_model, calibrate_batchnorm, freeze, get_backbone, unfreeze
from kerasxfer.models.regnet import stage_of

HEAD = {"head_dense/kernel", "head_dense/bias"}


def _trainable_paths(model):
    return {w.path.split("/", 1)[1] if w.path.count("/") > 1 else w.path for w in model.trainable_weights}


def _expected(model, stages):
    expected = set(HEAD)
    backbone = get_backbone(model)
    for layer in backbone.layers:
        s = stage_of(layer.name)
        if s is not None and s >= 4 - stages and not isinstance(layer, keras.layers.BatchNormalization):
            expected |= {f"{layer.name}/{w.name}" for w in layer.weights}
    return expected


@pytest.fixture(scope="module")
def model():
    return build_transfer_model("regnety002", (32, 32, 3), 4)


@pytest.mark.parametrize("stages", [0, 1, 2, 3, 4])
def test_unfreeze_leaves_exactly_the_expected_weights_trainable(model, stages):
    unfreeze(model, stages)
    got = _trainable_paths(model)
    assert got == _expected(model, stages)
    assert not any("_bn/" in p for p in got)  # BatchNorm stays frozen
    assert not any("stem" in p for p in got)
    if stages:
        assert any(f"Stage_{4 - stages}_" in p for p in got)
        assert not any(f"Stage_{3 - stages}_" in p for p in got)
    freeze(model)
    assert _trainable_paths(model) == HEAD


def test_unfreeze_rejects_bad_stage_count(model):
    with pytest.raises(ValueError):
        unfreeze(model, 5)


def _bn_stats(model):
    return [v.numpy().copy() for v in get_backbone(model).non_trainable_weights if "moving" in v.path]


@pytest.mark.parametrize("stages", [None, 2], ids=["frozen", "unfrozen"])
def test_bn_moving_statistics_do_not_change_during_fit(stages):
    keras.utils.set_random_seed(0)
    model = build_transfer_model("regnetx002", (32, 32, 3), 3)
    if stages:
        unfreeze(model, stages)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, 16)
    before_stats = _bn_stats(model)
    before_head = model.get_layer("head_dense").kernel.numpy().copy()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    for a, b in zip(before_stats, _bn_stats(model)):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(before_head, model.get_layer("head_dense").kernel.numpy())


def test_calibrate_batchnorm_sets_statistics_and_nothing_else():
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = build_transfer_model("regnetx002", (32, 32, 3), 3)
    x = np.random.default_rng(1).uniform(0, 255, (24, 32, 32, 3)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(24, "int32"))).batch(8)
    weights_before = [w.numpy().copy() for w in get_backbone(model).weights if "moving" not in w.path]
    assert calibrate_batchnorm(model, ds) == 3
    stem_bn = get_backbone(model).get_layer("regnetx002_stem_bn")
    assert not stem_bn.trainable and stem_bn.momentum == 0.9  # restored
    # moving mean of the stem BN = mean over the 3 batches of the stem conv's output
    backbone = get_backbone(model)
    stem = keras.Model(backbone.input, backbone.get_layer("regnetx002_stem_conv").output)
    expected = np.mean([stem(x[i : i + 8]).numpy().mean(axis=(0, 1, 2)) for i in (0, 8, 16)], axis=0)
    np.testing.assert_allclose(stem_bn.moving_mean.numpy(), expected, rtol=1e-4, atol=1e-5)
    after = [w.numpy() for w in get_backbone(model).weights if "moving" not in w.path]
    for a, b in zip(weights_before, after):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backbone", ["regnetx002", "regnety002", "efficientnet_lite0"])
def test_pretraining_classifier_starts_every_residual_block_as_the_identity(backbone):
    """Every family's zero-init hook: in each residual block the branch added to the skip ends in a BatchNorm whose
    scale is zero (the *last* one: zeroing an earlier BN also silences the branch but leaves its last layers without
    gradient), so the block passes its input through.  A family that names the wrong layers (or none: the old
    RegNet-only name suffix left EfficientNet-Lite untouched) fails here."""
    from kerasxfer.families import FamilyModule, family_of
    from kerasxfer.models import build_backbone_classifier

    assert isinstance(family_of(backbone).load(), FamilyModule)
    base = get_backbone(build_backbone_classifier(backbone, (32, 32, 3), 3))
    adds = [layer for layer in base.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) >= 3
    probe = keras.Model(base.inputs, [t for add in adds for t in add.input])
    outs = probe(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32"), training=False)
    producer = {id(layer.output): layer for layer in base.layers}
    for add in adds:
        ends = [producer[id(t)] for t in add.input]
        ends = [producer[id(e.input)] if isinstance(e, keras.layers.Dropout) else e for e in ends]
        zeroed = [e for e in ends if isinstance(e, keras.layers.BatchNormalization) and not np.any(e.gamma.numpy())]
        assert len(zeroed) == 1, (add.name, [e.name for e in ends])
    for k, add in enumerate(adds):
        branch, skip = outs[2 * k], outs[2 * k + 1]
        assert float(np.abs(branch).max()) == 0.0, add.name
        assert float(np.abs(skip).max()) > 0.0, add.name
