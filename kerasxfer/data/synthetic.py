"""A procedural source task: shapes x textures, drawn inside tf.data.

Where ImageNet weights cannot be downloaded, kerasxfer pretrains its own
backbone on this task.  Each class is a (shape, texture) pair — 6 shapes
(disc, square, triangle, ring, cross, star) times 4 textures (solid, stripes,
checks, dots) = 24 classes — so a class is defined by form and texture, never
by colour: the object and background colours, a second texture colour, the
position, scale, rotation, stripe frequency and orientation, and pixel noise
are all random.

Image ``i`` of a split is a pure function of ``(seed, split, i)`` (stateless
random ops), so a dataset is reproducible at any size and image size, and
its label is ``i % 24``: every class has the same number of images (up to one).
"""

from __future__ import annotations

import math

import tensorflow as tf

SHAPES = ("disc", "square", "triangle", "ring", "cross", "star")
TEXTURES = ("solid", "stripes", "checks", "dots")
CLASS_NAMES = [f"{s}_{t}" for s in SHAPES for t in TEXTURES]
NUM_CLASSES = len(CLASS_NAMES)


def _shape_masks(u, v):
    """Soft-edged masks of every shape in the object's own frame (u, v in about [-1, 1])."""
    r = tf.sqrt(u * u + v * v)
    edge = 0.06

    def inside(d):  # d < 0 inside; smooth edge for antialiasing
        return tf.sigmoid(-d / edge * 4.0)

    disc = inside(r - 0.8)
    square = inside(tf.maximum(tf.abs(u), tf.abs(v)) - 0.68)
    # equilateral triangle, pointing up
    k = math.sqrt(3.0)
    tri = inside(tf.maximum(tf.abs(u) * k * 0.5 + v * 0.5, -v) - 0.42)
    ring = inside(tf.abs(r - 0.6) - 0.2)
    cross = inside(tf.minimum(tf.maximum(tf.abs(u) - 0.24, tf.abs(v) - 0.8), tf.maximum(tf.abs(u) - 0.8, tf.abs(v) - 0.24)))
    theta = tf.atan2(v, u)
    star = inside(r - (0.55 + 0.3 * tf.cos(5.0 * theta)))
    return tf.stack([disc, square, tri, ring, cross, star], axis=0)


def _textures(x, y, freq, angle):
    """Texture patterns in [0, 1] (1: first colour), in image coordinates."""
    c, s = tf.cos(angle), tf.sin(angle)
    a = (x * c + y * s) * freq
    b = (-x * s + y * c) * freq
    solid = tf.ones_like(x)
    stripes = tf.cast(tf.sin(a) > 0.0, tf.float32)
    checks = tf.cast(tf.sin(a) * tf.sin(b) > 0.0, tf.float32)
    dots = tf.cast(tf.cos(a) * tf.cos(b) > 0.45, tf.float32)
    return tf.stack([solid, stripes, checks, dots], axis=0)


def make_image(index, seed: int, split: int, image_size: int):
    """Image ``index`` (uint8, (S, S, 3)) and its label; a pure function of its arguments."""
    index = tf.cast(index, tf.int64)
    label = tf.cast(index % NUM_CLASSES, tf.int32)
    shape_id, tex_id = label // len(TEXTURES), label % len(TEXTURES)
    key = tf.stack([tf.constant(seed, tf.int64) * 7919 + split, index])

    def uni(n, i, lo=0.0, hi=1.0):
        return tf.random.stateless_uniform([n], seed=key + tf.constant([i * 104729, 0], tf.int64), minval=lo, maxval=hi)

    size = float(image_size)
    g = (tf.range(image_size, dtype=tf.float32) + 0.5) / size * 2.0 - 1.0  # pixel centres in [-1, 1]
    y, x = tf.meshgrid(g, g, indexing="ij")

    p = uni(6, 1)
    scale = 0.5 + 0.35 * p[0]  # object radius as a fraction of the half-image
    cx = (p[1] * 2.0 - 1.0) * (1.0 - scale) * 0.9
    cy = (p[2] * 2.0 - 1.0) * (1.0 - scale) * 0.9
    rot = p[3] * 2.0 * math.pi
    cr, sr = tf.cos(rot), tf.sin(rot)
    u = ((x - cx) * cr + (y - cy) * sr) / scale
    v = (-(x - cx) * sr + (y - cy) * cr) / scale
    mask = tf.gather(_shape_masks(u, v), shape_id)

    t = uni(2, 2)
    freq = (2.0 + 2.5 * t[0]) * math.pi / scale  # 2 to 4.5 periods across the object
    tex = tf.gather(_textures(x, y, freq, t[1] * math.pi), tex_id)

    colors = tf.reshape(uni(9, 3), (3, 3))  # object colour A, colour B, background
    col_a, col_b, bg = colors[0], colors[1], colors[2]
    # keep the object visible: push colour A away from the background
    col_a = tf.where(tf.reduce_mean(tf.abs(col_a - bg)) < 0.3, 1.0 - bg, col_a)
    col_b = 0.5 * col_b + 0.5 * (1.0 - col_a)  # and B away from A, so textures show
    obj = tex[..., None] * col_a + (1.0 - tex[..., None]) * col_b
    # background: a gentle random gradient
    gdir = uni(2, 4, -0.25, 0.25)
    backdrop = bg + (x * gdir[0] + y * gdir[1])[..., None]
    img = mask[..., None] * obj + (1.0 - mask[..., None]) * backdrop
    noise_level = uni(1, 5, 0.0, 0.08)[0]
    noise = tf.random.stateless_normal([image_size, image_size, 3], seed=key + tf.constant([1, 3], tf.int64)) * noise_level
    img = tf.clip_by_value(img + noise, 0.0, 1.0)
    return tf.cast(tf.round(img * 255.0), tf.uint8), label
