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
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _grouped_conv_layers(model):
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if (
            isinstance(layer, keras.layers.Conv2D)
            and layer.groups > 1
            and layer.data_format == "channels_last"
        ):
            yield layer


def _native_op(layer):
    strides = list(layer.strides)
    dilations = list(layer.dilation_rate)
    padding = layer.padding.upper()

    def convolution_op(inputs, kernel):
        return tf.nn.convolution(
            inputs, kernel, strides=strides, padding=padding,
            dilations=dilations, data_format="NHWC",
        )

    convolution_op.kerasxfer_native = True
    return convolution_op


def use_native_grouped_conv(model) -> int:
    """Route every grouped ``Conv2D`` of ``model`` to ``tf.nn.convolution``.

    Call it before the model's train/predict functions are traced (before
    ``fit``; after ``compile`` is fine).  Returns how many layers changed.
    """
    n = 0
    for layer in _grouped_conv_layers(model):
        object.__setattr__(layer, "convolution_op", _native_op(layer))
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
