"""Compare finished runs side by side and write the report.

    make compare
    python -m experiments.compare --runs=runs/scratch,runs/finetune --out_dir=runs/report

Writes ``<out_dir>/report.md`` (a table per run, the comparison with the
majority-class baseline, and an executive summary in plain sentences: the
verdict first — "Scratch wins" / "Transfer wins" only when the paired test
on the same held-out test images and the margin's 95 % interval say the
difference is larger than the noise, otherwise "No clear winner" with the
cheaper arm — then the control, the runs that did not learn, overfitting,
val-loss swings, cost), ``curves.png``, ``confusion.png`` and
``summary.json`` (every number in the report).  Fold runs of a
cross-validated study (``runs/study/NAME/fold*/ARM``) are pooled per arm.  Takes a few seconds.
Runs named ``<approach>-seed<k>`` are grouped per approach (mean ± std of
the test accuracy); ``make study SEEDS=N`` trains every arm with N seeds on
one split and writes this report.
"""

import os

from absl import flags

from . import common

FLAGS = flags.FLAGS
common.define_command_flags("compare")


def main(argv):
    from kerasxfer.reporting.compare_report import write_report

    summary = write_report(FLAGS.runs, FLAGS.out_dir, overwrite=FLAGS.overwrite)
    print(f"report: {os.path.join(FLAGS.out_dir, 'report.html')} (open it in a browser; report.md beside it)")
    for line in summary["summary"]:
        print(" - " + line.replace("**", ""))


# --helpshort lists the shared flags too (they are defined in experiments.common).
flags.adopt_module_key_flags(common)


def run():
    """The command: `python -m experiments.compare` or `kerasxfer compare`."""
    common.run_main(main)


if __name__ == "__main__":
    run()
