"""Input sources as a registry (kerasxfer.datasets.INPUT_SOURCES): every --dataset kind is one entry, and the
four places that read a dataset (the check before TensorFlow, opening its splits, the headers for
--image_size=auto, the study folder's name) go through it, so a new source is its reader plus one entry."""

import dataclasses
import inspect
import os

import numpy as np
import pytest

from kerasxfer import datasets
from kerasxfer.config import DataConfig
from kerasxfer.errors import UserError


@pytest.mark.parametrize(
    "name,kind",
    [
        ("digits", "digits"),
        ("synthetic", "synthetic"),
        ("tfds:tf_flowers", "tfds"),
        ("arrays:0123abcd", "arrays"),
        ("labels.csv", "table"),
        ("/data/LABELS.TSV", "table"),
        ("~/photos", "folder"),
        ("digits/", "folder"),
    ],
)
def test_each_name_is_read_by_the_source_its_spelling_says(name, kind):
    assert datasets.source_of(name).name == kind


def test_every_reader_exists_with_the_one_signature():
    for source in datasets.INPUT_SOURCES:
        assert list(inspect.signature(source.reader("open")).parameters) == ["cfg", "split_seed"], source.name
        assert list(inspect.signature(source.reader("sides")).parameters) == ["cfg"], source.name
    assert [s.name for s in datasets.INPUT_SOURCES if s.in_process] == ["arrays"]


# ---------------------------------------------------------------- a source added in two places: a reader, an entry
def open_npz(cfg, split_seed):
    """A NumPy .npz file of images ``x`` (N, H, W, 3) and labels ``y``, read through the arrays source's splitting."""
    from kerasxfer.data import tables

    with np.load(cfg.dataset) as z:
        name = datasets.register_arrays(z["x"], z["y"])
    return tables.arrays_source(name, cfg.val_fraction, cfg.test_fraction, split_seed)


def npz_sides(cfg):
    with np.load(cfg.dataset) as z:
        return [min(z["x"].shape[1:3])]


def _check_npz(cfg):
    if not os.path.isfile(cfg.dataset):
        raise UserError(f"--dataset={cfg.dataset!r} does not exist: pass a .npz file of arrays x and y.")


NPZ = datasets.InputSource(
    "npz",
    lambda d: d.endswith(".npz"),
    f"{__name__}:open_npz",
    f"{__name__}:npz_sides",
    check=_check_npz,
    stem=lambda d: "npz-" + os.path.basename(d)[:-4],
)


def test_a_new_source_is_one_entry_and_its_reader(tmp_path, monkeypatch):
    from kerasxfer.data import sizes
    from kerasxfer.data.pipeline import open_source
    from kerasxfer.studies import dataset_name

    monkeypatch.setattr(datasets, "INPUT_SOURCES", (NPZ, *datasets.INPUT_SOURCES))
    rng = np.random.default_rng(0)
    path = tmp_path / "shapes.npz"
    np.savez(path, x=rng.integers(0, 256, (60, 40, 48, 3), dtype=np.uint8), y=np.repeat(["ant", "bee"], 30))
    cfg = DataConfig(dataset=str(path))
    cfg.validate()  # the check before TensorFlow
    src = open_source(cfg, seed=0)
    assert src.class_names == ["ant", "bee"]
    assert len(src.train.y) + len(src.val.y) + len(src.test.y) == 60
    assert sizes.short_sides(cfg) == [40]
    assert dataset_name(str(path)) == "npz-shapes"
    with pytest.raises(UserError, match="a .npz file of arrays x and y"):
        dataclasses.replace(cfg, dataset=str(tmp_path / "missing.npz")).validate()
