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

import logging
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter out

from absl import app, flags  # noqa: E402

from kerasxfer.commands import PATH_OPTIONS as PATH_FLAGS  # noqa: E402  (``~`` is expanded in these flags)
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
            raise TypeError(f"--{spec.name} is defined twice with different defaults ({FLAGS[spec.name].default!r}, {value!r})")
        return
    define = {
        "bool": flags.DEFINE_bool,
        "int": flags.DEFINE_integer,
        "float": flags.DEFINE_float,
        "str": flags.DEFINE_string,
        "list": flags.DEFINE_list,
    }
    if spec.kind == "enum":
        flags.DEFINE_enum(spec.name, value, list(spec.choices), spec.help)
    elif spec.kind == "size":
        flags.DEFINE(_SizeParser(), spec.name, value, spec.help)
    else:
        define[spec.kind](spec.name, value, spec.help)


def define_command_flags(command: str) -> None:
    """Every flag of a training command, one per option of :func:`kerasxfer.commands.options_of`."""
    from kerasxfer import commands

    for spec in commands.options_of(command).values():
        define_option(spec)


def define_common_flags(default_out, dataset: str = "digits") -> None:
    """The flags every training command shares: the data, experiment and optimiser fields, and the run's folder."""
    from kerasxfer import commands, options

    for spec in options.common_options():
        define_option(spec, dataset if spec.name == "dataset" else _UNSET)
    for spec in commands.run_options("finetune"):
        define_option(spec, default_out if spec.name == "out_dir" else _UNSET)


def define_recipe_flags(recipe) -> None:
    """The flags of ``recipe``'s own parameters (:data:`kerasxfer.commands.RECIPE_OPTIONS`), defaults from it."""
    from kerasxfer import commands, options

    for spec in options.recipe_options(recipe, commands.RECIPE_OPTIONS[recipe.__name__]):
        define_option(spec)


def define_field_flags(cls, names) -> None:
    """The flags of dataclass ``cls``'s fields ``names`` (pretrain's synthetic-set sizes)."""
    from kerasxfer import options

    for spec in options.field_options(cls, names):
        define_option(spec)


def flag_values(command: str):
    """The flags of ``command`` as library options (:class:`kerasxfer.commands.Options`): values, and those given."""
    from kerasxfer import commands

    names = commands.options_of(command)
    return commands.Options({n: FLAGS[n].value for n in names}, frozenset(n for n in names if FLAGS[n].present))


def experiment_from_flags(recipe):
    """``recipe(...)`` from the flags (lr-find, pretrain): :func:`kerasxfer.commands.experiment_from`."""
    from kerasxfer import commands

    return commands.experiment_from(recipe, {n: FLAGS[n].value for n in FLAGS})


def training_command(recipe, after=None):
    """Define a one-recipe training command's flags (scratch, finetune); return its ``run()``."""
    define_command_flags(recipe.__name__)
    return lambda: run_main(train_main(recipe, after, recipe.__name__))


def train_main(recipe, after=None, command=None):
    """The ``main`` of a training entry point: flags -> recipe -> validate (no TensorFlow yet) -> train.

    ``after(exp)`` runs once the run has finished (pretrain exports its backbone).
    """

    def main(argv):
        from kerasxfer import commands

        if command is not None:
            opts = flag_values(command)
            exp = commands.experiment_from(recipe, opts.values).validate()  # a bad flag is answered at once
            min_steps = commands.min_steps_of(opts)
        else:
            exp, min_steps = experiment_from_flags(recipe).validate(), 0
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
        _fail(
            f"a file that should be text is binary ({e.reason} at byte {e.start}): check the files passed "
            "(e.g. --flagfile) and run again.",
            2,
        )


def _exit_130(signum, frame) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def _fail(sentence: str, code: int) -> None:
    print(f"kerasxfer: error: {sentence}", file=sys.stderr)
    if code == 130:  # interrupted: leave without Python's shutdown, which can die of the signal itself (exit -2)
        _exit_130(None, None)
    sys.exit(code)
