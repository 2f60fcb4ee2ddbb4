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

from kerasxfer import commands

from . import common

FLAGS = flags.FLAGS
common.define_command_flags("sweep")


def main(argv):
    cfg = commands.sweep_from(common.flag_values("sweep").values, FLAGS.out_dir)  # checked before TensorFlow loads
    from kerasxfer.sweep import run_sweep

    summary = run_sweep(cfg, overwrite=FLAGS.overwrite, verbose=FLAGS.verbose)
    root = os.path.join(cfg.out_dir, cfg.kind)
    print(
        f"sweep report: {os.path.join(root, 'sweep.md')} ({os.path.join(root, 'sweep.csv')}, "
        f"{os.path.join(root, 'curves_' + cfg.kind + '.png')})"
    )
    for line in summary["sentences"]:
        print(" - " + line)
    print(f"TensorBoard: make tensorboard (or tensorboard --logdir {root})")


# --helpshort lists the shared flags too (they are defined in experiments.common).
flags.adopt_module_key_flags(common)


def run():
    """The command: `python -m experiments.sweep` or `kerasxfer sweep`."""
    common.run_main(main)


if __name__ == "__main__":
    run()
