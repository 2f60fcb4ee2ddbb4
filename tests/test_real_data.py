"""Real data in: messy image folders, tfds datasets, augmentation, mixing, file caches."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasxfer.config import DataConfig, Experiment, ModelConfig, PhaseConfig
from kerasxfer.data import load_data
from kerasxfer.data.arrays import cache_key, to_rgb_resized
from kerasxfer.data.decode import decode_image_bytes
from kerasxfer.data.mixing import mix_batch
from kerasxfer.data.sources import folder_source
from kerasxfer.data.tfds import tfds_source
from kerasxfer.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD = ["cats/truncated.jpg", "cats/zero bytes.jpg", "dögs/text posing.JPG"]


def _save(path, arr, fmt, mode=None):
    img = Image.fromarray(arr)
    if mode:
        img = img.convert(mode)
    img.save(path, format=fmt)


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """A folder the way real exports look: every awkward case of issue 4 in two classes."""
    root = tmp_path_factory.mktemp("messy") / "photos"
    rng = np.random.default_rng(0)
    cases = [  # (file name, format, PIL mode, size)
        ("IMG 0001.JPG", "JPEG", None, (30, 40)),
        ("photo.jpeg", "JPEG", "L", (25, 25)),  # greyscale JPEG
        ("alpha.PNG", "PNG", "RGBA", (20, 30)),  # RGBA PNG
        ("palette.png", "PNG", "P", (20, 20)),  # palette PNG
        ("anim.gif", "GIF", "P", (16, 16)),
        ("scan.bmp", "BMP", None, (18, 22)),
        ("web.webp", "WEBP", "RGBA", (20, 24)),
        ("pixel.png", "PNG", None, (1, 1)),  # 1x1
        ("größe ü.jpg", "JPEG", None, (24, 24)),  # non-ASCII name with a space
    ]
    for c, base in (("cats", (200, 40, 40)), ("dögs", (40, 200, 40))):
        d = root / c
        d.mkdir(parents=True)
        for name, fmt, mode, (h, w) in cases:
            arr = (rng.random((h, w, 3)) * 40 + np.array(base)).clip(0, 255).astype(np.uint8)
            _save(str(d / name), arr, fmt, mode)
        (d / ".DS_Store").write_bytes(b"\0\1")  # hidden
        (d / "notes.txt").write_text("not an image")  # non-image extension
        (d / "empty sub").mkdir()  # empty nested folder
    big = (rng.random((2000, 3000, 3)) * 40 + np.array((200, 40, 40))).clip(0, 255).astype(np.uint8)
    _save(str(root / "cats" / "camera 6MP.jpg"), big, "JPEG")
    buf = io.BytesIO()
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(buf, "JPEG")
    (root / "cats" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "cats" / "zero bytes.jpg").write_bytes(b"")
    (root / "dögs" / "text posing.JPG").write_text("I am not a JPEG")
    (root / "empty class").mkdir()  # a class folder without images: ignored, counted
    (root / ".thumbnails").mkdir()
    return root


def test_messy_folder_skip_mode_trains_on_the_rest_with_exact_counts(messy, tmp_path):
    from kerasxfer.training import run_experiment

    exp = Experiment(
        name="messy",
        out_dir=str(tmp_path / "run"),
        data=DataConfig(dataset=str(messy), image_size=16, batch_size=4, val_fraction=0.25),
        model=ModelConfig(kind="scratch", widths=[8]),
        phases=[PhaseConfig("scratch", 1, 1e-3)],
    )
    run_experiment(exp)
    data = json.loads((tmp_path / "run" / "data.json").read_text())
    assert data["class_names"] == ["cats", "dögs"]
    assert data["files_per_class"] == {"cats": {"read": 10, "skipped": 2}, "dögs": {"read": 9, "skipped": 1}}
    assert data["skipped_undecodable"] == 3 and sorted(data["skipped_paths"]) == sorted(BAD)
    assert data["ignored_files"] == 2  # the two notes.txt; hidden files are not even counted
    assert data["ignored_empty_folders"] == ["empty class"]
    assert data["num_train"] + data["num_val"] + data["num_test"] == 19
    assert (tmp_path / "run" / "metrics.json").exists()


def test_messy_folder_error_mode_stops_before_training_with_the_list(messy, tmp_path):
    from kerasxfer.training import run_experiment

    exp = Experiment(
        name="messy",
        out_dir=str(tmp_path / "run"),
        data=DataConfig(dataset=str(messy), image_size=16, on_bad_image="error"),
        model=ModelConfig(kind="scratch", widths=[8]),
        phases=[PhaseConfig("scratch", 1, 1e-3)],
    )
    with pytest.raises(UserError) as e:
        run_experiment(exp)
    msg = str(e.value)
    assert msg.startswith("3 file(s)") and all(b in msg for b in BAD) and "--on_bad_image=skip" in msg
    assert not (tmp_path / "run").exists()


def test_every_format_decodes_to_rgb_with_the_right_colour(messy):
    for name in (
        "IMG 0001.JPG",
        "photo.jpeg",
        "alpha.PNG",
        "palette.png",
        "anim.gif",
        "scan.bmp",
        "web.webp",
        "pixel.png",
        "größe ü.jpg",
    ):
        img = decode_image_bytes(tf.io.read_file(str(messy / "cats" / name))).numpy()
        assert img.ndim == 3 and img.shape[-1] == 3 and img.dtype == np.uint8, name
        if name != "photo.jpeg":  # greyscale: equal channels
            assert img[..., 0].mean() > img[..., 1].mean() + 80, name  # red class stays red
        else:
            np.testing.assert_array_equal(img[..., 0], img[..., 2])


def test_large_jpeg_decodes_at_reduced_size_and_matches_full_decode(messy):
    data = tf.io.read_file(str(messy / "cats" / "camera 6MP.jpg"))
    small = decode_image_bytes(data, min_side=64)
    assert small.shape == (250, 375, 3)  # DCT scaling 1/8: both sides stay >= 64
    assert decode_image_bytes(data, min_side=300).shape == (500, 750, 3)  # 1/4
    assert decode_image_bytes(data, min_side=2000).shape == (2000, 3000, 3)  # full
    a = to_rgb_resized(small, 64).numpy().astype(float)
    b = to_rgb_resized(decode_image_bytes(data), 64).numpy().astype(float)
    assert np.abs(a - b).mean() < 2.0  # the same picture within JPEG rounding


def _plain(v, c):
    """A plain grey image, half of it shifted by 128 grey levels in class b: no image under two labels."""
    img = np.full((4, 4, 3), v, np.uint8)
    if c == "b":
        img[:, 2:] = (v + 128) % 256
    return img


def test_split_is_stable_when_files_are_added(tmp_path):
    root = tmp_path / "d"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(30):
            _save(str(root / c / f"{i}.png"), _plain(4 * i, c), "PNG")
    before = folder_source(str(root), 0.2, 0.2, seed=3)
    for c in ("a", "b"):
        for i in range(30, 60):
            _save(str(root / c / f"{i}.png"), _plain(4 * i % 255, c), "PNG")
    after = folder_source(str(root), 0.2, 0.2, seed=3)
    for part in ("train", "val", "test"):  # no existing file changed sides
        assert set(getattr(before, part).x) <= set(getattr(after, part).x)
    assert 0.1 < len(after.val) / 120 < 0.3 and 0.1 < len(after.test) / 120 < 0.3


def test_mixup_and_cutmix_mix_labels_in_proportion_and_repeat_with_the_seed():
    x = tf.stack([tf.fill((8, 8, 3), float(v)) for v in (0, 100, 200, 255)])
    y = tf.one_hot([0, 1, 2, 3], 4)
    seed = tf.constant([5, 1], tf.int64)
    xm, ym = mix_batch(x, y, seed, mixup=0.4)
    np.testing.assert_allclose(tf.reduce_sum(ym, 1), 1.0, rtol=1e-6)
    # MixUp: each image's mean pixel is the label-weighted mean of the source values
    np.testing.assert_allclose(tf.reduce_mean(xm, [1, 2, 3]), tf.linalg.matvec(ym, tf.constant([0.0, 100, 200, 255])), rtol=1e-4)
    xc, yc = mix_batch(x, y, seed, cutmix=1.0)
    np.testing.assert_allclose(tf.reduce_mean(xc, [1, 2, 3]), tf.linalg.matvec(yc, tf.constant([0.0, 100, 200, 255])), rtol=1e-4)
    assert set(np.unique(xc.numpy())) <= {0.0, 100.0, 200.0, 255.0}  # pasted boxes, not blends
    for a, b in zip(mix_batch(x, y, seed, 0.4, 1.0), mix_batch(x, y, seed, 0.4, 1.0)):
        np.testing.assert_array_equal(a, b)


def test_mixing_pipeline_gives_soft_labels_for_train_and_one_hot_val():
    data = load_data(DataConfig(image_size=8, batch_size=64, mixup=0.2, cutmix=1.0), seed=0)
    ys = np.concatenate([y.numpy() for _, y in data.train])
    assert ys.shape[1] == 10 and np.allclose(ys.sum(1), 1.0)
    assert ((ys > 0) & (ys < 1)).any()  # some labels are mixed
    yv = np.concatenate([y.numpy() for _, y in data.val])
    np.testing.assert_array_equal(yv.argmax(1), data.val_labels)
    assert set(np.unique(yv)) == {0.0, 1.0}


def test_augmentation_is_active_in_training_only_and_survives_save_load(tmp_path):
    import keras

    from kerasxfer.models import build_scratch_cnn

    for mode in ("light", "strong"):
        model = build_scratch_cnn((32, 32, 3), 3, widths=(4,), augment=mode, seed=1)
        plain = build_scratch_cnn((32, 32, 3), 3, widths=(4,))
        for layer in plain.layers:
            layer.set_weights(model.get_layer(layer.name).get_weights())
        x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
        np.testing.assert_allclose(model.predict(x, verbose=0), plain.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
        aug = keras.Model(model.input, model.get_layer("rescale").input)
        assert not np.allclose(aug(x, training=True), x)  # training: the images change
        np.testing.assert_array_equal(aug(x, training=False), x)  # inference: untouched
        path = str(tmp_path / f"{mode}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
        np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_augmented_mixed_run_trains_and_repeats_byte_for_byte(tmp_path):
    from kerasxfer.training import run_experiment

    def run(out):
        exp = Experiment(
            name="aug",
            out_dir=str(out),
            data=DataConfig(image_size=16, batch_size=64, augment="light", mixup=0.2, cutmix=1.0),
            model=ModelConfig(kind="scratch", widths=[8]),
            phases=[PhaseConfig("scratch", 2, 3e-3)],
        )
        return run_experiment(exp)

    m = run(tmp_path / "a")
    run(tmp_path / "b")
    assert (tmp_path / "a" / "history.json").read_bytes() == (tmp_path / "b" / "history.json").read_bytes()
    # above the majority class by more than the noise, not just above a loose threshold (measured: 17.4 % of
    # 322 test images after 2 epochs at 16 px with MixUp and CutMix, McNemar against the majority p < 1e-3)
    from kerasxfer.reporting import stats

    t = m["test"]
    majority = [stats.majority(t["labels"]).class_index] * len(t["labels"])
    assert stats.paired_test(t["labels"], t["predictions"], majority)["p_value"] < 0.01 and t["accuracy"] > 0.13


def test_file_cache_is_written_once_reused_and_rebuilt_when_damaged(tmp_path):
    cache = tmp_path / "cache"
    cfg = DataConfig(image_size=8, batch_size=32, cache_dir=str(cache))
    mem = load_data(DataConfig(image_size=8, batch_size=32), seed=0)
    a = load_data(cfg, seed=0)
    xa = np.concatenate([x for x, _ in a.train_from(0, 2).as_numpy_iterator()])
    xv = np.concatenate([x for x, _ in a.val.as_numpy_iterator()])
    np.testing.assert_array_equal(xa, np.concatenate([x for x, _ in mem.train_from(0, 2).as_numpy_iterator()]))
    np.testing.assert_array_equal(xv, np.concatenate([x for x, _ in mem.val.as_numpy_iterator()]))
    names = sorted(p.name for p in cache.iterdir())
    assert len(names) == 3 and [n.split("-")[0] for n in names] == ["test", "train", "val"]
    assert all(n.endswith(".npy") and "-squash-8px-" in n for n in names)  # no temporary left
    mtimes = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    b = load_data(cfg, seed=0)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in b.val.as_numpy_iterator()]), xv)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == mtimes  # read, not rewritten
    # a truncated file (a full disk, a killed copy) is detected and decoded again
    val_file = cache / names[2]
    val_file.write_bytes(val_file.read_bytes()[:1000])
    c = load_data(cfg, seed=0)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in c.val.as_numpy_iterator()]), xv)
    assert val_file.stat().st_size > 1000
    assert cache_key(["x"], [0], 8, "t") != cache_key(["x"], [0], 16, "t")


# ------------------------------------------------------------------ tfds
@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    from tests import tfds_tiny

    d = str(tmp_path_factory.mktemp("tfds"))
    tfds_tiny.KxTinyColors(data_dir=d).download_and_prepare()
    tfds_tiny.KxTinyColorsVal(data_dir=d).download_and_prepare()
    return d


def test_tfds_without_validation_split_is_split_stratified_by_seed(tfds_dir):
    src = tfds_source("kx_tiny_colors", tfds_dir, 0.2, 0.2, seed=0, image_size=16)
    assert src.class_names == ["red", "green", "blue"]
    assert len(src.train) + len(src.val) + len(src.test) == 30
    assert np.bincount(src.val.y, minlength=3).min() >= 1 and np.bincount(src.test.y, minlength=3).min() >= 1
    assert np.bincount(src.train.y, minlength=3).min() >= 3
    assert "val from 20% of its 'train' split" in src.description and "test from 20% of its 'train'" in src.description
    assert not set(src.test.keys) & set(src.val.keys) and not set(src.test.keys) & set(src.train.keys)
    again = tfds_source("kx_tiny_colors", tfds_dir, 0.2, 0.2, seed=0, image_size=16)
    assert [bytes(v) for v in again.val.x] == [bytes(v) for v in src.val.x]
    other = tfds_source("kx_tiny_colors", tfds_dir, 0.2, 0.2, seed=1, image_size=16)
    assert [bytes(v) for v in other.val.x] != [bytes(v) for v in src.val.x]
    img = decode_image_bytes(src.train.x[0]).numpy()
    assert img.shape[-1] == 3 and img[..., src.train.y[0]].mean() > 150  # the class colour


def test_tfds_validation_split_is_used_when_the_dataset_has_one(tfds_dir):
    data = load_data(DataConfig(dataset="tfds:kx_tiny_colors_val", tfds_data_dir=tfds_dir, image_size=16), seed=0)
    assert data.num_val == 9 and data.num_train + data.num_test == 30  # the test split is carved from train, not val
    assert "val from its 'validation' split" in data.description
    assert data.info["files_per_class"] == {c: {"read": 13, "skipped": 0} for c in ("red", "green", "blue")}


def test_tfds_metadata_path_with_mock_data(tfds_dir):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=20):
        src = tfds_source("beans", tfds_dir, 0.25, 0.2, seed=0, image_size=16)
    assert src.class_names == ["angular_leaf_spot", "bean_rust", "healthy"]  # from beans' ClassLabel
    # mock_data's metadata names no splits here: validation and test are carved from train
    assert len(src.train) + len(src.val) + len(src.test) == 20 and min(len(src.val), len(src.test)) >= 3


def test_tfds_cli_trains_offline_from_a_prepared_folder(tfds_dir, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.scratch",
            "--dataset=tfds:kx_tiny_colors",
            f"--tfds_data_dir={tfds_dir}",
            "--image_size=16",
            "--epochs=1",
            "--widths=8",
            f"--out_dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    data = json.loads((tmp_path / "run" / "data.json").read_text())
    assert data["class_names"] == ["red", "green", "blue"]
    assert data["num_train"] + data["num_val"] + data["num_test"] == 30
    assert data["source"].startswith("tfds kx_tiny_colors")


def test_tfds_not_prepared_offline_says_how_to_get_it(tmp_path):
    with pytest.raises(UserError, match=r"not prepared in .*tfds build tf_flowers --data_dir=DIR"):
        load_data(DataConfig(dataset="tfds:tf_flowers", tfds_data_dir=str(tmp_path), tfds_download=False), seed=0)
    with pytest.raises(UserError, match="cannot be opened"):
        load_data(DataConfig(dataset="tfds:no_such_dataset_kx", tfds_data_dir=str(tmp_path)), seed=0)
    assert [f for _, _, files in os.walk(tmp_path) for f in files] == []  # refused before writing anything


@pytest.mark.slow
def test_tfds_unreachable_download_ends_in_one_sentence(tmp_path):
    """The real download code against a closed loopback port (tfds retries for about 3 minutes)."""
    from tests import tfds_tiny  # noqa: F401  (registers kx_unreachable)

    with pytest.raises(UserError, match=r"downloading it failed \(ConnectionError.*tfds build kx_unreachable"):
        tfds_source("kx_unreachable", str(tmp_path), 0.2, 0.2, 0)
