"""The run directory: its file names, atomic writes, and what to do with an existing one.

A run writes one folder that is complete on its own::

    config.json       the resolved experiment (enough to rerun it)
    environment.json  versions, devices, git commit, host, distribution strategy
    data.json         data source, class names, per-class counts
    model.keras       best checkpoint by val_accuracy (preprocessing inside)
    history.json      one record per epoch, with its phase and lr: only what
                      the seed determines, so equal runs write equal bytes
    timings.json      seconds and images/s of every epoch and phase
    metrics.json      evaluation of model.keras on the validation and test splits (per-image predictions too)
    confusion.png     its confusion matrix;  top_losses.png  its worst mistakes
    tb/               TensorBoard logs
    resume/           while training: the state after the last finished epoch
    backbone.weights.h5, backbone.json   after pretraining (export)

Every file is written through :func:`kerasxfer.fsio.atomic_path`: a
temporary name in the same folder, renamed over the target only once
complete, so a crash never leaves a half-written file.  This module imports no TensorFlow (the report
reads run directories with it); :func:`environment` imports it only when
called.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys

from kerasxfer.fsio import read_json, write_json, write_text

CONFIG = "config.json"
ENVIRONMENT = "environment.json"
DATA = "data.json"
MODEL = "model.keras"
HISTORY = "history.json"
TIMINGS = "timings.json"
METRICS = "metrics.json"
CONFUSION = "confusion.png"
TOP_LOSSES = "top_losses.png"
TB = "tb"
RESUME = "resume"
BACKBONE_WEIGHTS = "backbone.weights.h5"
BACKBONE_INFO = "backbone.json"
#: Written first ("training") and last ("finished"): what makes a folder a kerasxfer run, and a finished one.
MARKER = "kerasxfer-run.json"
#: Held (flock) by the process writing the run; the kernel releases it when that process dies.
LOCK = ".kerasxfer.lock"

#: What a finished run always has.
RUN_FILES = (CONFIG, ENVIRONMENT, DATA, MODEL, HISTORY, METRICS)
#: Everything a run writes: overwrite removes these and nothing else in the folder.
RUN_OUTPUTS = RUN_FILES + (TIMINGS, CONFUSION, TOP_LOSSES, BACKBONE_WEIGHTS, BACKBONE_INFO, TB, RESUME, MARKER)


# -------------------------------------------------------------- environment
def environment() -> dict:
    """Versions, devices and git commit of the process doing the training (imports TensorFlow)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from kerasxfer.version import __version__

    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=os.path.dirname(os.path.abspath(__file__)),
            ).stdout.strip()
            or None
        )
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


# ------------------------------------------------------------ existing runs
# Where files are and which devices run: a run may continue with other values of these.
PLACE_FIELDS = ("out_dir", "strategy", "data.cache_dir", "data.tfds_data_dir", "data.tfds_download")


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


def config_differences(old: dict, new: dict) -> list:
    """``["model.widths: [8, 16] there, [8, 32] now", ...]`` (``PLACE_FIELDS`` do not count)."""
    a, b = _flat(old), _flat(new)
    diffs = []
    for k in sorted(set(a) | set(b)):
        if k in PLACE_FIELDS:
            continue
        if a.get(k, "<unset>") != b.get(k, "<unset>"):
            diffs.append(f"{k}: {a.get(k, '<unset>')!r} there, {b.get(k, '<unset>')!r} now")
    return diffs


def _with_defaults(old: dict, complete) -> dict:
    """``old`` with the fields a newer kerasxfer added at their defaults (``complete``), so older runs continue."""
    from kerasxfer.errors import UserError

    try:
        return complete(old) if complete is not None else old
    except (UserError, TypeError, ValueError):
        return old


# ------------------------------------------------------ marker and lock
def read_marker(out: str):
    """The run marker of ``out`` (``{"state": "training"|"finished", ...}``), None when there is none.

    A damaged marker still proves the folder is a run: ``{"state": "damaged"}``.
    """
    path = os.path.join(out, MARKER)
    if not os.path.isfile(path):
        return None
    try:
        marker = read_json(path)
        return marker if isinstance(marker, dict) and "state" in marker else {"state": "damaged"}
    except (OSError, ValueError):
        return {"state": "damaged"}


