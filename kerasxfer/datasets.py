"""What ``dataset`` may name, checked before TensorFlow loads: the built-ins, ``tfds:NAME``, a folder, a CSV/TSV
file, or arrays handed over from Python (registered here under a name made of their content's hash).

Each kind of name is one :class:`InputSource` in :data:`INPUT_SOURCES`, the
one table that names them (like the backbone families' table): how a name is
recognised and checked, and where its reader is.  The readers are in
:mod:`kerasxfer.data.readers` (over :mod:`kerasxfer.data.sources`, folders
and the built-ins; :mod:`kerasxfer.data.tables`, CSV/TSV files and arrays;
:mod:`kerasxfer.data.tfds`), loaded only when a source is read.  No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
from typing import Callable

from kerasxfer.errors import UserError

BUILTIN_DATASETS = ("digits", "synthetic")
TFDS_PREFIX = "tfds:"
ARRAYS_PREFIX = "arrays:"
#: A file of ``path,label[,split]`` rows: comma-separated (.csv) or tab-separated (.tsv).
TABLE_EXTENSIONS = (".csv", ".tsv")

_ARRAYS: dict = {}  # "arrays:<hash>" -> (images, labels) handed over in this process


def register_arrays(images, labels) -> str:
    """The dataset name of in-memory ``(images, labels)``: ``arrays:<sha256 of both, 16 hex>``.

    The same arrays give the same name (so a rerun continues and runs stay comparable); other arrays, another.
    What is kept is the images as uint8 (:func:`pixels_uint8`) and the labels checked (:func:`checked_labels`).
    """
    import numpy as np

    try:
        x = np.asarray(images)
    except ValueError:
        x = None
    if x is None or x.dtype == object:
        raise UserError(
            "the images are a ragged list (arrays of different shapes): pass one array (N, H, W, 3) of "
            "one size, or save the images as files in a folder of class sub-folders."
        )
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)) or len(x) == 0:
        raise UserError(
            f"images of shape {x.shape} are not images: pass an array (N, H, W, 3) or (N, H, W) "
            "(grey) of at least one image, uint8 in [0, 255], uint16, or float in [0, 1] or [0, 255]."
        )
    y = checked_labels(labels, len(x))
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)) or not np.isfinite(x).all():
        raise UserError(f"images of dtype {x.dtype} (or with NaN/infinity) are not pixel values: pass uint8 or float images.")
    h = hashlib.sha256()
    h.update(f"{x.shape}{x.dtype}".encode())
    h.update(np.ascontiguousarray(x).data)  # the buffer itself: no copy of a large array
    h.update("\0".join(map(str, y.tolist())).encode("utf-8"))
    name = ARRAYS_PREFIX + h.hexdigest()[:16]
    _ARRAYS[name] = (pixels_uint8(x), y)
    return name


def checked_labels(labels, n: int):
    """One label per image, all integers (whole floats count) or all strings; anything else one sentence."""
    import numbers

    import numpy as np

    try:
        values = list(labels.tolist() if hasattr(labels, "tolist") else labels)
    except TypeError:
        values = None
    if values is None or len(values) != n or any(isinstance(v, (list, tuple)) for v in values):
        shape = getattr(np.asarray(labels, dtype=object), "shape", None)
        raise UserError(f"labels of shape {shape} do not match {n} images: pass one label per image (integers or strings).")
    bad = next(
        (
            v
            for v in values
            if v is None
            or isinstance(v, bool)
            or (isinstance(v, float) and not (np.isfinite(v) and float(v).is_integer()))
            or not isinstance(v, (str, numbers.Number))
        ),
        "none",
    )
    if bad != "none":
        raise UserError(
            f"the label {bad!r} ({type(bad).__name__}) is not a class: labels are integers or strings "
            "(no None, NaN, booleans or fractions)."
        )
    kinds = {isinstance(v, str) for v in values}
    if len(kinds) > 1:
        s, k = next(v for v in values if isinstance(v, str)), next(v for v in values if not isinstance(v, str))
        raise UserError(
            f"the labels mix strings and numbers (e.g. {s!r} and {k!r}), so 1 and '1' would be one "
            "class or two by accident: pass all labels as strings or all as integers."
        )
    return np.array([str(v) for v in values]) if kinds == {True} else np.array([int(v) for v in values])


def pixels_uint8(x):
    """uint8 images from the rule the README states, said in one log line when not uint8 already: uint16 scaled
    by 255/65535; other integers as [0, 255]; floats as [0, 1] when every value is at most 1, as [0, 255]
    otherwise, unless 95 % or more are in [0, 1] (then a few stray values would turn the images black: refused).
    Converted in chunks, after a check that the copy fits in memory."""
    import logging

    import numpy as np

    from kerasxfer.fsio import available_memory

    if x.dtype == np.uint8:
        return x
    lo, hi, have = float(x.min()), float(x.max()), available_memory()
    if have is not None and x.size > 0.8 * have:
        raise UserError(
            f"the images' uint8 copy needs {x.size / 2**30:.1f} GiB of memory, more than the "
            f"{have / 2**30:.1f} GiB this machine has free: pass fewer or smaller images, or save them "
            "as files in a folder (decoded to the training size, not kept at full size)."
        )
    if lo < 0:
        raise UserError(
            f"the images hold negative values (min {lo:g}): pass pixel values, uint8 in [0, 255] or float in [0, 1] or [0, 255]."
        )
    if x.dtype == np.uint16:
        scale, rule = 255.0 / 65535.0, "uint16 images scaled to [0, 255] (x 255/65535)"
    elif np.issubdtype(x.dtype, np.integer):
        if hi > 255:
            raise UserError(f"{x.dtype} images hold values up to {hi:g}: pass uint8 in [0, 255] or uint16 (scaled).")
        scale, rule = 1.0, f"{x.dtype} images read as [0, 255]"
    elif hi <= 1.0:
        scale, rule = 255.0, "float images read as [0, 1] (every value is at most 1)"
    else:
        over = int((x > 1.0).sum())
        if hi > 255 or over < 0.05 * x.size:  # [0, 255] photos have most values above 1
            raise UserError(
                f"float images with values up to {hi:g} ({over:,} of {x.size:,} above 1) fit neither "
                "[0, 1] nor [0, 255]: clip them to [0, 1], or scale them to [0, 255]."
            )
        scale, rule = 1.0, f"float images read as [0, 255] (max {hi:g})"
    logging.getLogger("kerasxfer").info("arrays: %s", rule)
    out = np.empty(x.shape, np.uint8)
    step = max(1, (1 << 26) // max(1, x[0].size))  # about 64 M values (256 MB of float32) at a time
    for i in range(0, len(x), step):
        out[i : i + step] = np.clip(np.round(x[i : i + step].astype(np.float32) * scale), 0, 255)
    return out


def registered_arrays(name: str):
    """The ``(images, labels)`` registered as ``name``, or one sentence when this process does not hold them."""
    if name not in _ARRAYS:
        raise UserError(
            f"--dataset={name} names arrays handed over from Python in another process: pass the same "
            "arrays again, e.g. kerasxfer.study((images, labels), ...), to continue or repeat the run."
        )
    return _ARRAYS[name]


def is_table(dataset: str) -> bool:
    return dataset.lower().endswith(TABLE_EXTENSIONS)


# ------------------------------------------------------------------ the input sources, as data
def _no_check(cfg) -> None:
    """Nothing to check before TensorFlow loads."""


def _check_synthetic(cfg) -> None:
    if min(cfg.synthetic_train, cfg.synthetic_val, cfg.synthetic_test) < 24:
        raise UserError("the synthetic dataset needs at least 24 train, 24 val and 24 test images (one per class).")


def _check_tfds(cfg) -> None:
    if not cfg.dataset[len(TFDS_PREFIX) :].strip():
        raise UserError("--dataset=tfds: needs a dataset name, e.g. --dataset=tfds:tf_flowers.")
    if cfg.tfds_data_dir is not None and not os.path.isdir(cfg.tfds_data_dir):
        raise UserError(
            f"--tfds_data_dir={cfg.tfds_data_dir!r} is not a folder: pass the folder that holds the "
            "prepared tfds datasets (default ~/tensorflow_datasets)."
        )


def _check_arrays(cfg) -> None:
    registered_arrays(cfg.dataset)  # one sentence when this process does not hold them


def _check_table(cfg) -> None:
    if not os.path.isfile(cfg.dataset):
        what = "is not a regular file" if os.path.exists(cfg.dataset) else "does not exist"
        raise UserError(f"--dataset={cfg.dataset!r} {what}: pass a CSV/TSV file of path,label[,split] rows.")


def _check_folder(cfg) -> None:
    if not os.path.isdir(cfg.dataset):
        what = "is a file, not a folder" if os.path.exists(cfg.dataset) else "does not exist"
        raise UserError(
            f"--dataset={cfg.dataset!r} is neither a built-in dataset ({', '.join(BUILTIN_DATASETS)}) nor a "
            f"folder ({what}): pass --dataset=digits, --dataset=tfds:NAME, a CSV/TSV file of path,label[,split] "
            "rows or the path of a folder of class sub-folders."
        )


def _path_stem(dataset: str) -> str:
    return os.path.basename(os.path.normpath(os.path.expanduser(dataset)))


@dataclasses.dataclass(frozen=True)
class InputSource:
    """One kind of ``--dataset``: how its name is recognised and checked (here, before TensorFlow loads) and where
    its reader is (loaded on first use, as the backbone families' modules are).

    ``open`` and ``sides`` are ``"module:function"``: ``open(cfg, split_seed) -> SourceSplit`` reads the labelled
    examples split into train, val and test; ``sides(cfg) -> list | None`` the short sides of up to a few hundred
    images read from their headers for ``--image_size=auto`` (None: the images have any size).  Adding a source
    is its reader module plus one entry in :data:`INPUT_SOURCES`.
    """

    name: str
    matches: Callable[[str], bool]
    open: str
    sides: str
    check: Callable = _no_check  # (DataConfig) -> None: one sentence when the name names nothing usable
    stem: Callable[[str], str] = _path_stem  # the study folder's name for this dataset (before sanitising)
    in_process: bool = False  # the data live in this Python process only (no Ray worker can read them)

    def reader(self, which: str) -> Callable:
        module, function = getattr(self, which).split(":")
        return getattr(importlib.import_module(module), function)


_READERS = "kerasxfer.data.readers"
#: Every input source, tried in this order: the first whose ``matches`` accepts the name reads it.
INPUT_SOURCES = (
    InputSource("digits", lambda d: d == "digits", f"{_READERS}:open_digits", f"{_READERS}:digits_sides"),
    InputSource(
        "synthetic", lambda d: d == "synthetic", f"{_READERS}:open_synthetic", f"{_READERS}:any_sides", check=_check_synthetic
    ),
    InputSource(
        "tfds",
        lambda d: d.startswith(TFDS_PREFIX),
        f"{_READERS}:open_tfds",
        f"{_READERS}:tfds_sides",
        check=_check_tfds,
        stem=lambda d: d[len(TFDS_PREFIX) :],
    ),
    InputSource(
        "arrays",
        lambda d: d.startswith(ARRAYS_PREFIX),
        f"{_READERS}:open_arrays",
        f"{_READERS}:arrays_sides",
        check=_check_arrays,
        in_process=True,
    ),
    InputSource("table", is_table, f"{_READERS}:open_table", f"{_READERS}:table_sides", check=_check_table),
    InputSource("folder", lambda d: True, f"{_READERS}:open_folder", f"{_READERS}:folder_sides", check=_check_folder),
)


def source_of(dataset: str) -> InputSource:
    """The input source that reads ``dataset`` (a folder when nothing else claims the name)."""
    return next(s for s in INPUT_SOURCES if s.matches(dataset))


def check_dataset(cfg) -> None:
    """Refuse a ``cfg.dataset`` (a :class:`~kerasxfer.config.DataConfig`) that names nothing usable."""
    source_of(cfg.dataset).check(cfg)
