"""Training phases, callbacks and the run directory.

:func:`run_experiment` takes an :class:`~kerasxfer.config.Experiment` and
leaves a complete run directory behind::

    config.json       the resolved experiment (enough to rerun it)
    environment.json  versions, devices, git commit, host
    data.json         data source, class names, per-class counts
    model.keras       best checkpoint by val_accuracy (preprocessing inside)
    history.json      one record per epoch, with its phase and lr: only what
                      the seed determines, so equal runs write equal bytes
    timings.json      seconds and images/s of every epoch and phase
    metrics.json      evaluation of model.keras on the validation split
    confusion.png     its confusion matrix;  top_losses.png  its worst mistakes
    tb/               TensorBoard logs (train/ and validation/), one epoch axis;
                      phase markers, HParams and the two images in tb/ itself

A run has one or more phases (scratch: one; finetune: frozen then
unfrozen).  Epoch numbers continue across phases, and the best checkpoint is
the best over the whole run.

While it trains, ``resume/`` holds the state after the last finished epoch
(every variable, the optimizer's slots, history so far).  Running the same
experiment again continues from there, whatever stopped it (Ctrl-C, SIGTERM,
SIGKILL, a crash); a finished run is left as it is unless ``overwrite``; a
run directory made with other settings is refused, naming the fields.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
import keras

from kerasxfer import __version__, summaries
from kerasxfer.config import Experiment, parse_trainable
from kerasxfer.data import DataSplits, load_data
from kerasxfer.data.pipeline import epochs_from
from kerasxfer.distribute import describe as describe_strategy
from kerasxfer.distribute import defer_keras_build, is_chief, make_strategy
from kerasxfer.errors import UserError
from kerasxfer.models import regnet
from kerasxfer.models import (
    build_regnet_classifier,
    build_scratch_cnn,
    build_transfer_model,
    calibrate_batchnorm,
    freeze,
    unfreeze,
    use_native_grouped_conv,
)

log = logging.getLogger("kerasxfer")

MODEL_FILE = "model.keras"
RUN_FILES = ("config.json", "environment.json", "data.json", MODEL_FILE, "history.json", "metrics.json")
RESUME_DIR = "resume"
# Everything a run writes, removed by overwrite (and nothing else in the folder).
_RUN_OUTPUTS = RUN_FILES + ("timings.json", "confusion.png", "top_losses.png", "backbone.weights.h5",
                            "backbone.json", "tb", RESUME_DIR)


# --------------------------------------------------------------- helpers
def write_json(path: str, obj) -> None:
    """Write JSON atomically: a crash never leaves a half-written file."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_model_atomic(model: keras.Model, path: str) -> None:
    """Save ``model`` to ``path`` through a temporary file and a rename."""
    tmp = os.path.join(os.path.dirname(path) or ".", ".tmp-" + os.path.basename(path))
    model.save(tmp)
    os.replace(tmp, path)


def load_model(path: str) -> keras.Model:
    """Load a saved run model safely (no Lambda layers, no pickles)."""
    return keras.saving.load_model(path, safe_mode=True, compile=False)


def environment() -> dict:
    """Versions, devices and git commit of the process doing the training."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "kerasxfer": __version__,
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "gpus": [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus],
        "git_commit": commit,
    }


def count_params(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


# ------------------------------------------------------------- callbacks
def diverged(logs: dict) -> bool:
    """Whether an epoch's train or validation loss is NaN or infinite."""
    return not all(np.isfinite(float(logs[k])) for k in ("loss", "val_loss") if k in logs)


