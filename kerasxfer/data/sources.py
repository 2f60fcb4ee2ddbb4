"""Where examples come from: built-in digits, the synthetic task, and folders of
class sub-folders (TensorFlow Datasets, ``tfds:NAME``, are in :mod:`kerasxfer.data.tfds`).

A source returns a :class:`SourceSplit`: train and val examples (numpy
arrays of small images, file paths, or encoded image bytes), integer labels,
class names, and a ``decode`` function that turns one example into an image
tensor.  Files and tfds records go through one decoder,
:func:`decode_image_bytes`, which reads JPEG (at reduced size when that is
enough), PNG, GIF (first frame), BMP and WebP, and always gives RGB.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import time
from typing import Callable

import numpy as np
import tensorflow as tf

from kerasxfer.config import BAD_IMAGE_MODES
from kerasxfer.errors import UserError

log = logging.getLogger("kerasxfer")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".webp")
_VAL_DIRS = ("val", "validation")


@dataclasses.dataclass
class SourceSplit:
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    class_names: list
    decode: Callable  # (example tensor) -> uint8 image tensor (H, W, C), C in {1, 3}
    description: str
    info: dict = dataclasses.field(default_factory=dict)
    val_decode: Callable = None  # when validation examples decode differently


# ----------------------------------------------------------------- digits
def digits_source(val_fraction: float, seed: int) -> SourceSplit:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels) as uint8."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = d.target.astype(np.int32)
    tr_x, va_x, tr_y, va_y = train_test_split(
        images, labels, test_size=val_fraction, random_state=seed, stratify=labels
    )
    return SourceSplit(
        tr_x, tr_y, va_x, va_y,
        class_names=[str(i) for i in range(10)],
        decode=lambda x: x,
        description="scikit-learn digits (1,797 real 8x8 handwritten digits)",
    )


# -------------------------------------------------------------- synthetic
def synthetic_source(num_train: int, num_val: int, image_size: int, seed: int) -> SourceSplit:
    """The procedural shapes-and-textures task of :mod:`kerasxfer.data.synthetic`.

    Examples are image indices; each image is drawn from its index inside the
    pipeline (train and val are different draws: split 0 and 1).
    """
    from kerasxfer.data import synthetic

    def decode_for(split):
        return lambda i: synthetic.make_image(i, seed, split, image_size)[0]

    train_x, val_x = np.arange(num_train, dtype=np.int64), np.arange(num_val, dtype=np.int64)
    return SourceSplit(
        train_x, (train_x % synthetic.NUM_CLASSES).astype(np.int32),
        val_x, (val_x % synthetic.NUM_CLASSES).astype(np.int32),
        class_names=list(synthetic.CLASS_NAMES),
        decode=decode_for(0),
        description=f"synthetic shapes x textures ({synthetic.NUM_CLASSES} classes, procedural, seed {seed})",
        val_decode=decode_for(1),
    )


# ---------------------------------------------------------------- folders
def is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


def _class_dirs(root: str) -> list:
    return sorted(
        e.name for e in os.scandir(root) if e.is_dir() and not is_hidden(e.name)
    )


def walk_files(folder: str) -> list:
    """Every non-hidden file under ``folder`` (recursively, hidden folders skipped), sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        out += [os.path.join(dirpath, f) for f in sorted(filenames) if not is_hidden(f)]
    return out


def is_image_path(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder: str):
    """Image files under ``folder`` (recursively, by extension), and the count of other files."""
    files = walk_files(folder)
    images = [f for f in files if is_image_path(f)]
    return images, len(files) - len(images)


def _collect(root: str, class_names: list):
    """Image paths and labels of every class folder, and the count of ignored files."""
    paths, labels, ignored = [], [], 0
    for i, c in enumerate(class_names):
        folder = os.path.join(root, c)
        files = []
        if os.path.isdir(folder):
            files, other = list_images(folder)
            ignored += other
        paths += files
        labels += [i] * len(files)
    return np.array(paths, dtype=object), np.array(labels, dtype=np.int32), ignored


