"""Data sources behind one interface.

:func:`load_data` turns a :class:`~kerasxfer.config.DataConfig` into a
:class:`DataSplits`: batched train/val ``tf.data.Dataset`` objects that yield
``(images float32 in [0, 255], shape (B, S, S, 3); labels int32)``, plus the
class names and per-class counts.  Sources:

* ``digits``: the 1,797 real 8x8 handwritten digits that scikit-learn ships,
  as RGB, resized to ``image_size``;
* a folder path: class sub-folders of images (JPEG/PNG/GIF/BMP), either with
  ``train/`` and ``val/`` (or ``validation/``) inside, or flat and split by a
  seeded, stratified ``val_fraction``.
"""

from __future__ import annotations

from kerasxfer.data.pipeline import DataSplits, load_data

__all__ = ["DataSplits", "load_data"]
