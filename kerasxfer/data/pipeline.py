"""tf.data pipelines: decode -> resize -> cache -> shuffle -> batch -> prefetch.

The training split is a stream of epochs in which epoch ``e``'s order
depends only on the seed and ``e``: a run resumed at epoch ``e`` sees
exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Callable

import numpy as np
import tensorflow as tf

from kerasxfer.config import DataConfig
from kerasxfer.data import sources

log = logging.getLogger("kerasxfer")
AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class DataSplits:
    """What a run trains and validates on."""

    train: tf.data.Dataset  # one epoch (epoch 0's order), batched
    val: tf.data.Dataset  # batched, fixed order (val_labels order)
    class_names: list
    num_train: int
    num_val: int
    val_labels: np.ndarray
    image_size: int
    description: str
    info: dict
    # train_from(a, b): the batches of epochs a .. b-1 in order; steps_per_epoch of them make one epoch
    train_from: Callable[[int, int], tf.data.Dataset]
    steps_per_epoch: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def to_rgb_resized(img, image_size: int):
    """uint8 image (H, W, 1|3) -> uint8 RGB (S, S, 3), bilinear, antialiased when shrinking."""
    img = tf.image.resize(img, (image_size, image_size), method="bilinear", antialias=True)
    img = tf.cast(tf.clip_by_value(tf.round(img), 0.0, 255.0), tf.uint8)
    if img.shape[-1] == 1:
        img = tf.image.grayscale_to_rgb(img)
    img.set_shape((image_size, image_size, 3))
    return img


def _decoded(x, y, decode, image_size):
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.map(
        lambda a, b: (to_rgb_resized(decode(a), image_size), b),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    return ds.cache()


def _to_float(a, b):
    return tf.cast(a, tf.float32), b


def make_eval_pipeline(x, y, decode, image_size, batch_size):
    """Batched ``(float32 images in [0, 255], int32 labels)`` from examples ``x``, in their order.

    Decoding and resizing run in parallel and happen once: the uint8 result
    is cached in memory, then batched, cast to float32 and prefetched.
    """
    ds = _decoded(x, y, decode, image_size).batch(batch_size)
    return ds.map(_to_float, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def make_train_epochs(x, y, decode, image_size, batch_size, seed, shuffle_buffer=2048):
    """``(train_from, steps_per_epoch)``: ``train_from(a, b)`` streams epochs ``a .. b-1``.

    Every epoch is the cached images shuffled with a seed made of ``seed`` and
    the epoch number (a new order every epoch, the same order for the same
    epoch in any process with the same global seed), then batched; the last
    batch of an epoch may be smaller.  Decoding happens once: every epoch
    reads the same cache.  The seeds are Python integers on purpose: a tensor
    op seed trips TensorFlow's seed logic when the global seed is 0.
    """
    base = _decoded(x, y, decode, image_size)
    buffer = max(1, min(len(y), shuffle_buffer))

    def one_epoch(e: int) -> tf.data.Dataset:
        return base.shuffle(buffer, seed=seed * 1_000_003 + e, reshuffle_each_iteration=False).batch(batch_size)

    def train_from(start_epoch: int, stop_epoch: int) -> tf.data.Dataset:
        if stop_epoch <= start_epoch:
            raise ValueError(f"no epoch between {start_epoch} and {stop_epoch}")
        ds = one_epoch(start_epoch)
        for e in range(start_epoch + 1, stop_epoch):
            ds = ds.concatenate(one_epoch(e))
        return ds.map(_to_float, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)

    return train_from, math.ceil(len(y) / batch_size)


def load_data(cfg: DataConfig, seed: int) -> DataSplits:
    """Open ``cfg.dataset`` and build its train/val pipelines.

    On a GPU the batches are copied to the device ahead of the step by the
    distribution strategy that :mod:`kerasxfer.training` runs under
    (``OneDeviceStrategy`` distributes the dataset with device prefetch).
    """
    split_seed = seed if cfg.split_seed is None else cfg.split_seed
    if cfg.dataset == "digits":
        src = sources.digits_source(cfg.val_fraction, split_seed)
    elif cfg.dataset == "synthetic":
        src = sources.synthetic_source(cfg.synthetic_train, cfg.synthetic_val, cfg.image_size, split_seed)
    else:
        src = sources.folder_source(cfg.dataset, cfg.val_fraction, split_seed)
    log.info(
        "data: %s: %d train / %d val images, %d classes, %dx%d",
        src.description, len(src.train_y), len(src.val_y), len(src.class_names),
        cfg.image_size, cfg.image_size,
    )
    train_from, steps = make_train_epochs(
        src.train_x, src.train_y, src.decode, cfg.image_size, cfg.batch_size, seed, cfg.shuffle_buffer
    )
    train = train_from(0, 1)
    val = make_eval_pipeline(src.val_x, src.val_y, src.val_decode or src.decode, cfg.image_size, cfg.batch_size)
    info = dict(src.info)
    info.setdefault("train_per_class", {c: int((src.train_y == i).sum()) for i, c in enumerate(src.class_names)})
    info.setdefault("val_per_class", {c: int((src.val_y == i).sum()) for i, c in enumerate(src.class_names)})
    return DataSplits(
        train=train, val=val, class_names=list(src.class_names),
        num_train=len(src.train_y), num_val=len(src.val_y), val_labels=np.asarray(src.val_y),
        image_size=cfg.image_size, description=src.description, info=info,
        train_from=train_from, steps_per_epoch=steps,
    )