class EpochRecorder(keras.callbacks.Callback):
    """Appends one record per epoch to ``history`` (phase, metrics, lr) and to ``timings`` (speed).

    ``history.json`` holds only what the seed determines, so two equal runs
    write it byte for byte alike; seconds and images/s go to
    ``timings.json`` (both written by :class:`ResumeState`).  It runs before the TensorBoard callback and adds
    ``learning_rate`` and ``phase`` (the phase's index: 0, 1, ...) to the
    epoch logs, so TensorBoard plots the learning rate and shows where each
    phase starts.
    """

    def __init__(self, history: dict, timings: dict, phase: str, num_train: int, total_epochs: int,
                 phase_index: int = 0):
        super().__init__()
        self.history, self.timings, self.phase = history, timings, phase
        self.num_train, self.total_epochs, self.phase_index = num_train, total_epochs, phase_index

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._t_val = None

    def on_test_begin(self, logs=None):
        if getattr(self, "_t0", None) is not None and self._t_val is None:
            self._t_val = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        t1 = time.perf_counter()
        train_s = (self._t_val or t1) - self._t0
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        logs["learning_rate"] = lr
        logs["phase"] = float(self.phase_index)
        rec = {"epoch": epoch + 1, "phase": self.phase}
        rec.update({k: float(v) for k, v in logs.items() if k not in ("learning_rate", "phase")})
        rec["learning_rate"] = lr
        timing = {
            "epoch": epoch + 1,
            "seconds": round(t1 - self._t0, 3),
            "train_seconds": round(train_s, 3),
            "images_per_sec": round(self.num_train / train_s, 1) if train_s > 0 else None,
        }
        self.history["epochs"].append(rec)
        self.timings["epochs"].append(timing)
        phases = self.timings["phases"]
        phases[self.phase] = round(phases.get(self.phase, 0.0) + timing["seconds"], 3)
        self.timings["train_seconds"] = round(self.timings["train_seconds"] + timing["seconds"], 3)
        log.info(
            "epoch %d/%d [%s] loss %.4f acc %.4f | val_loss %.4f val_acc %.4f | lr %.1e | %.1fs, %s img/s",
            epoch + 1, self.total_epochs, self.phase, rec.get("loss", float("nan")),
            rec.get("accuracy", float("nan")), rec.get("val_loss", float("nan")),
            rec.get("val_accuracy", float("nan")), lr, timing["seconds"], timing["images_per_sec"],
        )
        if diverged(logs):
            self.model.stop_training = True
            self.history["stopped"] = {"epoch": epoch + 1, "phase": self.phase, "reason": "non-finite loss"}


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model to ``path`` (atomically) whenever ``val_accuracy`` improves.

    Ties go to the later epoch only if its ``val_loss`` is lower.  The state
    lives in ``best`` so it carries across phases.
    """

    def __init__(self, path: str, best: dict, phase: str, model: keras.Model | None = None):
        super().__init__()
        self.path, self.best, self.phase = path, best, phase
        self.full_model = model  # what to save when fit trains a part of it (the head on cached features)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        acc, loss = logs.get("val_accuracy"), logs.get("val_loss", float("inf"))
        if acc is None:
            return
        if diverged(logs):
            return  # a diverged model is never the best one
        acc, loss = float(acc), float(loss)
        better = acc > self.best.get("val_accuracy", -1.0) or (
            acc == self.best.get("val_accuracy") and loss < self.best.get("val_loss", float("inf"))
        )
        if better:
            save_model_atomic(self.full_model or self.model, self.path)
            self.best.update(epoch=epoch + 1, phase=self.phase, val_accuracy=acc, val_loss=loss)


class ResumeState(keras.callbacks.Callback):
    """After every epoch, writes ``history.json`` and ``timings.json``, then what continuing the run needs into ``resume/``.

    ``state-E.npz`` holds every variable of the model (weights, BatchNorm
    statistics, dropout seed states) and of the optimizer (slots, step
    count) after epoch ``E``; ``state.json`` (history, timings, best so far)
    names it.  Both are written to a temporary name and renamed, the npz
    first, so ``state.json`` always names a complete file.  It runs last, so
    everything else of epoch ``E`` is on disk when ``state.json`` says ``E``.
    """

    def __init__(self, out: str, history: dict, timings: dict, model: keras.Model | None = None):
        super().__init__()
        self.out, self.dir = out, os.path.join(out, RESUME_DIR)
        self.history, self.timings = history, timings
        self.full_model = model  # whose variables are saved (the optimizer is fit's)

    def on_epoch_end(self, epoch, logs=None):
        # Last callback: the epoch's record (EpochRecorder) and best (BestCheckpoint) are in.
        write_json(os.path.join(self.out, "history.json"), self.history)
        write_json(os.path.join(self.out, "timings.json"), self.timings)
        if self.history.get("stopped"):
            return  # a diverged epoch is not a state to continue from
        os.makedirs(self.dir, exist_ok=True)
        name = f"state-{epoch + 1}.npz"
        arrays = {f"m{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate((self.full_model or self.model).variables)}
        arrays.update({f"o{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(self.model.optimizer.variables)})
        tmp = os.path.join(self.dir, ".tmp-" + name)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, os.path.join(self.dir, name))
        write_json(
            os.path.join(self.dir, "state.json"),
            {"epoch": epoch + 1, "arrays": name,
             "history": self.history, "timings": self.timings},
        )
        for old in os.listdir(self.dir):
            if old.startswith("state-") and old.endswith(".npz") and old != name:
                os.remove(os.path.join(self.dir, old))


def _read_resume_state(out: str):
    path = os.path.join(out, RESUME_DIR, "state.json")
    if not os.path.isfile(path):
        return None
    state = read_json(path)
    arrays = os.path.join(out, RESUME_DIR, state["arrays"])
    if not os.path.isfile(arrays):
        return None
    state["arrays_path"] = arrays
    return state


def _restore_variables(model: keras.Model, arrays_path: str, optimizer_model: keras.Model | None) -> None:
    """Every variable of ``model``, and of ``optimizer_model``'s optimizer when given, from a saved state."""
    with np.load(arrays_path) as z:
        model_vars = model.variables
        n = sum(1 for k in z.files if k.startswith("m"))
        if n != len(model_vars):
            raise UserError(
                f"the saved state in {os.path.dirname(arrays_path)} does not fit this model ({n} variables "
                f"saved, {len(model_vars)} now): pass --overwrite to start the run again."
            )
        for i, v in enumerate(model_vars):
            v.assign(z[f"m{i}"])
        if optimizer_model is not None:
            opt = optimizer_model.optimizer
            opt.build(optimizer_model.trainable_variables)
            saved = sorted((k for k in z.files if k.startswith("o")), key=lambda k: int(k[1:]))
            if len(saved) != len(opt.variables):
                raise UserError(
                    f"the optimizer state in {os.path.dirname(arrays_path)} does not fit this phase: "
                    "pass --overwrite to start the run again."
                )
            for k, v in zip(saved, opt.variables):
                v.assign(z[k])


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif isinstance(v, list) and v and all(isinstance(i, dict) for i in v):
            out.update(_flat({str(i): item for i, item in enumerate(v)}, key + "."))
            out[key + ".count"] = len(v)
        else:
            out[key] = v
    return out


