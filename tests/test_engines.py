"""predict's engines (TensorFlow's inference graph, TFLite, ONNX Runtime) give the model's probabilities."""

import logging

import numpy as np
import pytest

from kerasxfer import engines
from kerasxfer.errors import UserError
from tests.photos import photos


@pytest.fixture(scope="module")
def clf_and_images():
    import keras

    from kerasxfer.inference import Classifier
    from kerasxfer.models import build_scratch_cnn

    keras.utils.set_random_seed(3)
    model = build_scratch_cnn((32, 32, 3), 4)
    images = np.round(photos(32))  # what Classifier.preprocess gives: whole numbers in [0, 255]
    return Classifier(model, list("abcd")), model, images


@pytest.mark.parametrize("name", engines.available())
def test_every_engine_matches_the_saved_model_on_real_photos(clf_and_images, name, tmp_path):
    from kerasxfer.inference import export

    clf, model, images = clf_and_images
    ref = model.predict(images, verbose=0)
    engine = engines.EngineChoice(clf, name, export).for_job(1, images)
    assert engine.name == name
    for batch in (images, images[:3]):  # a smaller last batch too
        probs = engine(batch)
        assert (probs.argmax(1) == ref[: len(batch)].argmax(1)).all()
        assert np.abs(probs - ref[: len(batch)]).max() <= 1e-4


def test_auto_keeps_tensorflow_for_small_jobs_and_times_the_others_for_large_ones(clf_and_images, monkeypatch, caplog):
    from kerasxfer.inference import export

    clf, _, images = clf_and_images
    assert engines.EngineChoice(clf, "auto", export).for_job(100, images).name == "tensorflow"
    monkeypatch.setattr(engines, "AUTO_MIN_IMAGES", 4)
    caplog.set_level(logging.INFO, "kerasxfer")
    chosen = engines.EngineChoice(clf, "auto", export).for_job(4, images)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("engine: ")]
    assert len(said) == 1 and said[0].startswith(f"engine: {chosen.name} (measured on the first batch: ")
    assert all(f"{n} " in said[0] for n in engines.available())


def test_an_unknown_engine_is_one_sentence(clf_and_images):
    from kerasxfer.inference import export

    with pytest.raises(UserError, match="--engine='gpu' is unknown: use auto, tensorflow, tflite, onnxruntime"):
        engines.EngineChoice(clf_and_images[0], "gpu", export)


def test_a_model_the_converters_cannot_take_is_skipped_by_auto_and_one_sentence_by_name(tmp_path, caplog):
    """A lanczos Resizing: TFLite has no kernel and ONNX Runtime refuses the graph. They were converter dumps
    and tracebacks (and "wrote model.onnx" for a file ONNX Runtime cannot load)."""
    import keras

    from kerasxfer.inference import Classifier, export

    pytest.importorskip("onnxruntime")
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Resizing(16, 16, interpolation="lanczos3")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    clf = Classifier(keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)), ["a", "b", "c"])
    for fmt in ("tflite", "onnx"):
        with pytest.raises(UserError, match=f"this model cannot be converted to {fmt} .*use --export=saved_model"):
            export(clf, str(tmp_path / fmt), fmt)
        assert not (tmp_path / fmt / f"model.{fmt}").exists() and not list((tmp_path / fmt).glob(".tmp-*"))
    with pytest.raises(UserError, match="cannot be converted to tflite"):
        engines.EngineChoice(clf, "tflite", export).for_job(1, None)
    batch = photos(32)
    with caplog.at_level(logging.INFO, logger="kerasxfer"):
        chosen = engines.EngineChoice(clf, "auto", export).for_job(engines.AUTO_MIN_IMAGES, batch)
    assert chosen.name == "tensorflow" and "engine: tflite skipped" in caplog.text
    assert "engine: onnxruntime skipped" in caplog.text


def test_labels_txt_is_one_line_per_class_whatever_the_names_hold(tmp_path):
    import json

    from kerasxfer.inference import write_labels

    names = ["cat", "two\nlines", "tab\there", "u\u2028sep"]
    write_labels(str(tmp_path), names)
    lines = (tmp_path / "labels.txt").read_text().split("\n")
    assert lines[:-1] == ["cat", "two lines", "tab\there", "u sep"] and lines[-1] == ""
    assert json.loads((tmp_path / "labels.json").read_text()) == names
