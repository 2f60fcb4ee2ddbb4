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
        assert (probs.argmax(1) == ref[:len(batch)].argmax(1)).all()
        assert np.abs(probs - ref[:len(batch)]).max() <= 1e-4


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
