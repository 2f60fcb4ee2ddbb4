"""The one image decoder of kerasxfer, and the check that drops (or refuses) files it cannot decode.

Files and tfds records go through :func:`decode_image_bytes`, which reads
JPEG (at reduced size when that is enough), PNG, GIF (first frame), BMP and
WebP, and always gives RGB; training, ``predict`` and the SavedModel export
all decode with it.
"""

from __future__ import annotations

import io
import logging
import os
import time
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from kerasxfer.config import BAD_IMAGE_MODES, MAX_IMAGE_PIXELS
from kerasxfer.errors import UserError, printable

if TYPE_CHECKING:  # the Split of kerasxfer.data.sources, which imports this module
    from kerasxfer.data.split import Split

log = logging.getLogger("kerasxfer")


_JPEG_MAGIC = b"\xff\xd8\xff"

#: Files are read only when they are regular files (symlinks followed) of at most this size ...
MAX_FILE_BYTES = 256 * 2**20
#: ... and images decoded only up to this many pixels (a decompression bomb: a small PNG of 12000x12000
#: decodes to 432 MB); --max_image_pixels changes it.  PIL's guard warns at 89 megapixels.
DEFAULT_MAX_PIXELS = MAX_IMAGE_PIXELS  # one home: kerasxfer.config


def screen_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS):
    """Why ``path`` must not be read (one phrase), or None when it may be.

    Follows symlinks: a link to a FIFO, a device (``/dev/zero``), a folder or
    nowhere is refused without opening it, as is a file above
    ``MAX_FILE_BYTES`` or an image whose header declares more than
    ``max_pixels`` pixels (read with PIL, without decoding the pixels).
    """
    import stat

    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # TensorFlow takes file names as UTF-8 strings
        return "its name is not valid UTF-8 (rename the file)"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "not found (a dangling link)" if os.path.islink(path) else "not found"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a device, pipe or folder)"
    if st.st_size > MAX_FILE_BYTES:
        return f"{st.st_size / 2**20:.0f} MB, above the {MAX_FILE_BYTES // 2**20} MB limit for an image file"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    if st.st_size == 0:  # also what /proc and /sys files report: never an image
        return "empty (0 bytes)"
    try:
        size, animated = declared(path)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if animated:
        return "an animated WebP (TensorFlow's WebP decoder cannot read those safely): save its first frame as PNG"
    if size is None:  # not an image PIL knows: the decoder decides
        return None
    w, h = size
    if w * h > max_pixels:
        return f"{w}x{h} = {w * h / 1e6:.0f} megapixels, above --max_image_pixels={max_pixels} ({max_pixels / 1e6:g} megapixels)"
    return None


def declared(source):
    """``((width, height) or None, animated WebP?)`` from the header of a file (its path) or of encoded bytes,
    nothing decoded.

    PIL reads the header with its own decompression-bomb guard off (a 400-megapixel PNG must be *measured*, not
    mistaken for an unknown format); when PIL refuses the file (a PNG with a bad chunk checksum, ...) the PNG and
    GIF headers are read directly, so no declared size escapes the pixel limit.
    """
    import struct
    import warnings

    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
                return im.size, im.format == "WEBP" and bool(getattr(im, "is_animated", False))
    except Exception:  # noqa: BLE001 - read the header below
        pass
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    if isinstance(source, bytes):
        head = source[:32]
    else:
        with open(source, "rb") as f:
            head = f.read(32)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24]), False
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", head[6:10]), False
    return None, False


