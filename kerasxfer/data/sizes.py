"""``--image_size=auto``: the image size a run trains at, chosen from the data and the backbone.

A pretrained backbone is best used at the size its ImageNet weights saw (its
*native* size: EfficientNet-Lite0 224, Lite1 240, Lite2 260, RegNet 224):
photos squeezed to 96 px lose what the backbone knows how to see (measured
on a 398-photo folder: 88.2 % at 96 px, 94.1 % at 224).  Small images gain
nothing from being blown up to 224 px but cost five times the compute, so:

* the median short side of the data's images (read from the image headers
  of up to :data:`SAMPLE` images, nothing decoded) at least
  :data:`PHOTO_SHORT_SIDE` px: the backbone's native size;
* smaller images: their median short side rounded up to a multiple of 32,
  between :data:`SMALL_SIZE` (the size at which ImageNet features still carry
  over to 8x8 digits in the demo) and the native size;
* the scratch CNN (no pretrained size to match): :data:`SCRATCH_SIZE`.

The choice and why are logged, stored in ``config.json``
(``data.image_size_choice``) and stated in the report.  An explicit
``--image_size`` always wins.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics

from kerasxfer.config import AUTO_SIZE, TFDS_PREFIX, Experiment
from kerasxfer.datasets import ARRAYS_PREFIX, is_table, registered_arrays
from kerasxfer.families import family_of

log = logging.getLogger("kerasxfer")

SAMPLE = 256
PHOTO_SHORT_SIDE = 160
SMALL_SIZE = 96
SCRATCH_SIZE = 64


def _evenly(items: list, n: int) -> list:
    """At most ``n`` of ``items``, evenly spaced (the same ones on every machine)."""
    if len(items) <= n:
        return items
    return [items[math.floor(i * len(items) / n)] for i in range(n)]


def _tfds_sample(cfg) -> list:
    import tensorflow_datasets as tfds

    from kerasxfer.data.tfds import _tfds_builder, _tfds_keys

    builder = _tfds_builder(cfg.dataset[len(TFDS_PREFIX):], cfg.tfds_data_dir, cfg.tfds_download)
    img_key, _ = _tfds_keys(builder.info)
    ds = builder.as_dataset(split=f"train[:{SAMPLE}]", decoders={img_key: tfds.decode.SkipDecoding()},
                            shuffle_files=False)
    return [ex[img_key] for ex in ds.as_numpy_iterator()]


def short_sides(cfg) -> list | None:
    """Short sides of up to :data:`SAMPLE` of the dataset's images; None when the images have any size (synthetic)."""
    from kerasxfer.data.sources import is_image_path, walk_files

    if cfg.dataset == "digits":
        return [8]
    if cfg.dataset == "synthetic":
        return None
    if cfg.dataset.startswith(ARRAYS_PREFIX):
        images = registered_arrays(cfg.dataset)[0]
        return [min(images.shape[1:3])]
    if cfg.dataset.startswith(TFDS_PREFIX):
        sample = _tfds_sample(cfg)
    elif is_table(cfg.dataset):
        from kerasxfer.data.tables import read_table, resolve

        sample = _evenly([resolve(cfg.dataset, p) for p, _, _ in read_table(cfg.dataset)[0]], SAMPLE)
    else:
        sample = _evenly([f for f in walk_files(cfg.dataset) if is_image_path(f)], SAMPLE)
    from kerasxfer.data.decode import declared

    sizes = [declared(x)[0] for x in sample]
    sides = [min(size) for size in sizes if size]
    return sides or None


def choose(sides, backbone: str | None) -> tuple:
    """``(size, why)`` for images of short sides ``sides`` (None: any size) and ``backbone`` (None: scratch CNN)."""
    if backbone is None:
        return SCRATCH_SIZE, f"auto: {SCRATCH_SIZE} px, the scratch CNN's size (no pretrained size to match)"
    native = family_of(backbone).native[backbone]
    if not sides:
        return SMALL_SIZE, f"auto: {SMALL_SIZE} px for procedural images (they have any size); {backbone} is native at {native}"
    median = statistics.median(sides)
    if median >= PHOTO_SHORT_SIDE:
        return native, (f"auto: the images' median short side is {median:g} px (photo-sized, >= {PHOTO_SHORT_SIDE}), "
                        f"so {backbone} runs at its native {native} px")
    size = min(native, max(SMALL_SIZE, 32 * math.ceil(median / 32)))
    return size, (f"auto: the images' median short side is {median:g} px (small, < {PHOTO_SHORT_SIDE}), so {size} px "
                  f"(between {SMALL_SIZE} and {backbone}'s native {native})")


def resolve(exp: Experiment, sides=None) -> Experiment:
    """``exp`` with ``--image_size=auto`` replaced by the chosen size (unchanged when a size was given).

    ``sides``: the measured short sides when the caller has them (a study measures once for every arm).
    """
    if exp.data.image_size != AUTO_SIZE:
        return exp
    if sides is None and exp.model.uses_backbone:
        sides = short_sides(exp.data)
    size, why = choose(sides, exp.model.backbone if exp.model.uses_backbone else None)
    log.info("%s: image size %d (%s; --image_size=N to choose)", exp.name, size, why)
    data = dataclasses.replace(exp.data, image_size=size, image_size_choice=why)
    return dataclasses.replace(exp, data=data)


def resolve_arms(*arms: Experiment) -> list:
    """:func:`resolve` for several experiments on the same data (a study's or a sweep's arms), measured once."""
    sides = short_sides(arms[0].data) if any(a.data.image_size == AUTO_SIZE for a in arms) else None
    return [resolve(a, sides) if a.data.image_size == AUTO_SIZE else a for a in arms]

