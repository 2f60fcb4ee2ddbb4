"""keras.applications backbones (ResNet, MobileNet, EfficientNet(V2), ConvNeXt, DenseNet) as kerasxfer families.

Keras builds the network; this module puts the family's preprocessing in
front of it (raw [0, 255] RGB pixels in, as every kerasxfer backbone takes),
names the model after the ``--backbone`` value, and loads ImageNet weights
from the same notop file Keras itself uses, fetched once into the Keras cache
and checked against Keras' own hash (:func:`kerasxfer.models.weights.fetch`:
offline, one sentence names the file and where to put it).  Each family is an
object with the :class:`~kerasxfer.families.FamilyModule` interface
(``kerasxfer.families`` loads it by name, e.g. ``...keras_apps:resnet``); its
stage table and preprocessing are data in :mod:`kerasxfer.models.keras_apps_specs`.

Two ImageNet files need one step after loading, so that the model computes
what Keras' own ``weights="imagenet"`` model computes: ResNet50's file
expects BGR input, so the first convolution's input channels are reversed
(the model reads RGB); EfficientNet B0-B3's stored normalisation variance is
the standard deviation (Keras adds a rescaling layer for it only when it
builds with ``weights="imagenet"``), folded here into the variance.
``tests/test_keras_apps.py`` checks both against Keras' own imagenet models.
"""

from __future__ import annotations

import collections
import re

import keras
import numpy as np
from keras import layers

from kerasxfer.models import keras_apps_specs as specs
from kerasxfer.models import weights as weights_lib

#: Keras constructors that take include_preprocessing (their own rescaling inside).
OWN_PREPROCESSING = (
    "MobileNetV3Small",
    "MobileNetV3Large",
    "EfficientNetV2B0",
    "EfficientNetV2B1",
    "EfficientNetV2B2",
    "EfficientNetV2B3",
    "ConvNeXtTiny",
)


def _preprocess(x, mode: str, name: str):
    if mode == specs.CAFFE:
        return layers.Rescaling(1.0, offset=[-m for m in specs.IMAGENET_MEAN_RGB], name=f"{name}_preprocess")(x)
    if mode == specs.TF:
        return layers.Rescaling(1.0 / 127.5, offset=-1.0, name=f"{name}_preprocess")(x)
    if mode == specs.TORCH:
        scale = [1.0 / (255.0 * s) for s in specs.IMAGENET_STD]
        offset = [-m / s for m, s in zip(specs.IMAGENET_MEAN, specs.IMAGENET_STD)]
        return layers.Rescaling(scale, offset=offset, name=f"{name}_preprocess")(x)
    return x


class KerasAppFamily:
    """One keras.applications family: build, stage table, ImageNet file, residual BatchNorms."""

    def __init__(self, name: str):
        self.name = name
        _, self.stages, rules, stem, self.mode = specs.FAMILIES[name]
        self._rules = [(re.compile(p), stage, offset) for p, stage, offset in rules]
        self._stem = re.compile(stem)

    def stage_of(self, layer_name: str):
        """The stage index of a backbone layer, None for the stem (and layers without weights outside stages)."""
        for pattern, stage, offset in self._rules:
            m = pattern.search(layer_name)
            if m:
                return stage if stage is not None else int(m.group(1)) + offset
        return None

    def is_stem(self, layer_name: str) -> bool:
        return bool(self._stem.search(layer_name))

    def imagenet_weights_file(self, variant: str, include_top: bool = False) -> str:
        """The notop ImageNet file of ``variant`` in the Keras cache, downloaded once (Keras' own file and hash)."""
        if include_top:
            raise ValueError("kerasxfer uses keras.applications backbones without their top")
        _, _, _, file_name, base, file_hash = specs.VARIANTS[variant]
        return weights_lib.fetch(file_name, base + file_name, file_hash)

    def build_backbone(self, variant: str, input_shape, weights=None) -> keras.Model:
        """``variant`` without its top, named ``variant``, raw [0, 255] RGB in; ``weights``: None, imagenet or a file."""
        family, ctor, _, _, _, _ = specs.VARIANTS[variant]
        if family != self.name:
            raise ValueError(f"{variant} is not a {self.name} backbone")
        inputs = keras.Input(shape=tuple(input_shape), name=f"{variant}_input")
        kwargs = {"include_preprocessing": True} if ctor in OWN_PREPROCESSING else {}
        built = getattr(keras.applications, ctor)(
            include_top=False, weights=None, input_tensor=_preprocess(inputs, self.mode, variant), **kwargs
        )
        # Keras' own name (EfficientNetV2 looks its blocks up by it), then the variant's, which kerasxfer reads
        model = keras.Model(inputs, built.output, name=variant)
        path = self.imagenet_weights_file(variant) if weights == "imagenet" else weights
        if path is not None:
            weights_lib.load_keras_weights(model, path)
            if weights_lib.is_legacy_h5(path):  # Keras' own file (fetched, or by hand): tf-keras' layout, its quirks
                self._imagenet_fixups(model)  # (a kerasxfer export, a Keras 3 .weights.h5, loads as it is)
        return model

    def _imagenet_fixups(self, model: keras.Model) -> None:
        """The two steps that make a model loaded from Keras' file compute what Keras' imagenet model does."""
        if self.mode == specs.CAFFE:  # the file's first kernel reads BGR; this model's input is RGB
            conv = model.get_layer("conv1_conv")
            conv.kernel.assign(np.ascontiguousarray(conv.kernel.numpy()[:, :, ::-1, :]))
        if self.name == "efficientnet":  # stored variance = std: Keras divides by sqrt(std) once more
            norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
            std = np.asarray(specs.IMAGENET_STD, dtype="float32")
            norm.adapt_variance.assign(norm.adapt_variance.numpy() * std)
            norm.finalize_state()

    def residual_bns(self, backbone: keras.Model) -> list:
        """The BatchNormalization that ends the residual branch of every block (none where a branch ends otherwise:
        ResNetV2's pre-activation convolution, ConvNeXt's layer scale, which starts near zero by design).

        The branch is the input of the block's ``Add`` that feeds nothing else (the skip also feeds the branch);
        of two such inputs (a projection shortcut beside the branch), the later-built, deeper one.
        """
        order = {id(layer): i for i, layer in enumerate(backbone.layers)}
        producer = {id(layer.output): layer for layer in backbone.layers}
        consumers = collections.Counter()
        for layer in backbone.layers:
            if not isinstance(layer, keras.layers.InputLayer):
                ins = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
                consumers.update(id(t) for t in ins)
        out = []
        for add in (layer for layer in backbone.layers if isinstance(layer, layers.Add)):
            ends = []
            for t in add.input:
                layer = producer.get(id(t))
                while isinstance(layer, layers.Dropout) and consumers[id(layer.output)] == 1:
                    layer = producer.get(id(layer.input))
                if isinstance(layer, layers.BatchNormalization) and consumers[id(layer.output)] == 1:
                    ends.append(layer)
            if ends:
                out.append(max(ends, key=lambda layer: order[id(layer)]))
        return out


FAMILY_OBJECTS = {name: KerasAppFamily(name) for name in specs.FAMILIES}
