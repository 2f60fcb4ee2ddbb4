"""Where transfer stops paying (data-size learning curves) and how deep to unfreeze (depth sweep).

    make sweep                          # SWEEP=data on the digits: scratch, frozen, fine-tuned at 5 sizes
    make sweep SWEEP=depth              # the fine-tune with 0..K stages unfrozen, and the whole network
    python -m experiments.sweep --sweep=data --fractions=0.05,0.1,0.25,0.5,1 --seeds=2 --out_dir=runs/sweep

Every member is an ordinary run directory under ``<out_dir>/<sweep>/``
(``make compare`` and TensorBoard read them); rerunning trains only what has
not finished.  Writes ``sweep.csv``, ``sweep_cost.csv``, ``curves_data.png``
or ``curves_depth.png``, ``sweep.md`` and ``sweep.json`` beside them.

Defaults: the offline ImageNet backbone of ``make demo`` (EfficientNet-Lite0
at 96x96, 10 frozen + 8 epochs with 4 stages unfrozen at 2e-4) and the
scratch CNN at 64x64 for 10 epochs.  Measured on 2 CPU cores, 2026-11-29:
see the README's "Sweeps" section.
"""

import os

from absl import flags

from experiments import common
from kerasxfer import recipes
from kerasxfer.errors import UserError
from kerasxfer.sweep import BUDGETS, DEFAULT_FRACTIONS, SWEEPS

FLAGS = flags.FLAGS
common.define_common_flags("runs/sweep")
common.define_scratch_flags()
common.define_finetune_flags()
common._choice_flag("sweep", SWEEPS, "data: scratch, frozen and fine-tuned at each of --fractions of the training "
                    "split; depth: the fine-tune with each of --depths stages unfrozen.")
flags.DEFINE_list("fractions", [f"{f:g}" for f in DEFAULT_FRACTIONS],
                  "Shares of the training split (nested, stratified, at least one image per class) of the data sweep.")
flags.DEFINE_list("depths", [], "Stages unfrozen in phase 2 for the depth sweep: integers 0..K and/or 'all' "
                  "(default: every depth 0..K and all).")
flags.DEFINE_float("depth_fraction", 1.0, "Share of the training split the depth sweep trains on.")
flags.DEFINE_integer("seeds", 1, "Repeat every member with seeds --seed .. --seed+N-1 (same split: --split_seed).")
common._choice_flag("budget", BUDGETS, "epochs: every arm trains its epochs; time: each scratch run trains for the "
                    "time the fine-tune of its size and seed took (its --epochs times 4 at most).")
flags.DEFINE_integer("min_steps", 100, "Raise a phase's epochs on small subsets so it takes at least this many "
                     "optimizer steps (0: the epochs as given).")
flags.DEFINE_integer("scratch_image_size", 64, "Image size of the scratch CNN (0: --image_size).")
for name, value in (("backbone", "efficientnet_lite0"), ("image_size", 96), ("frozen_epochs", 10),
                    ("finetune_epochs", 8), ("unfreeze_stages", 4), ("finetune_lr", 2e-4)):
    FLAGS.set_default(name, value)


def sweep_from_flags():
    from kerasxfer.sweep import SweepConfig

    if FLAGS.train_fraction != 1.0:
        raise UserError("--train_fraction is what the sweep varies: pass the sizes as --fractions=0.1,0.5,1 instead.")
    try:
        fractions = tuple(float(f) for f in FLAGS.fractions)
    except ValueError:
        raise UserError(f"--fractions={','.join(FLAGS.fractions)} must be numbers, e.g. 0.05,0.1,0.25,0.5,1.") from None
    scratch = common.experiment_from_flags(recipes.scratch)
    if FLAGS.scratch_image_size:
        scratch.data.image_size = FLAGS.scratch_image_size
    split_seed = FLAGS.split_seed if FLAGS.split_seed is not None else FLAGS.seed
    return SweepConfig(
        kind=FLAGS.sweep, out_dir=FLAGS.out_dir, scratch=scratch,
        transfer=common.experiment_from_flags(recipes.finetune), fractions=tuple(sorted(fractions)),
        depths=FLAGS.depths or None, depth_fraction=FLAGS.depth_fraction, seeds=FLAGS.seeds, budget=FLAGS.budget,
        min_steps=FLAGS.min_steps, split_seed=split_seed,
    ).validate()


def main(argv):
    cfg = sweep_from_flags()  # every flag checked before TensorFlow loads
    from kerasxfer.sweep import run_sweep

    summary = run_sweep(cfg, overwrite=FLAGS.overwrite, verbose=FLAGS.verbose)
    root = os.path.join(cfg.out_dir, cfg.kind)
    print(f"sweep report: {os.path.join(root, 'sweep.md')} ({os.path.join(root, 'sweep.csv')}, "
          f"{os.path.join(root, 'curves_' + cfg.kind + '.png')})")
    for line in summary["sentences"]:
        print(" - " + line)
    print(f"TensorBoard: make tensorboard (or tensorboard --logdir {root})")


if __name__ == "__main__":
    common.run_main(main)
