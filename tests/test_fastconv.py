"""Grouped convolutions: the native path equals the stock Keras path and is much faster."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasxfer.models import (
    build_transfer_model,
    native_grouped_gradients_work,
    use_native_grouped_conv,
    use_stock_grouped_conv,
)


def test_native_grouped_gradient_is_available_once_kerasxfer_is_imported():
    """kerasxfer turns oneDNN on before TensorFlow starts, so CPUs without AVX-512 get the fast path too."""
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert native_grouped_gradients_work()


_FALLBACK = """
import numpy as np, keras
from kerasxfer.models import native_grouped_gradients_work, use_native_grouped_conv
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((8, 8, 8)), keras.layers.Conv2D(8, 3, padding="same", groups=4),
                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
changed = use_native_grouped_conv(model)
loss = model.fit(np.ones((4, 8, 8, 8), "float32"), np.array([0, 1, 0, 1]), epochs=2, verbose=0).history["loss"]
print("RESULT", native_grouped_gradients_work(), changed, bool(np.isfinite(loss).all() and loss[1] < loss[0]))
"""


def test_without_onednn_grouped_convs_fall_back_to_the_stock_path_and_still_train():
    """A user who turns oneDNN off gets a warning and a model that trains, not a crash mid-fit
    (Keras' own grouped convolution cannot train there: its fused kernel rejects groups)."""
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0")
    proc = subprocess.run([sys.executable, "-c", _FALLBACK], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    works, changed, learned = proc.stdout.split("RESULT")[1].split()
    assert (changed, learned) == ("1", "True")
    if not tf.config.list_physical_devices("GPU"):
        assert works == "False"
        assert "one convolution per group" in proc.stderr and "TF_ENABLE_ONEDNN_OPTS=1" in proc.stderr


def _grads(layer, x, use_function):
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.cos(y))
        return (y, *tape.gradient(loss, [x, layer.kernel, layer.bias]))

    return [t.numpy() for t in (tf.function(step)() if use_function else step())]


@pytest.mark.parametrize("split", [False, True], ids=["grouped", "split"])
@pytest.mark.parametrize("use_function", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize(
    "channels, groups, stride, padding",
    [(32, 4, 1, "same"), (48, 6, 2, "same"), (24, 3, 2, "valid"), (16, 16, 1, "same")],
)
def test_native_equals_stock(channels, groups, stride, padding, use_function, split):
    keras.utils.set_random_seed(1)
    x = tf.random.normal((3, 11, 11, channels))
    layer = keras.layers.Conv2D(channels, 3, strides=stride, padding=padding, groups=groups)
    model = keras.Sequential([keras.Input((11, 11, channels)), layer])
    stock = _grads(layer, x, use_function)
    assert use_native_grouped_conv(model, split=split) == 1
    native = _grads(layer, x, use_function)
    assert use_stock_grouped_conv(model) == 1
    again = _grads(layer, x, use_function)
    for s, n, a in zip(stock, native, again):
        scale = max(1.0, float(np.abs(s).max()))
        np.testing.assert_allclose(n, s, rtol=1e-5, atol=1e-5 * scale)
        np.testing.assert_allclose(a, s, rtol=1e-6, atol=1e-6 * scale)


def test_native_path_leaves_saved_config_unchanged(tmp_path):
    model = build_transfer_model("regnetx002", (32, 32, 3), 3)
    before = model.get_config()
    use_native_grouped_conv(model)
    assert model.get_config() == before
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert "convolution_op" not in vars(loaded.get_layer("regnetx002").get_layer("regnetx002_Stage_0_XBlock_0_conv_3x3"))


def test_half_precision_grouped_convs_train_on_cpu():
    """oneDNN has no bfloat16 grouped-conv gradient on CPU: those layers are split per group and train."""
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("CPU behaviour")
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        inp = keras.Input((8, 8, 8))
        out = keras.layers.Dense(2, dtype="float32")(
            keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, groups=4, padding="same")(inp))
        )
        model = keras.Model(inp, out)
        assert use_native_grouped_conv(model) == 1
        model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        loss = model.train_on_batch(np.ones((4, 8, 8, 8), "float32"), np.array([0, 1, 0, 1]))
        assert np.isfinite(loss)
    finally:
        keras.mixed_precision.set_global_policy("float32")
