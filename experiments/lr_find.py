"""The learning-rate range test for one phase of a run: which learning rate should it train at?

    make lr-find                                   # the scratch CNN on the digits
    make lr-find RECIPE=finetune PHASE=frozen      # the transfer head
    make lr-find RUN=runs/finetune PHASE=unfrozen  # phase 2 of a run's config, after its phase 1
    python -m experiments.lr_find --recipe=scratch --min_lr=1e-7 --max_lr=10 --steps=100

The rate grows exponentially from --min_lr to --max_lr over --steps training
steps (stopping once the smoothed loss exceeds 4x its minimum); the model
then goes back to its starting weights.  A later phase starts where it would
in the run: the phases before it are trained first, in a temporary folder.  Writes lr_find.json and
lr_find.png (loss against rate, the suggestion marked) into --out_dir
(default runs/lr_find/<recipe>-<phase>); a run directory passed with --run is
only read.  Every training flag of scratch and finetune applies (--optimizer,
--lr_stage_decay, --bn, ...).

Expected on 2 CPU cores (digits, scratch CNN, defaults; measured 2026-11-29):
about 20 seconds; see the README's "Training recipes" section for the numbers.
"""

import os

from absl import flags

from kerasxfer import fsio, recipes, rundir
from kerasxfer.errors import UserError

from . import common

FLAGS = flags.FLAGS
common.define_common_flags(None)
common.define_recipe_flags(recipes.scratch)
common.define_recipe_flags(recipes.finetune)
common.define_command_flags("lr_find")


def main(argv):
    from kerasxfer.config import Experiment

    if FLAGS.run:
        cfg = os.path.join(FLAGS.run, rundir.CONFIG)
        if not os.path.isfile(cfg):
            raise UserError(f"--run={FLAGS.run!r} holds no {rundir.CONFIG}: pass the folder of a kerasxfer run.")
        exp = Experiment.from_dict(fsio.read_json(cfg))
    else:
        exp = common.experiment_from_flags(getattr(recipes, FLAGS.recipe))
    out = FLAGS.out_dir or os.path.join("runs", "lr_find", f"{exp.name}-{FLAGS.phase or exp.phases[0].name}")
    from kerasxfer.lr_find import find_lr

    result = find_lr(exp, FLAGS.phase, out, FLAGS.min_lr, FLAGS.max_lr, FLAGS.steps, overwrite=FLAGS.overwrite)
    print(
        f"suggested learning rate: {result['valley']:.1e} (configured: {result['configured_lr']:.1e}); "
        f"curve: {os.path.join(out, 'lr_find.png')}"
    )


# --helpshort lists the shared flags too (they are defined in experiments.common).
flags.adopt_module_key_flags(common)


def run():
    """The command: `python -m experiments.lr_find` or `kerasxfer lr-find`."""
    common.run_main(main)


if __name__ == "__main__":
    run()
