"""How labelled examples are divided: the seeded three-way stratified split, K stratified folds of the pooled
images, and nested subsets for a data sweep (no TensorFlow).

Every assignment hashes an example's stable key with the seed, so it does not depend on the order in which
files are listed, and a class too small to split is refused in one sentence.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from kerasxfer.data.split import SourceSplit, Split
from kerasxfer.errors import UserError


def _hash_unit(seed: int, key: str) -> float:
    """A number in [0, 1) that depends only on the seed and ``key``."""
    h = hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def stratified_assign(labels, keys, val_fraction: float, test_fraction: float, seed: int, class_names=None):
    """Each example's split, 0 (train), 1 (val) or 2 (test), by a seeded hash of its key, per class.

    ``keys`` are group keys where the data has groups (:attr:`Split.group_keys`): the members of a group
    share a hash, so they share a side.

    An example's hash ``u`` in [0, 1) puts it in test when ``u <
    test_fraction``, in val when below ``test_fraction + val_fraction``,
    else in train: its side depends on its own key and the seed only, never
    on the listing order or on the other files, so adding or removing files
    moves none of the others.  A fraction of 0 asks for no such split.
    A class that this rule leaves without an example in a split that is
    asked for is split by rank of the hash instead (only classes of a few
    images); a class with fewer images than splits is refused.
    """
    labels = np.asarray(labels)
    wanted = [True, val_fraction > 0, test_fraction > 0]
    need = sum(wanted)
    out = np.zeros(len(labels), dtype=np.int8)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        name = class_names[c] if class_names else int(c)
        if len(idx) < need:
            parts = "train/validation/test" if need == 3 else "train/validation" if wanted[1] else "train/test"
            raise UserError(
                f"class {name!r} has only {len(idx)} image(s): a {parts} split needs at least {need} per class; add images."
            )
        h = np.array([_hash_unit(seed, keys[i]) for i in idx])
        side = np.where(h < test_fraction, 2, np.where(h < test_fraction + val_fraction, 1, 0))
        if any(w and not (side == k).any() for k, w in enumerate(wanted)):
            side = _by_rank(h, val_fraction, test_fraction, wanted)
        out[idx] = side
    return _one_side_per_group(out, keys)


def _one_side_per_group(side: np.ndarray, keys) -> np.ndarray:
    """``side`` with every member of a group (equal keys) on its first member's side: the by-rank split of a
    small class, or a group spanning two classes, could otherwise divide one."""
    first: dict = {}
    for i, k in enumerate(keys):
        side[i] = first.setdefault(k, side[i])
    return side


def _by_rank(h, val_fraction, test_fraction, wanted):
    """The split of a small class by rank of its hashes: lowest to test, then val, the rest (at least one) to train."""
    n = len(h)
    n_test = max(1, round(n * test_fraction)) if wanted[2] else 0
    n_val = max(1, round(n * val_fraction)) if wanted[1] else 0
    while n_test + n_val >= n:  # keep one for train
        if n_test >= n_val and n_test > 1:
            n_test -= 1
        else:
            n_val -= 1
    side = np.zeros(n, dtype=np.int8)
    order = np.argsort(h, kind="stable")
    side[order[:n_test]] = 2
    side[order[n_test : n_test + n_val]] = 1
    return side


def check_train_classes(train: Split, class_names, where: str = "") -> None:
    """One sentence when a class has no image left in the training split (every source checks this)."""
    for i, c in enumerate(class_names):
        if not (train.y == i).any():
            raise UserError(f"class {c!r} has no readable training image{where}: add images of it or remove it.")


def carve_missing(parts: dict, val_fraction: float, test_fraction: float, seed: int, class_names) -> None:
    """Fill a missing ``parts["val"]`` or ``parts["test"]`` from ``parts["train"]`` (never one from the other)."""
    if "val" in parts and "test" in parts:
        return
    carve_val = 0.0 if "val" in parts else val_fraction
    carve_test = 0.0 if "test" in parts else test_fraction
    train, val, test = split_three(parts["train"], carve_val, carve_test, seed, class_names)
    parts["train"] = train
    parts.setdefault("val", val)
    parts.setdefault("test", test)


def split_three(part: Split, val_fraction: float, test_fraction: float, seed: int, class_names):
    """``part`` divided into (train, val, test) by :func:`stratified_assign` (a fraction of 0 leaves that one empty)."""
    side = stratified_assign(part.y, part.group_keys, val_fraction, test_fraction, seed, class_names)
    how = f"{{:.0%}} of {part.origin or 'the images'}, seeded hash of each example (seed {seed})"
    return (
        part.take(side == 0, f"the rest of {part.origin or 'the images'}"),
        part.take(side == 1, how.format(val_fraction), carved=True),
        part.take(side == 2, how.format(test_fraction), carved=True),
    )


def fold_assign(labels, keys, folds: int, seed: int) -> np.ndarray:
    """Each example's fold, 1 .. ``folds``: stratified (group) K-fold by a seeded hash of each key.

    ``keys`` are group keys (:attr:`Split.group_keys`): each group is dealt
    as one, in the class of its first member. Within a class, groups are
    ranked by the hash and dealt out in turn (rank r -> fold r mod K + 1),
    so every fold holds each class in about its share, every example lies
    in exactly one fold with the rest of its group, and the assignment
    depends on the keys and the seed only, never on the listing order.
    Without groups (every key distinct) each example is dealt on its own.
    """
    labels = np.asarray(labels)
    members: dict = {}
    for i, k in enumerate(keys):
        members.setdefault(k, []).append(i)
    out = np.zeros(len(labels), dtype=np.int32)
    for c in np.unique(labels):
        groups = [k for k, m in members.items() if labels[m[0]] == c]
        h = np.array([_hash_unit(seed, "fold:" + k) for k in groups])
        for r, g in enumerate(np.argsort(h, kind="stable")):
            out[members[groups[g]]] = r % folds + 1
    return out


def pool_of(src: "SourceSplit") -> Split:
    """Every labelled example of ``src`` (train, then val, then test) as one split: the pool folds divide."""
    parts = [src.train, src.val, src.test]
    if any(p.decode is not None for p in parts):
        raise UserError("this dataset draws each split differently (synthetic), so it cannot be cross-validated: pass --folds=1.")
    grouped = any(p.groups is not None for p in parts)
    return Split(
        np.concatenate([p.x for p in parts]),
        np.concatenate([p.y for p in parts]).astype(np.int32),
        [k for p in parts for k in p.keys],
        "the labelled pool",
        groups=[g for p in parts for g in p.group_keys] if grouped else None,
    )


#: ``DataConfig.fold`` of a study's final model: no fold held out (:func:`fold_split`)
FINAL_FOLD = 0


def fold_split(src: "SourceSplit", folds: int, fold: int, val_fraction: float, seed: int):
    """``src`` re-split for fold ``fold`` of ``folds``: (the new SourceSplit, pool indices of each split).

    Test is fold ``fold`` of :func:`fold_assign` over the pool (every image of
    train, val and test); validation is ``val_fraction`` of the other folds
    (seeded hash per class), training the rest.  Over the K folds every image
    is tested exactly once.  ``fold`` = :data:`FINAL_FOLD` (0) holds no fold out: a study's final model trains
    on the whole pool (validation ``val_fraction`` of it, group-aware) and has no test split of its own.
    """
    pool = pool_of(src)
    f = fold_assign(pool.y, pool.group_keys, folds, seed)
    rest = np.flatnonzero(f != fold)
    missing = [src.class_names[c] for c in np.unique(pool.y) if np.sum(pool.y[rest] == c) < 2]
    if fold != FINAL_FOLD and (len(pool) < 2 * folds or not np.any(f == fold)):
        raise UserError(
            f"{len(pool)} labelled images are too few for {folds} folds (fold {fold} would test "
            f"{int(np.sum(f == fold))} of them): pass --folds={max(2, len(pool) // 4)} or fewer, or "
            "add images."
        )
    if missing:
        raise UserError(
            f"class(es) {', '.join(map(repr, missing))} have too few images for {folds} folds: add images "
            "or pass a smaller --folds."
        )
    groups = pool.group_keys
    side = stratified_assign(pool.y[rest], [groups[i] for i in rest], val_fraction, 0.0, seed, src.class_names)
    index = {"train": rest[side == 0], "val": rest[side == 1], "test": np.flatnonzero(f == fold)}
    how = f"stratified {folds}-fold split of all {len(pool)} labelled images, seeded hash of each example (seed {seed})"
    origins = {
        "train": f"the rest of the other folds ({how})",
        "val": f"{val_fraction:.0%} of the other folds",
        "test": f"fold {fold} of {folds} ({how})",
    }
    if fold == FINAL_FOLD:
        origins = {
            "train": f"every labelled image but the validation share ({how}, no fold held out)",
            "val": f"{val_fraction:.0%} of every labelled image (the checkpoint and the head's strength)",
            "test": "none: the final model's expected accuracy is the cross-validation's",
        }
    parts = {}
    for name, idx in index.items():
        mask = np.zeros(len(pool), bool)
        mask[idx] = True
        parts[name] = pool.take(mask, origins[name], carved=True)
    info = dict(src.info, folds=folds, fold=fold, pool_size=len(pool))
    return dataclasses.replace(src, train=parts["train"], val=parts["val"], test=parts["test"], info=info), index


def nested_subset(part: Split, fraction: float, seed: int) -> np.ndarray:
    """Indices (ascending) of a stratified ``fraction`` of ``part``: the learning-curve subsets of the sweeps.

    Each class keeps ``round(fraction * n)`` of its ``n`` examples, at least
    one: those whose seeded hash of the key ranks lowest.  The rank does not
    depend on ``fraction``, so for one seed the subset of a smaller fraction
    lies inside the subset of a larger one (nested learning curves), and an
    example's place depends on its key, never on the listing order.
    """
    labels = np.asarray(part.y)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        h = np.array([_hash_unit(seed, "subset:" + part.keys[i]) for i in idx])
        n = max(1, int(np.floor(fraction * len(idx) + 0.5)))
        keep.append(idx[np.argsort(h, kind="stable")[:n]])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def merge_counts(a: dict, b: dict) -> dict:
    return {c: {k: a[c][k] + b[c][k] for k in ("read", "skipped")} for c in a}
