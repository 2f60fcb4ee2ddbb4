"""TensorFlow Datasets (``--dataset=tfds:NAME``) as a source: prepared once, read still encoded.

A dataset is opened from ``tfds_data_dir`` (default tfds' own); when it is
not prepared there it is downloaded and prepared once, or — offline, or with
``--notfds_download`` — refused with one sentence that says how to prepare
it on a machine with internet and copy it over.
"""

from __future__ import annotations

import functools
import logging
import os
import time

import numpy as np

from kerasxfer.data.sources import SourceSplit, check_images, decode_image_bytes, merge_counts, stratified_split
from kerasxfer.errors import UserError

log = logging.getLogger("kerasxfer")

def _tfds_fix(name: str, data_dir: str) -> str:
    return (
        f"on a machine with internet run `tfds build {name} --data_dir=DIR` (or "
        f"`tfds.builder('{name}', data_dir=DIR).download_and_prepare()` in Python), then copy DIR/{name} "
        f"into {data_dir} here (or pass --tfds_data_dir=DIR)"
    )


def _tfds_builder(name: str, data_dir: str | None, download: bool):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError and friends
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"--dataset=tfds:{name} cannot be opened ({first}): check the name against "
            "https://www.tensorflow.org/datasets/catalog, or point --tfds_data_dir at the folder that holds it."
        ) from None
    where = data_dir or os.path.dirname(os.path.dirname(str(builder.data_dir)))
    if builder.is_prepared():
        return builder
    if not download:
        raise UserError(f"tfds dataset {name!r} is not prepared in {where}: {_tfds_fix(name, where)}.")
    log.info("tfds dataset %s is not prepared in %s: downloading and preparing it", name, where)
    try:
        builder.download_and_prepare()
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(
            f"tfds dataset {name!r} is not prepared in {where} and downloading it failed "
            f"({type(e).__name__}: {first}): {_tfds_fix(name, where)}."
        ) from None
    return builder


def _tfds_keys(info):
    """(image feature key, label feature key) of a tfds dataset."""
    import tensorflow_datasets as tfds

    feats = info.features
    if info.supervised_keys and len(info.supervised_keys) == 2:
        img, lab = info.supervised_keys
        if isinstance(img, str) and isinstance(lab, str):
            return img, lab
    img = next((k for k, f in feats.items() if isinstance(f, tfds.features.Image)), None)
    lab = next((k for k, f in feats.items() if isinstance(f, tfds.features.ClassLabel)), None)
    if img is None or lab is None:
        raise UserError(
            f"tfds dataset {info.name!r} has no image feature with a ClassLabel: kerasxfer needs image "
            "classification data; choose another dataset."
        )
    return img, lab


def _tfds_read(builder, split: str, img_key: str, lab_key: str):
    """Every record of ``split`` as (encoded image bytes, labels), without decoding the images."""
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(split=split, decoders={img_key: tfds.decode.SkipDecoding()}, shuffle_files=False)
    images, labels = [], []
    t0 = time.perf_counter()
    for n, ex in enumerate(ds.as_numpy_iterator(), start=1):
        images.append(ex[img_key])
        labels.append(int(ex[lab_key]))
        if n % 5000 == 0:
            log.info("tfds %s[%s]: read %d records (%.0fs)", builder.info.name, split, n, time.perf_counter() - t0)
    return np.array(images, dtype=object), np.array(labels, dtype=np.int32)


def tfds_source(name: str, data_dir: str | None, val_fraction: float, seed: int,
                on_bad_image: str = "skip", image_size: int | None = None, download: bool = True) -> SourceSplit:
    """A TensorFlow Datasets image-classification dataset.

    Validation uses the dataset's own ``validation`` split, else its
    ``test`` split, else a seeded stratified ``val_fraction`` of ``train``
    (keyed on each record's index, so it is the same on every machine).
    Class names come from the label's ``ClassLabel``.  Records are read
    once, still encoded, and decoded in the pipeline like files are.
    """
    builder = _tfds_builder(name, data_dir, download)
    decode = functools.partial(decode_image_bytes, min_side=image_size)
    info = builder.info
    img_key, lab_key = _tfds_keys(info)
    class_names = list(info.features[lab_key].names)
    splits = list(info.splits.keys())
    if splits and "train" not in splits:
        raise UserError(
            f"tfds dataset {name!r} has no 'train' split (it has {', '.join(splits)}): choose a dataset with one."
        )
    val_split = next((s for s in ("validation", "test") if s in splits), None)
    x, y = _tfds_read(builder, "train", img_key, lab_key)
    names = [f"train[{i}]" for i in range(len(x))]
    x, y, counts, bad = check_images(x, y, class_names, names, on_bad_image, f"tfds:{name}[train]", decode)
    skipped = set(bad)
    keep_names = [n for n in names if n not in skipped]
    if val_split:
        tr_x, tr_y = x, y
        va_x, va_y = _tfds_read(builder, val_split, img_key, lab_key)
        vnames = [f"{val_split}[{i}]" for i in range(len(va_x))]
        va_x, va_y, c2, bad2 = check_images(va_x, va_y, class_names, vnames, on_bad_image, f"tfds:{name}[{val_split}]", decode)
        counts, bad = merge_counts(counts, c2), bad + bad2
        layout = f"train, validation from its {val_split!r} split"
    else:
        present = [c for i, c in enumerate(class_names) if (y == i).any()]
        if len(present) < 2:
            raise UserError(f"tfds dataset {name!r} has fewer than 2 classes in train: choose another dataset.")
        val_mask = stratified_split(x, y, None, val_fraction, seed, class_names, keys=keep_names)
        tr_x, tr_y, va_x, va_y = x[~val_mask], y[~val_mask], x[val_mask], y[val_mask]
        layout = f"train split {1 - val_fraction:.0%}/{val_fraction:.0%} by seed {seed}"
    version = getattr(info, "version", "")
    return SourceSplit(
        tr_x, tr_y, va_x, va_y,
        class_names=class_names,
        decode=decode,
        description=f"tfds {name} {version} ({layout})",
        info={
            "tfds_data_dir": str(builder.data_dir),
            "skipped_undecodable": len(bad),
            "skipped_paths": bad[:20],
            "files_per_class": counts,
        },
    )
