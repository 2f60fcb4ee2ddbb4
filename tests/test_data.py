"""Data sources and pipelines: digits, both folder layouts, stratified split, decoding."""

import os

import numpy as np
import pytest
import tensorflow as tf

from kerasxfer.config import DataConfig
from kerasxfer.data import load_data
from kerasxfer.data.pipeline import to_rgb_resized
from kerasxfer.data.sources import folder_source, stratified_split
from kerasxfer.errors import UserError


def test_digits_split_is_stratified_and_images_are_rgb_0_255():
    data = load_data(DataConfig(dataset="digits", image_size=32, batch_size=64), seed=0)
    assert data.num_train + data.num_val == 1797
    assert data.num_val == 360 and data.class_names == [str(i) for i in range(10)]
    counts = np.bincount(data.val_labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    x, y = next(iter(data.train))
    assert x.shape == (64, 32, 32, 3) and x.dtype == tf.float32 and y.dtype == tf.int32
    assert float(tf.reduce_min(x)) >= 0.0 and float(tf.reduce_max(x)) == 255.0
    np.testing.assert_array_equal(x[..., 0].numpy(), x[..., 2].numpy())  # grey -> RGB
    labels = np.concatenate([b.numpy() for _, b in data.val])
    np.testing.assert_array_equal(labels, data.val_labels)  # val keeps its order


def test_train_shuffle_is_seeded_and_changes_every_epoch():
    def order(seed, start=0):
        d = load_data(DataConfig(dataset="digits", image_size=8, batch_size=2000), seed=seed)
        assert d.steps_per_epoch == 1
        it = iter(d.train_from(start, start + 2))
        return next(it)[1].numpy(), next(it)[1].numpy()

    a1, a2 = order(3)
    b1, b2 = order(3)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)
    assert not np.array_equal(a1, order(4)[0])
    # a run resumed at epoch 1 sees epoch 1's order, not epoch 0's
    np.testing.assert_array_equal(order(3, start=1)[0], a2)


def test_every_epoch_holds_each_training_image_once():
    d = load_data(DataConfig(dataset="digits", image_size=8, batch_size=100), seed=0)
    it = iter(d.train_from(5, 7))
    for _ in range(2):
        labels = np.concatenate([next(it)[1].numpy() for _ in range(d.steps_per_epoch)])
        assert len(labels) == d.num_train
        np.testing.assert_array_equal(np.bincount(labels), list(d.info["train_per_class"].values()))


@pytest.mark.parametrize("channels", [1, 3])
def test_resize_op_same_eagerly_and_in_dataset_map(channels):
    img = tf.constant(np.random.default_rng(0).integers(0, 256, (13, 9, channels)), tf.uint8)
    eager = to_rgb_resized(img, 20).numpy()
    mapped = next(iter(tf.data.Dataset.from_tensors(img).map(lambda t: to_rgb_resized(t, 20)))).numpy()
    assert eager.shape == (20, 20, 3) and eager.dtype == np.uint8
    np.testing.assert_array_equal(eager, mapped)


def test_flat_folder_is_split_stratified_and_decodes_every_format(make_image_folder):
    root = make_image_folder({"cats": 10, "dogs": 10, "owls": 5})
    (root / "dogs" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    data = load_data(DataConfig(dataset=str(root), image_size=16, batch_size=4, val_fraction=0.2), seed=0)
    assert data.class_names == ["cats", "dogs", "owls"]
    val, train = data.info["val_per_class"], data.info["train_per_class"]
    assert all(val[c] >= 1 and train[c] >= 3 for c in ("cats", "dogs", "owls"))
    assert {c: val[c] + train[c] for c in val} == {"cats": 10, "dogs": 10, "owls": 5}
    assert data.info["ignored_files"] == 1
    xs = np.concatenate([x.numpy() for x, _ in data.train])
    assert xs.shape == (data.num_train, 16, 16, 3)


def test_split_depends_on_path_and_seed_not_on_listing(make_image_folder):
    root = str(make_image_folder({"a": 20, "b": 20}))
    src = folder_source(root, 0.25, seed=5)
    val1 = set(src.val_x)
    assert set(folder_source(root, 0.25, seed=5).val_x) == val1
    assert set(folder_source(root, 0.25, seed=6).val_x) != val1
    # Reversed listing order: same split.
    x = np.concatenate([src.train_x, src.val_x])
    y = np.concatenate([src.train_y, src.val_y])
    mask = stratified_split(x[::-1], y[::-1], root, 0.25, seed=5)
    assert set(x[::-1][mask]) == val1


def test_split_layout_uses_train_and_val_folders(make_image_folder):
    root = make_image_folder({"cats": 6, "dogs": 7}, layout="split", val_per_class=2)
    os.rename(root / "val", root / "validation")
    data = load_data(DataConfig(dataset=str(root), image_size=16, batch_size=8), seed=0)
    assert data.num_train == 9 and data.num_val == 4
    assert "train/ and validation/" in data.description


def test_undecodable_files_are_skipped_and_counted(make_image_folder):
    root = make_image_folder({"cats": 6, "dogs": 6})
    (root / "cats" / "empty.jpg").write_bytes(b"")
    (root / "dogs" / "text.png").write_text("hello")
    data = load_data(DataConfig(dataset=str(root), image_size=16, batch_size=4), seed=0)
    assert data.info["skipped_undecodable"] == 2
    assert data.num_train + data.num_val == 12


@pytest.mark.parametrize(
    "classes, setup, message",
    [
        ({"cats": 4}, lambda r: (r / "empty").mkdir(), r"single class \(cats\) \(1 sub-folder\(s\) without images ignored: empty\)"),
        ({"cats": 4}, None, "single class"),
        ({"cats": 4, "dogs": 1}, None, "only 1 image"),
        ({}, lambda r: r.mkdir(parents=True), "no class sub-folders"),
    ],
)
def test_folder_problems_are_user_errors(make_image_folder, tmp_path, classes, setup, message):
    root = make_image_folder(classes) if classes else tmp_path / "data"
    if setup:
        setup(root)
    with pytest.raises(UserError, match=message):
        folder_source(str(root), 0.2, 0)
