"""ImageNet weights: keras-applications .h5 files load into the Keras 3 RegNet with identical outputs.

No test touches the network: weight files are made here with tf-keras (the
oracle), served from 127.0.0.1, or pre-seeded in a temporary Keras cache.
"""

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
import tf_keras

from kerasxfer.errors import UserError
from kerasxfer.models import regnet, use_native_grouped_conv
from kerasxfer.models import weights as weights_lib

SIZE = 32
# Default run: the notop file (what finetune loads) of two X and two Y variants (without and
# with grouped stages of several widths; SE blocks in Y), and the full file (the ImageNet head on top of the same body) of the
# smallest X and Y; every other case is slow (`make test-all`).
FAST = {"regnetx002", "regnetx006", "regnety002", "regnety008"}
FAST_TOP = {"regnetx002", "regnety002"}
CASES = [
    pytest.param(
        v,
        top,
        marks=() if v in (FAST_TOP if top else FAST) else pytest.mark.slow,
        id=f"{v}-{'top' if top else 'notop'}",
    )
    for v in regnet.VARIANTS
    for top in (True, False)
]


@pytest.fixture
def keras_cache(tmp_path, monkeypatch):
    """An empty Keras cache (what $KERAS_HOME points to), and no way out to the internet."""
    from keras.src.backend import config
    from keras.src.utils import file_utils

    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setattr(config, "_KERAS_DIR", str(home))

    def refuse(url, *a, **k):
        if not url.startswith("http://127.0.0.1"):
            raise AssertionError(f"test tried to reach the network: {url}")
        return real(url, *a, **k)

    real = file_utils.urlretrieve
    monkeypatch.setattr(file_utils, "urlretrieve", refuse)
    return home


def _tf_keras_model(variant, include_top, seed=0):
    """The tf-keras model with non-trivial weights: random BN gamma/beta/moving stats and biases."""
    tf_keras.utils.set_random_seed(seed)
    public = "RegNet" + variant[6:].upper()
    model = getattr(tf_keras.applications, public)(include_top=include_top, weights=None, input_shape=(SIZE, SIZE, 3))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for w in layer.weights:
            n = w.name
            if "gamma" in n:
                w.assign(rng.uniform(0.5, 1.5, w.shape))
            elif "beta" in n or "bias" in n or "moving_mean" in n:
                w.assign(rng.normal(0, 0.1, w.shape))
            elif "moving_variance" in n:
                w.assign(rng.uniform(0.5, 2.0, w.shape))
    return model


def _official_file(model, variant, include_top, folder):
    """Write ``model`` the way keras-applications files were written (tf-keras save_weights, HDF5)."""
    name = variant + (".h5" if include_top else "_notop.h5")
    path = os.path.join(folder, name)
    model.save_weights(path, save_format="h5")
    return path


