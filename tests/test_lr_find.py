"""The learning-rate range test (issue 16): restores the model, suggests inside the range, near 1e-3 on the digits."""

import json
import os

import keras
import numpy as np
import pytest

from kerasxfer.config import DataConfig
from kerasxfer.lr_find import lr_range_test, suggest


def test_range_test_restores_the_model_and_suggests_inside_the_range():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    x = keras.layers.BatchNormalization()(keras.layers.Dense(16, activation="relu")(inp))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(keras.layers.Dropout(0.2)(x)))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(512, 8)).astype("float32")
    ys = (xs[:, 0] > 0).astype("int32") + (xs[:, 1] > 1).astype("int32")
    import tensorflow as tf

    batches = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(16).repeat()
    model.optimizer.build(model.trainable_variables)
    before = [keras.ops.convert_to_numpy(v).copy() for v in [*model.variables, *model.optimizer.variables]]
    r = lr_range_test(model, batches, 1e-6, 10.0, 80)
    after = [keras.ops.convert_to_numpy(v) for v in [*model.variables, *model.optimizer.variables]]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert 1e-6 <= r["valley"] <= 10.0 and 1e-6 <= r["minimum_over_10"] <= 10.0
    assert r["stopped_early"] and r["steps"] < 80  # the loss exploded at the high rates


def test_valley_lies_inside_the_descent():
    lrs = np.logspace(-6, 0, 61)
    loss = np.concatenate([np.full(20, 2.0), np.linspace(2.0, 0.5, 30), np.linspace(0.5, 3, 11)])
    s = suggest(lrs, loss)
    assert lrs[20] <= s["valley"] <= lrs[49] and s["lowest_loss_lr"] == pytest.approx(lrs[49])


@pytest.mark.slow  # make test-ci-slow (CI) runs it: whole runs, kept out of make test's 10 minutes
def test_lr_find_on_the_digits_suggests_near_the_scratch_default(tmp_path):
    from kerasxfer import recipes
    from kerasxfer.lr_find import find_lr

    exp = recipes.scratch(out_dir=str(tmp_path / "never"), data=DataConfig(image_size=32))
    r = find_lr(exp, None, str(tmp_path / "lr"), steps=100)
    assert 1e-4 <= r["valley"] <= 1e-2, r["valley"]  # within 10x of the default 1e-3
    assert os.path.getsize(tmp_path / "lr" / "lr_find.png") > 5000 and not os.path.exists(tmp_path / "never")
    saved = json.load(open(tmp_path / "lr" / "lr_find.json"))
    assert saved["valley"] == r["valley"] and len(saved["lrs"]) == saved["steps"]


def test_lr_find_refuses_a_folder_with_lr_find_files_it_did_not_write(tmp_path):
    from kerasxfer import recipes
    from kerasxfer.errors import UserError
    from kerasxfer.lr_find import find_lr

    (tmp_path / "lr_find.json").write_text('{"mine": true}')
    with pytest.raises(UserError, match="holds lr_find.json, which kerasxfer did not write"):
        find_lr(recipes.scratch(epochs=1), None, str(tmp_path))
    assert (tmp_path / "lr_find.json").read_text() == '{"mine": true}'
