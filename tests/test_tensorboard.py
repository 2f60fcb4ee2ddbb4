"""TensorBoard shows the whole study: the real server, queried through its HTTP API."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from kerasxfer.config import DataConfig, Experiment, ModelConfig, PhaseConfig
from kerasxfer.training import run_experiment


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    run_experiment(
        Experiment(
            name="scratch",
            out_dir=str(root / "scratch"),
            data=DataConfig(image_size=16, batch_size=128),
            model=ModelConfig(kind="scratch", widths=[8, 16]),
            phases=[PhaseConfig("scratch", 2, 3e-3, "all")],
        )
    )
    run_experiment(
        Experiment(
            name="finetune",
            out_dir=str(root / "finetune"),
            data=DataConfig(image_size=32, batch_size=128),
            model=ModelConfig(kind="transfer"),
            phases=[PhaseConfig("frozen", 2, 1e-3, "head"), PhaseConfig("unfrozen", 1, 1e-4, "stages:1")],
        )
    )
    return root


@pytest.fixture(scope="module")
def server(runs):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(runs),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast=false",
            "--reload_interval=1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if len(_get(url, "/data/runs")) >= 6 and len(_get(url, "/data/plugin/images/tags")) >= 2:
                    break
            except OSError:
                pass
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _get(url, path, body=None):
    req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode())
    if body is not None:
        req.add_header("X-XSRF-Protected", "1")
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.slow  # make test-ci-slow (CI) runs it: whole runs, too long for make test's 10 minutes
def test_both_runs_have_every_epoch_of_every_phase(server):
    runs = _get(server, "/data/runs")
    for r in ("scratch/tb/train", "scratch/tb/validation", "finetune/tb/train", "finetune/tb/validation"):
        assert r in runs
    tags = _get(server, "/data/plugin/scalars/tags")
    for run, n_epochs in (("scratch", 2), ("finetune", 3)):
        assert {"epoch_accuracy", "epoch_loss", "epoch_learning_rate", "epoch_phase"} <= set(tags[f"{run}/tb/train"])
        for sub in ("train", "validation"):
            pts = _get(server, f"/data/plugin/scalars/scalars?run={run}/tb/{sub}&tag=epoch_accuracy")
            assert [p[1] for p in pts] == list(range(n_epochs))
    lr = _get(server, "/data/plugin/scalars/scalars?run=finetune/tb/train&tag=epoch_learning_rate")
    assert [round(p[2], 8) for p in lr] == [1e-3, 1e-3, 1e-4]
    phase = _get(server, "/data/plugin/scalars/scalars?run=finetune/tb/train&tag=epoch_phase")
    assert [p[2] for p in phase] == [0, 0, 1]  # the unfreeze point
    steps = _get(server, "/data/plugin/scalars/scalars?run=finetune/tb/train&tag=learning_rate_step")
    per_epoch = -(-1077 // 128)  # the rate of every optimiser step, on one step axis across the phases
    assert [p[1] for p in steps] == list(range(3 * per_epoch))
    assert [round(p[2], 8) for p in steps] == [1e-3] * (2 * per_epoch) + [1e-4] * per_epoch


@pytest.mark.slow  # make test-ci-slow (CI) runs it: whole runs, too long for make test's 10 minutes
def test_hparams_table_lists_both_runs(server):
    body = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
        "colParams": [],
        "startIndex": 0,
        "sliceSize": 100,
    }
    groups = _get(server, "/data/plugin/hparams/session_groups", body)["sessionGroups"]
    by_run = {g["hparams"]["run"]: g for g in groups}
    assert set(by_run) == {"scratch", "finetune"}
    assert by_run["finetune"]["hparams"]["model"] == "regnetx002"
    assert by_run["scratch"]["hparams"]["scratch_epochs"] == 2
    names = {m["name"]["tag"] for m in by_run["finetune"]["metricValues"]}
    assert "hparams/best_val_accuracy" in names


@pytest.mark.slow  # make test-ci-slow (CI) runs it: whole runs, too long for make test's 10 minutes
def test_confusion_matrix_and_top_losses_images(server):
    tags = _get(server, "/data/plugin/images/tags")
    for run in ("scratch/tb", "finetune/tb"):
        assert {"confusion_matrix", "top_losses"} <= set(tags[run])
    text = _get(server, "/data/plugin/text/tags")
    assert "phase" in text["finetune/tb"]