def _hash_unit(seed: int, key: str) -> float:
    """A number in [0, 1) that depends only on the seed and ``key``."""
    h = hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def stratified_split(paths, labels, root, val_fraction: float, seed: int, class_names=None, keys=None):
    """Split each class by a seeded hash of each example's key.

    The key is the file's path under ``root`` (or ``keys[i]`` when given,
    e.g. a tfds record's split and index).  An example goes to val when its
    hash, a number in [0, 1), is below ``val_fraction``: its side depends on
    its own key and the seed only, never on the listing order or on the
    other files, so adding or removing files moves none of the others.
    Each class gets about ``val_fraction`` of its examples in val; a class
    that the rule would leave with no val (or no train) example gives its
    lowest-hash example to val (highest to train), which only happens in
    classes of a few images.
    """
    if keys is None:
        keys = [os.path.relpath(p, root) for p in paths]
    val_mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            raise UserError(
                f"class {class_names[c] if class_names else int(c)!r} has only "
                f"{len(idx)} image: a train/val split needs at least 2 per class; add images."
            )
        h = np.array([_hash_unit(seed, keys[i]) for i in idx])
        in_val = h < val_fraction
        if not in_val.any():
            in_val[np.argmin(h)] = True
        if in_val.all():
            in_val[np.argmax(h)] = False
        val_mask[idx[in_val]] = True
    return val_mask


# ------------------------------------------------------------------ decode
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


def check_images(x, y, class_names, names, on_bad_image: str, where: str, decode):
    """Drop (``skip``) or refuse (``error``) the examples that cannot be decoded.

    ``names[i]`` is how example ``i`` is shown to the user (a relative path,
    or a tfds record id).  Returns the kept ``x``, ``y`` and per-class counts
    ``{class: {"read": n, "skipped": k}}`` plus the skipped names.
    """
    if on_bad_image not in BAD_IMAGE_MODES:
        raise UserError(f"--on_bad_image={on_bad_image!r} is unknown: use skip or error.")
    t0 = time.perf_counter()
    bad = find_undecodable(x, decode)
    log.info("checked %d images in %s in %.1fs: %d cannot be decoded", len(x), where, time.perf_counter() - t0, len(bad))
    bad_names = [names[i] for i in bad]
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
    keep = np.ones(len(x), dtype=bool)
    keep[bad] = False
    counts = {
        c: {"read": int(((y == i) & keep).sum()), "skipped": int(((y == i) & ~keep).sum())}
        for i, c in enumerate(class_names)
    }
    return x[keep], y[keep], counts, bad_names


def merge_counts(a: dict, b: dict) -> dict:
    return {c: {k: a[c][k] + b[c][k] for k in ("read", "skipped")} for c in a}


def _image_classes(root: str):
    """Class sub-folders of ``root`` that hold at least one image, and the names of empty ones."""
    names, empty = [], []
    for c in _class_dirs(root):
        (names if list_images(os.path.join(root, c))[0] else empty).append(c)
    return names, empty


def _checked(x, y, class_names, root, on_bad_image, decode):
    return check_images(x, y, class_names, [os.path.relpath(p, root) for p in x], on_bad_image, root, decode)


def _train_val_folders(root, val_dir, on_bad_image, decode):
    """``root/train/<class>/`` and ``root/<val_dir>/<class>/``: the split is the user's."""
    train_root, val_root = os.path.join(root, "train"), os.path.join(root, val_dir)
    class_names, empty = _image_classes(train_root)
    _check_classes(class_names, train_root, empty)
    extra = sorted(set(_image_classes(val_root)[0]) - set(class_names))
    if extra:
        raise UserError(f"{val_root!r} has classes missing from train/ ({', '.join(extra)}): give every class train images.")
    tr_x, tr_y, ign1 = _collect(train_root, class_names)
    va_x, va_y, ign2 = _collect(val_root, class_names)
    tr_x, tr_y, c1, bad1 = _checked(tr_x, tr_y, class_names, root, on_bad_image, decode)
    va_x, va_y, c2, bad2 = _checked(va_x, va_y, class_names, root, on_bad_image, decode)
    if len(va_x) == 0:
        raise UserError(f"{val_root!r} holds no readable images: add validation images.")
    return (tr_x, tr_y, va_x, va_y), class_names, empty, ign1 + ign2, bad1 + bad2, merge_counts(c1, c2)


