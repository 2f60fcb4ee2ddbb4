"""tf.data pipelines: decode + resize once into an array, then per epoch a seeded order of the whole split.

Every split is decoded and resized once, in parallel, into a uint8 array
``(N, S, S, 3)``: in memory, or in a ``.npy`` file under ``cache_dir`` for
data larger than RAM (memory-mapped, reused by later runs on the same files
and image size, rebuilt when damaged).  Batches are gathered from that array
by index.

The training split is a stream of epochs.  Epoch ``e`` visits every training
example once, in a stratified permutation of the *whole* split drawn from
``(seed, e)`` (:func:`kerasxfer.data.batches.epoch_order`) — never a bounded shuffle buffer, so a
class-sorted folder of any size still gives batches of mixed classes — and
its MixUp/CutMix draws depend on the seed, ``e`` and the batch only: a run
resumed at epoch ``e`` sees exactly the batches an uninterrupted run would
have seen.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from kerasxfer.config import DataConfig
from kerasxfer.data import splitting
from kerasxfer.data.arrays import cache_key, decode_all
from kerasxfer.data.batches import epochs_from, ordered_batches
from kerasxfer.data.split import SourceSplit, content_fingerprint, fingerprint  # noqa: F401  (re-exported)
from kerasxfer.datasets import source_of

log = logging.getLogger("kerasxfer")
AUTOTUNE = tf.data.AUTOTUNE
SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class DataSplits:
    """What a run trains, validates and is tested on."""

    train: tf.data.Dataset  # one epoch (epoch 0's order), batched
    val: tf.data.Dataset  # batched, fixed order (val_labels order)
    test: tf.data.Dataset  # batched, fixed order (test_labels order)
    class_names: list
    val_labels: np.ndarray
    test_labels: np.ndarray
    image_size: int
    description: str
    info: dict
    # train_from(a, b): the batches of epochs a .. b-1 in order; steps_per_epoch of them make one epoch
    train_from: Callable[[int, int], tf.data.Dataset]
    steps_per_epoch: int
    # the training images in array order, batched, not shuffled (backbone features are computed on it)
    train_ordered: tf.data.Dataset
    train_labels: np.ndarray
    seed: int
    # per split: count, where it came from, and a fingerprint of its examples (keys and labels)
    splits: dict
    # the decoded source these pipelines read, and where the training subset lies in its train split (None: all)
    decoded: Optional["Decoded"] = None
    train_index: Optional[np.ndarray] = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    num_train = property(lambda self: len(self.train_labels))
    num_val = property(lambda self: len(self.val_labels))
    num_test = property(lambda self: len(self.test_labels))


# ---------------------------------------------------------------- batches
def open_source(cfg: DataConfig, seed: int) -> SourceSplit:
    """The train/val/test examples of ``cfg.dataset`` (split by ``cfg.split_seed``, default ``seed``), read by its
    input source (:data:`kerasxfer.datasets.INPUT_SOURCES`)."""
    return source_of(cfg.dataset).reader("open")(cfg, seed if cfg.split_seed is None else cfg.split_seed)


@dataclasses.dataclass
class Decoded:
    """A source opened and its three splits decoded once; :func:`splits_from` builds a run's pipelines on it.

    A sweep or a study decodes once and builds every member's splits
    (training subsets of several fractions and seeds, folds) from the same
    arrays.  ``features``, when not None, is shared by those members: what a
    frozen backbone computes from every image, once per backbone (see
    :mod:`kerasxfer.features`).
    """

    cfg: DataConfig
    src: SourceSplit
    images: dict  # split name -> uint8 array (N, S, S, 3)
    features: Optional[object] = None  # a kerasxfer.data.store.ActivationStore shared by every run (and fold)
    # where this source's splits lie in the pool of the whole source (train, val, test in SPLITS order): a fold's
    # rows, or the whole source's own ranges; ``whole`` is the source decoded whole (None: this one)
    pool_index: Optional[dict] = None
    whole: Optional["Decoded"] = None
    pool_content: Optional[str] = None  # kerasxfer.data.store.pool_fingerprint(), computed once
    contents: dict = dataclasses.field(default_factory=dict)  # split -> content_fingerprint, once for all its runs
    missing: Optional[dict] = None  # classes_missing(), computed (and said) once for all its runs

    def classes_missing(self) -> dict:
        """``{split: [class, ...]}`` of the classes val or test hold no image of, said once per source."""
        if self.missing is None:
            self.missing = {}
            for name, part in (("val", self.src.val), ("test", self.src.test)):
                cs = [c for i, c in enumerate(self.src.class_names) if not (part.y == i).any()]
                if cs and len(part):  # an empty test split is a final model's (no fold held out), said elsewhere
                    self.missing[name] = cs
                    log.warning(
                        "the %s split holds no image of %d class(es) (%s): its numbers say nothing about "
                        "them; add images of every class to it",
                        name,
                        len(cs),
                        ", ".join(cs[:5]) + (", ..." if len(cs) > 5 else ""),
                    )
        return self.missing

    def content(self, name: str) -> str:
        """The content fingerprint of split ``name`` (the files' bytes, not their names): what a run records in
        data.json and is reused only while it matches (kerasxfer.run_files.data_changes)."""
        if name not in self.contents:
            self.contents[name] = content_fingerprint(self.src.splits[name])
        return self.contents[name]


def fold_of(decoded: Decoded, cfg: DataConfig, seed: int, pool_images=None) -> Decoded:
    """Fold ``cfg.fold`` of ``cfg.folds`` of a source decoded whole (its three splits pooled), with no new decoding.

    ``pool_images``: the pooled array when already concatenated (a study reuses it for every fold).
    """
    split_seed = seed if cfg.split_seed is None else cfg.split_seed
    src, index = splitting.fold_split(decoded.src, cfg.folds, cfg.fold, cfg.val_fraction, split_seed)
    if pool_images is None:
        pool_images = np.concatenate([decoded.images[s] for s in SPLITS])
    log.info(
        "%s: %d train / %d val / %d test images of the %d-image pool",
        f"fold {cfg.fold} of {cfg.folds}" if cfg.fold else "final model (no fold held out)",
        len(src.train),
        len(src.val),
        len(src.test),
        len(pool_images),
    )
    return Decoded(cfg, src, {s: pool_images[index[s]] for s in SPLITS}, decoded.features, pool_index=index, whole=decoded)


def decode_source(
    cfg: DataConfig, seed: int, deterministic: bool = True, share_features: bool = False, activation_dir: Optional[str] = None
) -> Decoded:
    """Open ``cfg.dataset`` (split by ``cfg.split_seed``, default ``seed``) and decode its three splits once.

    With ``cfg.folds`` the source is decoded whole and re-split into fold ``cfg.fold`` (:func:`fold_of`).
    ``share_features``: the runs on it share what a frozen backbone computes (:class:`ActivationStore`, kept
    in ``activation_dir`` too when given).
    """
    if cfg.folds > 1:
        whole = decode_source(dataclasses.replace(cfg, folds=0, fold=0), seed, deterministic, share_features, activation_dir)
        return fold_of(whole, cfg, seed)
    src = open_source(cfg, seed)
    s = cfg.image_size
    log.info(
        "data: %s: %d train / %d val / %d test images, %d classes, %dx%d (%s)",
        src.description,
        len(src.train),
        len(src.val),
        len(src.test),
        len(src.class_names),
        s,
        s,
        cfg.resize,
    )
    images = {}
    for name, part in src.splits.items():
        cache = None
        if cfg.cache_dir:
            key = cache_key(part.x, part.y, s, f"{name}-{cfg.resize}")
            cache = os.path.join(cfg.cache_dir, key + ".npy")
        images[name] = decode_all(part.x, part.decode or src.decode, s, cfg.resize, cache, deterministic)
    if cfg.cache_dir and all(isinstance(a, np.memmap) for a in images.values()):
        log.info("decoded images are cached in %s", cfg.cache_dir)
    bounds = np.cumsum([0] + [len(images[name]) for name in SPLITS])
    pool_index = {name: np.arange(bounds[i], bounds[i + 1]) for i, name in enumerate(SPLITS)}
    from kerasxfer.data.store import ActivationStore

    return Decoded(cfg, src, images, ActivationStore(activation_dir) if share_features else None, pool_index)


def splits_from(decoded: Decoded, seed: int, train_fraction: float = 1.0) -> DataSplits:
    """The pipelines of a run with ``seed`` on ``decoded``, training on a nested ``train_fraction`` of its train split.

    The subset is :func:`kerasxfer.data.splitting.nested_subset` drawn with
    ``seed``; validation and test always hold every image of their splits.
    """
    cfg, src = decoded.cfg, decoded.src
    train, train_images, train_index = src.train, decoded.images["train"], None
    if train_fraction < 1.0:
        train_index = splitting.nested_subset(src.train, train_fraction, seed)
        mask = np.zeros(len(src.train), bool)
        mask[train_index] = True
        train = src.train.take(mask, f"{src.train.origin}; a stratified {train_fraction:g} of it (seed {seed})")
        train_images = np.asarray(train_images[train_index]) if len(train_index) else train_images[:0]
        log.info(
            "training on %d of the %d training images (%g per class, stratified, seed %d)",
            len(train),
            len(src.train),
            train_fraction,
            seed,
        )
    parts = {"train": train, "val": src.val, "test": src.test}
    num_classes = len(src.class_names) if cfg.soft_labels else None
    bs = cfg.batch_size
    train_from = epochs_from(train_images, train.y, bs, seed, num_classes, cfg.mixup, cfg.cutmix)
    info = dict(src.info, train_fraction=train_fraction)
    for name, part in parts.items():
        info[f"{name}_per_class"] = {c: int((part.y == i).sum()) for i, c in enumerate(src.class_names)}
    info["classes_missing"] = decoded.classes_missing()
    return DataSplits(
        train=train_from(0, 1),
        val=ordered_batches(decoded.images["val"], src.val.y, bs, num_classes),
        test=ordered_batches(decoded.images["test"], src.test.y, bs, num_classes),
        class_names=list(src.class_names),
        val_labels=np.asarray(src.val.y),
        test_labels=np.asarray(src.test.y),
        image_size=cfg.image_size,
        description=src.description,
        info=info,
        train_from=train_from,
        steps_per_epoch=math.ceil(len(train) / bs),
        train_ordered=ordered_batches(train_images, train.y, bs),
        train_labels=np.asarray(train.y),
        seed=seed,
        splits={
            name: {
                "count": len(part),
                "from": part.origin,
                "fingerprint": fingerprint(part),
                "content": decoded.content(name) if part is getattr(src, name) else content_fingerprint(part),
            }
            for name, part in parts.items()
        },
        decoded=decoded,
        train_index=train_index,
    )


class SharedSources:
    """Sources decoded once per image size (split by one ``split_seed``) for the runs of a sweep or a study.

    The runs must differ from each other only in image size, training
    fraction and seed: the rest of their :class:`DataConfig` is the first one's.
    """

    def __init__(self, split_seed: int, deterministic: bool = True, activation_dir: Optional[str] = None):
        self.split_seed, self.deterministic, self.activation_dir = split_seed, deterministic, activation_dir
        self.decoded, self.pools, self.folds = {}, {}, {}  # per image size: whole source, pooled images, last fold

    def _whole(self, cfg: DataConfig) -> Decoded:
        if cfg.image_size not in self.decoded:
            base = dataclasses.replace(cfg, train_fraction=1.0, split_seed=self.split_seed, folds=0, fold=0)
            self.decoded[cfg.image_size] = decode_source(
                base, self.split_seed, self.deterministic, share_features=True, activation_dir=self.activation_dir
            )
        return self.decoded[cfg.image_size]

    def decoded_for(self, cfg: DataConfig) -> Decoded:
        """The decoded source at ``cfg.image_size`` (decoded once), or its fold ``cfg.fold`` of ``cfg.folds``.

        Only the latest fold is kept per image size (a study trains fold by fold), so K folds cost the
        memory of one, not K copies of the pool.
        """
        whole = self._whole(cfg)
        if cfg.folds <= 1:
            return whole
        key = (cfg.folds, cfg.fold)
        if self.folds.get(cfg.image_size, (None,))[0] != key:
            if cfg.image_size not in self.pools:
                self.pools[cfg.image_size] = np.concatenate([whole.images[s] for s in SPLITS])
            fold_cfg = dataclasses.replace(cfg, train_fraction=1.0, split_seed=self.split_seed)
            self.folds[cfg.image_size] = (key, fold_of(whole, fold_cfg, self.split_seed, self.pools[cfg.image_size]))
        return self.folds[cfg.image_size][1]

    def num_train(self, cfg: DataConfig) -> int:
        """How many images ``cfg``'s training split holds (its fold's, with folds), without slicing any images."""
        src = self._whole(cfg).src
        if cfg.folds > 1:
            src = splitting.fold_split(src, cfg.folds, cfg.fold, cfg.val_fraction, self.split_seed)[0]
        return len(src.train)

    def splits(self, exp) -> DataSplits:
        """The pipelines of the experiment ``exp`` (its seed, image size and training fraction)."""
        if exp.data.split_seed is not None and exp.data.split_seed != self.split_seed:
            raise ValueError(f"{exp.out_dir} is split with seed {exp.data.split_seed}, not {self.split_seed}")
        return splits_from(self.decoded_for(exp.data), exp.seed, exp.data.train_fraction)


def load_data(cfg: DataConfig, seed: int, deterministic: bool = True) -> DataSplits:
    """Open ``cfg.dataset``, decode its three splits once and build their pipelines (on ``cfg.train_fraction``).

    On a GPU the batches are copied to the device ahead of the step by the
    distribution strategy that :mod:`kerasxfer.training` runs under
    (``OneDeviceStrategy`` distributes the dataset with device prefetch).
    """
    return splits_from(decode_source(cfg, seed, deterministic), seed, cfg.train_fraction)
