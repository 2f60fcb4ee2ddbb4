"""The readers of the input sources in :data:`kerasxfer.datasets.INPUT_SOURCES`, one signature for all.

``open_<source>(cfg, split_seed) -> SourceSplit`` reads a
:class:`~kerasxfer.config.DataConfig`'s labelled examples split into train,
val and test; ``<source>_sides(cfg) -> list | None`` reads the short sides of
up to :data:`SAMPLE` of its images from their headers (nothing decoded), for
``--image_size=auto`` (:mod:`kerasxfer.data.sizes`); None: the images have
any size.  The reading itself is in :mod:`kerasxfer.data.sources` (folders,
the built-ins), :mod:`kerasxfer.data.tables` (CSV/TSV files, arrays) and
:mod:`kerasxfer.data.tfds`.
"""

from __future__ import annotations

import math

from kerasxfer.data import sources, tables
from kerasxfer.data.decode import declared, screen_file
from kerasxfer.data.split import SourceSplit
from kerasxfer.datasets import TFDS_PREFIX, registered_arrays

#: How many images' headers ``--image_size=auto`` reads, evenly spaced over the dataset.
SAMPLE = 256


def _evenly(items: list, n: int) -> list:
    """At most ``n`` of ``items``, evenly spaced (the same ones on every machine)."""
    if len(items) <= n:
        return items
    return [items[math.floor(i * len(items) / n)] for i in range(n)]


def _header_sides(sample: list) -> list | None:
    """Short sides of the images in ``sample`` (paths or encoded bytes) whose headers declare a size.

    A path is screened first (:func:`kerasxfer.data.decode.screen_file`): a FIFO would block the header read
    forever and a dangling link would end the study; both are left out here and counted as bad images when
    the data are read."""
    readable = [x for x in sample if not (isinstance(x, str) and screen_file(x))]
    sides = [min(size) for size in (declared(x)[0] for x in readable) if size]
    return sides or None


# ------------------------------------------------------------------ built in
def open_digits(cfg, split_seed: int) -> SourceSplit:
    return sources.digits_source(cfg.val_fraction, cfg.test_fraction, split_seed)


def digits_sides(cfg) -> list:
    return [8]


def open_synthetic(cfg, split_seed: int) -> SourceSplit:
    return sources.synthetic_source(cfg.synthetic_train, cfg.synthetic_val, cfg.synthetic_test, cfg.image_size, split_seed)


def any_sides(cfg) -> None:
    return None


# ------------------------------------------------------------------ folders, tables, arrays
def open_folder(cfg, split_seed: int) -> SourceSplit:
    return sources.folder_source(
        cfg.dataset, cfg.val_fraction, cfg.test_fraction, split_seed, cfg.on_bad_image, cfg.image_size, cfg.max_image_pixels
    )


def folder_sides(cfg) -> list | None:
    return _header_sides(_evenly([f for f in sources.walk_files(cfg.dataset) if sources.is_image_path(f)], SAMPLE))


def open_table(cfg, split_seed: int) -> SourceSplit:
    return tables.table_source(
        cfg.dataset, cfg.val_fraction, cfg.test_fraction, split_seed, cfg.on_bad_image, cfg.image_size, cfg.max_image_pixels
    )


def table_sides(cfg) -> list | None:
    rows = tables.read_table(cfg.dataset)[0]
    return _header_sides(_evenly([tables.resolve(cfg.dataset, p) for p, _, _ in rows], SAMPLE))


def open_arrays(cfg, split_seed: int) -> SourceSplit:
    return tables.arrays_source(cfg.dataset, cfg.val_fraction, cfg.test_fraction, split_seed)


def arrays_sides(cfg) -> list:
    return [min(registered_arrays(cfg.dataset)[0].shape[1:3])]


# ------------------------------------------------------------------ TensorFlow Datasets
def open_tfds(cfg, split_seed: int) -> SourceSplit:
    from kerasxfer.data import tfds

    return tfds.tfds_source(
        cfg.dataset[len(TFDS_PREFIX) :],
        cfg.tfds_data_dir,
        cfg.val_fraction,
        cfg.test_fraction,
        split_seed,
        cfg.on_bad_image,
        cfg.image_size,
        download=cfg.tfds_download,
    )


def tfds_sides(cfg) -> list | None:
    from kerasxfer.data import tfds

    return _header_sides(tfds.encoded_sample(cfg.dataset[len(TFDS_PREFIX) :], cfg.tfds_data_dir, cfg.tfds_download, SAMPLE))
