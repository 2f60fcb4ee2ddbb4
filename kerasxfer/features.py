"""What a frozen backbone computes, computed once: the phases train only the part of the network that changes.

With the backbone called in inference mode (BatchNorm on its moving
statistics, no drop-connect) and no augmentation, every frozen layer is a
fixed function of the image.  Two phases use that:

* a **head-only phase** trains the head on the backbone's pooled features
  (:func:`backbone_features`);
* a phase that trains the **last stages** trains them, and the head, on the
  activations where those stages begin (:func:`boundary_activations`): the
  stem and the frozen stages run once per image instead of once per epoch.

Both are the same computation as training the whole model: the epochs see
the same examples in the same order (the arrays are shuffled exactly like the
images), the layers trained are the model's own (trained in place, so its
checkpoint is the whole model), and the head's dropout draws come from the
same layer.  Where that is not exact (augmentation, MixUp/CutMix,
``--bn=train``, a mixed-precision policy: see
:func:`kerasxfer.phases.activations_off`; a backbone whose trainable stages
are not fed by one tensor) the whole model trains and one log line says why.

When the backbone's weights do not depend on the run (published or file
weights, untouched by an earlier phase, no BatchNorm re-estimation), the
outputs are computed once for every image of the decoded source and shared
by every run, fold and seed that reads it
(:class:`kerasxfer.data.pipeline.ActivationStore`, on disk in a study's
cache); a run takes its rows.  Its seconds are its share of that one pass
(what it would have cost alone).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import keras
import numpy as np
import tensorflow as tf

from kerasxfer.data import DataSplits
from kerasxfer.data.batches import epochs_from, ordered_batches
from kerasxfer.data.pipeline import SPLITS
from kerasxfer.models.head import GAP, head_on, pooled_features

log = logging.getLogger("kerasxfer")

#: Boundary activations of one run kept in memory (no study cache) only up to this many bytes; above, the whole
#: model trains (a study's cache on disk holds any size).
MAX_IN_MEMORY = 2 << 30


@dataclasses.dataclass
class Features:
    """The part of a transfer model that trains, and what it trains on: frozen-backbone outputs of the images."""

    head: keras.Model  # those outputs -> probabilities, sharing the transfer model's layers
    train_from: object  # like DataSplits.train_from, over the outputs
    val: tf.data.Dataset
    seconds: float
    train_x: np.ndarray | None = None  # the outputs themselves (pooled features: what a solved head fits)
    val_x: np.ndarray | None = None


def _pool_rows(arr, data: DataSplits) -> tuple:
    """This run's training rows (its subset, in its order) and validation rows of an array over the pool."""
    index = data.decoded.pool_index
    train = arr[index["train"]]
    if data.train_index is not None:
        train = train[data.train_index]
    return np.asarray(train), np.asarray(arr[index["val"]])


def _extract(extractor: keras.Model, data: DataSplits, key) -> tuple:
    """(train outputs, val outputs, seconds, whether they were reused) of ``extractor`` for ``data``'s images.

    With a ``key`` and a decoded source that shares them, the outputs of the
    whole pool are computed once per key and a run takes its rows;
    otherwise only this run's images are read.
    """
    t0 = time.perf_counter()
    store = data.decoded.features if data.decoded is not None and key is not None else None
    if store is None:
        train = np.asarray(extractor.predict(data.train_ordered, verbose=0), np.float32)
        val = np.asarray(extractor.predict(data.val, verbose=0), np.float32)
        return train, val, time.perf_counter() - t0, False
    whole = data.decoded.whole or data.decoded
    bs = whole.cfg.batch_size

    def compute():
        return np.concatenate(
            [
                np.asarray(extractor.predict(ordered_batches(whole.images[s], whole.src.splits[s].y, bs), verbose=0), np.float32)
                for s in SPLITS
            ]
        )

    arr, seconds, reused = store.get(key, whole, compute)
    train, val = _pool_rows(arr, data)
    return train, val, seconds * (len(train) + len(val)) / max(1, len(arr)), reused


def _said(what: str, train, val, seconds: float, reused: bool, then: str) -> None:
    if reused:
        log.info(
            "frozen backbone: %s of %d train + %d val images reused from earlier runs on these images; %s",
            what,
            len(train),
            len(val),
            then,
        )
    else:
        log.info(
            "frozen backbone: %s of %d train + %d val images computed once in %.1fs; %s",
            what,
            len(train),
            len(val),
            seconds,
            then,
        )


