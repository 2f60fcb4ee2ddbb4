"""RegNet X and Y for Keras 3 (functional, built-in layers only).

Keras 3 dropped RegNet from ``keras.applications``; it survives only in the
legacy tf-keras.  This module rebuilds the same 24 networks from the design
space table of "Designing Network Design Spaces" (Radosavovic et al., 2020)
with the *same layer names and weight shapes* as
``tf_keras.applications.regnet``, so weights move between the two by layer
name:

    {model}_prestem_rescaling
    {model}_stem_conv / _stem_bn / _stem_relu
    {model}_Stage_{s}_{X|Y}Block_{b}_conv_1x1_1 (+ _bn, _relu)
                                    _conv_3x3   (grouped, + _bn, _relu)
                                    _squeeze_and_excite_*   (Y only)
                                    _conv_1x1_2 (+ _bn)
                                    _skip_1x1 / _skip_bn    (first block)
                                    _add / _exit_relu
    {model}_head_gap / {model}_head_dense          (include_top=True)

Stages are numbered 0..3, so "unfreeze the last k stages" is a name rule.

Preprocessing (``include_preprocessing=True``) follows tf-keras's *code*, not
its docstring: a single ``Rescaling(1/255)`` to [0, 1], no ImageNet mean/std
normalisation.  Inputs are images in [0, 255].
"""

from __future__ import annotations

import os

import keras
from keras import layers

from kerasxfer.errors import UserError

# depths / widths per stage, group width, block type: tf-keras MODEL_CONFIGS.
_CONFIGS = {
    "x002": ([1, 1, 4, 7], [24, 56, 152, 368], 8, "X"),
    "x004": ([1, 2, 7, 12], [32, 64, 160, 384], 16, "X"),
    "x006": ([1, 3, 5, 7], [48, 96, 240, 528], 24, "X"),
    "x008": ([1, 3, 7, 5], [64, 128, 288, 672], 16, "X"),
    "x016": ([2, 4, 10, 2], [72, 168, 408, 912], 24, "X"),
    "x032": ([2, 6, 15, 2], [96, 192, 432, 1008], 48, "X"),
    "x040": ([2, 5, 14, 2], [80, 240, 560, 1360], 40, "X"),
    "x064": ([2, 4, 10, 1], [168, 392, 784, 1624], 56, "X"),
    "x080": ([2, 5, 15, 1], [80, 240, 720, 1920], 120, "X"),
    "x120": ([2, 5, 11, 1], [224, 448, 896, 2240], 112, "X"),
    "x160": ([2, 6, 13, 1], [256, 512, 896, 2048], 128, "X"),
    "x320": ([2, 7, 13, 1], [336, 672, 1344, 2520], 168, "X"),
    "y002": ([1, 1, 4, 7], [24, 56, 152, 368], 8, "Y"),
    "y004": ([1, 3, 6, 6], [48, 104, 208, 440], 8, "Y"),
    "y006": ([1, 3, 7, 4], [48, 112, 256, 608], 16, "Y"),
    "y008": ([1, 3, 8, 2], [64, 128, 320, 768], 16, "Y"),
    "y016": ([2, 6, 17, 2], [48, 120, 336, 888], 24, "Y"),
    "y032": ([2, 5, 13, 1], [72, 216, 576, 1512], 24, "Y"),
    "y040": ([2, 6, 12, 2], [128, 192, 512, 1088], 64, "Y"),
    "y064": ([2, 7, 14, 2], [144, 288, 576, 1296], 72, "Y"),
    "y080": ([2, 4, 10, 1], [168, 448, 896, 2016], 56, "Y"),
    "y120": ([2, 5, 11, 1], [224, 448, 896, 2240], 112, "Y"),
    "y160": ([2, 4, 11, 1], [224, 448, 1232, 3024], 112, "Y"),
    "y320": ([2, 5, 12, 1], [232, 696, 1392, 3712], 232, "Y"),
}

#: Lower-case variant names, e.g. ``"regnetx002"``, in table order.
VARIANTS = tuple(f"regnet{k}" for k in _CONFIGS)
NUM_STAGES = 4
DEFAULT_SIZE = 224
MIN_SIZE = 32
_BN = dict(momentum=0.9, epsilon=1e-5)


def variant_config(variant: str) -> dict:
    """The design-space row of ``variant`` (``"regnetx002"`` ...)."""
    key = variant.lower().removeprefix("regnet")
    if key not in _CONFIGS:
        raise UserError(
            f"{variant!r} is not a known RegNet: use one of {', '.join(VARIANTS)}."
        )
    depths, widths, group_width, block_type = _CONFIGS[key]
    return dict(depths=depths, widths=widths, group_width=group_width, block_type=block_type)


def _conv_bn(x, filters, kernel, name, stride=1, groups=1, relu=True):
    x = layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        groups=groups,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )(x)
    x = layers.BatchNormalization(**_BN, name=name + "_bn")(x)
    if relu:
        x = layers.ReLU(name=name + "_relu")(x)
    return x


def _squeeze_excite(x, filters, se_filters, name):
    s = layers.GlobalAveragePooling2D(keepdims=True, name=name + "_squeeze_and_excite_gap")(x)
    s = layers.Conv2D(
        se_filters, 1, activation="relu", kernel_initializer="he_normal",
        name=name + "_squeeze_and_excite_squeeze",
    )(s)
    s = layers.Conv2D(
        filters, 1, activation="sigmoid", kernel_initializer="he_normal",
        name=name + "_squeeze_and_excite_excite",
    )(s)
    return layers.Multiply(name=name + "_squeeze_and_excite_multiply")([s, x])


