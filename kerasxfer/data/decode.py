"""The one image decoder of kerasxfer, and the check that drops (or refuses) files it cannot decode.

Files and tfds records go through :func:`decode_image_bytes`, which reads
JPEG (at reduced size when that is enough), PNG, GIF (first frame), BMP and
WebP, and always gives RGB; training, ``predict`` and the SavedModel export
all decode with it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from kerasxfer.config import BAD_IMAGE_MODES
from kerasxfer.errors import UserError

if TYPE_CHECKING:  # the Split of kerasxfer.data.sources, which imports this module
    from kerasxfer.data.sources import Split

log = logging.getLogger("kerasxfer")


_JPEG_MAGIC = b"\xff\xd8\xff"


def decode_image_bytes(data, min_side: int | None = None):
    """Decode encoded image bytes to uint8 RGB ``(H, W, 3)``.

    JPEG, PNG, GIF (first frame), BMP and WebP; greyscale, palette and RGBA
    images become RGB (alpha is dropped).  With ``min_side`` a JPEG is
    decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling, several
    times faster on large photos) as long as both sides stay at least
    ``min_side`` pixels: the image is resized to ``min_side`` afterwards
    anyway.  Raises ``InvalidArgumentError`` for bytes that are not a whole
    image (empty, truncated, another format).
    """
    head = tf.strings.substr(tf.strings.join([data, tf.constant(b"\0" * 12)]), 0, 12)
    is_jpeg = tf.equal(tf.strings.substr(head, 0, 3), _JPEG_MAGIC)
    is_webp = tf.logical_and(
        tf.equal(tf.strings.substr(head, 0, 4), b"RIFF"), tf.equal(tf.strings.substr(head, 8, 4), b"WEBP")
    )

    def jpeg():
        full = lambda: tf.io.decode_jpeg(data, channels=3)  # noqa: E731
        if not min_side:
            return full()
        shape = tf.image.extract_jpeg_shape(data)
        short = tf.minimum(shape[0], shape[1])
        branches = [
            (short >= r * min_side, lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r)) for r in (8, 4, 2)
        ]
        return tf.case(branches, default=full, exclusive=False)

    def webp():
        return tf.io.decode_webp(data)[0, :, :, :3]  # (frames, H, W, 3|4): first frame, no alpha

    def other():
        return tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)

    img = tf.cond(is_jpeg, jpeg, lambda: tf.cond(is_webp, webp, other))
    img.set_shape([None, None, 3])
    return img


def decode_image_file(path, min_side: int | None = None):
    """Read and decode one image file to uint8 RGB (see :func:`decode_image_bytes`)."""
    return decode_image_bytes(tf.io.read_file(path), min_side)


def find_undecodable(examples, decode=decode_image_file) -> list:
    """Indices of ``examples`` (paths or bytes) that ``decode`` cannot decode.

    Decodes every example once, in parallel, through the decoder the
    pipeline uses; one that fails is dropped by ``ignore_errors`` and so is
    missing from the indices that come back.
    """
    n = len(examples)
    if n == 0:
        return []
    ds = tf.data.Dataset.from_tensor_slices((np.arange(n), np.asarray(examples)))
    ds = ds.map(
        lambda i, e: (i, tf.shape(decode(e))[0]), num_parallel_calls=tf.data.AUTOTUNE, deterministic=False
    ).ignore_errors()
    ok = np.zeros(n, dtype=bool)
    for i, h in ds.batch(256).as_numpy_iterator():
        ok[i[h > 0]] = True
    return [int(i) for i in np.flatnonzero(~ok)]


def check_images(part: "Split", class_names, on_bad_image: str, where: str, decode):
    """Drop (``skip``) or refuse (``error``) the examples of ``part`` that cannot be decoded.

    Examples are shown to the user by their key (a relative path, or a tfds
    record id).  Returns the kept :class:`Split`, per-class counts
    ``{class: {"read": n, "skipped": k}}`` and the skipped keys.
    """
    if on_bad_image not in BAD_IMAGE_MODES:
        raise UserError(f"--on_bad_image={on_bad_image!r} is unknown: use skip or error.")
    t0 = time.perf_counter()
    bad = find_undecodable(part.x, decode)
    log.info("checked %d images in %s in %.1fs: %d cannot be decoded", len(part), where, time.perf_counter() - t0,
             len(bad))
    bad_names = [part.keys[i] for i in bad]
    if bad and on_bad_image == "error":
        shown = ", ".join(bad_names[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise UserError(
            f"{len(bad)} file(s) in {where} cannot be decoded as images (corrupt, truncated or not an image): "
            f"{shown}; fix or remove them, or pass --on_bad_image=skip to train without them."
        )
    if bad:
        log.warning(
            "skipped %d file(s) that cannot be decoded as images (first: %s)", len(bad), ", ".join(bad_names[:5])
        )
    keep = np.ones(len(part), dtype=bool)
    keep[bad] = False
    y = part.y
    counts = {
        c: {"read": int(((y == i) & keep).sum()), "skipped": int(((y == i) & ~keep).sum())}
        for i, c in enumerate(class_names)
    }
    return part.take(keep, part.origin), counts, bad_names
