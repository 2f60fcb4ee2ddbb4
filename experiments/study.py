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
"""

import copy
import os
import sys

from absl import flags

from kerasxfer import config
from kerasxfer.errors import UserError

from . import common

FLAGS = flags.FLAGS
common.define_common_flags(None)
common.define_scratch_flags()
common.define_finetune_flags()
common.define_sweep_flags(("none", "data", "depth"))
common.use_command_defaults("study")
flags.DEFINE_bool("control", True, "Also train the transfer arm from a random backbone (the control), which shows "
                  "what the pretrained weights bring; --nocontrol skips it.")
flags.DEFINE_string("folds", "auto", "K-fold cross-validation: every arm trains once per fold and every labelled image "
                    "is tested exactly once; 1: one train/val/test split; auto: 5 folds when the data have fewer than "
                    "1,000 images and no test split of their own, else one split.")
flags.DEFINE_list("backbones", [], "Several transfer arms: each backbone of this list is fine-tuned with the same "
                  "recipe and compared with scratch (and with each other) in the report; the first also gets the "
                  "control. Default: --backbone alone.")
FLAGS.set_default("min_steps", config.DEFAULT_MIN_STEPS)  # every phase of a study: enough optimizer steps


def folds_from_flag():
    """``--folds``: None (auto) or an integer (checked by StudyConfig)."""
    if FLAGS.folds.strip().lower() == "auto":
        return None
    try:
        return int(FLAGS.folds)
    except ValueError:
        raise UserError(f"--folds={FLAGS.folds} must be auto or an integer from 1 (one split) to "
                        f"{config.MAX_FOLDS}.") from None


def study_from_flags():
    from kerasxfer.study import StudyConfig, dataset_name

    out = FLAGS.out_dir or os.path.join("runs", "study", dataset_name(FLAGS.dataset))
    scratch, transfer, split_seed = common.arms_from_flags()
    more = []
    for backbone in FLAGS.backbones[1:]:
        other = copy.deepcopy(transfer)
        other.model.backbone = backbone.strip().lower()
        more.append(other)
    if FLAGS.backbones:
        transfer.model.backbone = FLAGS.backbones[0].strip().lower()
    sweep = None if FLAGS.sweep == "none" else common.sweep_from_flags(os.path.join(out, "sweep"))
    return StudyConfig(out_dir=out, scratch=scratch, transfer=transfer, control=FLAGS.control, seeds=FLAGS.seeds,
                       split_seed=split_seed, sweep=sweep, folds=folds_from_flag(),
                       min_steps=FLAGS.min_steps, more_transfers=tuple(more)).validate()


def main(argv):
    cfg = study_from_flags()  # every flag checked before TensorFlow loads
    from kerasxfer.study import run_study

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
    print(f"report: {os.path.join(report, 'report.md')} (curves.png, lr.png, confusion.png, summary.json beside it)")
    print(f"TensorBoard: tensorboard --logdir {cfg.out_dir}  (or make tensorboard)")


# --helpshort lists the shared flags too (they are defined in experiments.common).
flags.adopt_module_key_flags(common)


def run():
    """The command: `python -m experiments.study` or `kerasxfer study`."""
    common.run_main(main)


if __name__ == "__main__":
    run()
