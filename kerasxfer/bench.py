"""Measurements behind ``make bench`` and ``make bench-data``.

Every timing is steady state: warm-up steps are dropped and the median of
the repeated steps is reported.  Numbers from different runs compare through
the ratios printed next to them (the machine's own matmul speed, measured in
the same run).
"""

from __future__ import annotations

import os
import time

import keras
import numpy as np
import tensorflow as tf

from kerasxfer.data.arrays import decode_all
from kerasxfer.data.batches import epochs_from
from kerasxfer.data.decode import decode_image_file


def _median_rate(times, batch_size):
    return batch_size / float(np.median(times))


# ------------------------------------------------------------------ machine
def matmul_gflops(n: int = 2048, steps: int = 12, warmup: int = 3) -> float:
    """float32 GFLOP/s of one ``n x n`` matmul in a ``tf.function`` (median of ``steps``)."""
    a = tf.random.stateless_normal((n, n), seed=(1, 2))
    b = tf.random.stateless_normal((n, n), seed=(3, 4))
    f = tf.function(lambda x, y: tf.matmul(x, y))
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        f(a, b).numpy()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return 2 * n**3 / float(np.median(times)) / 1e9


def forward_flops(model: keras.Model) -> float:
    """Float operations of one forward pass of ``model`` on one image (TF's graph profiler)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec((1,) + tuple(model.input_shape[1:]), tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    prof = tf.compat.v1.profiler.profile(graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=opts)
    return float(prof.total_float_ops)


# -------------------------------------------------------------------- model
class _BatchTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times, self._t = [], None

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._t)

    on_predict_batch_begin = on_train_batch_begin
    on_predict_batch_end = on_train_batch_end


def train_step_rate(
    model: keras.Model, batch_size: int, steps: int = 12, warmup: int = 3, lr: float = 1e-3, jit_compile=False
) -> float:
    """Images/s of ``model.fit`` steps on one fixed batch (input pipeline excluded)."""
    shape = (batch_size,) + tuple(model.input_shape[1:])
    x = tf.random.stateless_uniform(shape, (5, 6), 0, 255)
    y = tf.random.stateless_uniform((batch_size,), (7, 8), 0, model.output_shape[-1], dtype=tf.int32)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", jit_compile=jit_compile)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(2)
    timer = _BatchTimer()
    model.fit(ds, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[timer])
    return _median_rate(timer.times[warmup:], batch_size)


def inference_rate(model: keras.Model, batch_size: int, steps: int = 12, warmup: int = 3) -> float:
    shape = (batch_size,) + tuple(model.input_shape[1:])
    x = tf.random.stateless_uniform(shape, (5, 6), 0, 255)
    ds = tf.data.Dataset.from_tensors(x).repeat(warmup + steps)
    timer = _BatchTimer()
    model.predict(ds, verbose=0, callbacks=[timer])
    return _median_rate(timer.times[warmup:], batch_size)


# --------------------------------------------------------------------- data
def write_jpeg_folder(root: str, n: int = 96, size=(1200, 1600), classes: int = 4, seed: int = 0) -> str:
    """``n`` photo-like JPEGs of ``size`` (H, W) in ``classes`` class folders (reused if present)."""
    from PIL import Image

    done = os.path.join(root, ".kerasxfer-bench-jpegs")  # ours: a user's own marker file never counts
    want = f"{n} {size[0]}x{size[1]} {classes} {seed}"
    if os.path.exists(done):
        with open(done) as f:
            if f.read() == want:
                return root
        import re

        for d in os.listdir(root):  # written by this function for other settings: only the files it writes go
            folder = os.path.join(root, d)
            if re.fullmatch(r"class\d+", d) and os.path.isdir(folder):
                for f in os.listdir(folder):
                    if re.fullmatch(r"photo \d{4}\.jpg", f):
                        os.remove(os.path.join(folder, f))
                if not os.listdir(folder):
                    os.rmdir(folder)
        os.remove(done)
    elif os.path.isdir(root) and os.listdir(root):
        from kerasxfer.errors import UserError

        raise UserError(f"{root!r} holds files the bench did not write: pass a new or empty --data_dir.")
    rng = np.random.default_rng(seed)
    h, w = size
    for i in range(n):
        folder = os.path.join(root, f"class{i % classes}")
        os.makedirs(folder, exist_ok=True)
        # smooth structure plus fine grain: compresses like a photo (~0.1-0.3 byte/pixel at quality 90)
        coarse = rng.random((h // 40 + 1, w // 40 + 1, 3)) * 255
        img = np.kron(coarse, np.ones((40, 40, 1)))[:h, :w]
        img = (img + rng.normal(0, 6, (h, w, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(folder, f"photo {i:04d}.jpg"), quality=90)
    with open(done, "w") as f:
        f.write(want)
    return root


#: Digit classes the study section's sets use, the most often confused first (1/7, then 3, 8, 9).
HARD_DIGITS = (1, 7, 9, 8, 3, 5, 2, 4, 6, 0)


def _write_digits(root: str, marker: str, n: int, classes: int, size: int, seed: int, draw) -> str:
    """``n`` PNGs of the real 8x8 digits of the first ``classes`` of :data:`HARD_DIGITS` in class folders
    ``digit<k>``, each drawn by ``draw(digit in [0, 1], rng) -> (pixels, name)``; reused when ``marker`` says
    they were written with the same settings."""
    from PIL import Image
    from sklearn.datasets import load_digits

    done = os.path.join(root, marker)
    want = f"{n} {classes} {size} {seed}"
    if os.path.exists(done):
        with open(done) as f:
            if f.read() == want:
                return root
    if os.path.isdir(root) and os.listdir(root):
        from kerasxfer.errors import UserError

        raise UserError(f"{root!r} holds files of other settings or not written by the bench: pass a new or empty folder.")
    digits = load_digits()
    rng = np.random.default_rng(seed)
    chosen = HARD_DIGITS[:classes] if classes <= len(HARD_DIGITS) else tuple(range(classes))
    pools = [rng.permutation(np.flatnonzero(digits.target == c)) for c in chosen]
    for i in range(n):
        c = i % classes
        pixels, name = draw(digits.images[pools[c][(i // classes) % len(pools[c])]] / 16.0, rng)
        folder = os.path.join(root, f"digit{c}")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(os.path.join(folder, f"{name} {i:04d}.png"))
    with open(done, "w") as f:
        f.write(want)
    return root


def _upscaled(img, side: int):
    from PIL import Image

    return np.asarray(Image.fromarray((img * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR), float)


def write_digit_photos(root: str, n: int = 230, classes: int = 2, size: int = 300, seed: int = 0) -> str:
    """``n`` photo-sized PNGs (``size`` x ``size``, RGB) of the real 8x8 digits of the first ``classes`` classes,
    upscaled, tinted and grained, in class folders ``digit<k>`` (reused when present with the same settings).

    The study section's data: a labelled set as a team brings it (a few hundred photo-sized images), whose
    labels depend on what the images show, made here without a download.
    """

    def draw(img, rng):
        side = int(size * rng.uniform(0.45, 0.8))  # the digit fills part of the frame, anywhere in it
        canvas = np.zeros((size, size))
        y, x = rng.integers(0, size - side + 1, 2)
        canvas[y : y + side, x : x + side] = _upscaled(img, side)
        tint = rng.uniform(0.3, 1.0, 3)
        back = rng.uniform(0, 110, 3)
        return back + canvas[..., None] / 255.0 * (255 - back) * tint + rng.normal(0, 45, (size, size, 3)), "photo"

    return _write_digits(root, ".kerasxfer-bench-digits", n, classes, size, seed, draw)


def write_digit_scans(root: str, n: int = 230, classes: int = 2, size: int = 224, seed: int = 0) -> str:
    """``n`` dark, low-contrast greyscale scans (``size`` x ``size`` PNGs) of the real 8x8 digits of the first
    ``classes`` classes, in class folders ``digit<k>`` (reused when present with the same settings).

    A set far from ImageNet: grey levels 10-40 with Gaussian noise of sigma 3, so an ImageNet backbone's pooled
    features barely vary between images (their standard deviation across images is about 0.008 for
    EfficientNet-Lite0 at 224 px, against 0.16-0.4 on photos): the regime where a head trained on unscaled
    features underfits and a standardised linear probe does not.
    """

    def draw(img, rng):
        return 10 + 30 * _upscaled(img, size) / 255.0 + rng.normal(0, 3, (size, size)), "scan"

    return _write_digits(root, ".kerasxfer-bench-scans", n, classes, size, seed, draw)


def pipeline_rates(paths, labels, image_size: int, batch_size: int, min_side=True, epochs: int = 11) -> dict:
    """Images/s of the training pipeline alone: epoch 1 (decode, resize into the array) and later epochs (from it).

    ``min_side=True`` decodes JPEGs at reduced size (the default pipeline);
    ``False`` decodes every pixel (for comparison).
    """

    def decode(p):
        return decode_image_file(p, image_size if min_side else None)

    out = {}
    t = time.perf_counter()
    images = decode_all(np.asarray(paths), decode, image_size)
    train_from = epochs_from(images, np.asarray(labels, np.int32), batch_size, seed=0)
    n = sum(int(x.shape[0]) for x, _ in train_from(0, 1))
    out["first_epoch"] = n / (time.perf_counter() - t)
    t = time.perf_counter()
    n = sum(int(x.shape[0]) for x, _ in train_from(1, epochs))
    out["cached_epochs"] = n / (time.perf_counter() - t)
    return out


# ---------------------------------------------------------------- inference
def inference_engines(model: keras.Model, batch_size: int, readings: int = 6) -> dict:
    """Images/s of one batch of ``model`` (float32, its own input size) through each engine ``predict`` has.

    ``keras``: ``predict_on_batch`` of the model as saved; then every engine
    of :mod:`kerasxfer.engines` available here (``tensorflow``: the inference
    graph, what ``predict`` runs below ``AUTO_MIN_IMAGES`` images;
    ``tflite``; ``onnxruntime`` with the ``onnx`` extra), each run exactly as
    ``predict`` runs it; ``auto_engine``: the one ``predict --engine=auto``
    picks for a large job.  Also each engine's largest probability
    difference from ``keras``.
    """
    from kerasxfer.engines import AUTO_MIN_IMAGES, available, best_rate
    from kerasxfer.inference import Classifier

    clf = Classifier(model, [str(i) for i in range(model.output_shape[-1])], batch_size=batch_size)
    size = clf.image_size
    x = np.asarray(tf.random.stateless_uniform((batch_size, size, size, 3), (5, 6), 0, 255)).round()
    ref = np.asarray(model.predict_on_batch(x))
    rates = {"keras": best_rate(lambda: model.predict_on_batch(x), batch_size, readings, warmup=2)}
    diffs = {}
    for name in available():
        engine = clf.engines.make(name)
        rates[name] = best_rate(lambda e=engine: e(x), batch_size, readings, warmup=2)
        diffs[name] = float(np.abs(engine(x) - ref).max())
    auto = clf.engines.for_job(AUTO_MIN_IMAGES, x)  # predict's choice for a large job (timed on this batch)
    return {"images_per_s": rates, "max_probability_difference": diffs, "auto_engine": auto.name}


# -------------------------------------------------------------------- study
def unfrozen_step_rates(backbone: str, size: int, stages: int, batch_size: int, steps: int = 8) -> dict:
    """Images/s of the unfrozen phase's train step: the whole model, and its stages on cached activations."""
    from kerasxfer.features import boundary, stages_model
    from kerasxfer.models import build_transfer_model, get_backbone, unfreeze
    from kerasxfer.models.fastconv import use_native_grouped_conv

    m = build_transfer_model(backbone, (size, size, 3), 2, weights=None)
    use_native_grouped_conv(m)
    unfreeze(m, stages)
    whole = train_step_rate(m, batch_size, steps, lr=1e-5)
    tensor, name = boundary(get_backbone(m))
    cut = stages_model(m, tensor, name)
    stages_only = train_step_rate(cut, batch_size, steps, lr=1e-5)
    keras.backend.clear_session()
    return {"whole_model": whole, "cached_activations": stages_only, "boundary": name, "boundary_shape": list(tensor.shape[1:])}


