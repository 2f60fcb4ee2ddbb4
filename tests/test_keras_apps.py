"""keras.applications backbones as kerasxfer families: stage tables, training steps, ImageNet files, offline errors.

The ImageNet check builds Keras' *own* ``weights="imagenet"`` model (its download function pointed at a file
this test writes in Keras' legacy format) and compares it with kerasxfer's backbone loaded from the same file
through kerasxfer's cache: raw pixels into ours, Keras' ``preprocess_input`` pixels into Keras' (the BGR
flip of ResNet50 and the normalisation fold of EfficientNet B0-B3 have to be right for them to agree).
No test touches the network.
"""

import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

from kerasxfer.errors import UserError
from kerasxfer.families import family_of
from kerasxfer.models import build_backbone_classifier, build_transfer_model, freeze, get_backbone, keras_apps, unfreeze
from kerasxfer.models import keras_apps_specs as specs
from kerasxfer.models import weights as weights_lib
from kerasxfer.models.transfer import backbone_stages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: make test: the two stage tables most easily got wrong (MobileNetV2's blocks by stride, ConvNeXt's nested
#: downsampling blocks) and the two files whose loading has a quirk (ResNet50's BGR kernel, EfficientNet's
#: variance fold); every variant of both tests in make test-all.
FAST_STAGES = {"mobilenetv2", "convnext_tiny"}
FAST_FILES = {"resnet50", "efficientnetb0"}
CASES = [pytest.param(v, marks=() if v in FAST_STAGES else pytest.mark.slow) for v in specs.VARIANTS]
FILE_CASES = [pytest.param(v, marks=() if v in FAST_FILES else pytest.mark.slow) for v in specs.VARIANTS]
SIZE = 32


@pytest.mark.parametrize("variant", CASES)
def test_stage_table_covers_every_weighted_layer_once_and_the_steps_train_what_they_should(variant):
    model = build_transfer_model(variant, (SIZE, SIZE, 3), 3)
    family = family_of(variant)
    impl = family.load()
    stages = {}
    for layer, stage in backbone_stages(model):
        if not layer.weights:
            continue
        if stage is None:
            assert impl.is_stem(layer.name), f"{layer.name} is in no stage and not in the stem"
        else:
            assert not impl.is_stem(layer.name), layer.name
            stages.setdefault(stage, []).append(layer.name)
    assert sorted(stages) == list(range(len(family.stages))), sorted(stages)  # every stage holds weights

    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32"), np.array([0, 1, 2, 0])
    backbone = get_backbone(model)
    head = {"head_dense/kernel", "head_dense/bias"}

    def owner(path):  # the backbone layer a weight belongs to (ConvNeXt nests its downsampling blocks)
        return path.split("/")[0]

    def step():
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
        before = [w.numpy().copy() for w in backbone.weights]
        model.train_on_batch(x, y)
        return {w.path for w, b in zip(backbone.weights, before) if not np.array_equal(w.numpy(), b)}

    freeze(model)
    assert {w.path for w in model.trainable_weights} == head
    assert step() == set()  # frozen: not a backbone weight moves (BatchNorm statistics included)
    unfreeze(model, 1)
    last = set(stages[len(family.stages) - 1])
    trainable = {w.path for w in model.trainable_weights} - head
    assert trainable and {owner(p) for p in trainable} <= last, sorted(trainable)[:5]
    assert not any(isinstance(backbone.get_layer(owner(p)), keras.layers.BatchNormalization) for p in trainable)
    assert {owner(p) for p in step()} <= last  # the unfrozen step moves nothing outside the last stage


def _legacy_file(model, path):
    """``model``'s weights in the tf-keras .h5 layout Keras' own ImageNet files use."""
    from keras.src.legacy.saving import legacy_h5_format

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def _randomize_statistics(model, rng):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape))
        if isinstance(layer, keras.layers.Normalization) and hasattr(layer, "adapt_mean"):
            layer.adapt_mean.assign(np.asarray([0.485, 0.456, 0.406], "float32"))  # what Keras' files store
            layer.adapt_variance.assign(np.asarray([0.229, 0.224, 0.225], "float32"))
            layer.finalize_state()


PREPROCESS = {"resnet": "resnet", "resnet_v2": "resnet_v2", "mobilenet_v2": "mobilenet_v2", "densenet": "densenet"}


@pytest.fixture
def keras_cache(tmp_path, monkeypatch):
    from keras.src.backend import config
    from keras.src.utils import file_utils

    home = tmp_path / "keras_home"
    (home / "models").mkdir(parents=True)
    monkeypatch.setattr(config, "_KERAS_DIR", str(home))

    def refuse(url, *a, **k):
        raise OSError(f"no network in tests ({url})")

    monkeypatch.setattr(file_utils, "urlretrieve", refuse)
    return home