@pytest.mark.parametrize("variant, include_top", CASES)
def test_imagenet_path_gives_tf_keras_outputs(variant, include_top, keras_cache, monkeypatch, tmp_path):
    oracle = _tf_keras_model(variant, include_top)
    path = _official_file(oracle, variant, include_top, str(tmp_path))
    (keras_cache / "models").mkdir()
    shutil.copy(path, keras_cache / "models")
    sha = weights_lib.sha256_of(path)
    monkeypatch.setitem(regnet.WEIGHTS_HASHES, variant[6:], (sha, sha))

    ours = regnet.RegNet(
        variant,
        include_top=include_top,
        weights="imagenet",
        input_shape=(SIZE, SIZE, 3),
        classifier_activation=None,  # tf-keras' RegNet head returns logits
    )
    use_native_grouped_conv(ours)
    x = np.random.default_rng(1).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    expected = oracle.predict(x, verbose=0)
    got = ours.predict(x, verbose=0)
    diff = float(np.abs(got - expected).max() / max(1e-12, np.abs(expected).max()))
    print(f"{variant} top={include_top}: max relative difference {diff:.2e}")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_official_files_load_by_path_and_refuse_other_variants(tmp_path):
    oracle = _tf_keras_model("regnetx002", include_top=True)
    full = _official_file(oracle, "regnetx002", True, str(tmp_path))
    notop_oracle = _tf_keras_model("regnetx002", include_top=False)
    notop = _official_file(notop_oracle, "regnetx002", False, str(tmp_path))
    x = np.random.default_rng(2).uniform(0, 255, (1, SIZE, SIZE, 3)).astype("float32")
    # a full file also serves a model without top (its head is skipped)
    headless = regnet.RegNetX002(include_top=False, weights=full, input_shape=(SIZE, SIZE, 3))
    use_native_grouped_conv(headless)
    body = tf_keras.Model(oracle.input, oracle.layers[-3].output)
    np.testing.assert_allclose(headless.predict(x, verbose=0), body.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    regnet.RegNetX002(include_top=False, weights=notop, input_shape=(SIZE, SIZE, 3))
    with pytest.raises(UserError, match="top/notop"):
        regnet.RegNetX002(include_top=True, weights=notop, input_shape=(SIZE, SIZE, 3))
    with pytest.raises(UserError, match="holds regnetx002 weights, not regnety002"):
        regnet.RegNetY002(include_top=False, weights=notop, input_shape=(SIZE, SIZE, 3))
    with pytest.raises(UserError, match="shapes"):
        regnet.RegNetX002(include_top=True, classes=10, weights=full, input_shape=(SIZE, SIZE, 3))


class _Counting(http.server.SimpleHTTPRequestHandler):
    requests = []

    def do_GET(self):
        _Counting.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def weights_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    _Counting.requests = []
    handler = functools.partial(_Counting, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_cache_hit_and_wrong_hash(keras_cache, weights_server, monkeypatch, tmp_path):
    served, url = weights_server
    oracle = _tf_keras_model("regnety002", include_top=False)
    path = _official_file(oracle, "regnety002", False, str(served))
    sha = weights_lib.sha256_of(path)
    monkeypatch.setattr(regnet, "BASE_WEIGHTS_PATH", url)
    monkeypatch.setitem(regnet.WEIGHTS_HASHES, "y002", ("0" * 64, sha))

    got = regnet.imagenet_weights_file("regnety002", include_top=False)
    assert got == str(keras_cache / "models" / "regnety002_notop.h5")
    assert _Counting.requests == ["/regnety002_notop.h5"]
    model = regnet.RegNetY002(include_top=False, weights="imagenet", input_shape=(SIZE, SIZE, 3))
    assert _Counting.requests == ["/regnety002_notop.h5"]  # second use: from the cache, no request
    np.testing.assert_array_equal(
        model.get_layer("regnety002_stem_bn").moving_variance.numpy(),
        oracle.get_layer("regnety002_stem_bn").moving_variance.numpy(),
    )

    # The file with top is served too, but its published hash ("000…") does not match.
    _official_file(_tf_keras_model("regnety002", True), "regnety002", True, str(served))
    with pytest.raises(UserError, match="did not match its published sha256") as e:
        regnet.imagenet_weights_file("regnety002", include_top=True)
    assert "--weights=PATH" in str(e.value)
    assert not (keras_cache / "models" / "regnety002.h5").exists()  # the bad file is not kept


def test_unreachable_download_names_the_file_and_the_fix(keras_cache, weights_server, monkeypatch):
    _, url = weights_server
    monkeypatch.setattr(regnet, "BASE_WEIGHTS_PATH", url)  # served folder is empty: HTTP 404
    with pytest.raises(UserError) as e:
        regnet.RegNetX004(include_top=False, weights="imagenet")
    msg = str(e.value)
    assert "regnetx004_notop.h5" in msg and str(keras_cache / "models") in msg
    assert "--weights=PATH" in msg and "\n" not in msg


def test_finetune_cli_offline_says_what_to_do(tmp_path):
    """No network (all traffic sent to a closed local proxy): one line, exit 2, no run directory."""
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
        [sys.executable, "-m", "experiments.finetune", "--weights=imagenet", f"--out_dir={out}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert p.returncode == 2, p.stderr
    errors = [l for l in p.stderr.splitlines() if l.startswith("kerasxfer: error:")]
    assert len(errors) == 1 and "regnetx002_notop.h5" in errors[0] and "--weights=PATH" in errors[0]
    assert "Traceback" not in p.stderr and not out.exists()


def test_decode_predictions_uses_imagenet_class_names(monkeypatch):
    from keras.src.applications import imagenet_utils

    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)})
    preds = np.zeros((1, 1000), "float32")
    preds[0, [7, 3]] = [0.9, 0.1]
    top = regnet.decode_predictions(preds, top=2)[0]
    assert [t[1] for t in top] == ["class_7", "class_3"]


def test_the_real_published_hashes_refuse_a_file_that_is_not_the_published_one(keras_cache, weights_server, monkeypatch):
    """No hash patched: the table's own sha256 for regnetx002 refuses a lookalike file served under its name."""
    import re

    assert len(regnet.WEIGHTS_HASHES) == 24  # X and Y, 002 .. 320
    for variant, pair in regnet.WEIGHTS_HASHES.items():
        assert len(pair) == 2 and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in pair), variant
    assert len({h for pair in regnet.WEIGHTS_HASHES.values() for h in pair}) == 48  # every file its own hash
    served, url = weights_server
    _official_file(_tf_keras_model("regnetx002", include_top=False), "regnetx002", False, str(served))
    monkeypatch.setattr(regnet, "BASE_WEIGHTS_PATH", url)  # only where to download from changes
    with pytest.raises(UserError, match="did not match its published sha256"):
        regnet.imagenet_weights_file("regnetx002", include_top=False)
    assert _Counting.requests == ["/regnetx002_notop.h5"]
    assert not (keras_cache / "models" / "regnetx002_notop.h5").exists()