def _block(x, block_type, filters_in, filters_out, group_width, stride, name):
    """One X or Y block: 1x1 -> grouped 3x3 (stride) -> [SE] -> 1x1, plus skip."""
    if stride == 1 and filters_in != filters_out:
        raise ValueError(f"{name}: stride 1 needs equal in/out filters")
    # RegNetX080's first stage is narrower (80) than its group width (120):
    # tf-keras turns the resulting groups=0 into 1 (a plain convolution).
    groups = max(1, filters_out // group_width)
    if stride != 1:
        skip = layers.Conv2D(
            filters_out, 1, strides=stride, use_bias=False,
            kernel_initializer="he_normal", name=name + "_skip_1x1",
        )(x)
        skip = layers.BatchNormalization(**_BN, name=name + "_skip_bn")(skip)
    else:
        skip = x
    y = _conv_bn(x, filters_out, 1, name + "_conv_1x1_1")
    y = _conv_bn(y, filters_out, 3, name + "_conv_3x3", stride=stride, groups=groups)
    if block_type == "Y":
        y = _squeeze_excite(y, filters_out, int(filters_in * 0.25), name)
    y = _conv_bn(y, filters_out, 1, name + "_conv_1x1_2", relu=False)
    y = layers.Add(name=name + "_add")([y, skip])
    return layers.ReLU(name=name + "_exit_relu")(y)


def RegNet(
    variant: str,
    include_top: bool = True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int = 1000,
    classifier_activation="softmax",
    include_preprocessing: bool = True,
    name: str | None = None,
):
    """Build the RegNet ``variant`` (``"regnetx002"`` ... ``"regnety320"``).

    Arguments follow ``keras.applications``.  ``weights`` is ``None`` (random
    initialisation) or the path of a weights file: a Keras 3
    ``.weights.h5`` saved from the same variant, or a keras-applications
    ``.h5`` file written by tf-keras (matched by layer name).  ``name``
    defaults to the variant and prefixes every layer.
    """
    cfg = variant_config(variant)
    model_name = name or variant.lower()
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if input_shape is None:
        input_shape = (DEFAULT_SIZE, DEFAULT_SIZE, 3) if include_top else (None, None, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape}")
    for side in input_shape[:2]:
        if side is not None and side < MIN_SIZE:
            raise ValueError(f"input size {input_shape[:2]} is below RegNet's minimum of {MIN_SIZE}")

    if input_tensor is None:
        inputs = layers.Input(shape=input_shape, name=model_name + "_input")
    else:
        inputs = input_tensor
    x = inputs
    if include_preprocessing:
        x = layers.Rescaling(1.0 / 255.0, name=model_name + "_prestem_rescaling")(x)
    x = layers.Conv2D(
        32, 3, strides=2, padding="same", use_bias=False,
        kernel_initializer="he_normal", name=model_name + "_stem_conv",
    )(x)
    x = layers.BatchNormalization(**_BN, name=model_name + "_stem_bn")(x)
    x = layers.ReLU(name=model_name + "_stem_relu")(x)

    filters_in = 32
    for s, (depth, width) in enumerate(zip(cfg["depths"], cfg["widths"])):
        for b in range(depth):
            x = _block(
                x, cfg["block_type"], filters_in if b == 0 else width, width,
                cfg["group_width"], 2 if b == 0 else 1,
                f"{model_name}_Stage_{s}_{cfg['block_type']}Block_{b}",
            )
        filters_in = width

    if include_top:
        x = layers.GlobalAveragePooling2D(name=model_name + "_head_gap")(x)
        x = layers.Dense(classes, activation=classifier_activation, name=model_name + "_head_dense")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name=model_name + "_avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name=model_name + "_max_pool")(x)

    if input_tensor is not None:
        inputs = keras.utils.get_source_inputs(input_tensor)
    model = keras.Model(inputs, x, name=model_name)
    if weights is not None:
        load_weights_file(model, weights)
    return model


def load_weights_file(model, path: str) -> None:
    """Load ``path`` into ``model``: a Keras 3 ``.weights.h5`` or a legacy ``.h5``."""
    if not os.path.isfile(path):
        raise UserError(f"weights file {path!r} does not exist: pass an existing file.")
    try:
        model.load_weights(path)
    except Exception as e:  # noqa: BLE001 - mismatch is reported in one sentence
        raise UserError(
            f"weights file {path!r} does not fit {model.name} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}): pass weights saved from the same variant."
        ) from None


def _make_variant(variant: str):
    def builder(
        include_top=True,
        weights=None,
        input_tensor=None,
        input_shape=None,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
        include_preprocessing=True,
        name=None,
    ):
        return RegNet(
            variant, include_top=include_top, weights=weights,
            input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
            classes=classes, classifier_activation=classifier_activation,
            include_preprocessing=include_preprocessing, name=name,
        )

    public = "RegNet" + variant[6:].upper()
    builder.__name__ = builder.__qualname__ = public
    builder.__doc__ = f"Instantiate {public}; see :func:`RegNet` for the arguments."
    return public, builder


for _v in VARIANTS:
    _public, _builder = _make_variant(_v)
    globals()[_public] = _builder
__all__ = ["RegNet", "VARIANTS", "variant_config", "load_weights_file"] + [
    "RegNet" + v[6:].upper() for v in VARIANTS
]
del _v, _public, _builder
