"""ONNX export (predict --export=onnx): the file onnxruntime runs gives the Keras model's probabilities."""

import numpy as np
import pytest

from tests.photos import photos

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'kerasxfer[onnx]'")


def _onnx_probs(clf, tmp_path, images):
    from kerasxfer.inference import export

    path = export(clf, str(tmp_path / "export"), "onnx")
    assert (tmp_path / "export" / "labels.txt").read_text().split("\n")[:2] == clf.class_names[:2]
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]  # one input: no constant left outside the graph
    return sess.run(None, {"image": images})[0]


def test_efficientnet_lite0_with_its_published_weights_matches_keras_on_realphotos(tmp_path):
    from kerasxfer.inference import Classifier
    from kerasxfer.models import efficientnet_lite as eff

    clf = Classifier(eff.EfficientNetLite("efficientnet_lite0", weights="imagenet"), [str(k) for k in range(1000)])
    images = photos(224)
    keras_probs = clf.model.predict(images, verbose=0)
    onnx_probs = _onnx_probs(clf, tmp_path, images)
    assert int(keras_probs[0].argmax()) in (281, 282, 285)  # chelsea is a cat: the weights are the real ones
    assert (onnx_probs.argmax(1) == keras_probs.argmax(1)).all()
    assert np.abs(onnx_probs - keras_probs).max() <= 1e-4


def test_regnet_grouped_convolutions_export_and_match(tmp_path):
    from kerasxfer.inference import Classifier
    from kerasxfer.models.transfer import build_transfer_model

    keras_model = build_transfer_model("regnetx002", (64, 64, 3), 5, weights=None)
    clf = Classifier(keras_model, list("abcde"))
    images = photos(64)
    keras_probs = clf.model.predict(images, verbose=0)
    onnx_probs = _onnx_probs(clf, tmp_path, images)
    assert (onnx_probs.argmax(1) == keras_probs.argmax(1)).all()
    assert np.abs(onnx_probs - keras_probs).max() <= 1e-4


@pytest.mark.parametrize("augment", ["light", "strong"])
def test_a_model_trained_with_augmentation_exports_without_its_random_ops(tmp_path, augment):
    """The random augmentation layers stayed in the exported graph: "wrote model.onnx" for a file ONNX Runtime
    cannot load, and --engine=auto crashed on 10,000 images."""
    import keras

    from kerasxfer.inference import Classifier
    from kerasxfer.models.augment import apply_augmentation
    from kerasxfer.models.inference_graph import training_only

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = apply_augmentation(inputs, augment)
    x = keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255)(x))
    x = keras.layers.Dropout(0.5)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    clf = Classifier(model, ["a", "b", "c"])
    assert not any(training_only(layer) for layer in clf.fast.layers)
    images = photos(32)
    keras_probs = model.predict(images, verbose=0)  # inference: augmentation and dropout are the identity
    onnx_probs = _onnx_probs(clf, tmp_path, images)
    assert np.abs(onnx_probs - keras_probs).max() <= 1e-5