def sklearn_probe(run_dir: str, grid=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)) -> dict:
    """The independent reference for a transfer run: scikit-learn's ``StandardScaler`` + ``LogisticRegression``
    (L-BFGS, its C chosen on the validation images from ``grid``) on the pooled features of the run's backbone
    with its *pretrained* weights (built again from ``config.json``, not read from the run's model), on the run's
    own train/val/test images.  Returns ``{"correct", "n", "train_accuracy", "C", "feature_std"}`` on the test
    images, where ``feature_std`` is the features' standard deviation across training images, averaged over
    their dimensions (~0.01 on images far from ImageNet).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from kerasxfer import fsio
    from kerasxfer.config import Experiment
    from kerasxfer.data import load_data
    from kerasxfer.models import build_model
    from kerasxfer.models.head import pooled_features

    exp = Experiment.from_dict(fsio.read_json(os.path.join(run_dir, "config.json")))
    data = load_data(exp.data, exp.seed, True)
    keras.utils.set_random_seed(exp.seed)
    extractor = keras.Model(*(lambda m: (m.inputs, pooled_features(m)))(build_model(exp, data.num_classes)))
    xt, xv, xs = (np.asarray(extractor.predict(d, verbose=0), np.float64) for d in (data.train_ordered, data.val, data.test))
    yt, yv, ys = data.train_labels, data.val_labels, data.test_labels
    scaler = StandardScaler().fit(xt)
    fits = [LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(xt), yt) for c in grid]
    scores = [(m.score(scaler.transform(xv), yv), -c) for m, c in zip(fits, grid)]
    best = fits[scores.index(max(scores))]
    return {
        "correct": int((best.predict(scaler.transform(xs)) == ys).sum()),
        "n": len(ys),
        "train_accuracy": float(best.score(scaler.transform(xt), yt)),
        "C": float(best.C),
        "feature_std": float(xt.std(axis=0).mean()),
    }
