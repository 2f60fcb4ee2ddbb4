"""One image, one side: byte-identical files and near-duplicates among a folder dataset's images (no TensorFlow).

A copy of an image on both sides of a split lets a model score by memory:
30 random-noise images with random labels, each saved three times, gave
"Transfer wins 85 % vs 52 %" before this module.  :func:`dedupe` finds

* **identical files**: the same bytes (a copy, or a symlink to a file of the
  dataset).  Copies under one label in one split are used once (the first by
  path); copies under two labels are refused in one sentence naming both (a
  labelling error only the user can settle; tables do the same);
* **near-duplicates**: images whose 16x16 grey thumbnails (area-averaged,
  read with PIL at reduced size) differ by at most :data:`NEAR_RMS` grey
  levels (root mean square): a re-save, a re-compression, a copy with faint
  noise.  The thumbnails average out pixel noise, yet keep the picture and
  its brightness, so two different photos, or two plain images of different
  grey, are not grouped.

Linked images form a **group** (around the first image, by path, that the
others are near: see :func:`_leaders`); each example gets its group's key
(the smallest path in the group; its own path when alone),
and every split and fold hashes the group key instead of the path
(:mod:`kerasxfer.data.splitting`), so a group always lands on one side, as
scikit-learn's ``StratifiedGroupKFold`` does.  Data without duplicates
splits exactly as before.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from kerasxfer.errors import UserError
from kerasxfer.fsio import sha256_of

log = logging.getLogger("kerasxfer")

#: Thumbnail side and the largest root-mean-square difference (grey levels, 0-255) of two near-duplicates.
THUMB = 16
NEAR_RMS = 2.0
#: Images compared at once when looking for near-duplicates (a block of BLOCK x n distances in memory).
BLOCK = 2048


@dataclasses.dataclass(frozen=True)
class Duplicates:
    """What :func:`dedupe` found: copies used once, conflicts, and groups of two or more kept together."""

    dropped: int = 0  # identical copies under the same label in the same split, left out
    groups: int = 0  # groups of two or more images kept on one side
    grouped: int = 0  # images in those groups
    largest: int = 0  # images in the largest group
    across: int = 0  # groups spanning two of the splits the data came with (train/ and test/ folders)

    def record(self) -> dict:
        return {
            "identical_copies_dropped": self.dropped,
            "duplicate_groups": self.groups,
            "images_in_duplicate_groups": self.grouped,
            "largest_duplicate_group": self.largest,
            "duplicate_groups_across_given_splits": self.across,
        }

    def sentence(self) -> str:
        """The description's clause ('' when nothing was found)."""
        parts = []
        if self.dropped:
            parts.append(f"{self.dropped} identical cop{'y' if self.dropped == 1 else 'ies'} used once")
        if self.groups:
            parts.append(
                f"{self.groups} group(s) of identical or near-duplicate images ({self.grouped} images) kept on one "
                "side of every split"
            )
        return "; ".join(parts)


