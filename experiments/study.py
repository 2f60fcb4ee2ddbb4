"""The whole study on your images in one command: scratch, transfer, the random-backbone control, the report.

    make study DATASET=~/photos/flowers          # runs/study/flowers/{scratch,transfer,control,report}
    make study DATASET=tfds:tf_flowers SEEDS=3   # each arm with seeds 0, 1, 2
    make study DATASET=digits SWEEP=data         # and the learning curves by data size (runs/study/digits/sweep)
    python -m experiments.study --dataset=PATH --control=false --weights=runs/pretrain/backbone.weights.h5

The transfer arm starts from the best weights available: ``--weights=imagenet``
(default) with the default EfficientNet-Lite0 needs no download; RegNet's
ImageNet weights are downloaded once (see the README for machines without
internet), or pass a weights file.  ``make demo`` is this study on the
digits, into ``runs/demo``.  Rerunning trains only what has not finished; a
killed study continues where it stopped.  One study-level line per epoch
says how far the study is and how long it has left; on a terminal Keras adds
its progress bar within each epoch.

The default study is cheap (README, "A study in minutes"): what a frozen
backbone computes is computed once for the whole study, the frozen phase
trains until converged, folds stop when a sequential rule says the answer is
known, and the control answers on the frozen phase; the report says which
ran.  ``--exhaustive`` runs none of that (the reference), ``--minutes=N``
plans folds and phase lengths to fit N minutes.
"""

import os
import sys

from absl import flags

from kerasxfer import commands
from kerasxfer.errors import UserError

from . import common

FLAGS = flags.FLAGS
common.define_command_flags("study")


def main(argv):
    cfg = commands.study_from(*common.flag_values("study"))  # every flag checked before TensorFlow loads
    from kerasxfer.studies import run_study

    verbose = FLAGS.verbose if FLAGS["verbose"].present else int(sys.stdout.isatty())
    summary = run_study(cfg, overwrite=FLAGS.overwrite, verbose=verbose)
    if not summary["summary"]:
        raise UserError("the report has no sentence to print: see its files in " + cfg.out_dir)
    report = os.path.join(cfg.out_dir, "report")
    print("verdict: " + summary["summary"][0].replace("**", ""))  # the decision, with its interval and test
    for line in summary["summary"][1:]:
        print(" - " + line.replace("**", ""))
    if "sweep" in summary:
        print(f"sweep ({cfg.sweep.kind}):")
        for line in summary["sweep"]["sentences"]:
            print(" - " + line)
        print(f"sweep report: {os.path.join(cfg.sweep.out_dir, cfg.sweep.kind, 'sweep.md')}")
    print(
        f"report: {os.path.join(report, 'report.html')} (open it in a browser; report.md, verdict.png, curves.png, "
        "lr.png, confusion.png and summary.json beside it)"
    )
    final = summary.get("final") or {}
    if final.get("dir"):
        lo, hi = final["interval"]
        print(
            f"model to deploy: {final['dir']} ({final['arm']}; expected accuracy {100 * final['estimate']:.2f} %, "
            f"95 % interval {100 * lo:.1f}-{100 * hi:.1f} %, "
            + ("from the cross-validation" if final["retrained"] else "on the test split")
            + f"): make predict RUN={cfg.out_dir} IMAGES=..."
        )
    elif final:
        print(f"model to deploy: none ({final['why']})")
    print(f"TensorBoard: tensorboard --logdir {cfg.out_dir}  (or make tensorboard)")


# --helpshort lists the shared flags too (they are defined in experiments.common).
flags.adopt_module_key_flags(common)


def run():
    """The command: `python -m experiments.study` or `kerasxfer study`."""
    common.run_main(main)


if __name__ == "__main__":
    run()
