"""Hostile inputs and faults (issue 17): each ends in one sentence, the right exit code, and loses nothing.

Every case builds its own files inside the test's folder, runs a real entry
point in a child process (with a memory and time limit), and checks: the exit
code, exactly one ``kerasxfer: error:`` line naming the problem, no
traceback, and every file that existed before byte-identical afterwards.
Nothing here relies on being root (CI is): permission cases use a path under
a file, a binary file or a resource limit instead of chmod.
"""

import concurrent.futures
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--dataset=digits", "--image_size=16", "--epochs=1", "--widths=8", "--batch_size=64"]


def _limits(fsize=None):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (24 * 2**30, 24 * 2**30))  # /dev/zero must not eat the machine
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return apply


def run(args, cwd=None, fsize=None, timeout=180):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limits(fsize),
    )


def snapshot(root):
    """Every regular file under ``root`` (links not followed) -> its bytes."""
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for f in filenames:
            p = os.path.join(dirpath, f)
            # kerasxfer's own lock file records the pid of the last writer (it holds no user data)
            if os.path.isfile(p) and not os.path.islink(p) and f != ".kerasxfer.lock":
                with open(p, "rb") as fh:
                    out[os.path.relpath(p, root)] = fh.read()
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny scratch run to damage in copies."""
    out = tmp_path_factory.mktemp("finished") / "run"
    p = run(["experiments.scratch", *TINY, f"--out_dir={out}"])
    assert p.returncode == 0, p.stderr[-3000:]
    return out


def _images(root, classes=("a", "b"), n=4):
    for k, c in enumerate(classes):  # no image under two labels (refused: tests/test_duplicates.py)
        os.makedirs(root / c, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((24, 24, 3), 30 + 50 * i + 7 * k, np.uint8)).save(root / c / f"{i}.png")
    return root


def _copy(finished, t, name="run"):
    dst = t / name
    shutil.copytree(finished, dst, symlinks=True)
    return dst


def _marker(out, state):
    import json

    (out / "kerasxfer-run.json").write_text(json.dumps({"kerasxfer": "x", "state": state}))


# Each case: (name, setup(t, finished) -> (args, cwd), exit code, what the sentence must say).
def c_foreign_tb(t, f):
    (t / "d" / "tb").mkdir(parents=True)
    (t / "d" / "tb" / "notes.txt").write_text("mine")
    return ["experiments.scratch", *TINY, f"--out_dir={t / 'd'}"], None


def c_foreign_dot(t, f):
    (t / "tb").mkdir()
    (t / "tb" / "mine.txt").write_text("mine")
    return ["experiments.scratch", *TINY, "--out_dir=."], t


def c_foreign_overwrite_clash(t, f):
    (t / "d").mkdir()
    (t / "d" / "model.keras").write_bytes(b"my own model")
    return ["experiments.scratch", *TINY, f"--out_dir={t / 'd'}", "--overwrite"], None


def c_out_dir_is_file(t, f):
    (t / "f").write_text("x")
    return ["experiments.scratch", *TINY, f"--out_dir={t / 'f'}"], None


def c_out_dir_under_file(t, f):
    (t / "f").write_text("x")
    return ["experiments.scratch", *TINY, f"--out_dir={t / 'f' / 'sub'}"], None


def c_out_dir_empty(t, f):
    return ["experiments.scratch", *TINY, "--out_dir="], None


def c_locked(t, f):
    out = _copy(f, t)
    (out / "metrics.json").unlink()
    _marker(out, "training")
    return ["experiments.scratch", *TINY, f"--out_dir={out}"], None


def c_trained_history_truncated(t, f):
    out = _copy(f, t)
    _marker(out, "training")  # trained and evaluated, killed before the marker said finished
    (out / "history.json").write_text((out / "history.json").read_text()[:50])
    return ["experiments.scratch", *TINY, f"--out_dir={out}"], None


def c_resume_state_truncated(t, f):
    out = _copy(f, t)
    (out / "metrics.json").unlink()
    _marker(out, "training")
    (out / "resume").mkdir()
    (out / "resume" / "state.json").write_text('{"epoch": 1, "arr')
    return ["experiments.scratch", *TINY, f"--out_dir={out}"], None


def c_config_binary(t, f):
    out = _copy(f, t)
    (out / "config.json").write_bytes(os.urandom(200))
    return ["experiments.scratch", *TINY, f"--out_dir={out}"], None


def c_other_settings(t, f):
    out = _copy(f, t)
    return ["experiments.scratch", *TINY[:-1], "--batch_size=32", f"--out_dir={out}"], None


def c_flagfile_binary(t, f):
    (t / "flags").write_bytes(bytes(range(256)) * 4)
    return ["experiments.scratch", f"--flagfile={t / 'flags'}", f"--out_dir={t / 'o'}"], None


def c_flagfile_missing(t, f):
    return ["experiments.scratch", f"--flagfile={t / 'nope'}", f"--out_dir={t / 'o'}"], None


def _flag_case(*flags):
    return lambda t, f: (["experiments.scratch", *TINY, *flags, f"--out_dir={t / 'o'}"], None)


def c_cache_dir_file(t, f):
    (t / "cache").write_text("x")
    return ["experiments.scratch", *TINY, f"--cache_dir={t / 'cache'}", f"--out_dir={t / 'o'}"], None


def _data_case(make):
    def setup(t, f):
        root = _images(t / "data")
        make(root / "a")
        return [
            "experiments.scratch",
            f"--dataset={root}",
            "--image_size=16",
            "--epochs=1",
            "--widths=8",
            "--on_bad_image=error",
            f"--out_dir={t / 'o'}",
        ], None

    return setup


def _fifo(folder):
    os.mkfifo(folder / "pipe.png")


def _dev_zero(folder):
    os.symlink("/dev/zero", folder / "zero.png")


def _dangling(folder):
    os.symlink(folder / "gone.png", folder / "dangling.png")


def _bomb(folder):
    Image.new("L", (12000, 12000)).save(folder / "bomb.png", optimize=False)


def _huge(folder):
    with open(folder / "huge.png", "wb") as fh:
        fh.truncate(300 * 2**20)  # sparse: no disk used


def c_dataset_fifo(t, f):
    os.mkfifo(t / "data")
    return ["experiments.scratch", f"--dataset={t / 'data'}", f"--out_dir={t / 'o'}"], None


def c_predict_empty_folder(t, f):
    (t / "empty").mkdir()
    return ["experiments.predict", f"--run={f}", f"--images={t / 'empty'}"], None


def c_predict_fifo(t, f):
    os.mkfifo(t / "x.png")
    return ["experiments.predict", f"--run={f}", f"--images={t / 'x.png'}"], None


def c_predict_dev_zero(t, f):
    os.symlink("/dev/zero", t / "x.png")
    return ["experiments.predict", f"--run={f}", f"--images={t / 'x.png'}"], None


def c_predict_bomb(t, f):
    Image.new("L", (12000, 12000)).save(t / "bomb.png")
    return ["experiments.predict", f"--run={f}", f"--images={t / 'bomb.png'}"], None


def c_predict_output_under_file(t, f):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(t / "ok.png")
    (t / "f").write_text("x")
    return ["experiments.predict", f"--run={f}", f"--images={t / 'ok.png'}", f"--output={t / 'f' / 'p.csv'}"], None


def c_predict_not_a_run(t, f):
    (t / "r").mkdir()
    return ["experiments.predict", f"--run={t / 'r'}", f"--images={t}"], None


def c_compare_out_under_file(t, f):
    a, b = _copy(f, t, "a"), _copy(f, t, "b")
    (t / "f").write_text("x")
    return ["experiments.compare", f"--runs={a},{b}", f"--out_dir={t / 'f' / 'rep'}"], None


def c_lr_find_not_a_run(t, f):
    (t / "r").mkdir()
    return ["experiments.lr_find", f"--run={t / 'r'}"], None


def c_export_over_users_files(t, f):
    run = _copy(f, t)
    (run / "export").mkdir()
    (run / "export" / "labels.txt").write_text("the user's own labels\n")
    return ["experiments.predict", f"--run={run}", "--export=tflite"], None


CASES = [
    ("foreign folder with tb/", c_foreign_tb, 2, "is not empty and is not a kerasxfer run"),
    ("--out_dir=. in a folder with tb/", c_foreign_dot, 2, "is not empty and is not a kerasxfer run"),
    ("--overwrite over a user's model.keras", c_foreign_overwrite_clash, 2, "which kerasxfer did not write"),
    ("--out_dir is a file", c_out_dir_is_file, 2, "is a file"),
    ("--out_dir under a file", c_out_dir_under_file, 2, "is a file"),
    ("--out_dir= (empty)", c_out_dir_empty, 2, "--out_dir is empty"),
    ("truncated resume state", c_resume_state_truncated, 2, "is damaged"),
    ("a trained run with a truncated history.json", c_trained_history_truncated, 2, "pass --overwrite to train"),
    ("binary config.json", c_config_binary, 2, "is unreadable"),
    ("a run made with other settings", c_other_settings, 2, "holds a run made with other settings"),
    ("binary --flagfile", c_flagfile_binary, 2, "--flagfile"),
    ("missing --flagfile", c_flagfile_missing, 2, "nope"),
    ("--widths too deep for --image_size", _flag_case("--widths=8,8,8,8,8"), 2, "too many for --image_size=16"),
    ("--convs_per_block=-1", _flag_case("--convs_per_block=-1"), 2, "--convs_per_block=-1"),
    ("--max_image_pixels=10", _flag_case("--max_image_pixels=10"), 2, "--max_image_pixels=10"),
    ("--ema=1.5", _flag_case("--ema=1.5"), 2, "--ema=1.5"),
    ("--schedule=step", _flag_case("--schedule=step"), 2, "--schedule"),
    ("--warmup_epochs longer than the phase", _flag_case("--warmup_epochs=3"), 2, "leaves no epoch"),
    ("--weight_decay with adam", _flag_case("--weight_decay=0.01"), 2, "--optimizer=adamw"),
    ("--cache_dir is a file", c_cache_dir_file, 2, "is a file"),
    ("a FIFO named .png in the data", _data_case(_fifo), 2, "pipe.png (not a regular file"),
    ("a link to /dev/zero in the data", _data_case(_dev_zero), 2, "zero.png (not a regular file"),
    ("a dangling link in the data", _data_case(_dangling), 2, "dangling.png (not found"),
    ("a 144-megapixel PNG in the data", _data_case(_bomb), 2, "bomb.png (12000x12000 = 144 megapixels"),
    ("a 300 MB file in the data", _data_case(_huge), 2, "huge.png (300 MB, above the 256 MB limit"),
    ("--dataset is a FIFO", c_dataset_fifo, 2, "is a file, not a folder"),
    ("predict on an empty folder", c_predict_empty_folder, 2, "no image could be classified"),
    ("predict on a FIFO", c_predict_fifo, 2, "not a regular file"),
    ("predict on a link to /dev/zero", c_predict_dev_zero, 2, "not a regular file"),
    ("predict on a 144-megapixel PNG", c_predict_bomb, 2, "144 megapixels"),
    ("predict --output under a file", c_predict_output_under_file, 2, "p.csv"),
    ("predict --run that is not a run", c_predict_not_a_run, 2, "is not a finished kerasxfer run"),
    ("compare --out_dir under a file", c_compare_out_under_file, 2, "rep"),
    ("lr_find --run that is not a run", c_lr_find_not_a_run, 2, "holds no config.json"),
    (
        "predict --export over the user's own labels.txt",
        c_export_over_users_files,
        2,
        "holds labels.txt, which kerasxfer did not write",
    ),
]


def _check(name, setup, code, says, base, finished):
    t = base / name.replace(" ", "_").replace("/", "_").replace("-", "")[:60]
    t.mkdir()
    args, cwd = setup(t, finished)
    lock = None
    if setup is c_locked:  # another process holds the run's lock
        lock = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
                "os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); os.ftruncate(fd, 0); "
                "os.write(fd, b'4242'); "
                "print('held', flush=True); time.sleep(600)",
                str(t / "run" / ".kerasxfer.lock"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert lock.stdout.readline().strip() == "held"
    before = snapshot(t)
    before_finished = snapshot(finished)
    t0 = time.time()
    try:
        p = run(args, cwd)
    finally:
        if lock is not None:
            lock.kill()
            lock.wait()
    problems = []
    errors = [line for line in p.stderr.splitlines() if line.startswith("kerasxfer: error:")]
    if p.returncode != code:
        problems.append(f"exit {p.returncode}, expected {code}")
    if len(errors) != 1 or says not in errors[0]:
        problems.append(f"error lines {errors!r} should be one saying {says!r}")
    if "Traceback" in p.stderr:
        problems.append("a traceback")
    after = snapshot(t)
    changed = [k for k, v in before.items() if after.get(k) != v]
    if changed or snapshot(finished) != before_finished:
        problems.append(f"files changed or lost: {changed}")
    return name, problems, round(time.time() - t0, 1), p.stderr[-1500:]


@pytest.mark.slow  # make test-ci-slow (CI) runs it: whole runs, too long for make test's 10 minutes
def test_hostile_inputs_and_faults(tmp_path, finished):
    cases = CASES + [
        ("another process holds the run's lock", c_locked, 2, "is being written by another kerasxfer process (pid 4242)")
    ]
    names = [c[0] for c in cases]
    assert len(set(names)) == len(names), "two cases share a name: a failure would not say which"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: _check(*c, tmp_path, finished), cases))
    failed = [f"{name}: {'; '.join(problems)}\n{tail}" for name, problems, _, tail in results if problems]
    assert not failed, "\n\n".join(failed)


def test_disk_full_is_one_sentence_and_keeps_what_was_written(tmp_path):
    """A file size limit makes every write past 16 KB fail (EFBIG), as a full disk would (ENOSPC)."""
    (tmp_path / "mine.txt").write_text("mine")
    p = run(["experiments.scratch", *TINY, f"--out_dir={tmp_path / 'o'}"], fsize=16 * 1024)
    errors = [line for line in p.stderr.splitlines() if line.startswith("kerasxfer: error:")]
    assert p.returncode == 2 and len(errors) == 1 and "no space left" in errors[0], p.stderr[-3000:]
    assert "Traceback" not in p.stderr and (tmp_path / "mine.txt").read_text() == "mine"
    assert not [f for f in os.listdir(tmp_path / "o") if f.startswith(".tmp-")]  # nothing half-written


def test_an_unwritable_cache_dir_falls_back_to_memory(tmp_path):
    (tmp_path / "f").write_text("x")
    p = run(["experiments.scratch", *TINY, f"--cache_dir={tmp_path / 'f' / 'cache'}", f"--out_dir={tmp_path / 'o'}"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "the decoded-image cache cannot be written" in p.stderr and (tmp_path / "f").read_text() == "x"


def test_a_symlink_loop_among_the_class_folders_is_ignored(tmp_path):
    root = _images(tmp_path / "data")
    os.symlink("loop", root / "loop")
    p = run(
        ["experiments.scratch", f"--dataset={root}", "--image_size=16", "--epochs=1", "--widths=8", f"--out_dir={tmp_path / 'o'}"]
    )
    assert p.returncode == 0 and f"ignored {root / 'loop'}" in p.stderr, p.stderr[-3000:]


def test_predict_warns_about_an_unfinished_run(tmp_path, finished):
    out = _copy(finished, tmp_path)
    _marker(out, "training")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "x.png")
    p = run(["experiments.predict", f"--run={out}", f"--images={tmp_path / 'x.png'}"])
    assert p.returncode == 0 and "has not finished training" in p.stderr, p.stderr[-3000:]


@pytest.mark.slow  # make test-ci-slow (CI) runs it: whole runs, kept out of make test's 10 minutes
def test_a_truncated_cache_file_is_rebuilt(tmp_path):
    args = ["experiments.scratch", *TINY, f"--cache_dir={tmp_path / 'cache'}", f"--out_dir={tmp_path / 'o'}"]
    assert run(args).returncode == 0
    shard = sorted((tmp_path / "cache").glob("train-*.npy"))[0]
    shard.write_bytes(shard.read_bytes()[:1000])
    p = run([*args, "--overwrite"])
    assert p.returncode == 0 and "is damaged or stale: decoding again" in p.stderr, p.stderr[-3000:]
    assert shard.stat().st_size > 1000  # rebuilt, so the next run trusts it again


def test_a_damaged_metrics_json_is_written_again(tmp_path, finished):
    out = _copy(finished, tmp_path)
    good = (out / "metrics.json").read_bytes()
    (out / "metrics.json").write_text('{"test": ')
    p = run(["experiments.scratch", *TINY, f"--out_dir={out}"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert (out / "metrics.json").read_bytes() == good


def test_sigterm_during_start_up_is_one_line_and_exit_130(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.Popen(
        [sys.executable, "-m", "experiments.scratch", *TINY, f"--out_dir={tmp_path / 'o'}"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # importing: before any training
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 130, err[-2000:]
    assert [line for line in err.splitlines() if line.startswith("kerasxfer: error:")] == [
        "kerasxfer: error: interrupted; files already written are kept: run the same command again to continue."
    ]


FINETUNE = [
    "experiments.finetune",
    "--dataset=digits",
    "--image_size=32",
    "--batch_size=64",
    "--weights=none",
    "--frozen_epochs=2",
    "--finetune_epochs=2",
    "--unfreeze_stages=1",
    "--train_fraction=0.3",
]


def _spawn(out):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        [sys.executable, "-m", *FINETUNE, f"--out_dir={out}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_kill_loop_ends_in_the_same_complete_run(tmp_path):
    """SIGKILL at 10 instants (one just after metrics.json appears), a rerun after each: the same finished run."""
    t0 = time.time()
    p = run([*FINETUNE, f"--out_dir={tmp_path / 'whole'}"])
    assert p.returncode == 0, p.stderr[-3000:]
    duration = time.time() - t0
    rng = np.random.default_rng(17)
    out = tmp_path / "killed"
    kills = sorted(rng.uniform(0.3, 1.0, 9) * duration)
    for at in [*kills, None]:
        proc = _spawn(out)
        if at is None:  # the last kill: the instant the evaluation's metrics.json appears
            deadline = time.time() + 600
            while not (out / "metrics.json").exists() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.005)
        else:
            time.sleep(at)
        proc.kill()
        proc.wait()
    p = run([*FINETUNE, f"--out_dir={out}"])
    assert p.returncode == 0, p.stderr[-3000:]
    for name in (
        "config.json",
        "environment.json",
        "data.json",
        "model.keras",
        "history.json",
        "timings.json",
        "metrics.json",
        "confusion.png",
        "top_losses.png",
        "tb",
        "kerasxfer-run.json",
    ):
        assert (out / name).exists(), name
    assert not (out / "resume").exists()
    import json

    assert json.loads((out / "kerasxfer-run.json").read_text())["state"] == "finished"
    assert (out / "history.json").read_bytes() == (tmp_path / "whole" / "history.json").read_bytes()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (out, tmp_path / "whole"))
    assert a["test"] == b["test"] and a["val"] == b["val"] and a["best_epoch"] == b["best_epoch"]


def test_image_size_auto_skips_a_fifo_and_a_dangling_link_in_the_data(tmp_path):
    """Fourth round, still open: a FIFO among the images hung --image_size=auto (its header read blocks), a
    dangling link ended the study with "No such file or directory". Both are left out of the sizes and
    counted as bad images; the run goes on."""
    root = _images(tmp_path / "data", n=5)
    os.mkfifo(root / "a" / "pipe.png")
    os.symlink(root / "a" / "gone.png", root / "b" / "dangling.png")
    args = ["experiments.finetune", f"--dataset={root}", "--image_size=auto", "--weights=none", "--frozen_epochs=1"]
    p = run([*args, "--finetune_epochs=0", f"--out_dir={tmp_path / 'o'}"], timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "image size 96 (auto: the images' median short side is 24 px" in p.stderr
    assert "a/pipe.png (not a regular file" in p.stderr and "b/dangling.png (not found (a dangling link))" in p.stderr


@pytest.mark.slow  # make test-ci-slow: a whole study
@pytest.mark.parametrize("jitter", [0, 2])
def test_random_labels_on_near_duplicated_images_name_no_winner(tmp_path, jitter):
    """Fifth round: 30 noise images under random labels, each saved three times, byte-identical (jitter 0) or
    with +-2 grey levels of noise, gave "Transfer wins" (copies trained on and tested on). Identical copies are
    used once; near-duplicates are grouped, every copy of an image on one side of every fold: the labels carry
    no signal and the verdict names no winner."""
    from tests.test_duplicates import _noise_folder

    _noise_folder(tmp_path / "data", jitter=jitter)
    args = ["experiments.study", f"--dataset={tmp_path / 'data'}", "--image_size=32", "--scratch_image_size=24"]
    args += ["--backbone=regnetx002", "--weights=none", "--widths=8", "--folds=3", "--epochs=10", "--nocontrol"]
    p = run([*args, "--frozen_epochs=1", "--finetune_epochs=3", f"--out_dir={tmp_path / 'o'}"], timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    said = "60 identical copies used once" if jitter == 0 else "30 group(s) of identical or near-duplicate images (90 "
    assert said in p.stderr, p.stderr[-3000:]
    summary = json.loads((tmp_path / "o" / "report" / "summary.json").read_text())
    assert summary["verdict"]["winner"] is None, summary["verdict"]
    # before grouping both arms "learned" the random labels by memory (94 % and 87 % on the test copies)
    assert all(r["test_accuracy"] < 0.75 for r in summary["runs"]), [r["test_accuracy"] for r in summary["runs"]]
    data = json.loads((tmp_path / "o" / "fold1" / "scratch" / "data.json").read_text())
    assert "duplicate_groups" in data and data["pool_size"] == (30 if jitter == 0 else 90)
