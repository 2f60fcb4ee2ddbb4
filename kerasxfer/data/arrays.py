"""Images decoded and resized once into a uint8 array ``(N, S, S, 3)``: in memory, or in a ``.npy`` cache file.

:func:`to_rgb_resized` is the one resize of kerasxfer (training, prediction
and the benchmarks use it); :func:`decode_all` decodes every example of a
split in parallel into the array :mod:`kerasxfer.data.pipeline` gathers
batches from.
"""

from __future__ import annotations

import hashlib
import logging
import os

import numpy as np
import tensorflow as tf

from kerasxfer import fsio
from kerasxfer.errors import UserError, file_in_the_way
from kerasxfer.fsio import available_memory

log = logging.getLogger("kerasxfer")
_UNWRITABLE_CACHES: set = set()  # cache folders already said to be unwritable in this process
AUTOTUNE = tf.data.AUTOTUNE


# ------------------------------------------------------------------ resize
def to_rgb_resized(img, image_size: int, resize: str = "squash"):
    """uint8 image (H, W, 1|3) -> uint8 RGB (S, S, 3), bilinear, antialiased when shrinking.

    ``squash`` stretches the whole image to the square; ``crop`` takes the
    centre square (the short side) first; ``pad`` scales the long side to
    ``S`` and pads the short one with black, keeping the aspect ratio.
    """
    if resize == "crop":
        shape = tf.shape(img)
        side = tf.minimum(shape[0], shape[1])
        img = tf.image.crop_to_bounding_box(img, (shape[0] - side) // 2, (shape[1] - side) // 2, side, side)
    if resize == "pad":
        img = tf.image.resize_with_pad(img, image_size, image_size, method="bilinear", antialias=True)
    else:
        img = tf.image.resize(img, (image_size, image_size), method="bilinear", antialias=True)
    img = tf.cast(tf.clip_by_value(tf.round(img), 0.0, 255.0), tf.uint8)
    if img.shape[-1] == 1:
        img = tf.image.grayscale_to_rgb(img)
    img.set_shape((image_size, image_size, 3))
    return img


# ------------------------------------------------------------- decode once
def cache_key(x, y, image_size: int, tag: str) -> str:
    """A name for the decoded cache of examples ``x``: it changes when any input changes.

    Files contribute their path and the sha256 of their bytes (a file rewritten with its size and modification
    time kept, ``cp -p`` or ``rsync -t``, is another key); in-memory examples (bytes, arrays) their content.
    """
    h = hashlib.sha256(f"{tag}:{image_size}:{len(y)}".encode())
    h.update(np.asarray(y).tobytes())
    for e in x:
        if isinstance(e, str) and os.path.exists(e):
            h.update(f"{os.path.abspath(e)}|{fsio.sha256_of(e)}\n".encode("utf-8"))
        elif isinstance(e, (bytes, str)):
            h.update(e if isinstance(e, bytes) else e.encode("utf-8"))
        else:
            h.update(np.asarray(e).tobytes())
    return f"{tag}-{image_size}px-{h.hexdigest()[:16]}"


def _cached_array(path: str, shape: tuple):
    """The decoded array in ``path`` if it is complete and of ``shape``, else None (a damaged file is removed)."""
    if not os.path.isfile(path):
        return None
    try:
        arr = np.load(path, mmap_mode="r")
        if arr.shape == shape and arr.dtype == np.uint8:
            return arr
    except (OSError, ValueError):
        pass
    log.warning("the decoded-image cache %s is damaged or stale: decoding again", path)
    os.remove(path)
    return None


def check_memory(num_images: int, image_size: int, what: str) -> None:
    """One sentence, before anything is allocated, when ``num_images`` decoded images will not fit in memory."""
    need, have = num_images * image_size * image_size * 3, available_memory()
    if have is not None and need > 0.8 * have:
        raise UserError(
            f"{what}: {num_images:,} images of {image_size}x{image_size} need {need / 2**30:.1f} GiB of "
            f"memory once decoded, more than the {have / 2**30:.1f} GiB this machine has free: pass "
            "--cache_dir=FOLDER (decoded images on disk), a smaller --image_size, or fewer images."
        )


def decode_all(
    x, decode, image_size: int, resize: str = "squash", cache_path: str | None = None, deterministic: bool = True
) -> np.ndarray:
    """Every example of ``x`` decoded and resized once, in parallel: a uint8 array ``(N, S, S, 3)``.

    With ``cache_path`` the array is a memory-mapped ``.npy`` file there,
    written under a temporary name and renamed when complete (so a killed
    writer leaves nothing that a later run would trust), and reused when it
    exists.  Images land at their own index whatever order parallel decoding
    finishes in, so ``deterministic=False`` only makes decoding faster.
    """
    shape = (len(x), image_size, image_size, 3)
    if cache_path:
        cached = _cached_array(cache_path, shape)
        if cached is not None:
            return cached
    ds = (
        tf.data.Dataset.from_tensor_slices((np.arange(len(x)), x))
        .map(
            lambda i, e: (i, to_rgb_resized(decode(e), image_size, resize)),
            num_parallel_calls=AUTOTUNE,
            deterministic=deterministic,
        )
        .batch(256)
    )
    if not cache_path:
        check_memory(len(x), image_size, "the images cannot be decoded into memory")
        return _fill(np.empty(shape, np.uint8), ds)
    try:
        os.makedirs(os.path.dirname(cache_path) or ".", exist_ok=True)
        with fsio.atomic_path(cache_path) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            _fill(out, ds)
            out.flush()
            del out
        return np.load(cache_path, mmap_mode="r")
    except OSError as e:  # a read-only or full --cache_dir: the run goes on, in memory
        folder = os.path.dirname(cache_path)
        if folder not in _UNWRITABLE_CACHES:  # said once, not once per split
            _UNWRITABLE_CACHES.add(folder)
            blocker = file_in_the_way(folder)
            why = f"{blocker} is a file, not a folder" if blocker else (e.strerror or str(e))
            log.warning("the decoded-image cache cannot be written to %s (%s): decoding into memory instead", folder, why)
        return _fill(np.empty(shape, np.uint8), ds)


def _fill(out: np.ndarray, ds) -> np.ndarray:
    try:
        for idx, images in ds.as_numpy_iterator():
            out[idx] = images
    except tf.errors.OpError as e:  # checked a moment ago: the file changed (truncated, replaced) since then
        reason = str(e.message).strip().splitlines()[0][:160] if getattr(e, "message", "") else type(e).__name__
        raise UserError(
            f"an image that passed the check could not be decoded a moment later ({reason}): a file "
            "changed while kerasxfer read the folder; run the same command again."
        ) from None
    return out