def _flat_folder(root, val_fraction, seed, on_bad_image, decode):
    """``root/<class>/``: split per class by a seeded hash of each path (:func:`stratified_split`)."""
    class_names, empty = _image_classes(root)
    _check_classes(class_names, root, empty)
    x, y, ignored = _collect(root, class_names)
    x, y, counts, bad = _checked(x, y, class_names, root, on_bad_image, decode)
    val_mask = stratified_split(x, y, root, val_fraction, seed, class_names)
    return (x[~val_mask], y[~val_mask], x[val_mask], y[val_mask]), class_names, empty, ignored, bad, counts


def folder_source(root: str, val_fraction: float, seed: int, on_bad_image: str = "skip",
                  image_size: int | None = None) -> SourceSplit:
    """A folder of class sub-folders, with or without train/ and val/ inside.

    Hidden files and folders, files that are not images (by extension, in
    any case) and sub-folders without images are ignored and counted.
    Images that cannot be decoded are skipped and counted (``on_bad_image=
    "skip"``) or stop the run before training with their list (``"error"``).
    ``image_size`` lets large JPEGs decode at reduced size.
    """
    if not os.path.isdir(root):
        raise UserError(f"dataset folder {root!r} does not exist: pass an existing folder.")
    decode = functools.partial(decode_image_file, min_side=image_size)
    subdirs = _class_dirs(root)
    val_dir = next((d for d in _VAL_DIRS if d in subdirs), None)
    if "train" in subdirs and val_dir:
        layout = f"train/ and {val_dir}/"
        split, class_names, empty, ignored, bad, counts = _train_val_folders(root, val_dir, on_bad_image, decode)
    else:
        layout = f"flat, split {1 - val_fraction:.0%}/{val_fraction:.0%} by seed {seed}"
        split, class_names, empty, ignored, bad, counts = _flat_folder(root, val_fraction, seed, on_bad_image, decode)
    tr_x, tr_y, va_x, va_y = split
    for i, c in enumerate(class_names):
        if not (tr_y == i).any():
            raise UserError(f"class {c!r} has no readable training image: add images to it or remove it.")
    if ignored:
        log.info("ignored %d non-image file(s) under %s", ignored, root)
    if empty:
        log.info("ignored %d sub-folder(s) without images under %s: %s", len(empty), root, ", ".join(empty))
    return SourceSplit(
        tr_x.astype(str), tr_y, va_x.astype(str), va_y,
        class_names=class_names,
        decode=decode,
        description=f"image folder {os.path.abspath(root)} ({layout})",
        info={
            "ignored_files": ignored,
            "ignored_empty_folders": empty,
            "skipped_undecodable": len(bad),
            "skipped_paths": bad[:20],
            "files_per_class": counts,
        },
    )


def _check_classes(class_names, root, empty=()):
    ignored = f" ({len(empty)} sub-folder(s) without images ignored: {', '.join(empty)})" if empty else ""
    if not class_names:
        raise UserError(
            f"{root!r} has no class sub-folders with images{ignored}: put each class's images in its own "
            "sub-folder (e.g. cats/, dogs/)."
        )
    if len(class_names) < 2:
        raise UserError(
            f"{root!r} has a single class ({class_names[0]}){ignored}: classification needs at "
            "least 2 class sub-folders with images."
        )
