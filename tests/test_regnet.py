"""RegNet X/Y: structure equals tf-keras (the oracle), shapes, names."""

import numpy as np
import pytest
import tf_keras

from kerasxfer.errors import UserError
from kerasxfer.models import regnet

# The default run checks every X and Y variant up to 0.8 GFLOPs and x080 (its stage 0 has groups=0);
# the larger ones (the same code path, 6-15 s each) run in `make test-all`.
FAST = {
    "regnetx002",
    "regnetx004",
    "regnetx006",
    "regnetx008",
    "regnetx080",
    "regnety002",
    "regnety004",
    "regnety006",
    "regnety008",
}


@pytest.mark.parametrize("variant", [pytest.param(v, marks=() if v in FAST else pytest.mark.slow) for v in regnet.VARIANTS])
def test_parameter_count_matches_tf_keras(variant):
    public = "RegNet" + variant[6:].upper()
    ours = getattr(regnet, public)(include_top=True, weights=None, input_shape=(32, 32, 3))
    oracle = getattr(tf_keras.applications, public)(weights=None, input_shape=(32, 32, 3))
    assert ours.count_params() == oracle.count_params()
    # Same layer names (bar tf-keras's unnamed head) and the same weight shapes per layer.
    ours_w = {l.name: [tuple(w.shape) for w in l.weights] for l in ours.layers if l.weights}
    oracle_w = {l.name: [tuple(w.shape) for w in l.weights] for l in oracle.layers if l.weights}
    oracle_head = [n for n in oracle_w if n.endswith("head_dense")]
    assert len(oracle_head) == 1
    oracle_w[f"{variant}_head_dense"] = oracle_w.pop(oracle_head[0])
    assert ours_w == oracle_w


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        (dict(include_top=True, classes=7, input_shape=(64, 64, 3)), (2, 7)),
        (dict(include_top=False, input_shape=(64, 64, 3)), (2, 2, 2, 368)),
        (dict(include_top=False, pooling="avg", input_shape=(64, 64, 3)), (2, 368)),
        (dict(include_top=False, pooling="max"), (2, 368)),
    ],
)
def test_output_shapes(kwargs, shape):
    model = regnet.RegNetX002(weights=None, **kwargs)
    out = model.predict(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32"), verbose=0)
    assert out.shape == shape
    if kwargs.get("include_top"):
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)  # softmax


def test_layers_are_named_by_stage_and_block():
    model = regnet.RegNetY002(include_top=False, input_shape=(32, 32, 3))
    names = {l.name for l in model.layers}
    assert "regnety002_stem_conv" in names
    assert "regnety002_Stage_3_YBlock_6_conv_3x3" in names
    assert "regnety002_Stage_0_YBlock_0_squeeze_and_excite_excite" in names
    grouped = [l for l in model.layers if getattr(l, "groups", 1) > 1]
    assert len(grouped) == 1 + 1 + 4 + 7 and all(l.name.endswith("_conv_3x3") for l in grouped)


def test_weights_file_round_trip_and_mismatch(tmp_path):
    a = regnet.RegNetX002(include_top=False, input_shape=(32, 32, 3))
    path = str(tmp_path / "x002.weights.h5")
    a.save_weights(path)
    b = regnet.RegNetX002(include_top=False, input_shape=(32, 32, 3), weights=path)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    with pytest.raises(UserError, match="does not fit"):
        regnet.RegNetY002(include_top=False, input_shape=(32, 32, 3), weights=path)


def test_unknown_variant_and_small_input():
    with pytest.raises(UserError, match="not a known RegNet"):
        regnet.RegNet("regnetz999")
    with pytest.raises(ValueError, match="minimum"):
        regnet.RegNetX002(include_top=False, input_shape=(16, 16, 3))
