"""Getting published weights into Keras 3 models.

* :func:`fetch` downloads a file once into the Keras cache
  (``$KERAS_HOME/models``, default ``~/.keras/models``) with
  ``keras.utils.get_file``, verifies its sha256, and turns every failure
  (no network, proxy, HTTP error, wrong hash) into one
  :class:`~kerasxfer.errors.UserError` sentence that says which file was
  needed and where to put it by hand.  A file already in the cache with the
  right hash is used without any network access.
* :func:`load_h5_by_name` loads a weights file written by tf-keras (Keras 2,
  the keras-applications ``.h5`` format) into a Keras 3 model by layer name,
  checking every shape.
"""

from __future__ import annotations

import os

import h5py
import keras
import numpy as np

from kerasxfer import keras_compat
from kerasxfer.errors import UserError
from kerasxfer.fsio import sha256_of


def cache_dir() -> str:
    """The folder ``keras.utils.get_file(cache_subdir="models")`` uses (honours ``KERAS_HOME``)."""
    return os.path.join(os.path.expanduser(keras_compat.keras_home()), "models")


def fetch(file_name: str, origin: str, file_hash: str) -> str:
    """Path of ``file_name`` in the Keras cache, downloaded from ``origin`` if missing."""
    target = os.path.join(cache_dir(), file_name)
    by_hand = f"download {origin} on a machine with internet and copy it to {target} (sha256 {file_hash}), or pass --weights=PATH"
    try:
        path = keras.utils.get_file(file_name, origin, cache_subdir="models", file_hash=file_hash)
    except ValueError as e:  # hash mismatch after download
        if os.path.exists(target) and sha256_of(target) != file_hash:
            os.remove(target)  # never leave a bad file where the next run would find it
        raise UserError(f"the download of {file_name} did not match its published sha256 ({e}): {by_hand}.") from None
    except Exception as e:  # noqa: BLE001 - any network failure (Ctrl-C is an interruption, not a failure)
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise UserError(f"cannot download {file_name} ({reason}): {by_hand}.") from None
    return path


def load_keras_weights(model: keras.Model, path: str) -> None:
    """``model.load_weights(path)`` for a Keras ``.weights.h5`` file, with one-sentence errors."""
    if not os.path.isfile(path):
        raise UserError(f"weights file {path!r} does not exist: pass an existing file.")
    import warnings

    try:
        with warnings.catch_warnings():  # Keras warns once per mismatched layer; the sentence below says it all
            warnings.simplefilter("ignore")
            model.load_weights(path)
    except Exception as e:  # noqa: BLE001 - mismatch is reported in one sentence
        raise UserError(
            f"weights file {path!r} does not fit {model.name} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}): pass weights saved from the same variant."
        ) from None


def _h5_layers(f):
    """``{layer name: [h5py datasets in weight order]}`` of a tf-keras ``.h5`` weights file (nothing read yet)."""
    root = f["model_weights"] if "model_weights" in f else f
    names = [n.decode("utf8") if isinstance(n, bytes) else n for n in root.attrs.get("layer_names", [])]
    out = {}
    for name in names:
        g = root[name]
        wnames = [n.decode("utf8") if isinstance(n, bytes) else n for n in g.attrs.get("weight_names", [])]
        if wnames:
            out[name] = [g[w] for w in wnames]
    return out


def is_legacy_h5(path: str) -> bool:
    """True for an ``.h5`` written by tf-keras (``layer_names`` attribute at its root)."""
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            return "layer_names" in root.attrs
    except OSError:
        return False


def _load_checked(model, path: str, stored: dict, rename, skip) -> int:
    """Check every name and shape against ``model`` first (from the file's metadata), then read and assign; the
    number of layers loaded."""
    if rename:
        stored = {rename(k): v for k, v in stored.items()}
    targets = {l.name: l for l in keras_compat.flatten_layers(model) if l.weights}
    where = f"weights file {os.path.basename(path)!r} does not fit {model.name}"
    missing = sorted(set(targets) - set(stored))
    if missing:
        raise UserError(
            f"{where}: it has no weights for {len(missing)} layer(s) such as {missing[0]!r}; "
            "pass the file of the same variant (and a top/notop file that matches include_top)."
        )
    extra = sorted(set(stored) - set(targets) - set(skip))
    if extra:
        raise UserError(f"{where}: it holds layer(s) the model lacks, such as {extra[0]!r}; pass the file of the same variant.")
    for name, layer in targets.items():
        shapes = [tuple(w.shape) for w in layer.weights]
        if [tuple(d.shape) for d in stored[name]] != shapes:  # declared shapes: no data read, however large
            raise UserError(
                f"{where}: layer {name!r} has weights of shapes {[tuple(d.shape) for d in stored[name]]} in the file "
                f"but {shapes} in the model; pass the file of the same variant (and classes)."
            )
    for name, layer in targets.items():
        for var, data in zip(layer.weights, stored[name]):
            var.assign(np.asarray(data))
    return len(targets)


def load_h5_by_name(model: keras.Model, path: str, rename=None, skip=()) -> int:
    """Load a tf-keras ``.h5`` weights file into ``model`` by layer name.

    ``rename(file_layer_name) -> model_layer_name`` maps names that differ;
    file layers for which it returns a name in ``skip`` are ignored (e.g. a
    classifier head when the model has none).  Every weighted layer of the
    model must be found, with the same number and shapes of weights,
    otherwise a :class:`UserError` names the first mismatch.  Returns the
    number of layers loaded.
    """
    try:
        with h5py.File(path, "r") as f:
            return _load_checked(model, path, _h5_layers(f), rename, skip)
    except OSError as e:
        raise UserError(f"weights file {path!r} is not a readable HDF5 file ({e}): pass a valid .h5 file.") from None
    except (KeyError, ValueError, TypeError) as e:  # a layer group or weight the file names but lacks
        raise UserError(
            f"weights file {path!r} is damaged ({type(e).__name__}: {str(e)[:120]}): pass the published file again."
        ) from None
