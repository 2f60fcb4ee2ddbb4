"""Classify new images with a trained run, and export it for serving.

    from kerasxfer.inference import Classifier
    clf = Classifier.from_run("runs/finetune")
    for p in clf.predict(["photo.jpg", "more_photos/"], top_k=3):
        print(p.source, p.top)          # [("cat", 0.93), ("dog", 0.05), ...]

Images go through exactly the preprocessing of training: decoded by the same
TensorFlow op, resized by the same function to the run's image size; the
model itself rescales.  Files that cannot be read come back as predictions
with an ``error`` and the others go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import zipfile
from typing import Optional

import numpy as np
import tensorflow as tf

from kerasxfer import fsio, rundir
from kerasxfer.data.arrays import to_rgb_resized
from kerasxfer.data.decode import decode_image_bytes, decode_image_file, screen_file
from kerasxfer.data.sources import is_image_path, walk_files
from kerasxfer.engines import EngineChoice
from kerasxfer.errors import UserError
from kerasxfer.keras_compat import flatten_layers
from kerasxfer.models import use_native_grouped_conv
from kerasxfer.models.inference_graph import inference_model

log = logging.getLogger("kerasxfer")


@dataclasses.dataclass
class Prediction:
    """The top-k classes of one input, or the reason it could not be classified."""

    source: str
    top: list  # [(class name, probability), ...], best first
    error: Optional[str] = None

    @property
    def label(self) -> Optional[str]:
        return self.top[0][0] if self.top else None


def load_model_safely(path: str):
    """``keras.saving.load_model(path, safe_mode=True)`` with one-sentence errors."""
    import keras

    if not os.path.isfile(path):
        raise UserError(f"model file {path!r} does not exist: pass the model.keras of a finished run.")
    if not zipfile.is_zipfile(path):
        raise UserError(
            f"{path!r} is not a Keras model file (a .keras file is a zip archive; this one is "
            "truncated or something else): pass the model.keras of a finished run."
        )
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # noqa: BLE001 - any load failure is one sentence
        first = str(e).strip().splitlines()[0][:240] if str(e).strip() else type(e).__name__
        raise UserError(
            f"cannot load {path!r} as a Keras model safely ({first}): it is damaged or needs "
            "custom code; pass a model.keras written by kerasxfer."
        ) from None


def study_model(folder: str) -> str:
    """The run folder to load for ``folder``: itself, or for a study's folder the model its report hands over
    (summary.json's ``final``: ``final/``, or a one-split study's own run of the chosen arm)."""
    summary = os.path.join(folder, "report", "summary.json")
    if os.path.isfile(os.path.join(folder, "data.json")) or not os.path.isfile(summary):
        return folder
    try:
        with open(summary, encoding="utf-8") as f:
            final = json.load(f).get("final") or {}
    except (OSError, ValueError) as e:
        raise UserError(f"{summary} cannot be read ({type(e).__name__}): run the study again to write it.") from None
    if not final.get("dir"):
        why = final.get("why", "the study was run by a kerasxfer without final models; run it again to train one")
        raise UserError(
            f"the study {folder!r} hands over no model ({why.rstrip('.')}): pass one of its run folders instead, "
            f"e.g. {os.path.join(folder, 'fold1', 'transfer')}."
        )
    run = os.path.join(folder, os.path.basename(os.path.normpath(final["dir"])))
    log.info("%s is a study: its model to deploy is %s (%s)", folder, run, final.get("arm"))
    return run


class Classifier:
    """A trained model plus its class names and input size."""

    def __init__(
        self,
        model,
        class_names,
        image_size: Optional[int] = None,
        batch_size: int = 32,
        resize: str = "squash",
        engine: str = "auto",
    ):
        self.model = model
        self.resize = resize  # how images reach the model's size, as in training (data.json)
        self.class_names = list(class_names)
        shape = model.input_shape
        if not (
            isinstance(shape, tuple)
            and len(shape) == 4
            and shape[-1] == 3
            and (image_size or (isinstance(shape[1], int) and shape[1] == shape[2]))
        ):
            raise UserError(
                f"the model takes inputs of shape {shape}, not square RGB images (height, width, 3) of a "
                "fixed size: pass a model kerasxfer trained (its run's model.keras)."
            )
        self.image_size = int(image_size or shape[1])
        self.batch_size = batch_size
        out = model.output_shape[-1]
        if out != len(self.class_names):
            raise UserError(
                f"the model has {out} outputs but {len(self.class_names)} class names were given: "
                "pass the class names of the run that trained it."
            )
        use_native_grouped_conv(model)
        self.fast = inference_model(model)  # what predicts: BatchNorm folded into the convolutions
        self.engines = EngineChoice(self, engine, export)  # kerasxfer.engines: tensorflow, tflite, onnxruntime or auto
        self.engine = None  # the name of the engine that ran the last batch
        self._resize = tf.function(
            lambda x: to_rgb_resized(x, self.image_size, self.resize),
            input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)],
        )

    @classmethod
    def from_run(cls, run_dir: str, batch_size: int = 32, engine: str = "auto") -> "Classifier":
        """The best model of a run directory, with its class names and image size; a study's folder gives the
        model it hands over (:func:`study_model`)."""
        run_dir = study_model(run_dir)
        try:
            with open(os.path.join(run_dir, "data.json"), encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise UserError(
                f"{run_dir!r} is not a finished kerasxfer run ({type(e).__name__} reading data.json): "
                "pass a run directory such as runs/finetune."
            ) from None
        if not rundir.is_finished(run_dir):
            log.warning("%s has not finished training: its model.keras is the best checkpoint so far", run_dir)
        model = load_model_safely(os.path.join(run_dir, "model.keras"))
        return cls(model, data["class_names"], data.get("image_size"), batch_size, data.get("resize", "squash"), engine)

    @classmethod
    def from_model(cls, path: str, class_names, batch_size: int = 32, engine: str = "auto") -> "Classifier":
        return cls(load_model_safely(path), class_names, None, batch_size, engine=engine)

    # ------------------------------------------------------------- inputs
    def _expand(self, inputs):
        """``(source name, loader)`` pairs; a loader returns a uint8 image or raises."""
        if isinstance(inputs, (str, os.PathLike)) or not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        items = []
        for k, item in enumerate(inputs):
            if isinstance(item, (str, os.PathLike)):
                p = os.fspath(item)
                if os.path.isdir(p):
                    items += [(f, _file_loader(f)) for f in walk_files(p)]  # non-images are reported, not dropped
                else:
                    items.append((p, _file_loader(p)))
            elif isinstance(item, np.ndarray) and item.ndim == 4:
                items += [(f"array[{k}][{i}]", _array_loader(a)) for i, a in enumerate(item)]
            elif isinstance(item, np.ndarray):
                items.append((f"array[{k}]", _array_loader(item)))
            elif hasattr(item, "convert") and hasattr(item, "size"):  # PIL.Image
                items.append((f"image[{k}]", _array_loader(np.asarray(item.convert("RGB")))))
            else:
                raise UserError(f"input {k} is a {type(item).__name__}: pass file paths, folders, numpy arrays or PIL images.")
        return items

    def preprocess(self, image) -> np.ndarray:
        """One uint8 image (H, W, 1|3) -> the float32 (S, S, 3) the model takes, as in training."""
        return self._resize(tf.convert_to_tensor(image, tf.uint8)).numpy().astype(np.float32)

    def predict(self, inputs, top_k: int = 1) -> list:
        """:class:`Prediction` per image of ``inputs`` (paths, folders, arrays, PIL images)."""
        return list(self.predict_iter(inputs, top_k))

    def predict_iter(self, inputs, top_k: int = 1):
        """:class:`Prediction` per image of ``inputs``, in order, one batch at a time: memory holds one batch of
        images, however many the inputs are (a folder of 100,000 files is fine)."""
        top_k = max(1, min(int(top_k), len(self.class_names)))
        items = self._expand(inputs)
        engine = None
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            results, ok_idx, ok_imgs = [None] * len(chunk), [], []
            for i, (src, load) in enumerate(chunk):
                try:
                    ok_imgs.append(self.preprocess(load()))
                    ok_idx.append(i)
                except Exception as e:  # noqa: BLE001 - reported per image
                    results[i] = Prediction(src, [], error=_reason(e))
            if ok_imgs:
                batch = np.stack(ok_imgs)
                engine = engine or self.engines.for_job(len(items), batch)
                self.engine = engine.name
                probs = engine(batch)
                for i, p in zip(ok_idx, probs):
                    best = np.argsort(-p, kind="stable")[:top_k]
                    results[i] = Prediction(chunk[i][0], [(self.class_names[c], float(p[c])) for c in best])
            yield from results


def _file_loader(path):
    def load():
        if not os.path.lexists(path):
            raise FileNotFoundError("file not found")
        if not is_image_path(path):
            raise ValueError(f"not an image file ({os.path.splitext(path)[1] or 'no extension'})")
        why = screen_file(path)  # never open a FIFO, a device or a decompression bomb
        if why:
            raise ValueError(why)
        return decode_image_file(tf.constant(path))

    return load


def _array_loader(arr):
    def load():
        a = np.asarray(arr)
        if a.ndim == 2:
            a = a[..., None]
        if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
            raise ValueError(f"array of shape {a.shape} is not an image (H, W, 1|3|4)")
        if a.shape[-1] == 4:
            a = a[..., :3]
        if a.shape[-1] == 1:
            a = np.repeat(a, 3, axis=-1)
        if a.dtype != np.uint8:
            a = np.clip(np.round(a), 0, 255).astype(np.uint8)
        return a

    return load


def _reason(e: Exception) -> str:
    if isinstance(e, tf.errors.InvalidArgumentError):
        return "cannot be decoded as an image (corrupt, truncated or another format)"
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:200]


# ------------------------------------------------------------------ export
def export(clf: Classifier, out_dir: str, fmt: str) -> str:
    """Write a serving artefact of ``clf`` into ``out_dir``; return its path.

    ``saved_model``: a TF SavedModel with two signatures, ``serving_default``
    taking encoded image bytes (``tf.string``, shape [N]) and ``serve_uint8``
    taking uint8 images (N, S, S, 3); both return ``probabilities`` (N, C) and
    ``classes`` (N,) as strings.  ``tflite``: the uint8 signature converted
    with the TFLite converter (probabilities only; class names are written
    next to it as ``labels.txt``).  ``onnx``: :func:`export_onnx`.
    """
    import keras

    if fmt == "onnx":
        return export_onnx(clf, out_dir)
    size, names = clf.image_size, tf.constant(clf.class_names)
    model = clf.fast  # the inference graph: BatchNorm folded

    def from_uint8(images):
        probs = model(tf.cast(images, tf.float32), training=False)
        return {"probabilities": probs, "classes": tf.gather(names, tf.argmax(probs, axis=-1))}

    def from_bytes(encoded):
        def decode(b):  # the training pipeline's decoder: RGBA WebP, reduced-size JPEG and all, but EXIF orientation
            # (a Python call a SavedModel cannot hold: docs/inference.md says to send upright images)
            return to_rgb_resized(decode_image_bytes(b, size, exif=False), size, clf.resize)

        images = tf.map_fn(decode, encoded, fn_output_signature=tf.TensorSpec((size, size, 3), tf.uint8))
        return from_uint8(images)

    if fmt not in ("saved_model", "tflite"):
        raise UserError(f"--export={fmt!r} is unknown: use saved_model, tflite or onnx.")
    os.makedirs(out_dir, exist_ok=True)
    sm_path = os.path.join(out_dir, "saved_model")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", from_bytes, input_signature=[tf.TensorSpec([None], tf.string)])
    archive.add_endpoint("serve_uint8", from_uint8, input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8)])
    with _converting("saved_model"), fsio.atomic_dir(sm_path) as tmp:
        archive.write_out(tmp, verbose=False)
    if fmt == "saved_model":
        return sm_path
    converter = tf.lite.TFLiteConverter.from_saved_model(sm_path, signature_keys=["serve_uint8"])
    tfl_path = os.path.join(out_dir, "model.tflite")
    with _converting("tflite"):
        flat = converter.convert()
    fsio.write_bytes(tfl_path, flat)
    write_labels(out_dir, clf.class_names)
    return tfl_path


#: What an export writes into its folder (``predict --export``): nothing else there is replaced.
EXPORT_FILES = ("saved_model", "model.tflite", "model.onnx", "labels.txt", "labels.json")


def write_labels(out_dir: str, class_names) -> None:
    """``labels.txt``, one line per class in output order (a line break in a name becomes a space, so line k is
    class k), and ``labels.json``, the names exactly."""
    fsio.write_text(os.path.join(out_dir, "labels.txt"), "".join(" ".join(str(c).splitlines()) + "\n" for c in class_names))
    fsio.write_json(os.path.join(out_dir, "labels.json"), list(class_names))


@contextlib.contextmanager
def _converting(fmt: str):
    """A converter's failure (a layer or dtype it has no kernel for) as one sentence saying what works instead."""
    try:
        yield
    except (UserError, KeyboardInterrupt):
        raise
    except OSError as e:
        raise UserError(
            f"the {fmt} export could not be written ({e.strerror or e}): free some space or choose "
            "another folder; nothing half-written was left."
        ) from None
    except Exception as e:  # noqa: BLE001 - converter dumps: the first line says which op
        text = str(e).strip()
        reason = (text.splitlines()[0] if text else type(e).__name__)[:200]
        raise UserError(
            f"this model cannot be converted to {fmt} ({reason}): use --export=saved_model, or predict with --engine=tensorflow."
        ) from None


