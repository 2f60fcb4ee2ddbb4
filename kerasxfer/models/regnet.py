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

from kerasxfer.errors import UserError
from kerasxfer.families import REGNET
from kerasxfer.models import weights as weights_lib
from kerasxfer.models.regnet_specs import BASE_WEIGHTS_PATH, CONFIGS, WEIGHTS_HASHES

#: Lower-case variant names, e.g. ``"regnetx002"``, in table order.
VARIANTS = tuple(f"regnet{k}" for k in CONFIGS)
if VARIANTS != REGNET.variants:  # the TensorFlow-free table in kerasxfer.families
    raise ImportError("kerasxfer.families.REGNET and kerasxfer.models.regnet disagree on the variants")
NUM_STAGES = len(REGNET.stages)
DEFAULT_SIZE = 224
MIN_SIZE = 32
_BN = dict(momentum=0.9, epsilon=1e-5)


def variant_config(variant: str) -> dict:
    """The design-space row of ``variant`` (``"regnetx002"`` ...)."""
    key = variant.lower().removeprefix("regnet")
    if key not in CONFIGS:
        raise UserError(f"{variant!r} is not a known RegNet: use one of {', '.join(VARIANTS)}.")
    depths, widths, group_width, block_type = CONFIGS[key]
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
        se_filters,
        1,
        activation="relu",
        kernel_initializer="he_normal",
        name=name + "_squeeze_and_excite_squeeze",
    )(s)
    s = layers.Conv2D(
        filters,
        1,
        activation="sigmoid",
        kernel_initializer="he_normal",
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
            filters_out,
            1,
            strides=stride,
            use_bias=False,
            kernel_initializer="he_normal",
            name=name + "_skip_1x1",
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


def _checked_input_shape(input_shape, include_top, weights, classes, pooling) -> tuple:
    """The input shape (default: 224 with a top, any size without), after checking the arguments."""
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
    return input_shape


def _stem_and_stages(inputs, cfg: dict, model_name: str, include_preprocessing: bool):
    """[rescaling ->] stem (32 channels, stride 2) -> stages 0..3 of X or Y blocks."""
    x = inputs
    if include_preprocessing:
        x = layers.Rescaling(1.0 / 255.0, name=model_name + "_prestem_rescaling")(x)
    x = layers.Conv2D(
        32,
        3,
        strides=2,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=model_name + "_stem_conv",
    )(x)
    x = layers.BatchNormalization(**_BN, name=model_name + "_stem_bn")(x)
    x = layers.ReLU(name=model_name + "_stem_relu")(x)

    filters_in = 32
    for s, (depth, width) in enumerate(zip(cfg["depths"], cfg["widths"])):
        for b in range(depth):
            x = _block(
                x,
                cfg["block_type"],
                filters_in if b == 0 else width,
                width,
                cfg["group_width"],
                2 if b == 0 else 1,
                f"{model_name}_Stage_{s}_{cfg['block_type']}Block_{b}",
            )
        filters_in = width

    return x


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
    input_shape = _checked_input_shape(input_shape, include_top, weights, classes, pooling)
    if input_tensor is None:
        inputs = layers.Input(shape=input_shape, name=model_name + "_input")
    else:
        inputs = input_tensor
    x = _stem_and_stages(inputs, cfg, model_name, include_preprocessing)
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


_STAGE = re.compile(r"_Stage_(\d+)_")


def stage_of(layer_name: str):
    """Stage index (0..3) of a backbone layer, or None for the stem/prestem (family interface)."""
    m = _STAGE.search(layer_name)
    return int(m.group(1)) if m else None


def residual_bns(backbone: keras.Model) -> list:
    """The BatchNormalization that ends every block's residual branch (``<block>_conv_1x1_2_bn``)."""
    return [layer for layer in backbone.layers if layer.name.endswith("_conv_1x1_2_bn")]


def build_backbone(variant: str, input_shape, weights=None) -> keras.Model:
    """``variant`` without its top, preprocessing inside, from ``weights`` (family interface)."""
    return RegNet(variant, include_top=False, weights=weights, input_shape=tuple(input_shape))


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
            return model.name + n[len(prefix) :] if n.startswith(prefix + "_") else n

        weights_lib.load_h5_by_name(model, path, rename=rename, skip=() if include_top else (head,))
        return
    weights_lib.load_keras_weights(model, path)


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


BASE_DOCSTRING = """Instantiate {name}, the {block_type} network of the RegNet design space.

    Stages 0..3 have {depths} blocks of {widths} channels, grouped 3x3
    convolutions of {group_width} channels per group{se}.  The model takes
    images in [0, 255] (a ``Rescaling(1/255)`` is its first layer, as in
    tf-keras) and its layer names match ``tf_keras.applications.{name}``, so
    the official weights load by name.

    Args:
        include_top: whether to end with the 1000-class ImageNet classifier.
        weights: ``None`` (random), ``"imagenet"`` (the official
            keras-applications file, downloaded once into the Keras cache and
            checked by sha256) or the path of a weights file of ``{variant}``.
        input_tensor: optional Keras tensor to use as the input.
        input_shape: ``(height, width, 3)``; both sides at least 32.
        pooling: ``None``, ``"avg"`` or ``"max"`` when ``include_top=False``.
        classes: outputs of the classifier (1000 with ImageNet weights).
        classifier_activation: activation of the classifier.
        include_preprocessing: whether the first layer rescales [0, 255] to [0, 1].
        name: model name and prefix of every layer (default ``{variant}``).

    Returns:
        A functional ``keras.Model``.
    """


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
            variant,
            include_top=include_top,
            weights=weights,
            input_tensor=input_tensor,
            input_shape=input_shape,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            include_preprocessing=include_preprocessing,
            name=name,
        )

    public = "RegNet" + variant[6:].upper()
    cfg = variant_config(variant)
    builder.__name__ = builder.__qualname__ = public
    se = ", with squeeze-and-excitation" if cfg["block_type"] == "Y" else ""
    builder.__doc__ = BASE_DOCSTRING.format(name=public, variant=variant, se=se, **cfg)
    return public, builder


for _v in VARIANTS:
    _public, _builder = _make_variant(_v)
    globals()[_public] = _builder
__all__ = [
    "RegNet",
    "VARIANTS",
    "variant_config",
    "load_weights_file",
    "imagenet_weights_file",
    "decode_predictions",
    "build_backbone",
    "stage_of",
    "NUM_STAGES",
] + ["RegNet" + v[6:].upper() for v in VARIANTS]
del _v, _public, _builder
