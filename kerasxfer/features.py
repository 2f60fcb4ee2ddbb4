"""Frozen-backbone phases on cached features: the backbone runs once per image, not once per epoch."""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import keras
import numpy as np
import tensorflow as tf

from kerasxfer.data import DataSplits
from kerasxfer.data.pipeline import epochs_from, ordered_batches
from kerasxfer.models.head import head_on, pooled_features
from kerasxfer.models.inference_graph import inference_model

log = logging.getLogger("kerasxfer")


@dataclasses.dataclass
class Features:
    """A transfer model's head, and the backbone features of the training and validation images."""

    head: keras.Model  # features -> probabilities, sharing the transfer model's head layers
    train_from: object  # like DataSplits.train_from, over features
    val: tf.data.Dataset
    seconds: float


def _extract(model: keras.Model, data: DataSplits, key) -> tuple:
    """(train features, val features, seconds, whether they were reused) for ``data``'s images.

    With a ``key`` and a decoded source that shares features (a sweep), the
    features of the *whole* training split are computed once per key and a
    subset run takes its rows; its seconds are its share of that one pass
    (what it would have cost alone).  Otherwise only this run's images are read.
    """
    t0 = time.perf_counter()
    extractor = inference_model(keras.Model(model.inputs, pooled_features(model)))  # BatchNorm folded
    shared = data.decoded.features if data.decoded is not None and key is not None else None
    if shared is None:
        train = np.asarray(extractor.predict(data.train_ordered, verbose=0), np.float32)
        val = np.asarray(extractor.predict(data.val, verbose=0), np.float32)
        return train, val, time.perf_counter() - t0, False
    reused = key in shared
    if not reused:
        src = data.decoded.src
        everything = ordered_batches(data.decoded.images["train"], src.train.y, data.decoded.cfg.batch_size)
        train = np.asarray(extractor.predict(everything, verbose=0), np.float32)
        val = np.asarray(extractor.predict(data.val, verbose=0), np.float32)
        shared[key] = (train, val, time.perf_counter() - t0)
    train, val, seconds = shared[key]
    share = (data.num_train + len(val)) / (len(train) + len(val))
    if data.train_index is not None:
        train = train[data.train_index]
    return train, val, seconds * share, reused


def backbone_features(model: keras.Model, data: DataSplits, batch_size: int, key=None) -> Features:
    """Compute the pooled backbone features of every image once, and a head model that trains on them.

    With the backbone frozen and called in inference mode, and no
    augmentation, an image's features are the same in every epoch, so
    training the head on them is the same computation as training the whole
    model, without running the backbone again: epochs see the same batches
    in the same order (the features are shuffled exactly like the images),
    and the head's layers are the model's own, so the model is trained in
    place.  ``key`` names the backbone's weights when they do not depend on
    the run (published or file weights, untouched): runs of one sweep that
    share it share the features (:class:`kerasxfer.data.pipeline.Decoded`).
    """
    feats, val_feats, seconds, reused = _extract(model, data, key)
    inp = keras.Input(shape=feats.shape[1:], name="features")
    out = head_on(model, inp)
    head = keras.Model(inp, out, name=f"{model.name}_head")
    train_from = epochs_from(feats, data.train_labels, batch_size, data.seed)
    val = ordered_batches(val_feats, data.val_labels, batch_size)
    if reused:
        log.info("frozen backbone: features of %d train + %d val images reused from this sweep's earlier runs",
                 len(feats), len(val_feats))
    else:
        log.info("frozen backbone: features of %d train + %d val images computed once in %.1fs; the head trains "
                 "on them", len(feats), len(val_feats), seconds)
    return Features(head, train_from, val, seconds)


def feature_key(exp, index: int, bn_calibrated: bool):
    """What the frozen backbone's features depend on, when not on this run: shared within a sweep; else None.

    Published or file weights, untouched by any earlier phase (``exp.phases[:index]``) and not re-estimated
    on this run's images, give every run the same features.
    """
    m, d = exp.model, exp.data
    if m.weights is None or bn_calibrated or any(p.trainable != "head" for p in exp.phases[:index]):
        return None
    weights = m.weights
    if os.path.isfile(weights):
        st = os.stat(weights)
        weights = f"{os.path.abspath(weights)}|{st.st_size}|{st.st_mtime_ns}"
    return (m.backbone, weights, exp.precision, d.image_size, d.resize)
