"""Where examples come from: built-in digits, the synthetic task, and folders of
class sub-folders (TensorFlow Datasets, ``tfds:NAME``, are in :mod:`kerasxfer.data.tfds`).

How examples are divided into splits, folds and subsets is
:mod:`kerasxfer.data.splitting`.  A source returns a :class:`SourceSplit`: three disjoint :class:`Split` s —
train, validation and test — of examples (numpy arrays of small images, file
paths, or encoded image bytes) with integer labels and a stable key each,
the class names, and a ``decode`` function that turns one example into an
image tensor (files and tfds records all go through
:func:`kerasxfer.data.decode.decode_image_bytes`).
"""

from __future__ import annotations

import functools
import logging
import os

import numpy as np

from kerasxfer.data.decode import DEFAULT_MAX_PIXELS, check_images, decode_image_file
from kerasxfer.data.duplicates import dedupe
from kerasxfer.data.split import SourceSplit, Split
from kerasxfer.data.splitting import carve_missing, check_train_classes, merge_counts, split_three
from kerasxfer.errors import UserError

log = logging.getLogger("kerasxfer")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".webp")


# ----------------------------------------------------------------- digits
def digits_source(val_fraction: float, test_fraction: float, seed: int) -> SourceSplit:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels) as uint8, split three ways by seed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = d.target.astype(np.int32)
    names = [str(i) for i in range(10)]
    everything = Split(images, labels, [f"digits[{i}]" for i in range(len(labels))], "the 1,797 digits")
    train, val, test = split_three(everything, val_fraction, test_fraction, seed, names)
    return SourceSplit(
        train,
        val,
        test,
        class_names=names,
        decode=lambda x: x,
        description="scikit-learn digits (1,797 real 8x8 handwritten digits)",
    )


# -------------------------------------------------------------- synthetic
def synthetic_source(num_train: int, num_val: int, num_test: int, image_size: int, seed: int) -> SourceSplit:
    """The procedural shapes-and-textures task of :mod:`kerasxfer.data.synthetic`.

    Examples are image indices; each image is drawn from its index inside the
    pipeline, and the three splits are different draws (split 0, 1 and 2).
    """
    from kerasxfer.data import synthetic
    from kerasxfer.data.arrays import check_memory

    check_memory(num_train + num_val + num_test, image_size, "the synthetic dataset does not fit")

    def part(split, n, name):
        x = np.arange(n, dtype=np.int64)
        decode = lambda i: synthetic.make_image(i, seed, split, image_size)[0]  # noqa: E731
        return Split(
            x,
            (x % synthetic.NUM_CLASSES).astype(np.int32),
            [f"{name}[{i}]" for i in range(n)],
            f"drawn procedurally ({name} draws, seed {seed})",
            decode,
        )

    return SourceSplit(
        part(0, num_train, "train"),
        part(1, num_val, "val"),
        part(2, num_test, "test"),
        class_names=list(synthetic.CLASS_NAMES),
        decode=None,
        description=f"synthetic shapes x textures ({synthetic.NUM_CLASSES} classes, procedural, seed {seed})",
    )


# ---------------------------------------------------------------- folders
def is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


def _is_dir(entry) -> bool:
    """``entry.is_dir()``, False (with a warning) for an entry that cannot be followed (a symlink loop)."""
    try:
        return entry.is_dir()
    except OSError as e:
        log.warning("ignored %s: %s", entry.path, e.strerror or e)
        return False


def _class_dirs(root: str) -> list:
    return sorted(e.name for e in os.scandir(root) if not is_hidden(e.name) and _is_dir(e))


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


def _collect(root: str, class_names: list, keys_from: str, origin: str):
    """The images of every class folder under ``root`` as a :class:`Split` (keys relative to ``keys_from``),
    and the count of ignored files."""
    paths, labels, ignored = [], [], 0
    for i, c in enumerate(class_names):
        folder = os.path.join(root, c)
        files = []
        if os.path.isdir(folder):
            files, other = list_images(folder)
            ignored += other
        paths += files
        labels += [i] * len(files)
    keys = [os.path.relpath(p, keys_from) for p in paths]
    return Split(np.array(paths, dtype=object), np.array(labels, dtype=np.int32), keys, origin), ignored


def _image_classes(root: str):
    """Class sub-folders of ``root`` that hold at least one image, and the names of empty ones.

    A class folder that is (a link to) the same folder as another, or lies inside another, is refused: its
    images would be read under two labels, in training and in test."""
    names, empty = [], []
    for c in _class_dirs(root):
        (names if list_images(os.path.join(root, c))[0] else empty).append(c)
    real = {c: os.path.realpath(os.path.join(root, c)) for c in names}
    links_first = sorted(names, key=lambda c: not os.path.islink(os.path.join(root, c)))
    for a in links_first:
        for b in names:
            if a != b and (real[a] == real[b] or real[a].startswith(real[b].rstrip(os.sep) + os.sep)):
                link = "a link to" if real[a] == real[b] else "inside"
                raise UserError(
                    f"class folder {a!r} of {root!r} is {link} class folder {b!r} ({real[a]}): the same images "
                    "would be read under two labels; remove the link or copy the images you mean."
                )
    return names, empty


