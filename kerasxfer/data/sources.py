"""Where examples come from: built-in digits and folders of class sub-folders.

A source returns a :class:`SourceSplit`: train and val examples (numpy
arrays of small images, or file paths), integer labels, class names, and a
``decode`` function that turns one example into an image tensor.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from typing import Callable

import numpy as np
import tensorflow as tf

from kerasxfer.errors import UserError

log = logging.getLogger("kerasxfer")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
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


def list_images(folder: str):
    """Image files under ``folder`` (recursively), and the count of other files."""
    images, other = [], 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for f in sorted(filenames):
            if is_hidden(f):
                continue
            if f.lower().endswith(IMAGE_EXTENSIONS):
                images.append(os.path.join(dirpath, f))
            else:
                other += 1
    return images, other


def _collect(root: str, class_names: list, allow_empty: bool = False):
    """Image paths and labels of every class folder, and the count of ignored files."""
    paths, labels, ignored = [], [], 0
    for i, c in enumerate(class_names):
        folder = os.path.join(root, c)
        files = []
        if os.path.isdir(folder):
            files, other = list_images(folder)
            ignored += other
        if not files and not allow_empty:
            raise UserError(
                f"class folder {folder!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}): "
                "add images to it or remove it."
            )
        paths += files
        labels += [i] * len(files)
    return np.array(paths, dtype=object), np.array(labels, dtype=np.int32), ignored


def _hash_unit(seed: int, relpath: str) -> float:
    """A number in [0, 1) that depends only on the seed and the relative path."""
    h = hashlib.sha256(f"{seed}:{relpath}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def stratified_split(paths, labels, root: str, val_fraction: float, seed: int, class_names=None):
    """Split per class by a seeded hash of each file's path under ``root``.

    A file's side depends on its own path and the seed, not on the listing
    order, so adding files never moves existing ones.  Within a class the
    files with the lowest hashes go to val, ``round(n * val_fraction)`` of
    them (at least 1, and at least 1 stays in train).
    """
    val_mask = np.zeros(len(paths), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            raise UserError(
                f"class {class_names[c] if class_names else int(c)!r} has only "
                f"{len(idx)} image: a train/val split needs at least 2 per class; add images."
            )
        keys = np.array([_hash_unit(seed, os.path.relpath(paths[i], root)) for i in idx])
        n_val = min(max(1, int(round(len(idx) * val_fraction))), len(idx) - 1)
        val_mask[idx[np.argsort(keys)[:n_val]]] = True
    return val_mask


def decode_image_file(path):
    """Read and decode one image file to uint8 RGB (GIF: first frame)."""
    data = tf.io.read_file(path)
    img = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    img.set_shape([None, None, 3])
    return img


def find_undecodable(paths) -> list:
    """Paths among ``paths`` that TensorFlow cannot decode (corrupt, truncated, not images).

    Decodes every file once, in parallel, through the same op the pipeline
    uses; a file that fails is dropped by ``ignore_errors`` and so is missing
    from the indices that come back.
    """
    if len(paths) == 0:
        return []
    paths = np.asarray(paths, dtype=str)
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths))
    ds = ds.map(
        lambda i, p: (i, tf.shape(decode_image_file(p))[0]),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).ignore_errors()
    ok = np.zeros(len(paths), dtype=bool)
    for i, h in ds.batch(256).as_numpy_iterator():
        ok[i[h > 0]] = True
    return [str(p) for p in paths[~ok]]


def _drop_bad(x, y, root):
    bad = set(find_undecodable(x))
    if bad:
        shown = ", ".join(os.path.relpath(b, root) for b in sorted(bad)[:5])
        log.warning(
            "skipped %d file(s) that cannot be decoded as images (first: %s)", len(bad), shown
        )
    keep = np.array([p not in bad for p in x], dtype=bool)
    return x[keep], y[keep], sorted(bad)


def folder_source(root: str, val_fraction: float, seed: int) -> SourceSplit:
    """A folder of class sub-folders, with or without train/ and val/ inside."""
    if not os.path.isdir(root):
        raise UserError(f"dataset folder {root!r} does not exist: pass an existing folder.")
    subdirs = _class_dirs(root)
    val_dir = next((d for d in _VAL_DIRS if d in subdirs), None)
    if "train" in subdirs and val_dir:
        layout = f"train/ and {val_dir}/"
        class_names = _class_dirs(os.path.join(root, "train"))
        _check_classes(class_names, os.path.join(root, "train"))
        extra = sorted(set(_class_dirs(os.path.join(root, val_dir))) - set(class_names))
        if extra:
            raise UserError(
                f"{os.path.join(root, val_dir)!r} has classes missing from train/ "
                f"({', '.join(extra)}): give every class train images."
            )
        tr_x, tr_y, ign1 = _collect(os.path.join(root, "train"), class_names)
        va_x, va_y, ign2 = _collect(os.path.join(root, val_dir), class_names, allow_empty=True)
        tr_x, tr_y, bad1 = _drop_bad(tr_x, tr_y, root)
        va_x, va_y, bad2 = _drop_bad(va_x, va_y, root)
        if len(va_x) == 0:
            raise UserError(f"{os.path.join(root, val_dir)!r} holds no readable images: add validation images.")
        ignored, bad = ign1 + ign2, bad1 + bad2
    else:
        layout = f"flat, split {1 - val_fraction:.0%}/{val_fraction:.0%} by seed {seed}"
        class_names = subdirs
        _check_classes(class_names, root)
        x, y, ignored = _collect(root, class_names)
        x, y, bad = _drop_bad(x, y, root)
        val_mask = stratified_split(x, y, root, val_fraction, seed, class_names)
        tr_x, tr_y, va_x, va_y = x[~val_mask], y[~val_mask], x[val_mask], y[val_mask]
    for i, c in enumerate(class_names):
        if not (tr_y == i).any():
            raise UserError(
                f"class {c!r} has no readable training image: add images to it or remove it."
            )
    if ignored:
        log.info("ignored %d non-image file(s) under %s", ignored, root)
    return SourceSplit(
        tr_x.astype(str), tr_y, va_x.astype(str), va_y,
        class_names=class_names,
        decode=decode_image_file,
        description=f"image folder {os.path.abspath(root)} ({layout})",
        info={
            "ignored_files": ignored,
            "skipped_undecodable": len(bad),
            "skipped_paths": [os.path.relpath(b, root) for b in bad[:20]],
        },
    )


def _check_classes(class_names, root):
    if not class_names:
        raise UserError(
            f"{root!r} has no class sub-folders: put each class's images in its own "
            "sub-folder (e.g. cats/, dogs/)."
        )
    if len(class_names) < 2:
        raise UserError(
            f"{root!r} has a single class ({class_names[0]}): classification needs at "
            "least 2 class sub-folders."
        )
