"""One image, one side (issue 43): identical files and near-duplicates in a folder dataset never straddle a split.

The fifth hostile round: 30 random-noise images with random labels, each saved three times (or with faint
noise on the copies), gave "Transfer wins" on labels that carry no signal, because copies of one image were
trained on and tested on. Fast tests of kerasxfer.data.duplicates and the grouped splits; the whole study on
such data is tests/test_hostile.py's duplicated-noise test.
"""

import hashlib
import logging
import os

import numpy as np
import pytest
from PIL import Image

from kerasxfer.data import duplicates
from kerasxfer.data.sources import folder_source
from kerasxfer.data.splitting import fold_assign, fold_split
from kerasxfer.errors import UserError


def _noise_folder(root, n=30, copies=3, jitter=0, classes=("a", "b"), seed=0):
    """``n`` random-noise images under random labels, each saved ``copies`` times in its class folder
    (``jitter``: +-grey levels of fresh noise on every copy after the first; 0: byte-identical copies)."""
    rng = np.random.default_rng(seed)
    for c in classes:
        os.makedirs(root / c, exist_ok=True)
    originals = {}
    for i in range(n):
        img = rng.integers(0, 256, (24, 24, 3)).astype(np.int16)
        label = classes[rng.integers(len(classes))]
        for k in range(copies):
            shift = rng.integers(-jitter, jitter + 1, img.shape) if (jitter and k) else 0
            name = f"img{i:02d}_copy{k}.png"
            Image.fromarray((img + shift).clip(0, 255).astype(np.uint8)).save(root / label / name)
            originals[f"{label}/{name}"] = i
    return originals


def _sides(src):
    return {k: side for side, part in src.splits.items() for k in part.keys}


@pytest.mark.parametrize("jitter", [0, 2])
def test_copies_of_one_image_always_land_on_one_side_of_every_split_and_fold(tmp_path, jitter):
    originals = _noise_folder(tmp_path / "data", jitter=jitter)
    for seed in range(4):
        src = folder_source(str(tmp_path / "data"), 0.2, 0.2, seed)
        sides = _sides(src)
        for i in range(30):
            assert len({sides[k] for k, o in originals.items() if o == i and k in sides}) == 1, (seed, i)
        for fold in (1, 2, 3):
            split, _ = fold_split(src, 3, fold, 0.2, seed)
            sides = _sides(split)
            for i in range(30):
                assert len({sides[k] for k, o in originals.items() if o == i and k in sides}) == 1, (seed, fold, i)
    if jitter:  # every copy differs from the others: all 30 images are groups of three
        assert (src.info["duplicate_groups"], src.info["identical_copies_dropped"]) == (30, 0)
    else:  # identical copies under one label are used once
        assert (src.info["duplicate_groups"], src.info["identical_copies_dropped"]) == (0, 60)
        assert sum(len(p) for p in src.splits.values()) == 30


def test_identical_copies_under_one_label_are_used_once_and_under_two_are_refused(tmp_path, caplog):
    root = tmp_path / "data"
    rng = np.random.default_rng(1)
    for c in ("a", "b"):
        os.makedirs(root / c)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)).save(root / c / f"{i}.png")
    (root / "a" / "copy of 0.png").write_bytes((root / "a" / "0.png").read_bytes())
    (root / "a" / "copy of 1.png").write_bytes((root / "a" / "1.png").read_bytes())
    os.symlink(root / "a" / "2.png", root / "a" / "link to 2.png")  # a link is the file it points to
    with caplog.at_level(logging.INFO, logger="kerasxfer"):
        src = folder_source(str(root), 0.2, 0.2, 0)
    keys = [k for p in src.splits.values() for k in p.keys]
    assert len(keys) == 12 and not {"a/copy of 0.png", "a/copy of 1.png", "a/link to 2.png"} & set(keys)
    assert src.info["identical_copies_dropped"] == 3 and src.info["duplicate_groups"] == 0
    assert "3 identical copies used once" in src.description
    assert any("3 identical copies used once" in r.getMessage() for r in caplog.records)
    (root / "b" / "mislabelled 3.png").write_bytes((root / "a" / "3.png").read_bytes())
    with pytest.raises(UserError, match=r"^a/3.png and b/mislabelled 3.png are the same image .* under two labels: "):
        folder_source(str(root), 0.2, 0.2, 0)


def test_different_images_are_not_grouped(tmp_path):
    """Unrelated noise, and plain images 3 grey levels apart, are all distinct: no group, no copy dropped."""
    root = tmp_path / "data"
    rng = np.random.default_rng(2)
    for c in ("a", "b"):
        os.makedirs(root / c)
        for i in range(20):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)).save(root / c / f"noise{i}.png")
            grey = 3 * i + (100 if c == "b" else 0)
            Image.fromarray(np.full((32, 32, 3), grey, np.uint8)).save(root / c / f"plain{i}.png")
    src = folder_source(str(root), 0.2, 0.2, 0)
    assert src.info["duplicate_groups"] == 0 and src.info["identical_copies_dropped"] == 0
    assert "group" not in src.description


def test_a_continuum_of_near_images_does_not_chain_into_one_group():
    """Plain images one grey level apart: each is near the next, yet a group stays within 2 x NEAR_RMS."""
    keys = [f"{i:03d}" for i in range(100)]
    thumbs = np.stack([np.full(duplicates.THUMB**2, float(i)) for i in range(100)])
    comp = duplicates._leaders(keys, duplicates._near_pairs(thumbs.astype(np.float32)))
    for c in np.unique(comp):
        members = np.flatnonzero(comp == c)
        assert members.max() - members.min() <= 2 * duplicates.NEAR_RMS
    assert len(np.unique(comp)) >= 30


def test_without_groups_the_folds_are_the_per_example_ranking():
    """No duplicates, no change: each example dealt by the rank of its own seeded hash, as before groups."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 200)
    keys = [f"x/{i}.png" for i in range(200)]

    def unit(k):
        return int.from_bytes(hashlib.sha256(f"5:fold:{k}".encode()).digest()[:8], "big") / 2.0**64

    want = np.zeros(200, np.int32)
    for c in range(3):
        idx = np.flatnonzero(labels == c)
        want[idx[np.argsort([unit(keys[i]) for i in idx], kind="stable")]] = np.arange(len(idx)) % 4 + 1
    np.testing.assert_array_equal(fold_assign(labels, keys, 4, 5), want)


def test_a_class_folder_that_links_to_another_is_refused(tmp_path):
    root = tmp_path / "data"
    for c in ("a", "b"):
        os.makedirs(root / c)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i + (0 if c == "a" else 120), np.uint8)).save(root / c / f"{i}.png")
    os.symlink(root / "a", root / "c")
    with pytest.raises(UserError, match=r"class folder 'c' of .* is a link to class folder 'a' .*remove the link"):
        folder_source(str(root), 0.2, 0.2, 0)
