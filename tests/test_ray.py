"""--executor=ray on a real two-node Ray cluster on 127.0.0.1: the same study as the local executor, a killed
worker's run retried and continued (make test-ci-slow; no network beyond 127.0.0.1)."""

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'kerasxfer[ray]'")

STUDY = [
    "--dataset=digits",
    "--image_size=32",
    "--scratch_image_size=16",
    "--widths=8",
    "--folds=2",
    "--nocontrol",
    "--min_steps=0",
    "--frozen_epochs=1",
    "--finetune_epochs=1",
]
#: The local executor's TensorFlow on one thread, as each Ray task with --cpus_per_run=1: equal runs, equal floats.
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node and a second node, one CPU each, on 127.0.0.1; stopped at the end."""
    tmp = tmp_path_factory.mktemp("ray")
    port = _free_port()
    # Ray's token authentication, with a token of this test's own (not ~/.ray/auth_token): every node and
    # driver of the cluster must hold it
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    ray_bin = os.path.join(BIN, "ray")
    head = [
        ray_bin,
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=1",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={tmp}",
    ]
    subprocess.run(head, check=True, env=env, capture_output=True, timeout=120)
    try:
        subprocess.run(
            [
                ray_bin,
                "start",
                f"--address=127.0.0.1:{port}",
                "--node-ip-address=127.0.0.1",
                "--num-cpus=1",
                "--disable-usage-stats",
            ],
            check=True,
            env=env,
            capture_output=True,
            timeout=120,
        )
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)


def _study(args, out, env, stderr=subprocess.PIPE):
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.study", *args, f"--out_dir={out}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


TIMING_COLUMNS = {"train s", "seconds", "train images/s"}


def _seconds(text: str) -> str:
    """Sentences' durations ("trained for 12 s", "61 s of training vs 90 s") as N."""
    return re.sub(r"\b\d+ s\b", "N s", text)


def _timeless(text: str) -> str:
    """report.md with the cells and words that depend on the clock (seconds, images/s) blanked."""
    text = _seconds(text)
    out, timing = [], set()
    for line in text.splitlines():
        if not line.startswith("|"):
            timing = set()
            out.append(line)
            continue
        cells = line.split("|")
        if not timing and not line.startswith("|---"):  # a table's header row
            timing = {k for k, c in enumerate(cells) if c.strip() in TIMING_COLUMNS} or {-1}
        out.append("|".join("" if k in timing else c for k, c in enumerate(cells)))
    return "\n".join(out)


def _summary(path):
    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if not re.search(r"seconds|images_per_sec|^dir$", k)}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return _seconds(o) if isinstance(o, str) else o

    return strip(json.loads(open(path).read()))


def test_a_study_on_a_two_node_cluster_is_the_local_study(cluster, tmp_path):
    address, env = cluster
    local = _study(STUDY, tmp_path / "local", dict(env, **ONE_THREAD))
    _, local_err = local.communicate(timeout=900)
    assert local.returncode == 0, local_err[-3000:]
    p = _study([*STUDY, "--executor=ray", f"--ray_address={address}"], tmp_path / "ray", env)
    _, err = p.communicate(timeout=900)
    assert p.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    nodes = set(re.findall(r"finished on node (\w+)", err))
    assert len(nodes) == 2, err[-3000:]  # both nodes trained runs
    assert re.search(r"\[study\] run \d of \d+ \(\w+, fold 1 of 2\) on node \w+ .* pid \d+, epoch \d/\d", err)
    a, b = (open(tmp_path / d / "report" / "report.md").read().replace(str(tmp_path / d), "X") for d in ("local", "ray"))
    assert _timeless(a) == _timeless(b)
    assert _summary(tmp_path / "local" / "report" / "summary.json") == _summary(tmp_path / "ray" / "report" / "summary.json")


def test_a_worker_killed_mid_run_is_retried_and_continues_where_it_stopped(cluster, tmp_path):
    """SIGKILL of the worker training the scratch run after its second epoch: Ray retries the task, the run
    continues from its last finished epoch, its history is the uninterrupted run's, nothing else trains twice."""
    address, env = cluster
    args = [*STUDY, "--epochs=12", "--folds=2"]
    ref = _study(args, tmp_path / "ref", dict(env, **ONE_THREAD))
    _, ref_err = ref.communicate(timeout=900)
    assert ref.returncode == 0, ref_err[-3000:]
    p = _study([*args, "--executor=ray", f"--ray_address={address}"], tmp_path / "ray", env)
    lines, killed = [], None
    for line in p.stderr:
        lines.append(line)
        m = re.search(r"\(scratch, fold 1 of 2\) on node \w+ .* pid (\d+), epoch 2/12", line)
        if m and killed is None:
            killed = int(m.group(1))
            os.kill(killed, signal.SIGKILL)
    p.wait(timeout=900)
    err = "".join(lines)
    assert p.returncode == 0 and killed is not None, err[-3000:]
    for run in ("scratch", "transfer"):
        got, want = (json.loads((tmp_path / d / "fold1" / run / "history.json").read_text()) for d in ("ray", "ref"))
        assert got == want, run
    assert (
        len(
            re.findall(
                r"\(scratch, fold 1 of 2\) finished on .*\(continued after epoch \d+: an earlier worker "
                r"was lost\)",
                err,
            )
        )
        == 1
    )
    assert len(re.findall(r"\(transfer, fold 1 of 2\) finished on", err)) == 1
    assert len(re.findall(r"\(transfer, fold 1 of 2\) on node \w+ .* epoch 1/2", err)) == 1  # not trained twice


