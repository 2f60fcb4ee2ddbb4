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
import re

import keras
from keras import layers

from kerasxfer.config import REGNET_VARIANTS
from kerasxfer.errors import UserError
from kerasxfer.models import weights as weights_lib

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

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/regnet/"
# sha256 of the keras-applications files: (with top, notop).
WEIGHTS_HASHES = {
    "x002": (
        "49fb46e56cde07fdaf57bffd851461a86548f6a3a4baef234dd37290b826c0b8",
        "5445b66cd50445eb7ecab094c1e78d4d3d29375439d1a7798861c4af15ffff21",
    ),
    "x004": (
        "3523c7f5ac0dbbcc2fd6d83b3570e7540f7449d3301cc22c29547302114e4088",
        "de139bf07a66c9256f2277bf5c1b6dd2d5a3a891a5f8a925a10c8a0a113fd6f3",
    ),
    "x006": (
        "340216ef334a7bae30daac9f414e693c136fac9ab868704bbfcc9ce6a5ec74bb",
        "a43ec97ad62f86b2a96a783bfdc63a5a54de02eef54f26379ea05e1bf90a9505",
    ),
    "x008": (
        "8f145d6a5fae6da62677bb8d26eb92d0b9dfe143ec1ebf68b24a57ae50a2763d",
        "3c7e4b0917359304dc18e644475c5c1f5e88d795542b676439c4a3acd63b7207",
    ),
    "x016": (
        "31c386f4c7bfef4c021a583099aa79c1b3928057ba1b7d182f174674c5ef3510",
        "1b8e3d545d190271204a7b2165936a227d26b79bb7922bac5ee4d303091bf17a",
    ),
    "x032": (
        "6c025df1409e5ea846375bc9dfa240956cca87ef57384d93fef7d6fa90ca8c7f",
        "9cd4522806c0fcca01b37874188b2bd394d7c419956d77472a4e072b01d99041",
    ),
    "x040": (
        "ba128046c588a26dbd3b3a011b26cb7fa3cf8f269c184c132372cb20b6eb54c1",
        "b4ed0ca0b9a98e789e05000e830403a7ade4d8afa01c73491c44610195198afe",
    ),
    "x064": (
        "0f4489c3cd3ad979bd6b0324213998bcb36dc861d178f977997ebfe53c3ba564",
        "3e706fa416a18dfda14c713423eba8041ae2509db3e0a611d5f599b5268a46c4",
    ),
    "x080": (
        "76320e43272719df648db37271a247c22eb6e810fe469c37a5db7e2cb696d162",
        "7b1ce8e29ceefec10a6569640ee329dba7fbc98b5d0f6346aabade058b66cf29",
    ),
    "x120": (
        "5cafc461b78897d5e4f24e68cb406d18e75f31105ef620e7682b611bb355eb3a",
        "36174ddd0299db04a42631d028abcb1cc7afec2b705e42bd28fcd325e5d596bf",
    ),
    "x160": (
        "8093f57a5824b181fb734ea21ae34b1f7ee42c5298e63cf6d587c290973195d2",
        "9d1485050bdf19531ffa1ed7827c75850e0f2972118a996b91aa9264b088fd43",
    ),
    "x320": (
        "91fb3e6f4e9e44b3687e80977f7f4412ee9937c0c704232664fc83e4322ea01e",
        "9db7eacc37b85c98184070e1a172e6104c00846f44bcd4e727da9e50d9692398",
    ),
    "y002": (
        "1e8091c674532b1a61c04f6393a9c570113e0197f22bd1b98cc4c4fe800c6465",
        "f63221f63d625b8e201221499682587bfe29d33f50a4c4f4d53be00f66c0f12c",
    ),
    "y004": (
        "752fdbad21c78911bf1dcb8c513e5a0e14697b068e5d9e73525dbaa416d18d8e",
        "45e6ba8309a17a77e67afc05228454b2e0ee6be0dae65edc0f31f1da10cc066b",
    ),
    "y006": (
        "98942e07b273da500ff9699a1f88aca78dfad4375faabb0bab784bb0dace80a9",
        "b70261cba4e60013c99d130cc098d2fce629ff978a445663b6fa4f8fc099a2be",
    ),
    "y008": (
        "1b099377cc9a4fb183159a6f9b24bc998e5659d25a449f40c90cbffcbcfdcae4",
        "b11f5432a216ee640fe9be6e32939defa8d08b8d136349bf3690715a98752ca1",
    ),
    "y016": (
        "b7ce1f5e223f0941c960602de922bcf846288ce7a4c33b2a4f2e4ac4b480045b",
        "d7404f50205e82d793e219afb9eb2bfeb781b6b2d316a6128c6d7d7dacab7f57",
    ),
    "y032": (
        "6a6a545cf3549973554c9b94f0cd40e25f229fffb1e7f7ac779a59dcbee612bd",
        "eb3ac1c45ec60f4f031c3f5180573422b1cf7bebc26c004637517372f68f8937",
    ),
    "y040": (
        "98d00118b335162bbffe8f1329e54e5c8e75ee09b2a5414f97b0ddfc56e796f6",
        "b5be2a5e5f072ecdd9c0b8a437cd896df0efa1f6a1f77e41caa8719b7dfcb05d",
    ),
    "y064": (
        "65c948c7a18aaecaad2d1bd4fd978987425604ba6669ef55a1faa0069a2804b7",
        "885c4b7ed7ea339daca7dafa1a62cb7d41b1068897ef90a5a3d71b4a2e2db31a",
    ),
    "y080": (
        "7a2c62da2982e369a4984d3c7c3b32d6f8d3748a71cb37a31156c436c37f3e95",
        "3d119577e1e3bf8d153b895e8ea9e4ec150ff2d92abdca711b6e949c3fd7115d",
    ),
    "y120": (
        "a96ab0d27d3ae35a422ee7df0d789069b3e3217a99334e0ce861a96595bc5986",
        "4a6fa387108380b730b71feea2ad80b5224b5ea9dc21dc156c93fe3c6186485c",
    ),
    "y160": (
        "45067240ffbc7ca2591313fee2f80dbdda6d66ec1a7451446f9a6d00d8f7ac6e",
        "ead1e6b568be8f34447ec8941299a9df4368736ba9a8205de5427fa20a1fb316",
    ),
    "y320": (
        "b05e173e4ae635cfa22d06392ee3741284d17dadfee68f2aa6fd8cb2b7561112",
        "cad78f74a586e24c61d38be17f3ae53bb9674380174d2585da1a526b8c20e1fd",
    ),
}