def write_marker(out: str, state: str) -> None:
    from kerasxfer.version import __version__

    write_json(os.path.join(out, MARKER), {"kerasxfer": __version__, "state": state})


def _older_run(out: str) -> bool:
    """A run made before the marker existed: a config.json that kerasxfer wrote (an Experiment) and a history."""
    try:
        cfg = read_json(os.path.join(out, CONFIG))
    except (OSError, ValueError):
        return False
    return (
        isinstance(cfg, dict)
        and {"phases", "model", "data", "out_dir"} <= set(cfg)
        and os.path.isfile(os.path.join(out, HISTORY))
    )


def is_run(out: str) -> bool:
    """Whether ``out`` is a kerasxfer run: it has the marker, or it is a run made before the marker."""
    return read_marker(out) is not None or _older_run(out)


def is_finished(out: str) -> bool:
    """Whether the run in ``out`` wrote its last output (older runs, without the marker: metrics.json)."""
    marker = read_marker(out)
    if marker is None:
        return _older_run(out) and os.path.isfile(os.path.join(out, METRICS))
    return marker["state"] == "finished"


@contextlib.contextmanager
def locked(out: str):
    """Hold the exclusive lock of the run directory ``out`` (created if needed) for the block.

    A second process gets one sentence; a lock left by a dead process is
    taken over (flock locks die with their process).  A folder this call
    created and that holds nothing but the lock afterwards is removed again;
    from a folder that is still no run afterwards (a refused one), the lock file is.
    """
    import fcntl

    from kerasxfer.errors import UserError

    created = not os.path.isdir(out)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise UserError(
                f"{out} is being written by another kerasxfer process (pid {holder}): wait for it to finish, "
                "or choose another --out_dir."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        if held and not created and not is_run(out):  # a refused user folder keeps nothing of ours
            with contextlib.suppress(OSError):
                os.remove(path)
        os.close(fd)
        if created and os.listdir(out) == [LOCK]:
            shutil.rmtree(out, ignore_errors=True)


def inspect_run_dir(out: str, config: dict, overwrite: bool = False, complete=None) -> str:
    """What to do with the folder ``out`` for a run of ``config``: ``"new"``, ``"resume"`` or ``"finished"``.

    ``complete(old_config)`` fills in the fields an older kerasxfer did not
    write (:meth:`kerasxfer.config.Experiment.complete`), so such a run is
    compared field by field with ``config`` and can still continue.

    Raises :class:`~kerasxfer.errors.UserError` (changing nothing) when the
    folder holds a run made with other settings and ``overwrite`` is off.
    With ``overwrite`` nothing is removed here: the trainer clears the run's
    own files (:func:`remove_run_outputs`) once the data has opened.
    """
    from kerasxfer.errors import UserError

    cfg_path = os.path.join(out, CONFIG)
    if not is_run(out):
        _refuse_foreign(out, overwrite)
        return "new"
    if overwrite or not os.path.isfile(cfg_path):
        return "new"  # ours (marked) but died before its config was written, or to be replaced
    try:
        old = read_json(cfg_path)
    except (OSError, ValueError):
        raise UserError(
            f"{cfg_path} is unreadable, so {out} cannot be continued: pass --overwrite to replace the run, "
            "or choose another --out_dir."
        ) from None
    diffs = config_differences(_with_defaults(old, complete), config)
    if diffs:
        raise UserError(
            f"{out} holds a run made with other settings ({'; '.join(diffs)}): rerun with the same flags "
            "to continue it, pass --overwrite to replace it, or choose another --out_dir."
        )
    if is_finished(out):
        return "finished"
    if os.path.isfile(os.path.join(out, METRICS)):
        return "finishing"  # trained and evaluated; some output after metrics.json is missing
    return "resume" if os.path.isdir(os.path.join(out, RESUME)) else "new"


def _refuse_foreign(out: str, overwrite: bool) -> None:
    """``out`` is not a run: refuse it when it holds anything, or (``overwrite``) anything a run would replace."""
    from kerasxfer.errors import UserError

    if not os.path.isdir(out):
        return
    held = sorted(e for e in os.listdir(out) if e != LOCK)
    if not held:
        return
    if not overwrite:
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise UserError(
            f"--out_dir={out!r} is not empty and is not a kerasxfer run (it holds {shown}): choose a new or empty "
            "folder, or pass --overwrite to write the run beside those files."
        )
    clash = [n for n in RUN_OUTPUTS if os.path.lexists(os.path.join(out, n))]
    if clash:
        raise UserError(
            f"--out_dir={out!r} holds {', '.join(clash)}, which kerasxfer did not write and a run would replace: "
            "move them away or choose another folder."
        )


def remove_run_outputs(out: str) -> None:
    """Remove what a run writes (``RUN_OUTPUTS``) from ``out``, only if ``out`` is a run; any other file stays."""
    if not is_run(out):
        return
    for name in RUN_OUTPUTS:
        path = os.path.join(out, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)


def claim_output_folder(out_dir: str, outputs, kind: str, overwrite: bool = False, label: str = "") -> None:
    """Make ``out_dir`` the folder of a ``kind`` (report, lr-find) that writes ``outputs``; change nothing when it
    must be refused (one sentence): a run directory (a report never writes into a run, an input one least of all),
    or a folder holding files of those names that kerasxfer did not write (unless ``overwrite``).  The folder's
    marker (``.kerasxfer-<kind>``) records that later files of those names are ours to replace."""
    from kerasxfer.errors import UserError

    check_out_dir(out_dir)
    marker = os.path.join(out_dir, f".kerasxfer-{kind}")
    label = label or f"--out_dir={out_dir!r}"
    if is_run(out_dir):
        raise UserError(
            f"--out_dir={out_dir!r} is a training run's folder, which a {kind} must not write into: "
            f"choose a folder of its own, e.g. {os.path.join(out_dir, kind)}."
        )
    clash = [n for n in outputs if os.path.lexists(os.path.join(out_dir, n))]
    if clash and not os.path.isfile(marker) and not overwrite:
        raise UserError(
            f"{label} holds {', '.join(clash)}, which kerasxfer did not write: choose "
            f"another folder, or pass --overwrite to replace them."
        )
    os.makedirs(out_dir, exist_ok=True)
    write_text(marker, f"kerasxfer {kind}: files of these names here are written by kerasxfer\n")


def check_outside(out_dir: str, dataset: str) -> None:
    """Refuse (one sentence) an --out_dir that is the --dataset folder or inside it (``DATA/red/results``):
    every later run would read the run folders as classes, or the study's pictures as images."""
    from kerasxfer.errors import UserError

    out, data = os.path.realpath(out_dir), os.path.realpath(dataset)
    if out == data or out.startswith(data.rstrip(os.sep) + os.sep):
        raise UserError(
            f"--out_dir={out_dir!r} is inside --dataset={dataset!r}: its run folders and pictures would be read "
            "as classes and images by every later run; choose an --out_dir outside the dataset folder."
        )


def check_out_dir(out_dir: str) -> None:
    """Refuse (one sentence) an --out_dir that is empty, a file, under a file, or not writable (unless finished)."""
    from kerasxfer.errors import UserError

    if not out_dir:
        raise UserError("--out_dir is empty: name the folder the run should write, e.g. --out_dir=runs/mine.")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"--out_dir={out_dir!r} is a file, not a folder: choose a folder for the run.")
    parent = os.path.dirname(os.path.abspath(out_dir)) or "."
    probe = out_dir if os.path.isdir(out_dir) else parent
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UserError(
            f"--out_dir={out_dir!r} cannot be created because {probe} is a file, not a folder: choose another folder."
        )
    if not os.access(probe, os.W_OK) and not is_finished(out_dir):  # a finished run is only read
        raise UserError(f"--out_dir={out_dir!r} cannot be written ({probe} is not writable): choose another folder.")
