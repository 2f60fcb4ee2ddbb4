"""Ctrl-C and SIGTERM at any stage of a run: exit 130 within seconds, one sentence, a rerun finishes.

Each case starts the real ``finetune`` command (EfficientNet-Lite0 with its published ImageNet weights)
in a child process whose driver wraps one stage's entry point so that the signal is sent 50 ms after
the stage begins: the process is inside that stage's own code (TensorFlow's decoding, Keras'
graph building, h5 reading, the test evaluation) when the signal arrives, not at a point a timer guessed.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ARGS = [
    "--dataset=digits",
    "--image_size=64",
    "--batch_size=64",
    "--backbone=efficientnet_lite0",
    "--weights=imagenet",
    "--frozen_epochs=1",
    "--finetune_epochs=1",
    "--unfreeze_stages=1",
    "--train_fraction=0.2",
]

# stage -> (module, attribute path) of the function the run calls when the stage begins
STAGES = {
    "data decoding": ("kerasxfer.data.arrays", "_fill"),
    "model building": ("kerasxfer.training", "build_model"),
    "weight loading": ("keras", "Model.load_weights"),
    "final evaluation": ("kerasxfer.training", "evaluate_best"),
    "Python shutting down after the last line": ("atexit", ""),
}

DRIVER = r"""
import importlib, json, os, runpy, signal, sys, threading, time
module, path, signum, stamp = sys.argv[1:5]
owner = importlib.import_module(module)
*parents, name = path.split(".")
for p in parents if path else ():
    owner = getattr(owner, p)

def signal_soon():
    with open(stamp, "w") as f:
        json.dump(time.time(), f)
    os.kill(os.getpid(), int(signum))

def hooked(*args, **kwargs):
    if not os.path.exists(stamp):  # the first time the stage begins
        threading.Timer(0.05, signal_soon).start()
    return original(*args, **kwargs)

if module == "atexit":  # registered first, so it runs last: the run's work is done, Python is finishing
    owner.register(lambda: (signal_soon(), time.sleep(2)))
else:
    original = getattr(owner, name)
    setattr(owner, name, hooked)
sys.argv = ["finetune", *sys.argv[5:]]
runpy.run_module("experiments.finetune", run_name="__main__")
"""


def _run(args, *driver_args):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = (
        [sys.executable, "-c", DRIVER, *driver_args, *args]
        if driver_args
        else [sys.executable, "-m", "experiments.finetune", *args]
    )
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return p, time.time()


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_in_each_stage_ends_the_run_with_exit_130_and_a_rerun_finishes_it(stage, sig, tmp_path):
    out, stamp = tmp_path / "run", tmp_path / "signalled"
    args = [*ARGS, f"--out_dir={out}"]
    p, ended = _run(args, *STAGES[stage], str(int(sig)), str(stamp))
    assert stamp.exists(), f"the {stage} stage never began: {p.stderr[-2000:]}"
    assert p.returncode == 130, p.stderr[-3000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("kerasxfer: error:")]
    if STAGES[stage][0] == "atexit":  # the run had finished: its last line was said, nothing is left to continue
        assert not errors and "best checkpoint" in p.stderr, p.stderr[-3000:]
    else:
        assert len(errors) == 1 and "run the same command again to continue" in errors[0], p.stderr[-3000:]
    assert ended - json.loads(stamp.read_text()) < 15, "the run went on too long after the signal"
    p, _ = _run(args)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((out / "kerasxfer-run.json").read_text())["state"] == "finished"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_after_the_last_check_still_stops_when_the_phases_end(sig):
    from kerasxfer.stopping import StopOnSignal

    before = signal.getsignal(sig)
    with pytest.raises(KeyboardInterrupt):
        with StopOnSignal() as stop:
            stop.check()
            os.kill(os.getpid(), sig)  # between the last check and the end of the block
            time.sleep(0.05)
    assert signal.getsignal(sig) is before  # the handlers are restored either way