@pytest.mark.parametrize("variant", FILE_CASES)
def test_imagenet_files_load_into_what_keras_own_imagenet_model_computes(variant, keras_cache, monkeypatch):
    from keras.src.utils import file_utils

    family_name, ctor, _, file_name, _, _ = specs.VARIANTS[variant]
    shape = (64, 64, 3)
    kwargs = {"include_preprocessing": True} if ctor in keras_apps.OWN_PREPROCESSING else {}
    source = getattr(keras.applications, ctor)(include_top=False, weights=None, input_shape=shape, **kwargs)
    rng = np.random.default_rng(1)
    _randomize_statistics(source, rng)
    path = str(keras_cache / "models" / file_name)
    _legacy_file(source, path)
    spec = list(specs.VARIANTS[variant])
    spec[5] = weights_lib.sha256_of(path)  # kerasxfer's table points at this file; Keras' own table is not touched
    monkeypatch.setitem(specs.VARIANTS, variant, tuple(spec))

    ours = family_of(variant).load().build_backbone(variant, shape, "imagenet")
    real_get_file = file_utils.get_file
    monkeypatch.setattr(file_utils, "get_file", lambda *a, **k: path)  # Keras' imagenet branch reads the same file
    theirs = getattr(keras.applications, ctor)(include_top=False, weights="imagenet", input_shape=shape, **kwargs)
    monkeypatch.setattr(file_utils, "get_file", real_get_file)

    x = rng.uniform(0, 255, (2, *shape)).astype("float32")
    module = PREPROCESS.get(family_name)
    x_theirs = getattr(keras.applications, module).preprocess_input(x.copy()) if module else x
    first_conv = next(layer.name for layer in theirs.layers if isinstance(layer, keras.layers.Conv2D))
    for name in (first_conv, None):  # what the first convolution sees (preprocessing), and the features
        a = (keras.Model(ours.input, ours.get_layer(name).output) if name else ours).predict(x, verbose=0)
        b = (keras.Model(theirs.input, theirs.get_layer(name).output) if name else theirs).predict(x_theirs, verbose=0)
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * float(np.abs(b).max()), err_msg=name or "features")


def test_offline_imagenet_names_the_file_and_where_to_put_it(keras_cache):
    with pytest.raises(UserError) as e:
        family_of("resnet50").load().build_backbone("resnet50", (SIZE, SIZE, 3), "imagenet")
    msg = str(e.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in msg and str(keras_cache / "models") in msg
    assert "--weights=PATH" in msg and "\n" not in msg


def test_finetune_cli_with_resnet50_offline_says_what_to_do(tmp_path):
    env = dict(
        os.environ,
        KERAS_HOME=str(tmp_path / "kh"),
        TF_CPP_MIN_LOG_LEVEL="3",
        https_proxy="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        no_proxy="",
        NO_PROXY="",
    )
    out = tmp_path / "run"
    p = subprocess.run(
        [sys.executable, "-m", "experiments.finetune", "--backbone=resnet50", "--weights=imagenet", f"--out_dir={out}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert p.returncode == 2, p.stderr[-2000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("kerasxfer: error:")]
    assert len(errors) == 1 and "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in errors[0], p.stderr[-2000:]
    assert "Traceback" not in p.stderr and not out.exists()


@pytest.mark.parametrize("variant", ["resnet50", "mobilenetv2", "efficientnetb0"])
def test_pretraining_zero_inits_the_residual_branch_of_every_block(variant):
    base = get_backbone(build_backbone_classifier(variant, (SIZE, SIZE, 3), 3))
    adds = [layer for layer in base.layers if isinstance(layer, keras.layers.Add)]
    bns = family_of(variant).load().residual_bns(base)
    assert len(bns) == len(adds) >= 3
    assert all(not np.any(bn.gamma.numpy()) for bn in bns)
    assert not any("_0_bn" in bn.name for bn in bns)  # never a projection shortcut's BatchNorm


def test_keras_file_passed_by_hand_gets_the_same_fixups_and_an_export_loads_as_it_is(keras_cache, tmp_path):
    """--weights=PATH: Keras' own notop file (BGR for ResNet50) loads like weights=imagenet; a kerasxfer export
    (a Keras 3 .weights.h5 of the backbone) loads unchanged."""
    impl = family_of("resnet50").load()
    source = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    official = str(tmp_path / "resnet50_notop.h5")
    _legacy_file(source, official)
    by_hand = impl.build_backbone("resnet50", (64, 64, 3), official)
    kernel = source.get_layer("conv1_conv").kernel.numpy()
    np.testing.assert_array_equal(by_hand.get_layer("conv1_conv").kernel.numpy(), kernel[:, :, ::-1, :])
    export = str(tmp_path / "backbone.weights.h5")
    by_hand.save_weights(export)
    again = impl.build_backbone("resnet50", (64, 64, 3), export)
    np.testing.assert_array_equal(again.get_layer("conv1_conv").kernel.numpy(), kernel[:, :, ::-1, :])
