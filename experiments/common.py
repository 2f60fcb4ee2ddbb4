"""Flags shared by every entry point, and the wrapper that runs one.

No flag is written by hand twice: the training flags are derived from the
fields of :class:`~kerasxfer.config.DataConfig`,
:class:`~kerasxfer.config.Experiment` and
:class:`~kerasxfer.optim_config.OptimConfig` and from the parameters of the
recipes in :mod:`kerasxfer.recipes` (defaults and types from there, help
text and choices from :mod:`kerasxfer.options`).  :data:`RECIPE_FLAGS` is
the explicit flag -> recipe mapping; :func:`experiment_from_flags` hands
exactly those flags to the recipe and fails loudly on a mismatch, and
:func:`train_main` validates the result before TensorFlow loads and trains
it.  :func:`run_main` turns a :class:`~kerasxfer.errors.UserError` into one
line on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter out

from absl import app, flags  # noqa: E402

from kerasxfer import config  # noqa: E402
from kerasxfer.errors import UserError, os_error_sentence  # noqa: E402

FLAGS = flags.FLAGS
_UNSET = object()


class _SizeParser(flags.ArgumentParser):
    """An image size: a whole number of pixels, or auto (chosen from the data and the backbone)."""

    def parse(self, argument):
        from kerasxfer.config import AUTO_SIZE

        if str(argument).strip().lower() == AUTO_SIZE:
            return AUTO_SIZE
        try:
            return int(argument)
        except (TypeError, ValueError):
            raise ValueError(f"{argument!r} is neither a whole number of pixels nor auto") from None

    def flag_type(self):
        return "an integer or auto"


def define_option(spec, default=_UNSET) -> None:
    """Define the flag of one :class:`kerasxfer.options.OptionSpec` (``default`` overrides the field's)."""
    value = spec.default if default is _UNSET else default
    if spec.name in FLAGS:  # two recipes of one command share the option (lr, dropout): one flag, one default
        if FLAGS[spec.name].default != value:
            raise TypeError(f"--{spec.name} is defined twice with different defaults "
                            f"({FLAGS[spec.name].default!r}, {value!r})")
        return
    define = {"bool": flags.DEFINE_bool, "int": flags.DEFINE_integer, "float": flags.DEFINE_float,
              "str": flags.DEFINE_string, "list": flags.DEFINE_list}
    if spec.kind == "enum":
        flags.DEFINE_enum(spec.name, value, list(spec.choices), spec.help)
    elif spec.kind == "size":
        flags.DEFINE(_SizeParser(), spec.name, value, spec.help)
    else:
        define[spec.kind](spec.name, value, spec.help)


def define_common_flags(default_out: str, dataset: str = "digits") -> None:
    """The flags every training command shares: the data, experiment and optimiser fields, and the run's folder."""
    from kerasxfer import options

    for spec in options.common_options():
        define_option(spec, dataset if spec.name == "dataset" else _UNSET)
    flags.DEFINE_string("out_dir", default_out, "Run directory to write.")
    flags.DEFINE_integer("verbose", 0, "Keras fit verbosity: 0, one log line per epoch; 1, Keras' progress bar as "
                         "well (absl's --verbosity sets how much kerasxfer logs: -1 warnings only, 0 the default).")
    flags.DEFINE_bool(
        "overwrite", False,
        "Train again into an --out_dir that holds a finished run or one made with other flags (its run files "
        "are replaced). Without it an interrupted run continues and a finished one is left as it is.",
    )


#: The explicit flag -> recipe mapping: the recipe parameters each recipe takes from flags of the same name
#: (``data``, ``out_dir`` and the shared settings of ``kerasxfer.recipes.COMMON`` come from the common flags).
#: ``tests/test_cli.py`` checks that it covers every parameter of every recipe.
RECIPE_FLAGS = {
    "scratch": ("epochs", "lr", "widths", "convs_per_block", "dropout"),
    "finetune": ("backbone", "weights", "frozen_epochs", "finetune_epochs", "lr", "finetune_lr", "cache_features",
                 "unfreeze_stages", "dropout"),
    "pretrain": ("backbone", "epochs", "lr", "dropout"),
}


def define_recipe_flags(recipe) -> None:
    """The flags of ``recipe``'s own parameters (:data:`RECIPE_FLAGS`), defaults from its signature."""
    from kerasxfer import options

    for spec in options.recipe_options(recipe, RECIPE_FLAGS[recipe.__name__]):
        define_option(spec)


def define_field_flags(cls, names) -> None:
    """The flags of dataclass ``cls``'s fields ``names`` (pretrain's synthetic-set sizes)."""
    from kerasxfer import options

    for spec in options.field_options(cls, names):
        define_option(spec)


def define_scratch_flags() -> None:
    """The scratch recipe's own flags (scratch, sweep, study, lr-find)."""
    from kerasxfer import recipes

    define_recipe_flags(recipes.scratch)


def define_finetune_flags() -> None:
    """The finetune recipe's own flags (finetune, sweep, study, lr-find)."""
    from kerasxfer import recipes

    define_recipe_flags(recipes.finetune)


def define_min_steps_flag(default: int, what: str) -> None:
    """``--min_steps``: raise the epochs of small training splits so every phase takes that many optimizer steps."""
    flags.DEFINE_integer("min_steps", default, f"Raise {what} epochs on small training splits so every phase takes "
                         "at least this many optimizer steps (0: the epochs as given).")



def define_sweep_flags(kinds) -> None:
    """The flags of a sweep (sweep, study): ``--sweep`` takes one of ``kinds``, the first the default."""
    from kerasxfer.sweep import BUDGETS, DEFAULT_FRACTIONS

    flags.DEFINE_enum("sweep", kinds[0], list(kinds), "data: scratch, frozen and fine-tuned at each of --fractions "
                      "of the training split; depth: the fine-tune with each of --depths stages unfrozen.")
    flags.DEFINE_list("fractions", [f"{f:g}" for f in DEFAULT_FRACTIONS], "Shares of the training split (nested, "
                      "stratified, at least one image per class) of the data sweep.")
    flags.DEFINE_list("depths", [], "Stages unfrozen in phase 2 for the depth sweep: integers 0..K and/or 'all' "
                      "(default: every depth 0..K and all).")
    flags.DEFINE_float("depth_fraction", 1.0, "Share of the training split the depth sweep trains on.")
    flags.DEFINE_integer("seeds", 1, "Repeat every run with seeds --seed .. --seed+N-1 (same split: --split_seed).")
    flags.DEFINE_enum("budget", BUDGETS[0], list(BUDGETS), "epochs: every arm trains its epochs; time: each "
                      "scratch run of the data sweep trains for the time the fine-tune of its size and seed took (its "
                      "--epochs times 4 at most).")
    define_min_steps_flag(100, "a sweep phase's")
    flags.DEFINE_integer("scratch_image_size", 64, "Image size of the scratch CNN (0: --image_size).")


def use_command_defaults(command: str) -> None:
    """The defaults ``command`` sets apart from the config's and recipes' (:data:`kerasxfer.recipes.COMMAND_DEFAULTS`)."""
    from kerasxfer import recipes

    for name, value in recipes.COMMAND_DEFAULTS.get(command, {}).items():
        FLAGS.set_default(name, value)


def arms_from_flags() -> tuple:
    """(scratch, transfer) experiments of a sweep or a study, and the split seed they share."""
    from kerasxfer import recipes

    if FLAGS.train_fraction != 1.0:
        raise UserError("--train_fraction is what a sweep varies: pass the sizes as --fractions=0.1,0.5,1 instead.")
    scratch = experiment_from_flags(recipes.scratch)
    if FLAGS.scratch_image_size:
        if not 8 <= FLAGS.scratch_image_size <= 1024:
            raise UserError(f"--scratch_image_size={FLAGS.scratch_image_size} is out of range: use an integer from 8 "
                            "to 1024, or 0 for --image_size.")
        scratch.data.image_size = FLAGS.scratch_image_size
    split_seed = FLAGS.split_seed if FLAGS.split_seed is not None else FLAGS.seed
    return scratch, experiment_from_flags(recipes.finetune), split_seed


def sweep_from_flags(out_dir: str, kind=None):
    """The :class:`~kerasxfer.sweep.SweepConfig` the flags describe, validated (no TensorFlow yet)."""
    from kerasxfer.sweep import SweepConfig

    try:
        fractions = tuple(float(f) for f in FLAGS.fractions)
    except ValueError:
        raise UserError(f"--fractions={','.join(FLAGS.fractions)} must be numbers, e.g. 0.05,0.1,0.25,0.5,1.") from None
    scratch, transfer, split_seed = arms_from_flags()
    return SweepConfig(
        kind=kind or FLAGS.sweep, out_dir=out_dir, scratch=scratch, transfer=transfer,
        fractions=tuple(sorted(fractions)), depths=FLAGS.depths or None, depth_fraction=FLAGS.depth_fraction,
        seeds=FLAGS.seeds, budget=FLAGS.budget, min_steps=FLAGS.min_steps, split_seed=split_seed,
    ).validate()


#: DataConfig fields a study sets per run (its --folds flag says how many folds, not which one).
PER_RUN_DATA = ("folds", "fold")


def experiment_from_flags(recipe):
    """``recipe(...)`` given its flags (:data:`RECIPE_FLAGS`), the shared settings (``kerasxfer.recipes.COMMON``)
    and ``data`` built from the flags named like DataConfig fields; a mapped flag that is not defined is an error."""
    from kerasxfer.recipes import COMMON

    names = (*RECIPE_FLAGS[recipe.__name__], *COMMON)
    missing = [n for n in names if n not in FLAGS]
    if missing:
        raise TypeError(f"recipes.{recipe.__name__} needs the flags {', '.join(missing)}, which this command does not "
                        "define")
    data = config.DataConfig(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(config.DataConfig)
                                if f.name in FLAGS and f.name not in PER_RUN_DATA})
    return recipe(data=data, **{n: FLAGS[n].value for n in names})


