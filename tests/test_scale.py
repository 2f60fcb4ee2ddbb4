"""Speed and scale: cached backbone features, precision policies, tf.distribute strategies (CPU only)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from kerasxfer.config import DataConfig, Experiment, ModelConfig, PhaseConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(dataset="synthetic", synthetic_train=192, synthetic_val=48, synthetic_test=48, image_size=32, batch_size=32)


def _transfer(out, **kw):
    """Two frozen epochs (phase 2 never uses cached features: its backbone trains)."""
    return Experiment(
        name="ft",
        out_dir=str(out),
        data=DataConfig(**SMALL),
        model=ModelConfig(kind="transfer", weights=None),
        phases=[PhaseConfig("frozen", 2, 1e-3, "head"), PhaseConfig("unfrozen", 0, 1e-4, "stages:1")],
        **kw,
    )


@pytest.mark.slow  # make test-ci-slow (CI) runs it: a whole training run, too long for make test's 10 minutes
def test_cached_features_train_the_head_exactly_like_the_whole_model(tmp_path, monkeypatch):
    """Also across an interruption inside the cached phase: the resumed run computes the features again
    from the restored backbone."""
    from kerasxfer import resume
    from kerasxfer.errors import UserError
    from kerasxfer.training import run_experiment

    run_experiment(_transfer(tmp_path / "full", cache_features=False))
    save = resume.SaveEachEpoch.on_epoch_end

    def stop_after_epoch_1(self, epoch, logs=None):
        save(self, epoch, logs)
        raise KeyboardInterrupt  # as the SIGINT/SIGTERM handler does at the next batch

    monkeypatch.setattr(resume.SaveEachEpoch, "on_epoch_end", stop_after_epoch_1)
    with pytest.raises(UserError, match="continue after epoch 1"):
        run_experiment(_transfer(tmp_path / "cached"))  # default: on, since nothing changes the images
    monkeypatch.setattr(resume.SaveEachEpoch, "on_epoch_end", save)
    run_experiment(_transfer(tmp_path / "cached"))
    full = json.loads((tmp_path / "full" / "history.json").read_text())
    cached = json.loads((tmp_path / "cached" / "history.json").read_text())
    assert [p["cached_features"] for p in cached["phases"]] == [True]
    assert [p["cached_features"] for p in full["phases"]] == [False]
    exp = _transfer(tmp_path / "x")
    assert [exp.uses_cached_features(p) for p in exp.phases] == [True, False]
    for a, b in zip(full["epochs"], cached["epochs"]):  # same batches, same dropout draws, same head
        for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), (a["epoch"], k)
    assert "feature_seconds" in json.loads((tmp_path / "cached" / "timings.json").read_text())


def test_cached_features_are_refused_when_images_change_every_epoch(tmp_path):
    from kerasxfer.errors import UserError

    exp = _transfer(tmp_path / "x", cache_features=True)
    exp.data.augment = "light"
    with pytest.raises(UserError, match="--cache_features needs images that are the same every epoch"):
        exp.validate()
    exp.cache_features = None
    assert not exp.uses_cached_features(exp.phases[0])  # the default simply turns it off


def test_mixed_bfloat16_trains_and_keeps_float32_probabilities(tmp_path):
    import keras

    from kerasxfer.evaluation import load_model
    from kerasxfer.training import run_experiment

    exp = Experiment(
        name="bf16",
        out_dir=str(tmp_path / "run"),
        data=DataConfig(image_size=16, batch_size=64),
        model=ModelConfig(kind="scratch", widths=[8]),
        phases=[PhaseConfig("scratch", 1, 3e-3)],
        precision="mixed_bfloat16",
    )
    try:
        m = run_experiment(exp)
        model = load_model(str(tmp_path / "run" / "model.keras"))
        assert model.get_layer("block1_conv1").compute_dtype == "bfloat16"
        out = model.predict(np.zeros((2, 16, 16, 3), "float32"), verbose=0)
        assert out.dtype == np.float32 and np.allclose(out.sum(1), 1.0, atol=1e-3)
        assert np.isfinite(m["test"]["loss"]) and np.isfinite(m["val"]["loss"])
    finally:
        keras.mixed_precision.set_global_policy("float32")


MIRRORED = r"""
import json, os, sys, tempfile
import kerasxfer
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from kerasxfer.config import DataConfig, Experiment, ModelConfig, PhaseConfig
from kerasxfer.training import run_experiment
result = {}
for strategy in ("auto", "mirrored"):
    out = os.path.join(sys.argv[1], strategy)
    run_experiment(Experiment(
        name="m", out_dir=out, data=DataConfig(**json.loads(sys.argv[2])),
        model=ModelConfig(kind="transfer", weights=None, dropout=0.0, calibrate_bn="never"),
        phases=[PhaseConfig("frozen", 1, 1e-3, "head"), PhaseConfig("unfrozen", 1, 1e-4, "stages:1")],
        strategy=strategy))
    h = json.load(open(os.path.join(out, "history.json")))
    env = json.load(open(os.path.join(out, "environment.json")))
    result[strategy] = {"loss": [e["loss"] for e in h["epochs"]], "val_loss": [e["val_loss"] for e in h["epochs"]],
                        "replicas": env["replicas"], "strategy": env["strategy"]}
print("RESULT " + json.dumps(result))
"""


@pytest.mark.slow  # 45 s; the multi-worker test below runs a real multi-replica strategy in make test
def test_mirrored_over_two_cpu_devices_matches_one_device(tmp_path):
    """Tolerance 1 % relative: the global batch is split in two and the gradients summed, so only the
    order of float additions differs (BatchNorm is frozen in transfer models and dropout is off)."""
    p = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(tmp_path), json.dumps(SMALL)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.split("RESULT ", 1)[1])
    assert r["mirrored"]["replicas"] == 2 and r["mirrored"]["strategy"] == "MirroredStrategy"
    assert r["auto"]["replicas"] == 1
    for k in ("loss", "val_loss"):
        np.testing.assert_allclose(r["mirrored"][k], r["auto"][k], rtol=1e-2)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow  # make test-ci-slow (CI) runs it: whole runs, kept out of make test's 10 minutes
def test_multi_worker_two_processes_only_the_chief_writes(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for i in range(2):
        tmp = tmp_path / f"tmp{i}"
        tmp.mkdir()
        env = dict(
            os.environ,
            TF_CPP_MIN_LOG_LEVEL="3",
            TMPDIR=str(tmp),
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "experiments.scratch",
                    "--strategy=multi_worker",
                    "--image_size=8",
                    "--widths=4",
                    "--epochs=2",
                    "--batch_size=64",
                    f"--out_dir={tmp_path / 'run'}",
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    run = tmp_path / "run"
    assert (run / "metrics.json").is_file() and (run / "model.keras").is_file()
    h = json.loads((run / "history.json").read_text())
    assert [e["epoch"] for e in h["epochs"]] == [1, 2] and all(np.isfinite(e["loss"]) for e in h["epochs"])
    env = json.loads((run / "environment.json").read_text())
    assert env["strategy"] == "CollectiveAllReduceStrategy" and env["replicas"] == 2 and env["workers"] == 2
    # worker 1 wrote into a temporary folder of its own and removed it
    assert list((tmp_path / "tmp1").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tmp0", "tmp1"]
