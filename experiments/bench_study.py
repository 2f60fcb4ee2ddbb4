"""The bench's sections that run whole studies as a user runs them (``--sections=study``, ``--sections=executor``).

Each study is a fresh ``python -m experiments.study`` process; the flags are ``experiments.bench``'s.
"""

import os

from absl import flags

FLAGS = flags.FLAGS


def timed_study(args: list, out: str) -> float:
    """Seconds a fresh ``python -m experiments.study`` process takes with ``args`` into ``out`` (--overwrite; the
    bench's --study_flags last, so they override)."""
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "experiments.study", *args, f"--out_dir={out}", "--overwrite", *FLAGS.study_flags.split()]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def study_section(emit, bs):
    """The default study against --exhaustive on generated photo-sized sets, and the cached-activation step."""

    from kerasxfer import bench, fsio

    r = bench.unfrozen_step_rates("efficientnet_lite0", 224, 4, bs, FLAGS.steps)
    emit({"case": "unfrozen step efficientnet_lite0 224, 4 stages: whole model", "images_per_s": round(r["whole_model"], 1)})
    emit(
        {
            "case": f"unfrozen step on cached activations at {r['boundary']} {r['boundary_shape']}",
            "images_per_s": round(r["cached_activations"], 1),
            "speedup": round(r["cached_activations"] / r["whole_model"], 2),
        }
    )
    sets = [("photos", spec) for spec in FLAGS.study_sets] + [("scans", spec) for spec in FLAGS.study_scans]
    for kind, spec in sets:
        n, c = (int(v) for v in spec.lower().split("x"))
        write = bench.write_digit_scans if kind == "scans" else bench.write_digit_photos
        root = write(os.path.join("runs", "bench", f"digit-{kind}-{n}x{c}" if kind == "scans" else f"digits-{n}x{c}"), n, c)
        seconds, verdicts = {}, {}
        for mode in ("default", "exhaustive") if FLAGS.study_exhaustive else ("default",):
            out = os.path.join("runs", "bench", f"study-{kind}-{n}x{c}-{mode}" if kind == "scans" else f"study-{n}x{c}-{mode}")
            seconds[mode] = timed_study([f"--dataset={root}", *(["--exhaustive"] if mode == "exhaustive" else [])], out)
            summary = fsio.read_json(os.path.join(out, "report", "summary.json"))
            verdicts[mode] = summary["summary"][0].split(":")[0].replace("*", "")
            emit(
                {
                    "case": f"study {n} {kind} x {c} classes, {mode}",
                    "seconds": round(seconds[mode], 1),
                    "verdict": verdicts[mode],
                    "folds_run": (summary.get("study") or {}).get("folds_run"),
                }
            )
            _arms_against_the_probe(emit, f"{n} {kind} x {c}, {mode}", summary)
        if len(seconds) == 2:
            emit(
                {
                    "case": f"study {n} {kind} x {c}: exhaustive / default wall time",
                    "ratio": round(seconds["exhaustive"] / seconds["default"], 2),
                    "same_headline": verdicts["default"] == verdicts["exhaustive"],
                }
            )


def _arms_against_the_probe(emit, label: str, summary: dict) -> None:
    """Each arm's pooled test accuracy and training fit, and scikit-learn's standardised probe on the pretrained
    backbone's features of the same folds (kerasxfer.bench.sklearn_probe): the reference the transfer arm must reach."""
    from kerasxfer import bench

    for r in summary["runs"]:
        fit = r.get("fit") or {}
        emit(
            {
                "case": f"study {label}: {r['name']}",
                "test_accuracy": round(100 * r["test_accuracy"], 2),
                "final_train_accuracy": round(100 * fit.get("train_accuracy", float("nan")), 2),
                "supported": round(100 * fit.get("supported", float("nan")), 2),
                "fit": fit.get("tag"),
            }
        )
    transfer = next((r for r in summary["runs"] if r["name"] == "transfer"), None)
    if transfer is None:
        return
    dirs = [f["dir"] for f in transfer.get("folds") or []] or [transfer["dir"]]
    refs = [bench.sklearn_probe(d) for d in dirs]
    correct, n = sum(x["correct"] for x in refs), sum(x["n"] for x in refs)
    emit(
        {
            "case": f"study {label}: scikit-learn probe on the same folds' pretrained features",
            "test_accuracy": round(100 * correct / n, 2),
            "train_accuracy": round(100 * sum(x["train_accuracy"] for x in refs) / len(refs), 2),
            "feature_std": round(sum(x["feature_std"] for x in refs) / len(refs), 4),
            "transfer_minus_probe_points": round(100 * (transfer["test_accuracy"] - correct / n), 2),
        }
    )


def executor_section(emit):
    """A 4-run study (digits, 2 folds, every fold, no control) on a local Ray: the machine's CPUs as runs of one
    CPU at once against one run of every CPU at a time; wall time, the ratio, and the per-run costs."""

    from kerasxfer import fsio

    cpus = os.cpu_count() or 1
    seconds = {}
    # Every fold and no reuse (--exhaustive) so each configuration trains the same 4 runs; short phases so the
    # section fits a bench (--study_flags come after these and override them).
    recipe = ["--epochs=6", "--frozen_epochs=3", "--finetune_epochs=3", "--min_steps=0"]
    for per_run in (1, cpus):
        out = os.path.join("runs", "bench", f"executor-{per_run}cpu")
        args = ["--dataset=digits", "--folds=2", "--exhaustive", "--nocontrol", "--executor=ray", f"--cpus_per_run={per_run}"]
        seconds[per_run] = timed_study([*args, *recipe], out)
        runs = [
            fsio.read_json(os.path.join(out, f"fold{k}", arm, "timings.json"))["train_seconds"]
            for k in (1, 2)
            for arm in ("scratch", "transfer")
        ]
        emit(
            {
                "case": f"4-run study on Ray, {cpus // per_run} run(s) x {per_run} CPU at once",
                "seconds": round(seconds[per_run], 1),
                "run_train_seconds": [round(r, 1) for r in runs],
                "flags": " ".join([*args, *recipe, *FLAGS.study_flags.split()]),
            }
        )
    emit(
        {
            "case": f"4-run study: 1 run x {cpus} CPUs / {cpus} runs x 1 CPU, wall time",
            "ratio": round(seconds[cpus] / seconds[1], 2),
        }
    )
