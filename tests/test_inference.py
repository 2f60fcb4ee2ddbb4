"""Inference from a run directory: the Python API, the predict CLI, safe loading, export."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasxfer.config import DataConfig, Experiment, ModelConfig, PhaseConfig
from kerasxfer.errors import UserError
from kerasxfer.inference import Classifier, export
from kerasxfer.training import run_experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def _img(color, size=20, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((size, size, 3)) * 40 + np.array(color)).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("colors")
    for c, rgb in COLORS.items():
        (data / c).mkdir()
        for i in range(10):
            Image.fromarray(_img(rgb, seed=i)).save(data / c / f"{i}.png")
    out = tmp_path_factory.mktemp("runs") / "finetune"
    run_experiment(
        Experiment(
            name="finetune",
            out_dir=str(out),
            data=DataConfig(dataset=str(data), image_size=32, batch_size=8),
            model=ModelConfig(kind="transfer", backbone="regnetx002"),
            phases=[PhaseConfig("frozen", 6, 1e-2, "head"), PhaseConfig("unfrozen", 1, 1e-4, "stages:1")],
        )
    )
    return out


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(_img(COLORS["red"], 50, 99)).save(folder / "a red.jpg")
    Image.fromarray(_img(COLORS["blue"], 7, 98)).convert("L").save(folder / "sub" / "grey.PNG")
    Image.fromarray(_img(COLORS["green"], 30, 97)).save(folder / "green.bmp")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "readme.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"\0")
    return folder


def test_api_matches_model_predict_on_preprocessed_arrays(run_dir, images):
    clf = Classifier.from_run(str(run_dir))
    preds = clf.predict(str(images), top_k=2)
    by_name = {os.path.basename(p.source): p for p in preds}
    assert set(by_name) == {"a red.jpg", "grey.PNG", "green.bmp", "broken.jpg", "readme.txt"}
    assert "decoded" in by_name["broken.jpg"].error and "not an image" in by_name["readme.txt"].error
    good = [p for p in preds if p.error is None]
    # the same images, decoded and resized as in training, straight through model.predict
    from kerasxfer.data.arrays import to_rgb_resized
    from kerasxfer.data.decode import decode_image_file

    x = np.stack([to_rgb_resized(decode_image_file(p.source), 32).numpy() for p in good]).astype("float32")
    direct = clf.model.predict(x, verbose=0)
    assert [p.label for p in good] == [clf.class_names[i] for i in direct.argmax(1)]
    for p, row in zip(good, direct):
        assert len(p.top) == 2 and p.top[0][1] == pytest.approx(float(row.max()), abs=1e-4)  # BatchNorm folded
    # arrays and PIL images give the same answer as the (lossless) file
    arr = np.asarray(Image.open(images / "green.bmp"))
    a, b = clf.predict([arr, Image.open(images / "green.bmp")])
    assert a.top[0][1] == pytest.approx(by_name["green.bmp"].top[0][1], abs=1e-4)
    assert b.top[0][1] == pytest.approx(a.top[0][1], rel=1e-6)


def test_predict_cli_writes_one_row_per_input(run_dir, images, tmp_path):
    out_csv, out_json = tmp_path / "p.csv", tmp_path / "p.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for out in (out_csv, out_json):
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "experiments.predict",
                f"--run={run_dir}",
                f"--images={images},{tmp_path}/missing.png",
                "--top_k=3",
                f"--output={out}",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=300,
        )
        assert p.returncode == 0, p.stderr
        assert "Traceback" not in p.stderr
    rows = list(csv.DictReader(open(out_csv)))
    got = {os.path.basename(r["source"]): r for r in rows}
    assert set(got) == {"a red.jpg", "grey.PNG", "green.bmp", "broken.jpg", "readme.txt", "missing.png"}
    # the command writes what the Python API predicts, class and probability, in rank order
    api = Classifier.from_run(str(run_dir)).predict([str(images / "a red.jpg")], top_k=3)[0].top
    assert [(got["a red.jpg"][f"class{k}"], float(got["a red.jpg"][f"prob{k}"])) for k in (1, 2, 3)] == [
        (c, pytest.approx(p, abs=1e-5)) for c, p in api
    ] and got["a red.jpg"]["error"] == ""
    assert float(got["a red.jpg"]["prob1"]) >= float(got["a red.jpg"]["prob2"]) >= float(got["a red.jpg"]["prob3"])
    assert got["broken.jpg"]["class1"] == "" and "decoded" in got["broken.jpg"]["error"]
    assert "not an image" in got["readme.txt"]["error"] and got["missing.png"]["error"] == "file not found"
    rows_json = json.load(open(out_json))
    assert [os.path.basename(r["source"]) for r in rows_json] == [os.path.basename(r["source"]) for r in rows]
    assert len(rows_json[0]["top"]) == 3 and rows_json[1]["top"] == [] and rows_json[1]["error"]


def test_predict_cli_fails_only_when_nothing_is_classified(run_dir, images):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.run(
        [sys.executable, "-m", "experiments.predict", f"--run={run_dir}", f"--images={images}/broken.jpg"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert p.returncode == 2 and "no image could be classified" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize(
    "content, message",
    [(b"", "not a Keras model file"), (b"PK\x03\x04 truncated zip", "not a Keras model file"), (None, "does not exist")],
)
def test_unsafe_or_broken_model_files_are_refused(tmp_path, content, message):
    path = tmp_path / "model.keras"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        Classifier.from_model(str(path), ["a", "b"])


def test_model_needing_custom_code_is_refused(tmp_path):
    import keras

    inp = keras.Input((4,))
    out = keras.layers.Lambda(lambda t: t * 2)(inp)
    keras.Model(inp, out).save(tmp_path / "lambda.keras")
    with pytest.raises(UserError, match="safely"):
        Classifier.from_model(str(tmp_path / "lambda.keras"), ["a", "b", "c", "d"])


def test_export_gives_the_same_top1(run_dir, images, tmp_path):
    """--export=tflite writes the SavedModel first and converts it: one export checks both."""
    clf = Classifier.from_run(str(run_dir))
    files = [images / "a red.jpg", images / "green.bmp", images / "sub" / "grey.PNG"]
    expected = [p.label for p in clf.predict([str(f) for f in files])]
    path = export(clf, str(tmp_path / "export"), "tflite")
    served = tf.saved_model.load(str(tmp_path / "export" / "saved_model"))
    out = served.signatures["serving_default"](tf.constant([f.read_bytes() for f in files]))
    assert [c.decode() for c in out["classes"].numpy()] == expected
    x = np.stack([clf.preprocess(np.asarray(Image.open(f).convert("RGB"))) for f in files]).astype(np.uint8)
    out8 = served.signatures["serve_uint8"](tf.constant(x))
    np.testing.assert_allclose(
        out8["probabilities"].numpy(), clf.model.predict(x.astype("float32"), verbose=0), rtol=1e-4, atol=1e-4
    )  # the export runs the folded-BatchNorm graph (within 1e-4)
    from kerasxfer.data.arrays import to_rgb_resized
    from kerasxfer.data.decode import decode_image_file

    x = np.stack([to_rgb_resized(decode_image_file(str(f)), 32).numpy() for f in files])
    runner = tf.lite.Interpreter(model_path=path).get_signature_runner("serve_uint8")
    probs = runner(images=x)["probabilities"]
    labels = open(os.path.join(os.path.dirname(path), "labels.txt")).read().split()
    assert [labels[i] for i in probs.argmax(1)] == expected


def test_prediction_resizes_as_the_run_was_trained(tmp_path):
    """A run trained with --resize=pad predicts on letterboxed images: data.json carries the choice."""
    import keras

    from kerasxfer.data.arrays import to_rgb_resized

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    model.save(tmp_path / "model.keras")
    (tmp_path / "data.json").write_text(json.dumps({"class_names": ["a", "b"], "image_size": 8, "resize": "pad"}))
    clf = Classifier.from_run(str(tmp_path))
    wide = np.full((10, 40, 3), 200, np.uint8)
    got = clf.preprocess(wide)
    np.testing.assert_array_equal(got, to_rgb_resized(tf.constant(wide), 8, "pad").numpy().astype(np.float32))
    assert got[0].max() == 0 and got[4].min() > 150  # black bars above and below, the picture in the middle


def test_prediction_streams_one_batch_at_a_time_and_keeps_the_order():
    """Memory holds one batch of images however many the inputs are: the first results come out before the
    third batch has been read, in input order, with a broken input reported in its place."""
    import keras

    from kerasxfer.inference import Classifier

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    clf = Classifier(model, ["a", "b"], batch_size=2)
    read = []
    real = clf.preprocess
    clf.preprocess = lambda image: read.append(1) or real(image)
    arrays = [np.full((8, 8, 3), i, np.uint8) for i in range(5)] + [np.zeros(5)]
    stream = clf.predict_iter(arrays)
    first = next(stream)
    assert first.source == "array[0]" and first.error is None and len(read) == 2  # one batch read, not six images
    rest = list(stream)
    assert [p.source for p in rest] == ["array[1]", "array[2]", "array[3]", "array[4]", "array[5]"]
    assert rest[-1].error and "is not an image" in rest[-1].error


def test_file_names_with_commas_are_put_back_together(tmp_path):
    from experiments.predict import rejoin_commas

    (tmp_path / "a,b.jpg").write_bytes(b"x")
    (tmp_path / "c.jpg").write_bytes(b"x")
    parts = f"{tmp_path}/a,b.jpg,{tmp_path}/c.jpg,{tmp_path}/missing.jpg".split(",")
    assert rejoin_commas(parts) == [f"{tmp_path}/a,b.jpg", f"{tmp_path}/c.jpg", f"{tmp_path}/missing.jpg"]


@pytest.mark.parametrize("shape", [(10,), (None, None, 3), (32, 24, 3), (8, 8, 1)])
def test_a_model_that_does_not_take_square_rgb_images_is_one_sentence(shape):
    import keras

    from kerasxfer.errors import UserError
    from kerasxfer.inference import Classifier

    inputs = keras.Input(shape)
    x = keras.layers.GlobalAveragePooling2D()(inputs) if len(shape) == 3 else inputs
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    with pytest.raises(UserError, match="not square RGB images") as e:
        Classifier(model, ["a", "b"])
    assert "\n" not in str(e.value)
