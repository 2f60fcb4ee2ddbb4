"""tf.data pipelines: decode -> resize -> cache -> shuffle -> batch -> [mix] -> prefetch.

The training split is a stream of epochs in which epoch ``e``'s order (and
its MixUp/CutMix draws) depends only on the seed and ``e``: a run resumed at
epoch ``e`` sees exactly the batches an uninterrupted run would have seen.

Decoding and resizing run in parallel (``AUTOTUNE``) once; the uint8
results are cached in memory, or in files under ``cache_dir`` for data
larger than RAM (reused by later runs on the same files and image size).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import logging
import math
import os
from typing import Callable

import numpy as np
import tensorflow as tf

from kerasxfer.config import TFDS_PREFIX, DataConfig
from kerasxfer.data import sources, tfds

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
    # the training images in cache order, batched, not shuffled (backbone features are computed on it)
    train_ordered: tf.data.Dataset = None
    seed: int = 0
    shuffle_buffer: int = 2048

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


def cache_key(x, y, image_size: int, tag: str) -> str:
    """A name for the decoded cache of examples ``x``: it changes when any input changes.

    Files contribute their path, size and modification time; in-memory
    examples (bytes, arrays) their content.
    """
    h = hashlib.sha256(f"{tag}:{image_size}:{len(y)}".encode())
    h.update(np.asarray(y).tobytes())
    for e in x:
        if isinstance(e, str) and os.path.exists(e):
            st = os.stat(e)
            h.update(f"{os.path.abspath(e)}|{st.st_size}|{st.st_mtime_ns}\n".encode("utf-8"))
        elif isinstance(e, (bytes, str)):
            h.update(e if isinstance(e, bytes) else e.encode("utf-8"))
        else:
            h.update(np.asarray(e).tobytes())
    return f"{tag}-{image_size}px-{h.hexdigest()[:16]}"


def _file_cache(cache_dir: str, name: str) -> str:
    """The cache file prefix, after removing what an interrupted writer left behind."""
    os.makedirs(cache_dir, exist_ok=True)
    prefix = os.path.join(cache_dir, name)
    if not os.path.exists(prefix + ".index"):  # never completed: stale lockfiles or partial shards
        for f in glob.glob(glob.escape(prefix) + "*"):
            os.remove(f)
    return prefix


def _decoded(x, y, decode, image_size, cache_file=None, deterministic=True):
    """uint8 ``(S, S, 3)`` images and labels, decoded once in parallel, then cached."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.map(
        lambda a, b: (to_rgb_resized(decode(a), image_size), b),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    return ds.cache(cache_file or "")


def _to_float(a, b):
    return tf.cast(a, tf.float32), b


def _one_hot(num_classes):
    return lambda a, b: (a, tf.one_hot(b, num_classes, dtype=tf.float32))


