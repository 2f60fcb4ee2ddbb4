"""Data sources and pipelines: digits, both folder layouts, stratified split, decoding."""

import os

import numpy as np
import pytest
import tensorflow as tf

from kerasxfer.config import DataConfig
from kerasxfer.data import load_data
from kerasxfer.data.arrays import to_rgb_resized
from kerasxfer.data.sources import folder_source
from kerasxfer.data.splitting import stratified_assign
from kerasxfer.errors import UserError
from tests.conftest import _write_image


def test_digits_split_is_stratified_and_images_are_rgb_0_255():
    data = load_data(DataConfig(dataset="digits", image_size=32, batch_size=64), seed=0)
    assert data.num_train + data.num_val + data.num_test == 1797
    assert 300 < data.num_val < 420 and 300 < data.num_test < 420 and data.class_names == [str(i) for i in range(10)]
    for labels in (data.val_labels, data.test_labels):
        counts = np.bincount(labels, minlength=10)
        assert counts.min() >= 20 and counts.max() <= 55  # about 36 per class: each class is split on its own
    x, y = next(iter(data.train))
    assert x.shape == (64, 32, 32, 3) and x.dtype == tf.float32 and y.dtype == tf.int32
    assert float(tf.reduce_min(x)) >= 0.0 and float(tf.reduce_max(x)) == 255.0
    np.testing.assert_array_equal(x[..., 0].numpy(), x[..., 2].numpy())  # grey -> RGB
    labels = np.concatenate([b.numpy() for _, b in data.val])
    np.testing.assert_array_equal(labels, data.val_labels)  # val keeps its order
    np.testing.assert_array_equal(np.concatenate([b.numpy() for _, b in data.test]), data.test_labels)


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
    val, train, test = data.info["val_per_class"], data.info["train_per_class"], data.info["test_per_class"]
    assert all(val[c] >= 1 and test[c] >= 1 and train[c] >= 2 for c in ("cats", "dogs", "owls"))
    assert {c: val[c] + train[c] + test[c] for c in val} == {"cats": 10, "dogs": 10, "owls": 5}
    assert data.info["ignored_files"] == 1
    xs = np.concatenate([x.numpy() for x, _ in data.train])
    assert xs.shape == (data.num_train, 16, 16, 3)


def test_split_depends_on_path_and_seed_not_on_listing(make_image_folder):
    root = str(make_image_folder({"a": 20, "b": 20}))
    src = folder_source(root, 0.25, 0.2, seed=5)
    val1, test1 = set(src.val.x), set(src.test.x)
    again = folder_source(root, 0.25, 0.2, seed=5)
    assert (set(again.val.x), set(again.test.x)) == (val1, test1)
    assert set(folder_source(root, 0.25, 0.2, seed=6).val.x) != val1
    # Reversed listing order: same split.
    keys = src.train.keys + src.val.keys + src.test.keys
    y = np.concatenate([src.train.y, src.val.y, src.test.y])
    side = stratified_assign(y[::-1], keys[::-1], 0.25, 0.2, seed=5)
    x = np.concatenate([src.train.x, src.val.x, src.test.x])[::-1]
    assert set(x[side == 1]) == val1 and set(x[side == 2]) == test1


def test_split_layout_uses_train_and_val_folders(make_image_folder):
    root = make_image_folder({"cats": 6, "dogs": 7}, layout="split", val_per_class=2)
    os.rename(root / "val", root / "validation")
    data = load_data(DataConfig(dataset=str(root), image_size=16, batch_size=8), seed=0)
    assert data.num_val == 4 and data.num_train + data.num_test == 9 and data.num_test >= 2  # test carved from train/
    assert "train/ and validation/" in data.description
    assert data.splits["val"]["from"] == "validation/" and data.splits["test"]["from"].startswith("20% of train/")


def test_undecodable_files_are_skipped_and_counted(make_image_folder):
    root = make_image_folder({"cats": 6, "dogs": 6})
    (root / "cats" / "empty.jpg").write_bytes(b"")
    (root / "dogs" / "text.png").write_text("hello")
    data = load_data(DataConfig(dataset=str(root), image_size=16, batch_size=4), seed=0)
    assert data.info["skipped_undecodable"] == 2
    assert data.num_train + data.num_val + data.num_test == 12


@pytest.mark.parametrize(
    "classes, setup, message",
    [
        (
            {"cats": 4},
            lambda r: (r / "empty").mkdir(),
            r"single class \(cats\) \(1 sub-folder\(s\) without images ignored: empty\)",
        ),
        ({"cats": 4}, None, "single class"),
        ({"cats": 4, "dogs": 1}, None, "only 1 image"),
        ({"cats": 4, "dogs": 2}, None, r"class 'dogs' has only 2 image\(s\): a train/validation/test split needs at least 3"),
        ({}, lambda r: r.mkdir(parents=True), "no class sub-folders"),
    ],
)
def test_folder_problems_are_user_errors(make_image_folder, tmp_path, classes, setup, message):
    root = make_image_folder(classes) if classes else tmp_path / "data"
    if setup:
        setup(root)
    with pytest.raises(UserError, match=message):
        folder_source(str(root), 0.2, 0.2, 0)


