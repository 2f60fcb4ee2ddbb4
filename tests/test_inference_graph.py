"""The inference graph: BatchNorm folded into the convolution before it, the same function to float32 rounding."""

import keras
import numpy as np
import pytest

from kerasxfer.models.inference_graph import folded_weights, inference_model
from tests.photos import photos


def _batchnorms(model):
    n = 0
    for layer in model.layers:
        n += _batchnorms(layer) if isinstance(layer, keras.Model) else isinstance(layer, keras.layers.BatchNormalization)
    return n


def _agree(model, images):
    folded = inference_model(model)
    assert folded is not model and _batchnorms(folded) < _batchnorms(model)
    a, b = model.predict(images, verbose=0), folded.predict(images, verbose=0)
    assert (a.argmax(1) == b.argmax(1)).all()
    assert np.abs(a - b).max() <= 1e-4
    return folded


def test_efficientnet_lite0_with_its_published_weights_folds_and_agrees_on_realphotos():
    from kerasxfer.models import efficientnet_lite as eff

    model = eff.EfficientNetLite("efficientnet_lite0", weights="imagenet")
    folded = _agree(model, photos(224))
    assert _batchnorms(folded) == 0  # every BatchNorm of Lite0 follows a convolution


def test_regnet_grouped_convolutions_fold_with_real_batchnorm_statistics():
    from kerasxfer.models.transfer import build_transfer_model

    model = build_transfer_model("regnetx002", (64, 64, 3), 5, weights=None)
    rng = np.random.default_rng(0)
    for layer in model.get_layer("regnetx002").layers:  # statistics as training leaves them, not 0 and 1
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.1, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype("float32"))
            layer.gamma.assign(rng.uniform(0.8, 1.2, c).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.1, c).astype("float32"))
    _agree(model, photos(64))


def test_depthwise_folding_scales_each_output_channel():
    x = keras.Input((6, 6, 2))
    conv = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", use_bias=False)
    bn = keras.layers.BatchNormalization(epsilon=1e-3)
    model = keras.Model(x, bn(conv(x)))
    bn.moving_mean.assign([0.1, -0.2, 0.3, 0.0])
    bn.moving_variance.assign([0.5, 2.0, 1.5, 0.25])
    bn.gamma.assign([1.0, 0.5, 2.0, 1.5])
    kernel, bias = folded_weights(conv, bn)
    assert kernel.shape == (3, 3, 2, 2) and bias.shape == (4,)
    images = np.random.default_rng(2).normal(size=(3, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(inference_model(model).predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5)


def test_a_convolution_used_twice_or_a_mixed_precision_model_is_left_as_it_is():
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3)(x)
    shared = keras.Model(x, keras.layers.Add()([keras.layers.BatchNormalization()(y), y]))
    assert inference_model(shared) is shared  # the BatchNorm's input is used elsewhere too
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        z = keras.Input((8, 8, 3))
        mixed = keras.Model(z, keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(z)))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert inference_model(mixed) is mixed


@pytest.mark.parametrize("kind", ["scratch"])
def test_the_scratch_cnn_folds_and_agrees(kind):
    from kerasxfer.models import build_scratch_cnn

    model = build_scratch_cnn((32, 32, 3), 4)
    _agree(model, photos(32))
