"""Data sources behind one interface.

:func:`load_data` turns a :class:`~kerasxfer.config.DataConfig` into a
:class:`DataSplits`: batched train/val ``tf.data.Dataset`` objects that yield
``(images float32 in [0, 255], shape (B, S, S, 3); labels int32)``, plus the
class names and per-class counts.  Sources:

* ``digits``: the 1,797 real 8x8 handwritten digits that scikit-learn ships,
  as RGB, resized to ``image_size``;
* ``synthetic``: 24 classes of shapes x textures drawn procedurally from each
  image's index (:mod:`kerasxfer.data.synthetic`), the default source task of
  pretraining;
* a folder path: class sub-folders of images (JPEG/PNG/GIF/BMP/WebP), either
  with ``train/`` and ``val/`` (or ``validation/``) inside, or flat and split
  by a seeded, stratified ``val_fraction``;
* ``tfds:NAME``: a TensorFlow Datasets image-classification dataset, read
  from a prepared ``tfds_data_dir`` (downloaded and prepared once when the
  machine has internet).

:mod:`kerasxfer.data.sources` opens each source, :mod:`kerasxfer.data.pipeline`
builds the tf.data pipelines.
"""

from __future__ import annotations

from kerasxfer.data.pipeline import DataSplits, Decoded, SharedSources, decode_source, load_data, splits_from

__all__ = ["DataSplits", "Decoded", "SharedSources", "decode_source", "load_data", "splits_from"]
