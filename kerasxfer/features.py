"""Frozen-backbone phases on cached features: the backbone runs once per image, not once per epoch."""

from __future__ import annotations

import dataclasses
import logging
import time

import keras
import numpy as np
import tensorflow as tf

from kerasxfer.data import DataSplits
from kerasxfer.data.pipeline import epochs_from, ordered_batches

log = logging.getLogger("kerasxfer")


@dataclasses.dataclass
class Features:
    """A transfer model's head, and the backbone features of the training and validation images."""

    head: keras.Model  # features -> probabilities, sharing the transfer model's head layers
    train_from: object  # like DataSplits.train_from, over features
    val: tf.data.Dataset
    seconds: float


def backbone_features(model: keras.Model, data: DataSplits, batch_size: int) -> Features:
    """Compute the pooled backbone features of every image once, and a head model that trains on them.

    With the backbone frozen and called in inference mode, and no
    augmentation, an image's features are the same in every epoch, so
    training the head on them is the same computation as training the whole
    model, without running the backbone again: epochs see the same batches
    in the same order (the features are shuffled exactly like the images),
    and the head's layers are the model's own, so the model is trained in
    place.
    """
    t0 = time.perf_counter()
    extractor = keras.Model(model.inputs, model.get_layer("head_gap").output)
    feats = np.asarray(extractor.predict(data.train_ordered, verbose=0), np.float32)
    val_feats = np.asarray(extractor.predict(data.val, verbose=0), np.float32)
    inp = keras.Input(shape=feats.shape[1:], name="features")
    out = model.get_layer("head_dense")(model.get_layer("head_dropout")(inp))
    head = keras.Model(inp, out, name=f"{model.name}_head")
    train_from = epochs_from(feats, data.train_labels, batch_size, data.seed)
    val = ordered_batches(val_feats, data.val_labels, batch_size)
    seconds = time.perf_counter() - t0
    log.info(
        "frozen backbone: features of %d train + %d val images computed once in %.1fs; the head trains on them",
        len(feats), len(val_feats), seconds,
    )
    return Features(head, train_from, val, seconds)