def exif_orientation(data) -> int:
    """The EXIF orientation tag (1-8; 1: upright) of encoded JPEG bytes, read from the header with PIL; 1 when
    there is none or it cannot be read."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(bytes(data))) as im:
            value = int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - no readable EXIF: as stored
        return 1
    return value if 1 <= value <= 8 else 1


def orient(img, orientation):
    """``img`` (H, W, C) turned upright for an EXIF ``orientation`` (1-8, a scalar tensor), as PIL's
    ``ImageOps.exif_transpose`` does: 2 mirrored, 3 rotated 180, 4 flipped, 5 transposed, 6 rotated 90 clockwise,
    7 transversed, 8 rotated 90 counter-clockwise."""
    branches = [
        lambda: img,
        lambda: tf.reverse(img, [1]),
        lambda: tf.image.rot90(img, 2),
        lambda: tf.reverse(img, [0]),
        lambda: tf.transpose(img, [1, 0, 2]),
        lambda: tf.image.rot90(img, 3),
        lambda: tf.image.rot90(tf.transpose(img, [1, 0, 2]), 2),
        lambda: tf.image.rot90(img, 1),
    ]
    return tf.switch_case(tf.clip_by_value(tf.cast(orientation, tf.int32) - 1, 0, 7), branches)


def decode_image_bytes(data, min_side: int | None = None, exif: bool = True):
    """Decode encoded image bytes to uint8 RGB ``(H, W, 3)``.

    A JPEG's EXIF orientation is applied (a phone's portrait photo arrives upright, as every viewer shows it),
    read by :func:`exif_orientation` through ``tf.py_function``; ``exif=False`` leaves the pixels as stored, for
    graphs that are saved (the exported SavedModel's byte-string signature cannot hold a Python call).

    JPEG, PNG, GIF (first frame), BMP and WebP; greyscale, palette and RGBA
    images become RGB (alpha is dropped).  With ``min_side`` a JPEG is
    decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling, several
    times faster on large photos) as long as both sides stay at least
    ``min_side`` pixels: the image is resized to ``min_side`` afterwards
    anyway.  Raises ``InvalidArgumentError`` for bytes that are not a whole
    image (empty, truncated, another format).
    """
    head = tf.strings.substr(tf.strings.join([data, tf.constant(b"\0" * 24)]), 0, 24)
    is_jpeg = tf.equal(tf.strings.substr(head, 0, 3), _JPEG_MAGIC)
    is_webp = tf.logical_and(tf.equal(tf.strings.substr(head, 0, 4), b"RIFF"), tf.equal(tf.strings.substr(head, 8, 4), b"WEBP"))

    def jpeg():
        full = lambda: tf.io.decode_jpeg(data, channels=3)  # noqa: E731
        if not min_side:
            img = full()
        else:
            shape = tf.image.extract_jpeg_shape(data)
            short = tf.minimum(shape[0], shape[1])
            branches = [(short >= r * min_side, lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r)) for r in (8, 4, 2)]
            img = tf.case(branches, default=full, exclusive=False)
        if not exif:
            return img
        orientation = tf.py_function(lambda b: exif_orientation(b.numpy()), [data], tf.int32)
        return orient(img, tf.reshape(orientation, []))

    def webp():
        # TensorFlow's WebP decoder corrupts memory on animated files (VP8X chunk, animation flag 0x02): refuse
        # them before it runs, as an undecodable image (screen_file names them for files on disk)
        flags = tf.io.decode_raw(tf.strings.substr(head, 20, 1), tf.uint8)[0]
        animated = tf.logical_and(
            tf.equal(tf.strings.substr(head, 12, 4), b"VP8X"), tf.not_equal(tf.bitwise.bitwise_and(flags, 2), 0)
        )
        check = tf.debugging.Assert(tf.logical_not(animated), ["an animated WebP cannot be decoded safely"])
        with tf.control_dependencies([check]):
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


def check_images(part: "Split", class_names, on_bad_image: str, where: str, decode, max_pixels: int = DEFAULT_MAX_PIXELS):
    """Drop (``skip``) or refuse (``error``) the examples of ``part`` that must not be read or cannot be decoded.

    File examples go through :func:`screen_file` first (regular files of a
    sane size and pixel count only), the rest through the decoder.
    Examples are shown to the user by their key (a relative path, or a tfds
    record id).  Returns the kept :class:`Split`, per-class counts
    ``{class: {"read": n, "skipped": k}}`` and the skipped keys.
    """
    if on_bad_image not in BAD_IMAGE_MODES:
        raise UserError(f"--on_bad_image={on_bad_image!r} is unknown: use skip or error.")
    t0 = time.perf_counter()
    reasons = {}
    for i, e in enumerate(part.x):
        if isinstance(e, str):
            why = screen_file(e, max_pixels)
            if why:
                reasons[i] = why
    rest = np.array([i for i in range(len(part)) if i not in reasons], dtype=np.int64)
    for j in find_undecodable(part.x[rest] if len(rest) else part.x[:0], decode):
        reasons[int(rest[j])] = "cannot be decoded (corrupt, truncated or not an image)"
    bad = sorted(reasons)
    log.info("checked %d images in %s in %.1fs: %d cannot be used", len(part), where, time.perf_counter() - t0, len(bad))
    bad_names = [printable(part.keys[i]) for i in bad]
    described = [f"{printable(part.keys[i])} ({reasons[i]})" for i in bad]
    if bad and on_bad_image == "error":
        shown = ", ".join(described[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise UserError(
            f"{len(bad)} file(s) in {where} cannot be used as images: {shown}; fix or remove them, or pass "
            "--on_bad_image=skip to train without them."
        )
    if bad:
        log.warning("skipped %d file(s) that cannot be used as images (first: %s)", len(bad), "; ".join(described[:5]))
    keep = np.ones(len(part), dtype=bool)
    keep[bad] = False
    y = part.y
    counts = {
        c: {"read": int(((y == i) & keep).sum()), "skipped": int(((y == i) & ~keep).sum())} for i, c in enumerate(class_names)
    }
    return part.take(keep, part.origin), counts, bad_names
