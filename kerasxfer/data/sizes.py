"""``--image_size=auto``: the image size a run trains at, chosen from the data and the backbone.

A pretrained backbone is best used at the size its ImageNet weights saw (its
*native* size: EfficientNet-Lite0 224, Lite1 240, Lite2 260, RegNet 224):
photos squeezed to 96 px lose what the backbone knows how to see (measured
on a 398-photo folder: 88.2 % at 96 px, 94.1 % at 224).  Small images gain
nothing from being blown up to 224 px but cost five times the compute, so:

* the median short side of the data's images (read from the image headers
  of up to 256 images, nothing decoded) at least
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

from kerasxfer.config import AUTO_SIZE, Experiment
from kerasxfer.datasets import source_of
from kerasxfer.families import family_of

log = logging.getLogger("kerasxfer")

PHOTO_SHORT_SIDE = 160
SMALL_SIZE = 96
SCRATCH_SIZE = 64


def short_sides(cfg) -> list | None:
    """Short sides of up to :data:`kerasxfer.data.readers.SAMPLE` of the dataset's images, read by its input
    source (:data:`kerasxfer.datasets.INPUT_SOURCES`); None when the images have any size (synthetic)."""
    return source_of(cfg.dataset).reader("sides")(cfg)


def choose(sides, backbone: str | None) -> tuple:
    """``(size, why)`` for images of short sides ``sides`` (None: any size) and ``backbone`` (None: scratch CNN)."""
    if backbone is None:
        return SCRATCH_SIZE, f"auto: {SCRATCH_SIZE} px, the scratch CNN's size (no pretrained size to match)"
    native = family_of(backbone).native[backbone]
    if not sides:
        return SMALL_SIZE, f"auto: {SMALL_SIZE} px for procedural images (they have any size); {backbone} is native at {native}"
    median = statistics.median(sides)
    if median >= PHOTO_SHORT_SIDE:
        return native, (
            f"auto: the images' median short side is {median:g} px (photo-sized, >= {PHOTO_SHORT_SIDE}), "
            f"so {backbone} runs at its native {native} px"
        )
    size = min(native, max(SMALL_SIZE, 32 * math.ceil(median / 32)))
    return size, (
        f"auto: the images' median short side is {median:g} px (small, < {PHOTO_SHORT_SIDE}), so {size} px "
        f"(between {SMALL_SIZE} and {backbone}'s native {native})"
    )


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
