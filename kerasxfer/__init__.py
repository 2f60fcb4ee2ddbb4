"""kerasxfer: train a small CNN from scratch, or transfer a pretrained ImageNet backbone?

The library runs that study end to end on Keras 3 / TensorFlow — a scratch
CNN, a frozen then fine-tuned backbone (RegNet, EfficientNet-Lite or a
keras.applications family) and its random-backbone control, cross-validated
on small sets — and writes run directories and a report that answer it with
measured numbers.  Entry points live in
``experiments/`` (installed as ``kerasxfer.experiments``, with the
``kerasxfer`` command); the library modules read no flags: everything a run
needs arrives in an :class:`~kerasxfer.config.Experiment`.  Environment
variables are read only where a convention demands it: ``TF_CONFIG``
(``--strategy=multi_worker``) and ``TPU_NAME`` (``--strategy=tpu``) in
:mod:`kerasxfer.distribute`, ``KERAS_HOME`` (the weights cache, through
Keras) in :mod:`kerasxfer.models.weights`; and this file sets defaults for
``TF_ENABLE_ONEDNN_OPTS`` and ``KERAS_BACKEND`` (below).
"""

import os as _os

# TensorFlow's CPU gradient of a grouped convolution exists only in its oneDNN
# kernels, which TensorFlow turns on by default only on CPUs with AVX-512.
# RegNet is built of grouped convolutions, so ask for oneDNN before TensorFlow
# is first imported (an explicit TF_ENABLE_ONEDNN_OPTS=0 from the user wins).
# When it is off anyway, kerasxfer.models.fastconv runs one convolution per
# group instead and says so.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# kerasxfer runs on Keras' TensorFlow backend (tf.data, tf.distribute, TensorBoard): choose it before Keras is
# first imported (KERAS_BACKEND is Keras' own convention; it overrides ~/.keras/keras.json).
if _os.environ.setdefault("KERAS_BACKEND", "tensorflow") != "tensorflow":
    raise ImportError(
        f"kerasxfer runs on Keras' TensorFlow backend, but KERAS_BACKEND={_os.environ['KERAS_BACKEND']!r}: unset it "
        "or set KERAS_BACKEND=tensorflow."
    )

import importlib.util as _util  # noqa: E402

if _util.find_spec("tensorflow") is None:
    raise ImportError(
        "kerasxfer needs TensorFlow, which is not installed: install kerasxfer with an extra, "
        "pip install 'kerasxfer[cpu]' (the CPU wheel) or 'kerasxfer[gpu]' (CUDA), or run make install."
    )

from kerasxfer.version import __version__  # noqa: E402,F401

#: The Python API (kerasxfer.api), loaded on first use so that ``import kerasxfer`` stays light.
_API = ("study", "finetune", "scratch", "compare", "load", "options_of", "show_progress")


def __getattr__(name):
    if name in _API:
        from kerasxfer import api

        return getattr(api, name)
    raise AttributeError(f"module 'kerasxfer' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