# Where files are and which devices run: a run may continue with other values of these.
_PLACE_FIELDS = ("out_dir", "strategy", "data.cache_dir", "data.tfds_data_dir", "data.tfds_download")


def config_differences(old: dict, new: dict) -> list:
    """``["model.widths: [8, 16] there, [8, 32] now", ...]`` (``_PLACE_FIELDS`` do not count)."""
    a, b = _flat(old), _flat(new)
    diffs = []
    for k in sorted(set(a) | set(b)):
        if k in _PLACE_FIELDS:
            continue
        if a.get(k, "<unset>") != b.get(k, "<unset>"):
            diffs.append(f"{k}: {a.get(k, '<unset>')!r} there, {b.get(k, '<unset>')!r} now")
    return diffs


def _remove_run_outputs(out: str) -> None:
    for name in _RUN_OUTPUTS:
        path = os.path.join(out, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def inspect_run_dir(exp: Experiment, overwrite: bool = False):
    """What to do with ``exp.out_dir``: ``("new", None)``, ``("resume", state)`` or ``("finished", None)``.

    Raises :class:`UserError` (changing nothing) when the folder holds a run
    made with other settings and ``overwrite`` is off.  With ``overwrite``,
    nothing is removed here: :func:`run_experiment` clears the run's own
    files once the data has opened.
    """
    out = exp.out_dir
    cfg_path = os.path.join(out, "config.json")
    if overwrite or not os.path.isfile(cfg_path):
        return "new", None
    try:
        old = read_json(cfg_path)
    except (OSError, ValueError):
        raise UserError(
            f"{cfg_path} is unreadable, so {out} cannot be continued: pass --overwrite to replace the run, "
            "or choose another --out_dir."
        ) from None
    diffs = config_differences(old, exp.to_dict())
    if diffs:
        raise UserError(
            f"{out} holds a run made with other settings ({'; '.join(diffs)}): rerun with the same flags "
            "to continue it, pass --overwrite to replace it, or choose another --out_dir."
        )
    if os.path.isfile(os.path.join(out, "metrics.json")):
        return "finished", None
    resume = _read_resume_state(out)
    return ("resume" if resume else "new"), resume


def determinism(exp: Experiment) -> bool:
    """Whether the run asks TensorFlow for deterministic ops (default: on CPU yes, on GPU no)."""
    if exp.deterministic is not None:
        return bool(exp.deterministic)
    return not tf.config.list_physical_devices("GPU")


class _StopOnSignal(keras.callbacks.Callback):
    """Ctrl-C (SIGINT) and SIGTERM stop training at the next batch, from plain Python code.

    The signal only sets a flag; this callback raises ``KeyboardInterrupt``
    at the next batch or epoch boundary.  Raising straight from the handler
    can land inside a ``__del__`` during TensorFlow clean-up, where Python
    swallows it and training goes on.  A second signal stops at once.
    """

    def __init__(self):
        super().__init__()
        self.signum = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def check(self):
        if self.signum is not None:
            raise KeyboardInterrupt

    def on_train_batch_end(self, batch, logs=None):
        self.check()

    def on_test_batch_end(self, batch, logs=None):
        self.check()

    def on_epoch_begin(self, epoch, logs=None):
        self.check()

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


# ---------------------------------------------------------------- weights
BACKBONE_FILE = "backbone.weights.h5"
BACKBONE_INFO = "backbone.json"


def export_backbone(run_dir: str) -> str:
    """Save the backbone of a run's best model as ``backbone.weights.h5`` (+ ``backbone.json``).

    The file loads into ``finetune --weights=PATH`` (and ``RegNet(weights=PATH)``)
    for the same variant; ``backbone.json`` records where it came from, so
    reports can say what a fine-tuned run started from.
    """
    from kerasxfer.models import get_backbone

    model = load_model(os.path.join(run_dir, MODEL_FILE))
    backbone = get_backbone(model)
    path = os.path.join(run_dir, BACKBONE_FILE)
    tmp = os.path.join(run_dir, ".tmp-" + BACKBONE_FILE)
    backbone.save_weights(tmp)
    os.replace(tmp, path)
    data = read_json(os.path.join(run_dir, "data.json"))
    metrics = read_json(os.path.join(run_dir, "metrics.json"))
    write_json(
        os.path.join(run_dir, BACKBONE_INFO),
        {
            "variant": backbone.name,
            "pretrained_on": data["source"],
            "num_classes": len(data["class_names"]),
            "num_train": data["num_train"],
            "image_size": data["image_size"],
            "best_val_accuracy": metrics["accuracy"],
            "best_epoch": metrics["best_epoch"],
            "run_dir": os.path.abspath(run_dir),
        },
    )
    log.info("backbone weights exported to %s", path)
    return path


def weights_source(exp: Experiment) -> str:
    """Where the run's weights came from, in words (for history.json and reports)."""
    m = exp.model
    if m.kind == "scratch":
        return "none (scratch CNN, random initialisation)"
    if m.kind == "regnet":
        return f"none ({m.backbone} trained from random initialisation)"
    if m.weights is None:
        return "none (random backbone, BatchNorm statistics re-estimated on the training images)"
    if m.weights == "imagenet":
        return f"ImageNet (keras-applications {m.backbone}_notop.h5)"
    info = os.path.join(os.path.dirname(os.path.abspath(m.weights)), BACKBONE_INFO)
    if os.path.basename(m.weights) == BACKBONE_FILE and os.path.isfile(info):
        with open(info, encoding="utf-8") as f:
            i = json.load(f)
        return (
            f"self-pretrained on {i['pretrained_on']}: {i['num_train']} images, best val_acc "
            f"{i['best_val_accuracy']:.2%} (file {m.weights})"
        )
    return f"file {m.weights}"


# ------------------------------------------------------------------ model
@dataclasses.dataclass
class Features:
    """A transfer model's head, and the backbone features of the training and validation images."""

    head: keras.Model  # features -> probabilities, sharing the transfer model's head layers
    train_from: object  # like DataSplits.train_from, over features
    val: tf.data.Dataset
    seconds: float


def backbone_features(model: keras.Model, data: DataSplits, batch_size: int) -> Features:
    """Compute the pooled backbone features of every image once, and a head model that trains on them.

    With the backbone frozen and called in inference mode, and no
    augmentation, an image's features are the same in every epoch, so
    training the head on them is the same computation as training the whole
    model, without running the backbone again: epochs see the same batches
    in the same order (the features are shuffled exactly like the images),
    and the head's layers are the model's own, so the model is trained in
    place.
    """
    t0 = time.perf_counter()
    extractor = keras.Model(model.inputs, model.get_layer("head_gap").output)
    feats = np.asarray(extractor.predict(data.train_ordered, verbose=0), np.float32)
    labels = np.concatenate([y for _, y in data.train_ordered.as_numpy_iterator()])
    val_feats = np.asarray(extractor.predict(data.val, verbose=0), np.float32)
    val_labels = np.concatenate([y for _, y in data.val.as_numpy_iterator()])
    inp = keras.Input(shape=feats.shape[1:], name="features")
    out = model.get_layer("head_dense")(model.get_layer("head_dropout")(inp))
    head = keras.Model(inp, out, name=f"{model.name}_head")
    base = tf.data.Dataset.from_tensor_slices((feats, labels))
    train_from = epochs_from(base, len(labels), batch_size, data.seed, data.shuffle_buffer)
    val = tf.data.Dataset.from_tensor_slices((val_feats, val_labels)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    seconds = time.perf_counter() - t0
    log.info(
        "frozen backbone: features of %d train + %d val images computed once in %.1fs; the head trains on them",
        len(labels), len(val_labels), seconds,
    )
    return Features(head, train_from, val, seconds)


def build_model(exp: Experiment, num_classes: int) -> keras.Model:
    """The network ``exp.model`` describes, for ``num_classes`` classes (with ``exp.data.augment`` in front)."""
    m, s = exp.model, exp.data.image_size
    aug = dict(augment=exp.data.augment, seed=exp.seed)
    if m.kind == "scratch":
        return build_scratch_cnn(
            (s, s, 3), num_classes, widths=tuple(m.widths), convs_per_block=m.convs_per_block,
            dropout=m.dropout, bn_momentum=m.bn_momentum, **aug,
        )
    if m.kind == "regnet":
        return build_regnet_classifier(m.backbone, (s, s, 3), num_classes, dropout=m.dropout, **aug)
    return build_transfer_model(m.backbone, (s, s, 3), num_classes, weights=m.weights, dropout=m.dropout, **aug)


def apply_trainable(model: keras.Model, rule: str) -> None:
    """Set what trains in a phase: ``all``, ``head`` or ``stages:K``."""
    kind, k = parse_trainable(rule)
    if kind == "all":
        model.trainable = True
    elif kind == "head":
        freeze(model)
    else:
        unfreeze(model, k)


def compile_for_phase(model: keras.Model, exp: Experiment, lr: float) -> None:
    o = exp.optim
    if o.optimizer == "adam":
        opt = keras.optimizers.Adam(learning_rate=lr)
    elif o.optimizer == "adamw":
        opt = keras.optimizers.AdamW(learning_rate=lr, weight_decay=o.weight_decay)
    elif o.optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True)
    else:
        raise UserError(f"optimizer {o.optimizer!r} is unknown: use adam, adamw or sgd.")
    if exp.data.soft_labels:  # MixUp/CutMix: one-hot, mixed labels
        loss, acc = keras.losses.CategoricalCrossentropy(), keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss, acc = keras.losses.SparseCategoricalCrossentropy(), keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=opt, loss=loss, metrics=[acc], jit_compile=exp.jit_compile)