def thumbnail(path: str):
    """The image's THUMB x THUMB grey thumbnail (float32, 0-255, area-averaged), or None when PIL cannot read it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("L", (4 * THUMB, 4 * THUMB))  # JPEG: decode at reduced size
            grey = im.convert("L").resize((THUMB, THUMB), Image.Resampling.BOX)
            return np.asarray(grey, np.float32).reshape(-1)
    except Exception:  # noqa: BLE001 - an image PIL cannot read is only not compared
        return None


def _near_pairs(thumbs: np.ndarray) -> list:
    """Index pairs (i < j) of rows of ``thumbs`` within :data:`NEAR_RMS` of each other."""
    limit = NEAR_RMS**2 * thumbs.shape[1]
    sq = (thumbs.astype(np.float64) ** 2).sum(1)
    pairs = []
    for start in range(0, len(thumbs), BLOCK):
        block = thumbs[start : start + BLOCK].astype(np.float64)
        d = sq[start : start + BLOCK, None] + sq[None, :] - 2.0 * block @ thumbs.T.astype(np.float64)
        for i, j in zip(*np.nonzero(d <= limit + 1e-6)):
            if start + i < j:
                pairs.append((start + int(i), int(j)))
    return pairs


def _leaders(keys, pairs) -> np.ndarray:
    """Each item's group: its leader, the first item in key order that it is linked to (or itself).

    Leader clustering, not connected components: an image joins the group of the first image it is a
    near-duplicate of, so a group never spans more than twice :data:`NEAR_RMS` and a continuum of plain
    images (grey levels 0, 1, 2, ...) does not chain into one group that no split could divide.
    """
    near: dict = {}
    for i, j in pairs:
        near.setdefault(i, set()).add(j)
        near.setdefault(j, set()).add(i)
    comp = np.full(len(keys), -1)
    for i in sorted(range(len(keys)), key=lambda i: keys[i]):
        if comp[i] >= 0:
            continue
        comp[i] = i
        for j in near.get(i, ()):
            if comp[j] < 0:
                comp[j] = i
    return comp


def _identical(keys, labels, where, digests) -> tuple:
    """Which examples to keep (an identical copy under the same label in the same split is not) and the
    ``(key, key)`` pairs of identical files under two labels."""
    keep, conflicts, first = np.ones(len(keys), bool), [], {}
    for i in sorted(range(len(keys)), key=lambda i: keys[i]):
        seen = first.setdefault(digests[i], {})
        if (labels[i], where[i]) in seen:
            keep[i] = False  # the same bytes, the same label, the same split: one image
            continue
        if seen and not any(lab == labels[i] for lab, _ in seen):
            conflicts.append((keys[next(iter(seen.values()))], keys[i]))
        seen[(labels[i], where[i])] = i
    return keep, conflicts


def _linked(paths, digests, keys) -> np.ndarray:
    """The group of each of ``paths`` (:func:`_leaders`): identical bytes, or thumbnails within :data:`NEAR_RMS`,
    link two."""
    pairs, by_digest = [], {}
    for n, d in enumerate(digests):  # identical bytes are linked without a thumbnail
        if d in by_digest:
            pairs.append((by_digest[d], n))
        else:
            by_digest[d] = n
    thumbs = [thumbnail(p) for p in paths]
    readable = [n for n, t in enumerate(thumbs) if t is not None]
    if len(readable) > 1:
        pairs += [(readable[a], readable[b]) for a, b in _near_pairs(np.stack([thumbs[n] for n in readable]))]
    return _leaders(keys, pairs)


def dedupe(parts: dict) -> tuple:
    """``parts`` (``{"train": Split, ...}`` of file paths, as the data came) with identical copies under one label
    in one split used once and every example's ``groups`` key set; and the :class:`Duplicates` found."""
    t0 = time.perf_counter()
    names = list(parts)
    where = np.concatenate([np.full(len(parts[s]), k) for k, s in enumerate(names)]).astype(int)
    paths = [str(x) for s in names for x in parts[s].x]
    keys = [k for s in names for k in parts[s].keys]
    labels = np.concatenate([np.asarray(parts[s].y) for s in names]).astype(int)
    if not paths:
        return parts, Duplicates()
    digests = [sha256_of(p) for p in paths]
    keep, conflicts = _identical(keys, labels, where, digests)
    if conflicts:
        (a, b), more = conflicts[0], len(conflicts) - 1
        raise UserError(
            f"{a} and {b} are the same image (identical bytes) under two labels"
            + (f", and {more} more such file(s)" if more else "")
            + ": one of the labels is wrong; remove the wrong copy (an image under two labels could be trained on "
            "under one and tested under the other)."
        )
    idx = np.flatnonzero(keep)
    comp = _linked([paths[i] for i in idx], [digests[i] for i in idx], [keys[i] for i in idx])
    group_key: dict = {}
    for n in sorted(range(len(idx)), key=lambda n: keys[idx[n]]):
        group_key.setdefault(comp[n], keys[idx[n]])
    sizes = np.bincount(comp, minlength=len(idx))
    multi = [c for c in np.unique(comp) if sizes[c] > 1]
    found = Duplicates(
        dropped=int((~keep).sum()),
        groups=len(multi),
        grouped=int(sum(sizes[c] for c in multi)),
        largest=int(max((sizes[c] for c in multi), default=0)),
        across=sum(1 for c in multi if len(set(where[idx[comp == c]])) > 1),
    )
    out, offset, kept = {}, 0, 0
    for s in names:
        mask = keep[offset : offset + len(parts[s])]
        out[s] = parts[s].take(mask, parts[s].origin, parts[s].carved)
        out[s].groups = [group_key[comp[m]] for m in range(kept, kept + int(mask.sum()))]
        offset, kept = offset + len(parts[s]), kept + int(mask.sum())
    _log(found, len(paths), time.perf_counter() - t0)
    return out, found


def _log(found: Duplicates, n: int, seconds: float) -> None:
    log.info(
        "looked for identical and near-duplicate images among %d in %.1fs: %s",
        n,
        seconds,
        found.sentence() or "none found",
    )
    if found.across:
        log.warning(
            "%d group(s) of identical or near-duplicate images lie in two of the split folders the data came with: "
            "those test or validation images are not independent of training; move or remove the copies",
            found.across,
        )
