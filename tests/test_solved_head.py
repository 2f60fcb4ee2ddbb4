"""The frozen phase solved on the real path: EfficientNet-Lite0's published ImageNet weights on dark, low-contrast
scans whose pooled features barely vary (kerasxfer.probe, kerasxfer.training.solve_phase).

* the saved model.keras computes scikit-learn's standardised logistic regression on the same features;
* the solved head fits its training images where the head trained by epochs (as before) does not;
* a run killed after the solve continues from it, and old-style heads still load.
"""

import json
import os

import keras
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler

from kerasxfer import bench, recipes
from kerasxfer.config import DataConfig
from kerasxfer.data import load_data
from kerasxfer.models.head import GAP, NORM
from kerasxfer.training import run_experiment


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    return bench.write_digit_scans(str(tmp_path_factory.mktemp("scans")), n=90, classes=2, size=224)


def _run(scans, out, **kw):
    exp = recipes.finetune(
        backbone="efficientnet_lite0",
        weights="imagenet",
        finetune_epochs=0,
        data=DataConfig(dataset=scans, image_size=224, batch_size=16),
        out_dir=str(out),
        **kw,
    )
    metrics = run_experiment(exp)
    with open(os.path.join(out, "history.json")) as f:
        return exp, metrics, json.load(f)


@pytest.mark.slow  # 224 px EfficientNet-Lite0 passes (about 80 s on 2 cores): make test-ci-slow; tests/test_probe.py is fast
def test_the_solved_head_is_scikit_learns_probe_and_fits_where_the_trained_head_does_not(scans, tmp_path):
    exp, metrics, history = _run(scans, tmp_path / "solved")
    (frozen,) = history["phases"]
    probe = frozen["probe"]
    assert frozen["trainable"] == "head" and probe["C"] > 0 and frozen["schedule"]["steps_per_epoch"] == 0
    (epoch,) = history["epochs"]
    assert epoch["accuracy"] == pytest.approx(probe["train_accuracy"], abs=1e-6)
    assert epoch["accuracy"] >= 0.95  # it fits its training images

    # the saved model (plain Keras, raw images in) against scikit-learn on the same features
    model = keras.saving.load_model(str(tmp_path / "solved" / "model.keras"), safe_mode=True)
    extractor = keras.Model(model.inputs, model.get_layer(GAP).output)
    data = load_data(exp.data, exp.seed)
    xt = extractor.predict(data.train_ordered, verbose=0).astype(np.float64)
    xs = extractor.predict(data.test, verbose=0).astype(np.float64)
    assert xt.std(axis=0).mean() < 0.015  # the regime: features that barely vary between images
    scaler = StandardScaler().fit(xt)
    ref = LogisticRegression(C=probe["C"], max_iter=10000, tol=1e-8).fit(scaler.transform(xt), data.train_labels)
    want = ref.predict_proba(scaler.transform(xs))
    got = model.predict(data.test, verbose=0)
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.99
    assert log_loss(data.test_labels, got, labels=[0, 1]) == pytest.approx(
        log_loss(data.test_labels, want, labels=[0, 1]), abs=0.01
    )
    assert np.allclose(model.get_layer(NORM).adapt_mean.numpy(), scaler.mean_, atol=1e-5)

    # the head trained by epochs, as every run was before: it does not fit the same training images
    _, _, old = _run(scans, tmp_path / "epochs", frozen_head="epochs", frozen_epochs=40)
    assert max(e["accuracy"] for e in old["epochs"]) < epoch["accuracy"] - 0.15
