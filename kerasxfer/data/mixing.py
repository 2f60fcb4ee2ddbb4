"""MixUp and CutMix of whole batches, with draws that depend only on a seed (so resumed runs repeat them)."""

from __future__ import annotations

import tensorflow as tf


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