def make_eval_pipeline(x, y, decode, image_size, batch_size, cache_file=None, num_classes=None):
    """Batched ``(float32 images in [0, 255], int32 labels)`` from examples ``x``, in their order.

    Decoding and resizing run in parallel and happen once: the uint8 result
    is cached (in memory, or in ``cache_file``), then batched, cast to
    float32 and prefetched.  With ``num_classes`` the labels are one-hot
    (for a model trained on mixed labels).
    """
    ds = _decoded(x, y, decode, image_size, cache_file).batch(batch_size)
    ds = ds.map(_to_float, num_parallel_calls=AUTOTUNE)
    if num_classes:
        ds = ds.map(_one_hot(num_classes), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def _beta(seed, alpha: float):
    """One Beta(alpha, alpha) draw from a stateless seed."""
    s = tf.random.experimental.stateless_split(seed, 2)
    g1 = tf.random.stateless_gamma([], s[0], alpha)
    g2 = tf.random.stateless_gamma([], s[1], alpha)
    return g1 / (g1 + g2)


def mix_batch(images, labels, seed, mixup: float = 0.0, cutmix: float = 0.0):
    """MixUp (Zhang et al. 2018) or CutMix (Yun et al. 2019) of one batch with a shuffled copy of itself.

    ``labels`` are one-hot; the result's labels are mixed in proportion to
    the pixels (CutMix) or weights (MixUp) taken from each image.  With both
    alphas set, each batch uses one of the two with equal probability.  The
    draws depend only on ``seed`` (a shape-[2] int64 tensor).
    """
    s = tf.random.experimental.stateless_split(seed, 4)
    n = tf.shape(images)[0]
    perm = tf.argsort(tf.random.stateless_uniform([n], s[0]))
    x2, y2 = tf.gather(images, perm), tf.gather(labels, perm)

    def do_mixup():
        lam = _beta(s[1], mixup)
        return lam * images + (1.0 - lam) * x2, lam * labels + (1.0 - lam) * y2

    def do_cutmix():
        lam = _beta(s[1], cutmix)
        h, w = tf.shape(images)[1], tf.shape(images)[2]
        ratio = tf.sqrt(1.0 - lam)
        ch = tf.cast(tf.round(tf.cast(h, tf.float32) * ratio), tf.int32)
        cw = tf.cast(tf.round(tf.cast(w, tf.float32) * ratio), tf.int32)
        cy = tf.random.stateless_uniform([], s[2], 0, h, dtype=tf.int32)
        cx = tf.random.stateless_uniform([], s[3], 0, w, dtype=tf.int32)
        y0, y1 = tf.clip_by_value(cy - ch // 2, 0, h), tf.clip_by_value(cy + (ch + 1) // 2, 0, h)
        x0, x1 = tf.clip_by_value(cx - cw // 2, 0, w), tf.clip_by_value(cx + (cw + 1) // 2, 0, w)
        rows, cols = tf.range(h), tf.range(w)
        inside = ((rows >= y0) & (rows < y1))[:, None] & ((cols >= x0) & (cols < x1))[None, :]
        mixed = tf.where(inside[None, :, :, None], x2, images)
        kept = 1.0 - tf.cast((y1 - y0) * (x1 - x0), tf.float32) / tf.cast(h * w, tf.float32)
        return mixed, kept * labels + (1.0 - kept) * y2

    if mixup > 0 and cutmix > 0:
        coin = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 7))
        return tf.cond(coin < 0.5, do_mixup, do_cutmix)
    return do_mixup() if mixup > 0 else do_cutmix()


def make_train_epochs(x, y, decode, image_size, batch_size, seed, shuffle_buffer=2048, cache_file=None,
                      num_classes=None, mixup: float = 0.0, cutmix: float = 0.0, deterministic=True):
    """``(train_from, steps_per_epoch)``: ``train_from(a, b)`` streams epochs ``a .. b-1``.

    Every epoch is the cached images shuffled with a seed made of ``seed`` and
    the epoch number (a new order every epoch, the same order for the same
    epoch in any process with the same global seed), then batched; the last
    batch of an epoch may be smaller.  Decoding happens once: every epoch
    reads the same cache.  The seeds are Python integers on purpose: a tensor
    op seed trips TensorFlow's seed logic when the global seed is 0.  With
    ``mixup``/``cutmix`` the labels are one-hot over ``num_classes`` and each
    batch is mixed with draws seeded by (seed, epoch, batch).
    """
    base = _decoded(x, y, decode, image_size, cache_file, deterministic)
    return epochs_from(base, len(y), batch_size, seed, shuffle_buffer, num_classes, mixup, cutmix), \
        math.ceil(len(y) / batch_size)


def epochs_from(base: tf.data.Dataset, n: int, batch_size: int, seed: int, shuffle_buffer: int = 2048,
                num_classes=None, mixup: float = 0.0, cutmix: float = 0.0):
    """``train_from(a, b)`` over the ``n`` elements of ``base`` (see :func:`make_train_epochs`).

    Epoch ``e``'s order depends only on ``seed``, ``e``, ``n`` and the
    buffer: two bases of the same length (images, or the backbone features of
    the same images) are shuffled into the same order.
    """
    buffer = max(1, min(n, shuffle_buffer))
    mixing = mixup > 0 or cutmix > 0

    def one_epoch(e: int) -> tf.data.Dataset:
        epoch_seed = seed * 1_000_003 + e
        ds = base.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=False).batch(batch_size)
        if not mixing:
            return ds
        ds = ds.map(_to_float).map(_one_hot(num_classes)).enumerate()
        return ds.map(
            lambda i, xy: mix_batch(xy[0], xy[1], tf.stack([tf.constant(epoch_seed, tf.int64), i]), mixup, cutmix),
            num_parallel_calls=AUTOTUNE, deterministic=True,
        )

    def train_from(start_epoch: int, stop_epoch: int) -> tf.data.Dataset:
        if stop_epoch <= start_epoch:
            raise ValueError(f"no epoch between {start_epoch} and {stop_epoch}")
        ds = one_epoch(start_epoch)
        for e in range(start_epoch + 1, stop_epoch):
            ds = ds.concatenate(one_epoch(e))
        if not mixing:
            ds = ds.map(_to_float, num_parallel_calls=AUTOTUNE)
        return ds.prefetch(AUTOTUNE)

    return train_from


