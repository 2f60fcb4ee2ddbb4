"""Batches gathered by index from a decoded array: the seeded stratified order of every epoch, MixUp/CutMix,
prefetch (the epoch stream of :mod:`kerasxfer.data.pipeline`).

Epoch ``e`` visits every training example once, in a stratified permutation of the *whole* split drawn from
``(seed, e)`` (:func:`epoch_order`); its MixUp/CutMix draws depend on the seed, ``e`` and the batch only, so a
run resumed at epoch ``e`` sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kerasxfer.data.mixing import mix_batch

AUTOTUNE = tf.data.AUTOTUNE


def _gather(arrays):
    """A dataset map: a batch of indices -> the rows of each array at those indices."""
    dtypes = [tf.as_dtype(a.dtype) for a in arrays]

    def rows(idx):
        return tuple(np.asarray(a[idx]) for a in arrays)

    def gather(idx):
        out = tf.numpy_function(rows, [idx], dtypes, stateful=False)
        for t, a in zip(out, arrays):
            t.set_shape((None,) + tuple(a.shape[1:]))
        return tuple(out)

    return gather


def _to_float(a, b):
    return tf.cast(a, tf.float32), b


def _one_hot(num_classes):
    return lambda a, b: (a, tf.one_hot(b, num_classes, dtype=tf.float32))


def ordered_batches(images, labels, batch_size: int, num_classes=None) -> tf.data.Dataset:
    """Batched ``(float32 images in [0, 255], int32 labels)`` in array order (one-hot labels with ``num_classes``)."""
    ds = tf.data.Dataset.range(len(labels)).batch(batch_size)
    ds = ds.map(_gather((images, np.asarray(labels, np.int32))), num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.map(_to_float, num_parallel_calls=AUTOTUNE)
    if num_classes:
        ds = ds.map(_one_hot(num_classes), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def epoch_order(seed: int, epoch: int, labels) -> np.ndarray:
    """The order of the training examples in ``epoch``: a permutation that depends only on the seed, the epoch
    and the labels.

    A stratified shuffle: each class is put in a random order and spread
    evenly over the epoch (example ``r`` of ``n`` in its class lands at
    ``(r + jitter) / n``), so every batch holds the classes in about their
    proportions, however the examples were listed and however large the
    split is; which images share a batch changes every epoch.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, epoch])
    key = np.empty(len(labels))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        key[idx] = (rng.permutation(len(idx)) + rng.random(len(idx))) / len(idx)
    return np.argsort(key, kind="stable")


def epochs_from(images, labels, batch_size: int, seed: int, num_classes=None, mixup: float = 0.0, cutmix: float = 0.0):
    """``train_from(a, b)``: the batches of epochs ``a .. b-1`` over the arrays ``images`` and ``labels``.

    Epoch ``e`` is :func:`epoch_order` ``(seed, e, labels)`` of the whole array,
    batched (the last batch of an epoch may be smaller).  Two arrays of the
    same length (images, or the backbone features of the same images) are
    visited in the same order.  With ``mixup``/``cutmix`` the labels are
    one-hot over ``num_classes`` and each batch is mixed with draws seeded by
    (seed, epoch, batch).
    """
    mixing = mixup > 0 or cutmix > 0
    gather = _gather((images, np.asarray(labels, np.int32)))

    def one_epoch(e: int) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices(epoch_order(seed, e, labels)).batch(batch_size)
        ds = ds.map(gather, num_parallel_calls=AUTOTUNE, deterministic=True).map(_to_float)
        if not mixing:
            return ds
        epoch_seed = seed * 1_000_003 + e  # a Python integer: a tensor op seed trips TF's logic at global seed 0
        ds = ds.map(_one_hot(num_classes)).enumerate()
        return ds.map(
            lambda i, xy: mix_batch(xy[0], xy[1], tf.stack([tf.constant(epoch_seed, tf.int64), i]), mixup, cutmix),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )

    def train_from(start_epoch: int, stop_epoch: int) -> tf.data.Dataset:
        if stop_epoch <= start_epoch:
            raise ValueError(f"no epoch between {start_epoch} and {stop_epoch}")
        if not mixing:  # each epoch's order drawn when the epoch is reached: no pipeline per epoch built up front
            order = lambda e: epoch_order(seed, int(e), labels).astype(np.int64)  # noqa: E731
            ds = tf.data.Dataset.range(start_epoch, stop_epoch).map(
                lambda e: tf.numpy_function(order, [e], tf.int64, stateful=False)
            )
            ds = ds.flat_map(lambda idx: tf.data.Dataset.from_tensor_slices(idx).batch(batch_size))
            return ds.map(gather, num_parallel_calls=AUTOTUNE, deterministic=True).map(_to_float).prefetch(AUTOTUNE)
        ds = one_epoch(start_epoch)
        for e in range(start_epoch + 1, stop_epoch):
            ds = ds.concatenate(one_epoch(e))
        return ds.prefetch(AUTOTUNE)

    return train_from


# ------------------------------------------------------------------ splits
