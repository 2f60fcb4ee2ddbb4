"""Train a run again from its own folder: the config.json it wrote (data, model, phases, recipe, seed).

    make repeat RUN=runs/finetune                       # into runs/finetune-repeat
    kerasxfer repeat --run=runs/demo/scratch --out_dir=runs/again

Every run writes its resolved configuration to ``config.json``; this command
reads it back (a config written by an older kerasxfer gets the newer fields'
defaults; one from a newer kerasxfer is refused in one sentence), trains it
into ``--out_dir`` (default ``RUN-repeat``) and prints the original's and the
repeat's test accuracy side by side.  On a CPU runs are deterministic, so a
repeat on the same machine writes the same ``history.json`` bytes; it takes
as long as the original did.
"""

import os
import sys

from absl import flags

from kerasxfer.errors import UserError

from . import common

FLAGS = flags.FLAGS
common.define_command_flags("repeat")


def experiment_from_run(run: str, out_dir: str):
    """The :class:`~kerasxfer.config.Experiment` in ``run``'s config.json, to be trained into ``out_dir``."""
    from kerasxfer import fsio, rundir
    from kerasxfer.config import Experiment

    if not run:
        raise UserError("--run is missing: name the run directory to repeat, e.g. --run=runs/finetune.")
    path = os.path.join(run, rundir.CONFIG)
    if not os.path.isfile(path):
        raise UserError(f"--run={run!r} holds no {rundir.CONFIG}: pass the folder of a kerasxfer run.")
    try:
        config = fsio.read_json(path)
    except ValueError:
        raise UserError(f"{path} is not valid JSON: it was damaged; train the run again with its own command.") from None
    if os.path.realpath(out_dir) == os.path.realpath(run):
        raise UserError(
            f"--out_dir={out_dir!r} is the run itself: choose another folder (to continue an interrupted "
            "run, run its own command again)."
        )
    try:
        exp = Experiment.from_dict(config)
    except (TypeError, ValueError, AttributeError):  # not a dict, or a field missing or of the wrong kind
        raise UserError(f"{path} is not a kerasxfer configuration: pass the folder of a kerasxfer run.") from None
    exp.out_dir = out_dir
    return exp.validate()


def main(argv):
    run = (FLAGS.run or "").rstrip(os.sep)
    exp = experiment_from_run(run, FLAGS.out_dir or f"{run}-repeat")
    from kerasxfer import fsio, rundir
    from kerasxfer.training import run_experiment

    verbose = FLAGS.verbose if FLAGS["verbose"].present else int(sys.stdout.isatty())
    metrics = run_experiment(exp, verbose=verbose, overwrite=FLAGS.overwrite)
    original = os.path.join(run, rundir.METRICS)
    before = fsio.read_json(original)["test"]["accuracy"] if os.path.isfile(original) else None
    print(
        f"repeat of {run}: test accuracy {metrics['test']['accuracy']:.4f}"
        + (f" (the original: {before:.4f})" if before is not None else " (the original has no metrics.json)")
        + f"; run directory: {exp.out_dir}"
    )


# --helpshort lists the shared flags too (they are defined in experiments.common).
flags.adopt_module_key_flags(common)


def run():
    """The command: `python -m experiments.repeat` or `kerasxfer repeat`."""
    common.run_main(main)


if __name__ == "__main__":
    run()
