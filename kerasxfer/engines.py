"""The engines ``predict`` can run a model on: TensorFlow (the inference graph), TFLite (XNNPACK), ONNX Runtime.

Each engine takes a float32 batch ``(N, S, S, 3)`` of images in [0, 255]
(as :class:`~kerasxfer.inference.Classifier` prepares them) and returns the
probabilities.  ``tensorflow`` runs the inference graph (BatchNorm folded);
``tflite`` the exported ``.tflite`` (uint8 input: the images are whole
numbers already) in TensorFlow's interpreter, whose float kernels are
XNNPACK's, one thread per core; ``onnxruntime`` the exported ``model.onnx``
(needs the ``onnx`` extra).  ``auto`` keeps TensorFlow for fewer than
:data:`AUTO_MIN_IMAGES` images (converting costs seconds that a small job
never wins back) and otherwise converts, times each engine on the first
batch (best of 3) and runs the fastest, saying so with the measured rates;
an engine that cannot run the model, or whose probabilities on that batch
differ from TensorFlow's by more than :data:`PROBABILITY_TOLERANCE`, is
skipped with a log line.  Asked for by name, it is one sentence instead.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import time

import numpy as np

from kerasxfer.errors import UserError

log = logging.getLogger("kerasxfer")

ENGINES = ("auto", "tensorflow", "tflite", "onnxruntime")
AUTO_MIN_IMAGES = 10_000
#: ``auto`` runs an engine only if its probabilities on the first batch are within this of TensorFlow's.
PROBABILITY_TOLERANCE = 1e-3


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


class TensorFlowEngine:
    name = "tensorflow"

    def __init__(self, clf, folder, export):
        self.model = clf.fast

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(batch))


class TFLiteEngine:
    name = "tflite"

    def __init__(self, clf, folder, export):
        import tensorflow as tf

        self.interp = tf.lite.Interpreter(model_path=export(clf, folder, "tflite"), num_threads=os.cpu_count() or 1)
        self.input = self.interp.get_input_details()[0]["index"]
        self.output = next(d["index"] for d in self.interp.get_output_details() if len(d["shape"]) == 2)
        self.batch = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.batch != len(batch):
            self.interp.resize_tensor_input(self.input, batch.shape)
            self.interp.allocate_tensors()
            self.batch = len(batch)
        self.interp.set_tensor(self.input, batch.astype(np.uint8))  # whole numbers already (uint8 images)
        self.interp.invoke()
        return np.array(self.interp.get_tensor(self.output))


class OnnxRuntimeEngine:
    name = "onnxruntime"

    def __init__(self, clf, folder, export):
        if importlib.util.find_spec("onnxruntime") is None:
            raise UserError(
                "--engine=onnxruntime needs onnxruntime, which is not installed: pip install "
                "'kerasxfer[onnx]' (make install does), or choose another --engine."
            )
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = os.cpu_count() or 1
        self.session = ort.InferenceSession(export(clf, folder, "onnx"), opts, providers=["CPUExecutionProvider"])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"image": np.asarray(batch, np.float32)})[0]  # no copy of a float32 batch


_CLASSES = {"tensorflow": TensorFlowEngine, "tflite": TFLiteEngine, "onnxruntime": OnnxRuntimeEngine}


def best_rate(fn, batch_size: int, readings: int = 3, warmup: int = 1) -> float:
    """Images/s of the fastest of ``readings`` calls of ``fn`` (one batch each), after ``warmup`` calls: shared
    machines are noisy, and the best reading is the engine's own speed (also ``make bench``'s measure)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(readings):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return batch_size / min(times)


def available() -> list:
    """The engines this installation can run (ONNX Runtime with the onnx extra only)."""
    have_onnx = importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("tf2onnx")
    return [n for n in _CLASSES if n != "onnxruntime" or have_onnx]


class EngineChoice:
    """The engine a :class:`~kerasxfer.inference.Classifier` predicts with: fixed, or chosen by ``auto``.

    ``export(clf, folder, fmt)`` writes the ``tflite``/``onnx`` file an engine runs
    (:func:`kerasxfer.inference.export`).
    """

    def __init__(self, clf, name: str, export):
        if name not in ENGINES:
            raise UserError(f"--engine={name!r} is unknown: use {', '.join(ENGINES)}.")
        self.clf, self.asked, self.engine, self.export = clf, name, None, export
        self._folder = None  # converted files, in a temporary folder made when an engine needs one
        self._tensorflow = None

    def make(self, name: str):
        """Engine ``name`` for this classifier (converting the model when the engine needs a file); one sentence
        when it cannot run this model."""
        if name == "tensorflow":
            self._tensorflow = self._tensorflow or TensorFlowEngine(self.clf, None, self.export)
            return self._tensorflow
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="kerasxfer-engine-")  # removed with this object
        try:
            return _CLASSES[name](self.clf, self._folder.name, self.export)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - a converter or runtime that cannot take this model
            raise UserError(
                f"--engine={name} cannot run this model ({_first_line(e)}): use --engine=tensorflow "
                "(or auto, which skips engines that cannot)."
            ) from None

    def for_job(self, num_images: int, first_batch: np.ndarray):
        """The engine for a job of ``num_images`` images (``first_batch``: what ``auto`` times)."""
        if self.engine is None:
            if self.asked != "auto":
                self.engine = self.make(self.asked)
            elif num_images < AUTO_MIN_IMAGES:
                return self.make("tensorflow")
            else:
                self.engine = self._fastest(first_batch)
        return self.engine

    def _fastest(self, batch):
        reference, engines = self.make("tensorflow")(batch), {}
        for name in available():
            try:
                engine = self.make(name)
                gap = float(np.abs(engine(batch) - reference).max())
            except Exception as e:  # noqa: BLE001 - an engine that cannot run this model is not a candidate
                log.info("engine: %s skipped: %s", name, _first_line(e))
                continue
            if gap > PROBABILITY_TOLERANCE:
                log.info("engine: %s skipped: its probabilities differ from TensorFlow's by up to %.2g", name, gap)
                continue
            engines[name] = engine
        rates = {name: best_rate(lambda e=engine: e(batch), len(batch)) for name, engine in engines.items()}
        best = max(rates, key=rates.get)
        log.info(
            "engine: %s (measured on the first batch: %s)", best, ", ".join(f"{n} {r:.0f} images/s" for n, r in rates.items())
        )
        return engines[best]