#: Lower-case variant names, e.g. ``"regnetx002"``, in table order.
VARIANTS = tuple(f"regnet{k}" for k in _CONFIGS)
if set(VARIANTS) != set(REGNET_VARIANTS):  # the TensorFlow-free list in kerasxfer.config
    raise ImportError("kerasxfer.config.REGNET_VARIANTS and kerasxfer.models.regnet disagree")
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
    initialisation), ``"imagenet"`` (the official keras-applications file,
    downloaded once into the Keras cache and verified by sha256; the
    ``_notop`` file when ``include_top=False``), or the path of a weights
    file: a Keras 3 ``.weights.h5`` saved from the same variant, or a
    keras-applications ``.h5`` file written by tf-keras (full or notop,
    matched by layer name).  ``name`` defaults to the variant and prefixes
    every layer.
    """
    cfg = variant_config(variant)
    variant = variant.lower()
    model_name = name or variant
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError("weights='imagenet' with include_top=True needs classes=1000")
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
    if weights == "imagenet":
        load_weights_file(model, imagenet_weights_file(variant, include_top), variant, include_top)
    elif weights is not None:
        load_weights_file(model, weights, variant, include_top)
    return model


def imagenet_weights_file(variant: str, include_top: bool) -> str:
    """Local path of the official ImageNet weights of ``variant``, downloading them once.

    The file (``regnetx002.h5`` or ``regnetx002_notop.h5`` ...) is fetched from
    ``BASE_WEIGHTS_PATH`` into the Keras cache and checked against
    ``WEIGHTS_HASHES``; a cached file with the right hash needs no network.
    """
    key = variant.lower().removeprefix("regnet")
    top_hash, notop_hash = WEIGHTS_HASHES[key]
    file_name = f"regnet{key}" + (".h5" if include_top else "_notop.h5")
    return weights_lib.fetch(file_name, BASE_WEIGHTS_PATH + file_name, top_hash if include_top else notop_hash)


_FILE_PREFIX = re.compile(r"^(regnet[xy]\d{3})_(stem_conv|prestem_rescaling)$")


def load_weights_file(model, path: str, variant: str, include_top: bool) -> None:
    """Load ``path`` into the RegNet ``model`` of ``variant``.

    Keras 3 ``*.weights.h5`` files go through ``model.load_weights``; files
    written by tf-keras (the keras-applications ``.h5``) are matched by layer
    name: tf-keras' unnamed head (``<n>head_dense``) maps to
    ``<model>_head_dense`` and is skipped when the model has no top.
    """
    if not os.path.isfile(path):
        raise UserError(f"weights file {path!r} does not exist: pass an existing file.")
    if weights_lib.is_legacy_h5(path):
        import h5py

        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            names = [n.decode() if isinstance(n, bytes) else n for n in root.attrs["layer_names"]]
        found = {m.group(1) for m in map(_FILE_PREFIX.match, names) if m}
        if found and variant not in found:
            raise UserError(
                f"weights file {os.path.basename(path)!r} holds {sorted(found)[0]} weights, not "
                f"{variant}: pass --backbone={sorted(found)[0]} or the {variant} file."
            )
        prefix = found.pop() if found else variant
        head = f"{model.name}_head_dense"

        def rename(n):
            if n.endswith("head_dense"):
                return head
            return model.name + n[len(prefix):] if n.startswith(prefix + "_") else n

        weights_lib.load_h5_by_name(model, path, rename=rename, skip=() if include_top else (head,))
        return
    try:
        model.load_weights(path)
    except Exception as e:  # noqa: BLE001 - mismatch is reported in one sentence
        raise UserError(
            f"weights file {path!r} does not fit {model.name} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}): pass weights saved from the same variant."
        ) from None


def decode_predictions(preds, top: int = 5):
    """ImageNet class names of the ``top`` highest scores, as ``keras.applications`` gives them.

    Needs ``imagenet_class_index.json`` in the Keras cache (downloaded once).
    """
    from keras.applications import imagenet_utils

    try:
        return imagenet_utils.decode_predictions(preds, top=top)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - the class index download failed
        raise UserError(
            f"cannot download the ImageNet class index ({str(e).splitlines()[0][:200]}): copy "
            f"imagenet_class_index.json into {weights_lib.cache_dir()} on this machine."
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
__all__ = [
    "RegNet", "VARIANTS", "variant_config", "load_weights_file", "imagenet_weights_file", "decode_predictions",
] + [
    "RegNet" + v[6:].upper() for v in VARIANTS
]
del _v, _public, _builder