@pytest.fixture(scope="module")
def sorted_folder(tmp_path_factory):
    """5 classes x 1,000 tiny images: a folder listed class by class, far larger than any shuffle buffer."""
    from PIL import Image

    root = tmp_path_factory.mktemp("sorted")
    for c in range(5):
        (root / f"class{c}").mkdir()
        for i in range(1000):
            Image.fromarray(np.full((4, 4, 3), (c * 50, i % 256, i // 256), np.uint8)).save(root / f"class{c}" / f"{i:04d}.png")
    return root


def test_batches_of_a_class_sorted_folder_mix_classes_and_repeat_per_epoch(sorted_folder):
    cfg = DataConfig(dataset=str(sorted_folder), image_size=8, batch_size=32)
    data = load_data(cfg, seed=7)
    assert data.num_classes == 5 and data.num_train > 2500
    epochs = list(data.train_from(0, 2).as_numpy_iterator())
    first, second = epochs[: data.steps_per_epoch], epochs[data.steps_per_epoch :]
    for _, y in first[:-1]:  # every full batch of the first epoch
        assert np.bincount(y, minlength=5).max() <= 0.4 * len(y), np.bincount(y, minlength=5)
    again = list(load_data(cfg, seed=7).train_from(0, 2).as_numpy_iterator())
    for (xa, ya), (xb, yb) in zip(epochs, again):  # same seed: the same order, epoch by epoch
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)
    order1 = np.concatenate([y for _, y in first])
    order2 = np.concatenate([y for _, y in second])
    assert not np.array_equal(order1, order2)  # a new order every epoch
    np.testing.assert_array_equal(np.sort(order1), np.sort(order2))  # of the same images


def test_test_images_never_appear_in_train_or_val(sorted_folder, make_image_folder):
    from kerasxfer.data.pipeline import open_source

    for cfg in (DataConfig(dataset=str(sorted_folder)), DataConfig(dataset="digits")):
        src = open_source(cfg, seed=0)
        train, val, test = (set(p.keys) for p in (src.train, src.val, src.test))
        assert test and val and not (test & train) and not (test & val) and not (val & train)
        assert len(train) + len(val) + len(test) == len(src.train) + len(src.val) + len(src.test)
    root = make_image_folder({"cats": 8, "dogs": 8}, layout="split", val_per_class=2)
    for c in ("cats", "dogs"):  # a test/ folder is used as it is
        (root / "test" / c).mkdir(parents=True)
        for i in range(3):
            _write_image(str(root / "test" / c / f"t{i}.png"), 24, (40 * i, 90 if c == "cats" else 160, 20))
    src = open_source(DataConfig(dataset=str(root)), seed=0)
    assert (len(src.train), len(src.val), len(src.test)) == (12, 4, 6)
    assert all(k.startswith("test/") for k in src.test.keys) and all(k.startswith("train/") for k in src.train.keys)


@pytest.mark.parametrize(
    "mode, expect",
    [
        ("squash", None),
        ("crop", "centre"),
        ("pad", "bars"),
    ],
)
def test_resize_modes_keep_or_stretch_the_aspect_ratio(mode, expect):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, 10:30] = 200  # a bright centre square on a wide black image
    out = to_rgb_resized(tf.constant(img), 10, mode).numpy()
    mapped = next(iter(tf.data.Dataset.from_tensors(tf.constant(img)).map(lambda t: to_rgb_resized(t, 10, mode))))
    np.testing.assert_array_equal(out, mapped.numpy())  # the same eagerly and inside Dataset.map
    assert out.shape == (10, 10, 3)
    if expect == "centre":
        assert out.min() >= 190  # only the centre square is left
    elif expect == "bars":
        assert out[:2].max() == 0 and out[-2:].max() == 0 and out[4:6, 4:6].min() >= 190  # black bars above/below
    else:
        assert out[:, 0].max() == 0 and out[:, 5].min() >= 190  # stretched: black sides, bright middle


def test_train_from_draws_each_epoch_when_reached_the_same_batches_as_epoch_order():
    """The epochs of train_from are built lazily (a 500-epoch cap costs nothing up front): batch for batch they are
    the seeded order of each epoch, the last batch of an epoch short, and the next epoch starting fresh."""
    from kerasxfer.data.batches import epoch_order, epochs_from

    images = np.arange(11 * 2 * 2 * 3, dtype=np.uint8).reshape(11, 2, 2, 3)
    labels = np.array([0, 1, 2] * 3 + [0, 1])
    train_from = epochs_from(images, labels, 4, seed=3)
    got = list(train_from(2, 500).take(6).as_numpy_iterator())  # epochs 2 and 3: 3 batches each (4, 4, 3)
    want = []
    for e in (2, 3):
        order = epoch_order(3, e, labels)
        want += [order[i : i + 4] for i in range(0, 11, 4)]
    assert [len(y) for _, y in got] == [4, 4, 3, 4, 4, 3]
    for (x, y), idx in zip(got, want):
        np.testing.assert_array_equal(y, labels[idx])
        np.testing.assert_array_equal(x, images[idx].astype(np.float32))