def test_a_finished_run_on_changed_images_trains_again_on_ray(cluster, tmp_path):
    """The driver checks a finished run against the images before it skips it (issue 43): 3 images moved
    between class folders after a 2-fold study, the rerun on Ray retrains every run and pools one partition."""
    from tests.test_stale import _folder, _move_three

    address, env = cluster
    data = _folder(tmp_path / "data")
    args = [f"--dataset={data}", "--image_size=32", "--scratch_image_size=12", "--widths=4", "--backbone=regnetx002"]
    args += ["--weights=none", "--folds=2", "--epochs=2", "--frozen_epochs=1", "--finetune_epochs=1", "--min_steps=0"]
    args += ["--nocontrol", "--exhaustive", "--final=scratch", "--executor=ray", f"--ray_address={address}"]
    p = _study(args, tmp_path / "s", env)
    _, err = p.communicate(timeout=900)
    assert p.returncode == 0, err[-3000:]
    _move_three(data)
    p = _study(args, tmp_path / "s", env)
    _, err = p.communicate(timeout=900)
    assert p.returncode == 0, err[-3000:]
    said = re.findall(r"\[study\] \S+ was trained on other images \(.*\): it trains again", err)  # by the driver
    assert len(said) == 4 and "finished earlier" not in err, err[-3000:]
    assert len(re.findall(r"\(\w+, fold \d of 2\) finished on node", err)) == 4
    summary = json.loads((tmp_path / "s" / "report" / "summary.json").read_text())
    assert summary["verdict"]["num_images"] == 16
    final = json.loads((tmp_path / "s" / "final" / "data.json").read_text())  # the final model, on the new pool too
    assert final["num_train"] + final["num_val"] == 16 and "final was trained on other images" in err


LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _ray_processes(root) -> list:
    """``root``'s descendants that are Ray's (its servers, agents and workers)."""
    import psutil

    out = []
    for p in root.children(recursive=True):
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if any(a.startswith("ray::") or "/ray/" in a for a in cmd[:2]):
            out.append(p)
    return out


def _alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_a_local_cluster_listens_on_loopback_only_and_goes_with_its_driver(tmp_path):
    """--executor=ray without an address starts a local Ray: during the study every socket any of its processes
    listens on is a loopback one (Ray 2.60 alone binds every interface, its runtime-env agent the external
    address); after SIGKILL of the study's process, none of its Ray processes is left running."""
    import time

    import psutil

    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", **ONE_THREAD)
    env.pop("RAY_ADDRESS", None)
    with open(tmp_path / "err.txt", "w") as err:
        p = _study([*STUDY, "--executor=ray", "--epochs=40"], tmp_path / "s", env, stderr=err)
    driver, listening, seen = psutil.Process(p.pid), {}, {}
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and p.poll() is None:
            for proc in _ray_processes(driver):
                seen[proc.pid] = proc
                try:
                    for c in proc.net_connections(kind="inet"):
                        if c.status == psutil.CONN_LISTEN:
                            listening[(proc.pid, c.laddr.port)] = (c.laddr.ip, " ".join(proc.cmdline()[:1]))
                except psutil.Error:
                    pass
            if "submitted" in (tmp_path / "err.txt").read_text() and any(
                "RuntimeEnvAgent" in n or "raylet" in n for _, n in listening.values()
            ):
                break
            time.sleep(0.5)
        assert p.poll() is None, (tmp_path / "err.txt").read_text()[-3000:]
        names = " ".join(n for _, n in listening.values())
        assert "gcs_server" in names and "raylet" in names and "RuntimeEnvAgent" in names, listening
        assert {ip for ip, _ in listening.values()} <= LOOPBACK, listening
    finally:
        p.kill()
        p.wait(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(q) for q in seen.values()):
        time.sleep(0.5)
    assert not [q.pid for q in seen.values() if _alive(q)], "Ray processes outlived the driver"
