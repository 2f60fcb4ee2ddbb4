"""The inference graph of a trained model: every BatchNorm folded into the convolution before it.

``model.keras`` stays a plain Keras model (it trains, resumes and loads
anywhere); :func:`inference_model` builds, from it, a copy made for
inference only: a ``Conv2D``/``DepthwiseConv2D`` whose output feeds only a
``BatchNormalization`` (in inference mode, with its moving statistics)
becomes one convolution with a bias,

    W' = W * g / sqrt(v + eps),    b' = (b - m) * g / sqrt(v + eps) + beta

(per output channel), and the BatchNorm disappears from the graph.  The
activation after it (ReLU, ReLU6, swish) is then the convolution's
neighbour, which TensorFlow's graph optimiser fuses with it
(conv + bias + activation).  Everything else is cloned as it is.  The
folded model computes the same function up to float32 rounding: top-1
identical and probabilities within 1e-4 on real photos
(``tests/test_inference_graph.py``).  Training-only layers (random
augmentation, dropout: the identity in inference) are left out, so no
exported graph holds a random op.
"""

from __future__ import annotations

import logging

import keras
import numpy as np

from kerasxfer.keras_compat import flatten_layers

log = logging.getLogger("kerasxfer")

_CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


def _producer(layer):
    """The layer whose output is ``layer``'s only input, or None."""
    nodes = layer._inbound_nodes
    if len(nodes) != 1 or len(nodes[0].input_tensors) != 1:
        return None
    return nodes[0].input_tensors[0]._keras_history.operation


def _fold_pairs(model) -> dict:
    """``{bn layer: conv layer}`` of every BatchNorm that can be folded, in ``model`` and the models inside it."""
    pairs = {}
    for layer in flatten_layers(model):
        if not isinstance(layer, keras.layers.BatchNormalization) or layer.axis not in (-1, 3, [-1], [3]):
            continue
        conv = _producer(layer)
        if (
            isinstance(conv, _CONVS)
            and len(conv._outbound_nodes) == 1
            and len(conv._inbound_nodes) == 1
            and conv.activation in (None, keras.activations.linear)
            and conv.data_format == "channels_last"
        ):
            pairs[layer] = conv
    return pairs


def folded_weights(conv, bn) -> list:
    """``[kernel, bias]`` of ``conv`` followed by ``bn`` (inference mode) as one convolution."""
    kernel = np.asarray(conv.kernel, np.float64)
    bias = np.asarray(conv.bias, np.float64) if conv.use_bias else 0.0
    var = np.asarray(bn.moving_variance, np.float64)
    gamma = np.asarray(bn.gamma, np.float64) if bn.scale else 1.0
    beta = np.asarray(bn.beta, np.float64) if bn.center else 0.0
    scale = gamma / np.sqrt(var + bn.epsilon)
    if isinstance(conv, keras.layers.DepthwiseConv2D):  # out channel i*mult + m
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * scale
    new_bias = (bias - np.asarray(bn.moving_mean, np.float64)) * scale + beta
    return [kernel.astype(np.float32), np.broadcast_to(new_bias, scale.shape).astype(np.float32)]


def training_only(layer) -> bool:
    """Whether ``layer`` does something only in training: random augmentation (``Random*``, ``RandAugment``),
    dropout and noise.  In inference it is the identity, so an inference graph leaves it out (an exported
    graph with random ops is one ONNX Runtime cannot load)."""
    name = type(layer).__name__
    return name.startswith("Random") or name in (
        "RandAugment",
        "AugMix",
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "GaussianNoise",
        "GaussianDropout",
        "AlphaDropout",
    )


def inference_model(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with every foldable BatchNorm folded into its convolution (not where the model does
    not compute in float32) and without its training-only layers (:func:`training_only`); ``model`` itself
    when neither applies."""
    mixed = keras.mixed_precision.global_policy().name != "float32" or any(
        getattr(layer, "dtype_policy", None) is not None and layer.dtype_policy.name != "float32" for layer in model.layers
    )
    pairs = {} if mixed else _fold_pairs(model)
    dropped = {id(layer) for layer in flatten_layers(model) if training_only(layer)}
    if not pairs and not dropped:
        return model
    convs = {id(c): bn for bn, c in pairs.items()}
    skip = {id(bn) for bn in pairs} | dropped
    plan = {}  # id(clone) -> ("conv", folded weights) | "skip"

    def clone(layer):
        if id(layer) in convs:
            config = layer.get_config()
            config.update(use_bias=True, bias_initializer="zeros", bias_regularizer=None, bias_constraint=None)
            new = type(layer).from_config(config)
            plan[id(new)] = ("conv", folded_weights(layer, convs[id(layer)]))
            return new
        if id(layer) in skip:
            new = keras.layers.Identity(name=layer.name)
            plan[id(new)] = "skip"
            return new
        if isinstance(layer, keras.Model):
            return layer  # cloned recursively by clone_model
        new = layer.__class__.from_config(layer.get_config())
        plan[id(new)] = ("copy", layer)
        return new

    def call(layer, *args, **kwargs):
        what = plan.get(id(layer))
        if what == "skip":
            return args[0]
        out = layer(*args, **kwargs)
        if isinstance(what, tuple) and what[0] == "conv":
            layer.set_weights(what[1])
        elif isinstance(what, tuple):
            layer.set_weights(what[1].get_weights())
            if isinstance(layer, keras.layers.Normalization):
                layer.finalize_state()  # it keeps its statistics as tensors made when they were last set
        return out

    try:
        folded = keras.models.clone_model(model, clone_function=clone, call_function=call, recursive=True)
    except Exception as e:  # noqa: BLE001 - a graph this cloner does not handle runs as it is, unfolded
        log.debug("inference graph: %s cannot be folded (%s: %s); using it as it is", model.name, type(e).__name__, e)
        return model
    from kerasxfer.models.fastconv import use_native_grouped_conv

    use_native_grouped_conv(folded)  # the clone's grouped convolutions are Keras' stock ones again
    log.debug(
        "inference graph: %d BatchNorm layers folded into their convolutions, %d training-only layers left out",
        len(pairs),
        len(dropped),
    )
    return folded