SPLIT_DIRS = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}


def _split_dirs(root: str) -> dict:
    """``{"train": "train", "val": "validation", "test": None}``: the split folders ``root`` has."""
    subdirs = _class_dirs(root)
    return {split: next((d for d in names if d in subdirs), None) for split, names in SPLIT_DIRS.items()}


def _split_folders(root, dirs, val_fraction, test_fraction, seed, on_bad_image, decode, max_pixels):
    """``root/train/<class>/`` and ``root/val/`` and/or ``root/test/``; a missing val/ or test/ is carved from train/."""
    train_root = os.path.join(root, dirs["train"])
    class_names, empty = _image_classes(train_root)
    _check_classes(class_names, train_root, empty)
    parts, counts, bad, ignored = {}, None, [], 0
    for split, d in dirs.items():
        if d is None:
            continue
        folder = os.path.join(root, d)
        extra = sorted(set(_image_classes(folder)[0]) - set(class_names))
        if extra:
            raise UserError(f"{folder!r} has classes missing from train/ ({', '.join(extra)}): give every class train images.")
        part, ign = _collect(folder, class_names, root, f"{d}/")
        part, c, b = check_images(part, class_names, on_bad_image, root, decode, max_pixels)
        if split != "train" and len(part) == 0:
            raise UserError(f"{folder!r} holds no readable images: add images or remove the folder.")
        parts[split], ignored, bad = part, ignored + ign, bad + b
        counts = c if counts is None else merge_counts(counts, c)
    parts, dupes = dedupe(parts)
    carve_missing(parts, val_fraction, test_fraction, seed, class_names)
    return parts, class_names, empty, ignored, bad, counts, dupes


def _flat_folder(root, val_fraction, test_fraction, seed, on_bad_image, decode, max_pixels):
    """``root/<class>/``: split per class by a seeded hash of each path (:func:`kerasxfer.data.splitting.stratified_assign`)."""
    class_names, empty = _image_classes(root)
    _check_classes(class_names, root, empty)
    part, ignored = _collect(root, class_names, root, "the folder")
    part, counts, bad = check_images(part, class_names, on_bad_image, root, decode, max_pixels)
    found, dupes = dedupe({"all": part})
    train, val, test = split_three(found["all"], val_fraction, test_fraction, seed, class_names)
    return {"train": train, "val": val, "test": test}, class_names, empty, ignored, bad, counts, dupes


def folder_source(
    root: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    on_bad_image: str = "skip",
    image_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> SourceSplit:
    """A folder of class sub-folders: flat, or with ``train/`` and ``val/`` (or ``validation/``) and/or ``test/``.

    Flat: each class is split into train, val and test by a seeded hash of
    each path (``val_fraction``, ``test_fraction``).  With split folders
    (``train/`` plus at least one of the others) they are used as they are;
    a missing ``val/`` or ``test/`` is carved from ``train/`` the same way
    (never from the other held-out folder).  Hidden files and folders, files
    that are not images (by extension, in any case) and sub-folders without
    images are ignored and counted.  Images that cannot be decoded are
    skipped and counted (``on_bad_image="skip"``) or stop the run before
    training with their list (``"error"``), like files that are not regular
    files, are too large or declare more than ``max_pixels`` pixels.
    ``image_size`` lets large JPEGs decode at reduced size.
    """
    if not os.path.isdir(root):
        raise UserError(f"dataset folder {root!r} does not exist: pass an existing folder.")
    decode = functools.partial(decode_image_file, min_side=image_size)
    dirs = _split_dirs(root)
    if dirs["train"] and (dirs["val"] or dirs["test"]):
        layout = " and ".join(f"{d}/" for d in dirs.values() if d)
        found = _split_folders(root, dirs, val_fraction, test_fraction, seed, on_bad_image, decode, max_pixels)
    else:
        layout = f"flat, split {1 - val_fraction - test_fraction:.0%}/{val_fraction:.0%}/{test_fraction:.0%} by seed {seed}"
        found = _flat_folder(root, val_fraction, test_fraction, seed, on_bad_image, decode, max_pixels)
    parts, class_names, empty, ignored, bad, counts, dupes = found
    if dupes.sentence():
        layout += "; " + dupes.sentence()
    check_train_classes(parts["train"], class_names)
    if ignored:
        log.info("ignored %d non-image file(s) under %s", ignored, root)
    if empty:
        log.info("ignored %d sub-folder(s) without images under %s: %s", len(empty), root, ", ".join(empty))
    for p in parts.values():
        p.x = p.x.astype(str)
    return SourceSplit.from_parts(
        parts,
        class_names,
        decode,
        f"image folder {os.path.abspath(root)} ({layout})",
        bad,
        counts,
        ignored_files=ignored,
        ignored_empty_folders=empty,
        **dupes.record(),
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
