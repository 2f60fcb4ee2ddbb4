"""Grouped convolutions on TensorFlow's native kernels.

Keras 3's TensorFlow backend sends every grouped convolution through XLA
(``keras/src/backend/tensorflow/nn.py``, ``conv``: "grouped convolutions are
broken on CPU without XLA").  TensorFlow 2.21 runs them natively on CPU, and
XLA's CPU gradient for them is dozens of times slower: a RegNetX002 train
step at 64x64, batch 32, takes about 5 s through the stock layer and about
0.12 s natively on 2 cores.

:func:`use_native_grouped_conv` swaps the convolution op of the *built*
layers of a model (an instance attribute shadowing
``BaseConv.convolution_op``).  The layers stay plain ``keras.layers.Conv2D``
objects, their config is unchanged, so a saved ``model.keras`` loads with
plain Keras.  :func:`use_stock_grouped_conv` undoes it.

On CPU, TensorFlow computes the *gradient* of a grouped convolution only in its
oneDNN kernels (``TF_ENABLE_ONEDNN_OPTS=1``; importing :mod:`kerasxfer` before
TensorFlow turns them on).  Where they are off, :func:`native_grouped_gradients_work`
says so and :func:`use_native_grouped_conv` runs one ordinary convolution per
group instead: slower, but it trains (Keras' own path does not train there either).
"""

from __future__ import annotations

import functools
import logging

import keras
import tensorflow as tf

from kerasxfer import keras_compat

log = logging.getLogger("kerasxfer")


@functools.lru_cache(maxsize=None)
def native_grouped_gradients_work() -> bool:
    """Whether TensorFlow here trains grouped ``tf.nn.convolution`` layers.

    On a GPU, cuDNN does.  On CPU only TensorFlow's oneDNN kernels do: the
    plain ones reject groups in the input gradient ("Gradients for grouped
    convolutions are not supported on CPU") and in the fused conv+bias
    kernel, depending on shapes, so a small probe cannot tell; whether oneDNN
    is on can.  Fixed once TensorFlow has started, so cached.
    """
    if tf.config.list_physical_devices("GPU"):
        return True
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow without the flag: assume the stock build
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


def _grouped_conv_layers(model):
    for layer in keras_compat.flatten_layers(model):
        if isinstance(layer, keras.layers.Conv2D) and layer.groups > 1 and layer.data_format == "channels_last":
            yield layer


def _native_op(layer, split: bool = False):
    strides = list(layer.strides)
    dilations = list(layer.dilation_rate)
    padding = layer.padding.upper()
    groups = layer.groups

    def convolution_op(inputs, kernel):
        if split:
            # One ordinary convolution per group: every TensorFlow build can
            # differentiate these, oneDNN or not.
            return tf.concat(
                [
                    tf.nn.convolution(x, k, strides=strides, padding=padding, dilations=dilations, data_format="NHWC")
                    for x, k in zip(tf.split(inputs, groups, axis=-1), tf.split(kernel, groups, axis=-1))
                ],
                axis=-1,
            )
        return tf.nn.convolution(
            inputs,
            kernel,
            strides=strides,
            padding=padding,
            dilations=dilations,
            data_format="NHWC",
        )

    convolution_op.kerasxfer_native = True
    return convolution_op


def use_native_grouped_conv(model, split: bool | None = None) -> int:
    """Route every grouped ``Conv2D`` of ``model`` to TensorFlow's own ops.

    By default one grouped ``tf.nn.convolution`` per layer; where TensorFlow
    cannot differentiate that (CPU without oneDNN: see
    :func:`native_grouped_gradients_work`), or with ``split=True``, one
    ordinary convolution per group, concatenated: slower, but it trains
    everywhere, which Keras' own path does not (without oneDNN its fused
    convolution rejects groups).  Call it before the model's train/predict
    functions are traced (before ``fit``; after ``compile`` is fine).  Returns
    how many layers changed.
    """
    layers = list(_grouped_conv_layers(model))
    splits = [split] * len(layers)
    if layers and split is None:
        native = native_grouped_gradients_work()
        on_cpu = not tf.config.list_physical_devices("GPU")
        # oneDNN's grouped-convolution gradient is float32 only on CPU: a bfloat16/float16 layer
        # falls back to the plain kernel, which rejects groups.
        splits = [not native or (on_cpu and layer.compute_dtype != "float32") for layer in layers]
        if not native:
            log.warning(
                "TensorFlow here cannot differentiate grouped convolutions natively, so %d of them run "
                "as one convolution per group, which is slower; to fix it, set "
                "TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow is imported (importing kerasxfer first does).",
                len(layers),
            )
        elif any(splits):
            log.warning(
                "%d grouped convolutions compute in %s, whose gradient TensorFlow has no CPU kernel for: "
                "they run as one convolution per group (slower; --precision=float32 is faster on this CPU).",
                sum(splits),
                layers[splits.index(True)].compute_dtype,
            )
    n = 0
    for layer, layer_split in zip(layers, splits):
        object.__setattr__(layer, "convolution_op", _native_op(layer, split=bool(layer_split)))
        n += 1
    if n and hasattr(model, "make_train_function"):
        # Drop functions traced with the stock op, if any.
        model.train_function = model.test_function = model.predict_function = None
    return n


def use_stock_grouped_conv(model) -> int:
    """Undo :func:`use_native_grouped_conv`. Returns how many layers changed."""
    n = 0
    for layer in _grouped_conv_layers(model):
        if getattr(layer.__dict__.get("convolution_op"), "kerasxfer_native", False):
            object.__delattr__(layer, "convolution_op")
            n += 1
    if n:
        model.train_function = model.test_function = model.predict_function = None
    return n