# --------------------------------------------------------------- evaluate
def evaluate(model: keras.Model, data: DataSplits, probs=None) -> dict:
    """Accuracy, loss, per-class precision/recall/F1 and confusion matrix on the val split."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    if probs is None:
        probs = model.predict(data.val, verbose=0)
    y = data.val_labels
    pred = probs.argmax(axis=1)
    eps = 1e-7
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], eps, 1.0))))
    labels = list(range(data.num_classes))
    p, r, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    return {
        "num_val": int(len(y)),
        "accuracy": float((pred == y).mean()),
        "loss": loss,
        "class_names": data.class_names,
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, c in enumerate(data.class_names)
        },
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        # per image, in validation order: paired tests between runs (McNemar) need them
        "val_labels": y.tolist(),
        "val_predictions": pred.tolist(),
    }


def top_losses(data: DataSplits, probs, k: int = 16):
    """The ``k`` misclassified validation images with the highest loss, with their labels."""
    y = data.val_labels
    pred = probs.argmax(axis=1)
    p_true = probs[np.arange(len(y)), y]
    wrong = np.flatnonzero(pred != y)
    chosen = wrong[np.argsort(p_true[wrong], kind="stable")][:k]
    images, offset, want = {}, 0, set(chosen.tolist())
    for x, _ in data.val:
        n = int(x.shape[0])
        for i in range(offset, offset + n):
            if i in want:
                images[i] = x[i - offset].numpy()
        offset += n
        if len(images) == len(want):
            break
    return [images[i] for i in chosen], y[chosen], pred[chosen], p_true[chosen]


def write_evaluation(out: str, exp: Experiment, data: DataSplits, probs, metrics: dict, history: dict,
                     timings: dict) -> None:
    """confusion.png and top_losses.png in the run directory and in TensorBoard; HParams."""
    tb_dir = os.path.join(out, "tb")
    best = history["best"]
    title = f"{exp.name}: best checkpoint (epoch {best['epoch']}, {best['phase']}), val_acc {metrics['accuracy']:.4f}"
    cm_png = summaries.confusion_png(metrics["confusion_matrix"], data.class_names, title)
    imgs, true, pred, p_true = top_losses(data, probs)
    tl_png = summaries.top_losses_png(imgs, true, pred, p_true, data.class_names, f"{exp.name}: top losses")
    for name, png in (("confusion.png", cm_png), ("top_losses.png", tl_png)):
        with open(os.path.join(out, name + ".tmp"), "wb") as f:
            f.write(png)
        os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
    summaries.write_images(tb_dir, best["epoch"] - 1, {"confusion_matrix": cm_png, "top_losses": tl_png})
    last = history["epochs"][-1]
    final = {
        "hparams/best_val_accuracy": best["val_accuracy"],
        "hparams/best_epoch": best["epoch"],
        "hparams/final_val_loss": last.get("val_loss", float("nan")),
        "hparams/final_train_loss": last.get("loss", float("nan")),
        "hparams/train_seconds": timings["train_seconds"],
    }
    summaries.write_hparams(tb_dir, exp, final, step=last["epoch"] - 1)


# -------------------------------------------------------------------- run
def run_experiment(exp: Experiment, data: DataSplits | None = None, verbose: int = 0, overwrite: bool = False) -> dict:
    """Train every phase of ``exp`` and write its run directory; return metrics.json's content.

    ``data`` may be passed in to reuse pipelines already built (tests,
    multi-seed studies); otherwise it is loaded from ``exp.data``.  An
    interrupted run in ``exp.out_dir`` is continued from its last finished
    epoch; a finished one is returned as it is, unless ``overwrite``.
    """
    exp.validate()
    state, resume = inspect_run_dir(exp, overwrite)
    out = exp.out_dir
    if state == "finished":
        metrics = read_json(os.path.join(out, "metrics.json"))
        log.info(
            "%s is already finished (best val_accuracy %.4f at epoch %d); pass --overwrite to train it again",
            out, metrics["accuracy"], metrics["best_epoch"],
        )
        return metrics
    strategy = make_strategy(exp.strategy)  # before any other TensorFlow op (multi_worker needs that)
    chief = is_chief(strategy)
    if not chief:  # only the chief writes the run directory; other workers write a scratch copy
        out = tempfile.mkdtemp(prefix="kerasxfer-worker-")
        log.info("not the chief worker: writing to %s (removed at the end)", out)
    try:
        return _train(exp, data, verbose, resume, strategy, out)
    finally:
        if not chief:
            shutil.rmtree(out, ignore_errors=True)


def _train(exp: Experiment, data, verbose: int, resume, strategy, out: str) -> dict:
    # Data and weights are opened before anything is written: a bad folder or
    # an impossible download leaves no run directory behind.
    if exp.model.kind == "transfer" and exp.model.weights == "imagenet":
        path = regnet.imagenet_weights_file(exp.model.backbone, include_top=False)
        log.info("ImageNet weights: %s", path)
    # Every run sets its own dtype policy (a float32 run after a mixed one must not inherit it).
    keras.mixed_precision.set_global_policy(exp.precision)
    keras.utils.set_random_seed(exp.seed)  # before pipelines (their shuffles use it) and model weights
    deterministic = determinism(exp)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    if data is None:
        data = load_data(exp.data, exp.seed, deterministic)
    # The model (and a weights file it loads) too: a file for another variant changes nothing on disk.
    with strategy.scope():
        model = build_model(exp, data.num_classes)
    if resume is None and os.path.isdir(out):
        _remove_run_outputs(out)  # overwrite, or a run that died before its first epoch ended
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, "config.json"), exp.to_dict())
    write_json(os.path.join(out, "environment.json"), {**environment(), **describe_strategy(strategy)})
    write_json(
        os.path.join(out, "data.json"),
        {
            "source": data.description,
            "class_names": data.class_names,
            "num_train": data.num_train,
            "num_val": data.num_val,
            "image_size": data.image_size,
            **data.info,
        },
    )

    n_native = use_native_grouped_conv(model)
    if n_native:
        log.info("%d grouped convolutions run on TensorFlow's own kernels", n_native)
    m = exp.model
    bn_calibrated = m.kind == "transfer" and (
        m.calibrate_bn == "always" or (m.calibrate_bn == "auto" and m.weights is None)
    )
    if bn_calibrated and resume is None:
        n = calibrate_batchnorm(model, data.train)
        log.info("random backbone: BatchNorm statistics re-estimated on %d training batches", n)

    total_epochs = sum(p.epochs for p in exp.phases)
    if resume is not None:
        history, timings, done = resume["history"], resume["timings"], resume["epoch"]
        history.pop("stopped", None)
        log.info("continuing %s after epoch %d of %d", out, done, total_epochs)
    else:
        history = {
            "run": exp.name,
            "model": model.name,
            "weights": exp.model.weights if exp.model.kind == "transfer" else None,
            "weights_source": weights_source(exp),
            "bn_calibrated": bn_calibrated,
            "deterministic": deterministic,
            "phases": [],
            "epochs": [],
            "best": {},
        }
        timings = {"epochs": [], "phases": {}, "train_seconds": 0.0}
        done = 0
    model_path = os.path.join(out, MODEL_FILE)
    tb = keras.callbacks.TensorBoard(log_dir=os.path.join(out, "tb"), write_graph=False, update_freq="epoch")

    epoch = 0
    features = None  # backbone features of every image, computed at the first head-only phase
    try:
        with _StopOnSignal() as stop_on_signal:
            for phase_index, phase in enumerate(exp.phases):
                stop_on_signal.check()
                first, last = epoch, epoch + phase.epochs  # epochs first+1 .. last
                epoch = last
                if phase.epochs == 0 or done >= last:
                    continue
                cached = exp.uses_cached_features(phase)
                fit_model, train_from, val_data = model, data.train_from, data.val
                with strategy.scope():
                    apply_trainable(model, phase.trainable)
                    if cached and resume is not None:
                        # the features must come from the restored backbone (BatchNorm statistics included)
                        _restore_variables(model, resume["arrays_path"], None)
                    if cached:
                        if features is None:
                            features = backbone_features(model, data, exp.data.batch_size)
                            timings["feature_seconds"] = round(features.seconds, 3)
                            timings["train_seconds"] = round(timings["train_seconds"] + features.seconds, 3)
                        fit_model, train_from, val_data = features.head, features.train_from, features.val
                    compile_for_phase(fit_model, exp, phase.lr)  # recompile after every trainable change
                trainable, total = count_params(model.trainable_weights), count_params(model.weights)
                if resume is not None:
                    # the state after epoch `done`: with its optimizer slots when `done` is in this phase
                    _restore_variables(model, resume["arrays_path"], fit_model if done > first else None)
                    resume = None
                if done == first:
                    history["phases"].append(
                        {
                            "name": phase.name, "first_epoch": first + 1, "last_epoch": last,
                            "lr": phase.lr, "trainable": phase.trainable,
                            "trainable_params": trainable, "total_params": total, "cached_features": cached,
                        }
                    )
                    log.info(
                        "phase %s: epochs %d-%d, lr %g, %s trainable of %s parameters",
                        phase.name, first + 1, last, phase.lr, f"{trainable:,}", f"{total:,}",
                    )
                    summaries.write_phase_marker(
                        os.path.join(out, "tb"), first,
                        f"epoch {first + 1}: phase **{phase.name}** begins (lr {phase.lr:g}, trainable: "
                        f"{phase.trainable}, {trainable:,} of {total:,} parameters)",
                    )
                callbacks = [
                    stop_on_signal,
                    EpochRecorder(history, timings, phase.name, data.num_train, total_epochs, phase_index),
                    BestCheckpoint(model_path, history["best"], phase.name, model=model),
                    tb,
                    ResumeState(out, history, timings, model=model),
                ]
                # Epoch e's batches depend only on the seed and e (see data.pipeline), so a
                # resumed run sees what an uninterrupted one would have seen.
                defer_keras_build(fit_model, strategy)
                with strategy.scope():
                    fit_model.fit(
                        train_from(done, last),
                        steps_per_epoch=data.steps_per_epoch,
                        validation_data=val_data, initial_epoch=done,
                        epochs=last, callbacks=callbacks, verbose=verbose, shuffle=False,
                    )
                if history.get("stopped"):
                    break
                done = last
            stop_on_signal.check()
    except KeyboardInterrupt:
        st = _read_resume_state(out)
        where = f"after epoch {st['epoch']}" if st else "from the start (no epoch had finished)"
        raise UserError(
            f"training was interrupted; everything up to the last finished epoch is kept in {out}: "
            f"run the same command again to continue {where}.",
            exit_code=130,
        ) from None

    if history.get("stopped"):
        stop = history["stopped"]
        best = history["best"]
        kept = (f"the best checkpoint so far (epoch {best['epoch']}, val_accuracy {best['val_accuracy']:.4f}) "
                f"is kept in {model_path}") if best else "no epoch before it was usable, so no model was kept"
        raise UserError(
            f"the loss became NaN or infinite in epoch {stop['epoch']} ({stop['phase']} phase), so training "
            f"stopped; {kept}: lower the learning rate (--lr) and run again with --overwrite."
        )

    best_model = load_model(model_path)
    use_native_grouped_conv(best_model)
    probs = best_model.predict(data.val, verbose=0)
    metrics = evaluate(best_model, data, probs)
    metrics.update(
        best_epoch=history["best"]["epoch"],
        best_phase=history["best"]["phase"],
        total_params=count_params(best_model.weights),
    )
    write_json(os.path.join(out, "metrics.json"), metrics)
    write_evaluation(out, exp, data, probs, metrics, history, timings)
    shutil.rmtree(os.path.join(out, RESUME_DIR), ignore_errors=True)
    log.info(
        "best val_accuracy %.4f at epoch %d (%s); run directory: %s",
        metrics["accuracy"], metrics["best_epoch"], metrics["best_phase"], out,
    )
    return metrics
