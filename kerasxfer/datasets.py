"""What ``dataset`` may name, checked before TensorFlow loads: the built-ins, ``tfds:NAME``, a folder, a CSV/TSV
file, or arrays handed over from Python (registered here under a name made of their content's hash).

The sources themselves are in :mod:`kerasxfer.data.sources` (folders),
:mod:`kerasxfer.data.tables` (CSV/TSV files and arrays) and
:mod:`kerasxfer.data.tfds`.  No TensorFlow.
"""

from __future__ import annotations

import hashlib
import os

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
    """
    import numpy as np

    x, y = np.asarray(images), np.asarray(labels)
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
        raise UserError(f"images of shape {x.shape} are not images: pass an array (N, H, W, 3) or (N, H, W) "
                        "(grey), uint8 in [0, 255] or float in [0, 1] or [0, 255].")
    if y.ndim != 1 or len(y) != len(x):
        raise UserError(f"labels of shape {y.shape} do not match {len(x)} images: pass one label per image "
                        "(integers or strings).")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)) or not np.isfinite(x).all():
        raise UserError(f"images of dtype {x.dtype} (or with NaN/infinity) are not pixel values: pass uint8 or "
                        "float images.")
    h = hashlib.sha256()
    h.update(f"{x.shape}{x.dtype}".encode())
    h.update(np.ascontiguousarray(x).tobytes())
    h.update("\0".join(map(str, y.tolist())).encode("utf-8"))
    name = ARRAYS_PREFIX + h.hexdigest()[:16]
    _ARRAYS[name] = (x, y)
    return name


def registered_arrays(name: str):
    """The ``(images, labels)`` registered as ``name``, or one sentence when this process does not hold them."""
    if name not in _ARRAYS:
        raise UserError(f"--dataset={name} names arrays handed over from Python in another process: pass the same "
                        "arrays again, e.g. kerasxfer.study((images, labels), ...), to continue or repeat the run.")
    return _ARRAYS[name]


def is_table(dataset: str) -> bool:
    return dataset.lower().endswith(TABLE_EXTENSIONS)


def check_dataset(cfg) -> None:
    """Refuse a ``cfg.dataset`` (a :class:`~kerasxfer.config.DataConfig`) that names nothing usable."""
    dataset = cfg.dataset
    if dataset.startswith(TFDS_PREFIX):
        if not dataset[len(TFDS_PREFIX):].strip():
            raise UserError("--dataset=tfds: needs a dataset name, e.g. --dataset=tfds:tf_flowers.")
        if cfg.tfds_data_dir is not None and not os.path.isdir(cfg.tfds_data_dir):
            raise UserError(
                f"--tfds_data_dir={cfg.tfds_data_dir!r} is not a folder: pass the folder that holds the "
                "prepared tfds datasets (default ~/tensorflow_datasets)."
            )
    elif dataset.startswith(ARRAYS_PREFIX):
        registered_arrays(dataset)
    elif is_table(dataset):
        if not os.path.isfile(dataset):
            what = "is not a regular file" if os.path.exists(dataset) else "does not exist"
            raise UserError(f"--dataset={dataset!r} {what}: pass a CSV/TSV file of path,label[,split] rows.")
    elif dataset not in BUILTIN_DATASETS and not os.path.isdir(dataset):
        what = "is a file, not a folder" if os.path.exists(dataset) else "does not exist"
        raise UserError(
            f"--dataset={dataset!r} is neither a built-in dataset ({', '.join(BUILTIN_DATASETS)}) nor a "
            f"folder ({what}): pass --dataset=digits, --dataset=tfds:NAME, a CSV/TSV file of path,label[,split] "
            "rows or the path of a folder of class sub-folders."
        )
    if dataset == "synthetic" and min(cfg.synthetic_train, cfg.synthetic_val, cfg.synthetic_test) < 24:
        raise UserError("the synthetic dataset needs at least 24 train, 24 val and 24 test images (one per class).")