def load_data(cfg: DataConfig, seed: int, deterministic: bool = True) -> DataSplits:
    """Open ``cfg.dataset`` and build its train/val pipelines.

    ``deterministic=False`` lets parallel decoding hand images to the cache
    in the order they finish (a little faster; the epochs' contents then
    depend on timing, so only runs that do not ask for determinism use it).

    On a GPU the batches are copied to the device ahead of the step by the
    distribution strategy that :mod:`kerasxfer.training` runs under
    (``OneDeviceStrategy`` distributes the dataset with device prefetch).
    """
    split_seed = seed if cfg.split_seed is None else cfg.split_seed
    if cfg.dataset == "digits":
        src = sources.digits_source(cfg.val_fraction, split_seed)
    elif cfg.dataset == "synthetic":
        src = sources.synthetic_source(cfg.synthetic_train, cfg.synthetic_val, cfg.image_size, split_seed)
    elif cfg.dataset.startswith(TFDS_PREFIX):
        src = tfds.tfds_source(
            cfg.dataset[len(TFDS_PREFIX):], cfg.tfds_data_dir, cfg.val_fraction, split_seed,
            cfg.on_bad_image, cfg.image_size, download=cfg.tfds_download,
        )
    else:
        src = sources.folder_source(cfg.dataset, cfg.val_fraction, split_seed, cfg.on_bad_image, cfg.image_size)
    log.info(
        "data: %s: %d train / %d val images, %d classes, %dx%d",
        src.description, len(src.train_y), len(src.val_y), len(src.class_names),
        cfg.image_size, cfg.image_size,
    )
    num_classes = len(src.class_names) if cfg.soft_labels else None
    tr_cache = va_cache = None
    if cfg.cache_dir:
        tr_cache = _file_cache(cfg.cache_dir, cache_key(src.train_x, src.train_y, cfg.image_size, "train"))
        va_cache = _file_cache(cfg.cache_dir, cache_key(src.val_x, src.val_y, cfg.image_size, "val"))
        log.info("decoded images are cached in %s (%s, %s)", cfg.cache_dir,
                 os.path.basename(tr_cache), os.path.basename(va_cache))
    base = _decoded(src.train_x, src.train_y, src.decode, cfg.image_size, tr_cache, deterministic)
    train_from = epochs_from(base, len(src.train_y), cfg.batch_size, seed, cfg.shuffle_buffer,
                             num_classes, cfg.mixup, cfg.cutmix)
    steps = math.ceil(len(src.train_y) / cfg.batch_size)
    train_ordered = base.batch(cfg.batch_size).map(_to_float, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
    train = train_from(0, 1)
    val = make_eval_pipeline(
        src.val_x, src.val_y, src.val_decode or src.decode, cfg.image_size, cfg.batch_size,
        cache_file=va_cache, num_classes=num_classes,
    )
    info = dict(src.info)
    info.setdefault("train_per_class", {c: int((src.train_y == i).sum()) for i, c in enumerate(src.class_names)})
    info.setdefault("val_per_class", {c: int((src.val_y == i).sum()) for i, c in enumerate(src.class_names)})
    return DataSplits(
        train=train, val=val, class_names=list(src.class_names),
        num_train=len(src.train_y), num_val=len(src.val_y), val_labels=np.asarray(src.val_y),
        image_size=cfg.image_size, description=src.description, info=info,
        train_from=train_from, steps_per_epoch=steps,
        train_ordered=train_ordered, seed=seed, shuffle_buffer=cfg.shuffle_buffer,
    )