def export_onnx(clf: Classifier, out_dir: str) -> str:
    """``model.onnx`` through Keras' exporter: float32 images (N, S, S, 3) in [0, 255] -> probabilities (N, C).

    Class names go to ``labels.txt`` beside it.  Needs the ``onnx`` extra (tf2onnx; onnxruntime runs the file).
    Grouped convolutions are TensorFlow's own ops (Classifier does that) and the fixed mean/variance of
    Normalization layers are graph constants while the file is written: ONNX has no place for the eager
    tensors Keras keeps them in (tf2onnx would turn them into extra inputs).
    """
    import importlib.util

    if importlib.util.find_spec("tf2onnx") is None:
        raise UserError(
            "--export=onnx needs tf2onnx, which is not installed: pip install 'kerasxfer[onnx]' "
            "(make install does), then run the same command again."
        )
    model, size = clf.fast, clf.image_size
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "model.onnx")
    norms = [
        layer
        for layer in flatten_layers(model)
        if type(layer).__name__ == "Normalization" and getattr(layer, "mean", None) is not None
    ]
    saved = [(layer.mean, layer.variance) for layer in norms]
    quiet = logging.getLogger("tf2onnx")  # its optimizer reports every pass at INFO
    level, quiet.level = quiet.level, logging.WARNING
    try:
        for layer in norms:
            layer.mean, layer.variance = np.asarray(layer.mean), np.asarray(layer.variance)
        with _converting("onnx"), fsio.atomic_path(path) as tmp:
            model.export(
                tmp,
                format="onnx",
                verbose=False,
                input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32, name="image")],
            )
            if importlib.util.find_spec("onnxruntime") is not None:  # a file ONNX Runtime cannot load is no export
                import onnxruntime as ort

                ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
    finally:
        quiet.setLevel(level)
        for layer, (mean, variance) in zip(norms, saved):
            layer.mean, layer.variance = mean, variance
    write_labels(out_dir, clf.class_names)
    return path
