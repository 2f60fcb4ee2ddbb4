"""Compare finished runs side by side and write the report.

    make compare
    python -m experiments.compare --runs=runs/scratch,runs/finetune --out_dir=runs/report
    make compare SEEDS=3      # train each approach with seeds 0..2 first, then report mean ± std

Writes ``<out_dir>/report.md`` (a table per run, the comparison with the
majority-class baseline, and an executive summary in plain sentences: the
verdict first — "Scratch wins" / "Transfer wins" only when the paired test
on the same held-out test images and the margin's 95 % interval say the
difference is larger than the noise, otherwise "No clear winner" with the
cheaper arm — then the control, the runs that did not learn, overfitting,
val-loss swings, cost), ``curves.png``, ``confusion.png`` and
``summary.json`` (every number in the report).  Fold runs of a
cross-validated study (``runs/study/NAME/fold*/ARM``) are pooled per arm.  Takes a few seconds;
with ``--seeds=N`` it first trains N scratch and N finetune runs (about 5
minutes each pair with the defaults on 2 CPU cores).
"""

import os
import shlex
import subprocess
import sys

from absl import flags

from kerasxfer.errors import UserError

from . import common

FLAGS = flags.FLAGS
flags.DEFINE_list("runs", ["runs/scratch", "runs/finetune"], "Run directories to compare.")
flags.DEFINE_string("out_dir", "runs/report", "Where to write the report.")
flags.DEFINE_integer("seeds", 0, "If > 0: first train scratch and finetune with seeds 0..N-1 (same split) into --seeds_dir.")
flags.DEFINE_string("seeds_dir", "runs/seeds", "Where --seeds puts its runs.")
flags.DEFINE_string("scratch_flags", "", "Extra flags for the scratch runs of --seeds, e.g. '--epochs=5'.")
flags.DEFINE_string("finetune_flags", "", "Extra flags for the finetune runs of --seeds, e.g. '--weights=none'.")


def _train_seeds(n: int) -> list:
    dirs = []
    for approach, extra in (("scratch", FLAGS.scratch_flags), ("finetune", FLAGS.finetune_flags)):
        for k in range(n):
            out = os.path.join(FLAGS.seeds_dir, f"{approach}-seed{k}")
            dirs.append(out)
            if os.path.isfile(os.path.join(out, "metrics.json")):
                print(f"[compare] {out} exists, reusing it", file=sys.stderr)
                continue
            cmd = [sys.executable, "-m", f"experiments.{approach}", f"--seed={k}", "--split_seed=0",
                   f"--out_dir={out}", *shlex.split(extra)]
            print(f"[compare] {' '.join(cmd[1:])}", file=sys.stderr)
            rc = subprocess.run(cmd).returncode
            if rc != 0:
                raise UserError(f"the {approach} run with seed {k} failed (exit {rc}): see its messages above.")
    return dirs


def main(argv):
    from kerasxfer.reporting.compare_report import write_report

    if FLAGS.seeds < 0:
        raise UserError(f"--seeds={FLAGS.seeds} must be 0 or more.")
    run_dirs = _train_seeds(FLAGS.seeds) if FLAGS.seeds else FLAGS.runs
    summary = write_report(run_dirs, FLAGS.out_dir)
    print(f"report: {os.path.join(FLAGS.out_dir, 'report.md')}")
    for line in summary["summary"]:
        print(" - " + line.replace("**", ""))


# --helpshort lists the shared flags too (they are defined in experiments.common).
flags.adopt_module_key_flags(common)


def run():
    """The command: `python -m experiments.compare` or `kerasxfer compare`."""
    common.run_main(main)


if __name__ == "__main__":
    run()