#: Flags that set a phase's epochs: given explicitly, they are kept as they are (no --min_steps raise).
EPOCH_FLAGS = ("epochs", "frozen_epochs", "finetune_epochs")


def min_steps_from_flags() -> int:
    """``--min_steps`` of a scratch/finetune command, 0 when the user gave the epochs explicitly."""
    if "min_steps" not in FLAGS or any(n in FLAGS and FLAGS[n].present for n in EPOCH_FLAGS):
        return 0
    if not 0 <= FLAGS.min_steps <= 100_000:
        raise UserError(f"--min_steps={FLAGS.min_steps} must be an integer from 0 (off) to 100000.")
    return FLAGS.min_steps


def training_command(recipe, default_out: str, min_steps_what: str, after=None):
    """Define a one-recipe training command's flags (scratch, finetune); return its ``run()``."""
    define_common_flags(default_out)
    define_recipe_flags(recipe)
    use_command_defaults(recipe.__name__)
    define_min_steps_flag(config.DEFAULT_MIN_STEPS, min_steps_what)
    return lambda: run_main(train_main(recipe, after))


def train_main(recipe, after=None):
    """The ``main`` of a training entry point: flags -> recipe -> validate (no TensorFlow yet) -> train.

    ``after(exp)`` runs once the run has finished (pretrain exports its backbone).
    """

    def main(argv):
        exp = experiment_from_flags(recipe).validate()  # before TensorFlow loads: a bad flag is answered at once
        min_steps = min_steps_from_flags()
        from kerasxfer.training import run_experiment

        run_experiment(exp, verbose=FLAGS.verbose, overwrite=FLAGS.overwrite, min_steps=min_steps)
        if after is not None:
            after(exp)

    return main