def backbone_features(
    model: keras.Model, data: DataSplits, batch_size: int, key=None, then: str = "the head trains on them"
) -> Features:
    """The pooled backbone features of every image, once, and a head model that trains on them.

    ``key`` (:func:`feature_key`) names the backbone's weights when they do not depend on the run: runs that
    share it share the features.
    """
    # Not the folded inference graph: the same ops as the whole model's forward pass, so that training on the
    # features is the same computation to the last bit (a folded BatchNorm rounds differently, and training
    # amplifies the difference); the pass runs once per study, so its speed matters little.
    extractor = keras.Model(model.inputs, pooled_features(model))
    feats, val_feats, seconds, reused = _extract(extractor, data, None if key is None else (*key, "pooled"))
    inp = keras.Input(shape=feats.shape[1:], name="features")
    head = keras.Model(inp, head_on(model, inp), name=f"{model.name}_head")
    _said("pooled features", feats, val_feats, seconds, reused, then)
    return Features(
        head,
        epochs_from(feats, data.train_labels, batch_size, data.seed),
        ordered_batches(val_feats, data.val_labels, batch_size),
        seconds,
        feats,
        val_feats,
    )


def boundary(backbone: keras.Model):
    """``(tensor, layer name)`` where the trainable part of ``backbone`` begins, or ``(None, why)``.

    The trainable part starts at the first layer (in the backbone's order) with trainable weights; every
    layer before it must hold none, and exactly one tensor made before it must feed the layers from it on.
    """
    ops = backbone.operations
    first = next((i for i, op in enumerate(ops) if op.trainable_weights), None)
    if first is None:
        return None, "nothing in the backbone trains"
    if any(op.trainable_weights for op in ops[:first]) or first <= 1:
        return None, "the backbone trains from its first layer"
    if any(len(op._inbound_nodes) != 1 for op in ops):
        return None, "the backbone's layers are used more than once"
    before = {id(op) for op in ops[:first]}
    crossing = {}
    for op in ops[first:]:
        for t in op._inbound_nodes[0].input_tensors:
            producer = t._keras_history.operation
            if id(producer) in before:
                crossing[id(t)] = (t, producer.name)
    if len(crossing) != 1:
        return None, f"{len(crossing)} tensors cross from the frozen layers into the trainable ones"
    return next(iter(crossing.values()))


def stages_model(model: keras.Model, tensor, name: str) -> keras.Model:
    """``model`` from the backbone tensor ``tensor`` (named ``name``) on: its own layers, shared, not copies."""
    backbone = _backbone(model)
    suffix = keras.Model(tensor, backbone.output, name=f"{backbone.name}_from_{name}")
    inp = keras.Input(shape=tuple(tensor.shape[1:]), name="activations")
    x = suffix(inp, training=False)  # inference mode, as the backbone inside the transfer model
    out = head_on(model, model.get_layer(GAP)(x))
    return keras.Model(inp, out, name=f"{model.name}_from_{name}")


def _backbone(model):
    from kerasxfer.models.transfer import get_backbone

    return get_backbone(model)


def boundary_activations(model: keras.Model, data: DataSplits, batch_size: int, key=None) -> Features | None:
    """The activations where the trainable stages of ``model``'s backbone begin, once per image, and a model
    from them to the output made of the model's own trainable layers; None (with one log line) when the
    backbone cannot be cut there.  ``model``'s ``trainable`` flags must be set for the phase already.
    """
    backbone = _backbone(model)
    tensor, name = boundary(backbone)
    if tensor is None:
        log.info("the whole model trains in this phase (%s), not the trainable stages on cached activations", name)
        return None
    size = 4 * int(np.prod(tensor.shape[1:])) * (data.num_train + data.num_val)
    shared = key is not None and data.decoded is not None and data.decoded.features is not None
    if not (shared and data.decoded.features.dir) and size > MAX_IN_MEMORY:
        log.info("the whole model trains in this phase: the activations at %s would take %.1f GB of memory", name, size / 2**30)
        return None
    prefix = keras.Model(backbone.inputs, tensor)
    acts, val_acts, seconds, reused = _extract(prefix, data, None if key is None else (*key, "boundary", name))
    head = stages_model(model, tensor, name)
    _said(
        f"activations at {name} {tuple(acts.shape[1:])}",
        acts,
        val_acts,
        seconds,
        reused,
        "the unfrozen stages and the head train on them",
    )
    return Features(
        head,
        epochs_from(acts, data.train_labels, batch_size, data.seed),
        ordered_batches(val_acts, data.val_labels, batch_size),
        seconds,
    )


def feature_key(exp, index: int, bn_calibrated: bool):
    """What the frozen backbone's outputs depend on, when not on this run: shared by runs; else None.

    Published or file weights, untouched by any earlier phase (``exp.phases[:index]``) and not re-estimated
    on this run's images, give every run the same outputs.
    """
    m, d = exp.model, exp.data
    if m.weights is None or bn_calibrated or any(p.trainable != "head" for p in exp.phases[:index]):
        return None
    weights = m.weights
    if weights == "imagenet":
        from kerasxfer.families import family_of

        weights = family_of(m.backbone).load().imagenet_weights_file(m.backbone, False)
    if os.path.isfile(weights):  # its bytes, not its size and time: a file copied over with cp -p is not the same
        from kerasxfer.fsio import sha256_of

        weights = f"{os.path.abspath(weights)}|{sha256_of(weights)}"
    return (m.backbone, weights, exp.precision, d.image_size, d.resize)
