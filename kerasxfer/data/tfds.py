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

from kerasxfer.data.decode import check_images, decode_image_bytes
from kerasxfer.data.split import SourceSplit, Split
from kerasxfer.data.splitting import carve_missing, merge_counts
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


def tfds_source(
    name: str,
    data_dir: str | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    on_bad_image: str = "skip",
    image_size: int | None = None,
    download: bool = True,
) -> SourceSplit:
    """A TensorFlow Datasets image-classification dataset.

    The dataset's own ``train``, ``validation`` and ``test`` splits are used
    by name; a missing ``validation`` or ``test`` is carved from ``train``
    (a seeded, stratified ``val_fraction``/``test_fraction`` keyed on each
    record's index, so it is the same on every machine) — never from the
    other held-out split.  Class names come from the label's ``ClassLabel``.
    Records are read once, still encoded, and decoded in the pipeline like
    files are.
    """
    builder = _tfds_builder(name, data_dir, download)
    decode = functools.partial(decode_image_bytes, min_side=image_size)
    info = builder.info
    img_key, lab_key = _tfds_keys(info)
    class_names = list(info.features[lab_key].names)
    available = list(info.splits.keys())
    if available and "train" not in available:
        raise UserError(f"tfds dataset {name!r} has no 'train' split (it has {', '.join(available)}): choose a dataset with one.")
    parts, counts, bad = {}, None, []
    for split, tfds_name in (("train", "train"), ("val", "validation"), ("test", "test")):
        if tfds_name not in available and split != "train":
            continue
        x, y = _tfds_read(builder, tfds_name, img_key, lab_key)
        part = Split(x, y, [f"{tfds_name}[{i}]" for i in range(len(x))], f"its {tfds_name!r} split")
        part, c, b = check_images(part, class_names, on_bad_image, f"tfds:{name}[{tfds_name}]", decode)
        parts[split], bad = part, bad + b
        counts = c if counts is None else merge_counts(counts, c)
    if len(np.unique(parts["train"].y)) < 2:
        raise UserError(f"tfds dataset {name!r} has fewer than 2 classes in train: choose another dataset.")
    carve_missing(parts, val_fraction, test_fraction, seed, class_names)
    layout = "; ".join(f"{k} from {p.origin}" for k, p in parts.items() if k != "train")
    version = getattr(info, "version", "")
    return SourceSplit.from_parts(
        parts, class_names, decode, f"tfds {name} {version} ({layout})", bad, counts, tfds_data_dir=str(builder.data_dir)
    )


def encoded_sample(name: str, data_dir: str | None, download: bool, n: int) -> list:
    """The first ``n`` images of the dataset's train split, still encoded (for their headers' sizes)."""
    import tensorflow_datasets as tfds

    builder = _tfds_builder(name, data_dir, download)
    img_key, _ = _tfds_keys(builder.info)
    ds = builder.as_dataset(split=f"train[:{n}]", decoders={img_key: tfds.decode.SkipDecoding()}, shuffle_files=False)
    return [ex[img_key] for ex in ds.as_numpy_iterator()]