def _setup_logging() -> None:
    """kerasxfer's log lines on stderr, at INFO unless absl's --verbosity says otherwise (-1 warnings, 1 debug)."""
    logger = logging.getLogger("kerasxfer")
    if not logger.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("[kerasxfer %(asctime)s] %(message)s", "%H:%M:%S"))
        logger.addHandler(h)
    level = logging.INFO
    if "verbosity" in FLAGS and FLAGS["verbosity"].present:
        v = FLAGS.verbosity
        level = logging.DEBUG if v >= 1 else logging.INFO if v == 0 else logging.WARNING if v == -1 else logging.ERROR
    logger.setLevel(level)
    logger.propagate = False


#: Flags that name files or folders: ``~`` is expanded in them (a shell leaves ``--dataset=~/photos`` as it is).
PATH_FLAGS = ("dataset", "cache_dir", "tfds_data_dir", "out_dir", "weights", "run", "model", "images", "output",
              "runs")


def _expand_paths() -> None:
    for name in PATH_FLAGS:
        if name in FLAGS and FLAGS[name].value:
            v = FLAGS[name].value
            FLAGS[name].value = [os.path.expanduser(x) for x in v] if isinstance(v, list) else os.path.expanduser(v)


def run_main(main) -> None:
    """``absl.app.run(main)`` with user errors reported in one line, exit code 2."""

    def wrapped(argv):
        if len(argv) > 1:
            raise UserError(f"unexpected argument(s) {' '.join(argv[1:])!r}: flags take the form --name=value.")
        _setup_logging()
        code = main(argv)
        for sig in (signal.SIGINT, signal.SIGTERM):  # the work is done: a signal while Python shuts down is exit 130
            signal.signal(sig, _exit_130)
        return code

    def parse_flags(argv):
        # absl's own parser prints several lines and exits 1; one line and exit 2 like every other error.
        try:
            rest = FLAGS(argv)
            _expand_paths()
            return rest
        except flags.Error as e:
            print(f"kerasxfer: error: {e}: see --helpshort for the flags.", file=sys.stderr)
            sys.exit(2)

    def stop(signum, frame):  # SIGTERM at any point (start-up included) ends like Ctrl-C: one line, exit 130
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        app.run(wrapped, flags_parser=parse_flags)
    except UserError as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; files already written are kept: run the same command again to continue.", 130)
    except OSError as e:
        _fail(os_error_sentence(e), 2)
    except UnicodeDecodeError as e:
        _fail(f"a file that should be text is binary ({e.reason} at byte {e.start}): check the files passed "
              "(e.g. --flagfile) and run again.", 2)


def _exit_130(signum, frame) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def _fail(sentence: str, code: int) -> None:
    print(f"kerasxfer: error: {sentence}", file=sys.stderr)
    sys.exit(code)
