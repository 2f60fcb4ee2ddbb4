"""The training commands as the library defines them: their options (names, defaults, help) and what they build.

The one home of every default of ``scratch``, ``finetune``, ``sweep`` and
``study``.  :func:`options_of` lists a command's options (from the config
fields and recipe parameters, :data:`kerasxfer.recipes.COMMAND_DEFAULTS`
applied, and the sweep/study options below); :func:`resolve` checks a
caller's options against them and fills in the rest.  The command line
(``experiments/``) defines its flags from :func:`options_of` and hands their
values here; :mod:`kerasxfer.api` does the same with keywords, so the same
words give the same study from a notebook and from a shell.  No TensorFlow.
"""

from __future__ import annotations

import copy
import difflib
import os
from typing import NamedTuple

from kerasxfer import config, options, recipes
from kerasxfer.errors import UserError
from kerasxfer.options import OptionSpec, typed

COMMANDS = ("scratch", "finetune", "sweep", "study")

#: The explicit option -> recipe mapping: the recipe parameters each recipe takes from options of the same name
#: (``data``, ``out_dir`` and the shared settings of ``kerasxfer.recipes.COMMON`` come from the common options).
#: ``tests/test_cli.py`` checks that it covers every parameter of every recipe.
RECIPE_OPTIONS = {
    "scratch": ("epochs", "lr", "widths", "convs_per_block", "dropout"),
    "finetune": (
        "backbone",
        "weights",
        "frozen_epochs",
        "finetune_epochs",
        "lr",
        "finetune_lr",
        "cache_features",
        "frozen_head",
        "finetune_warmup",
        "unfreeze_stages",
        "dropout",
    ),
    "pretrain": ("backbone", "epochs", "lr", "dropout"),
}
#: Options that name files or folders: ``~`` is expanded in them.
PATH_OPTIONS = ("dataset", "cache_dir", "tfds_data_dir", "out_dir", "weights", "run", "model", "images", "output", "runs")
#: Options that set a phase's epochs: given explicitly, they are kept as they are (no min_steps raise).
EPOCH_OPTIONS = ("epochs", "frozen_epochs", "finetune_epochs")
#: DataConfig fields a study sets per run (its folds option says how many folds, not which one).
PER_RUN_DATA = ("folds", "fold")
DEFAULT_OUT = {"scratch": "runs/scratch", "finetune": "runs/finetune", "sweep": "runs/sweep", "study": None}
SWEEP_KINDS = {"sweep": ("data", "depth"), "study": ("none", "data", "depth")}


def _opt(name, kind, default, choices=(), help_key=None, **fill):
    """An option of a command whose help is :data:`kerasxfer.options.COMMAND_HELP`'s (``help_key``: another
    entry than ``name``'s; ``fill``: its ``{placeholders}``)."""
    return OptionSpec(name, kind, default, tuple(choices), options.COMMAND_HELP[help_key or name].format(**fill))


def run_options(command: str) -> list:
    """Where a run goes and how it talks: out_dir, verbose, overwrite."""
    return [
        _opt("out_dir", "str", DEFAULT_OUT[command], help_key="out_dir:study" if command == "study" else None),
        _opt("verbose", "int", 0),
        _opt("overwrite", "bool", False),
    ]


def min_steps_option(default: int, what: str) -> OptionSpec:
    return _opt("min_steps", "int", default, what=what)


def sweep_options(kinds) -> list:
    """The options of a sweep (sweep, study): ``sweep`` takes one of ``kinds``, the first the default."""
    from kerasxfer.sweep import BUDGETS, DEFAULT_FRACTIONS

    return [
        _opt("sweep", "enum", kinds[0], kinds),
        _opt("fractions", "list", [f"{f:g}" for f in DEFAULT_FRACTIONS]),
        _opt("depths", "list", []),
        _opt("depth_fraction", "float", 1.0),
        _opt("seeds", "int", 1),
        _opt("budget", "enum", BUDGETS[0], BUDGETS),
        _opt("scratch_image_size", "int", 64),
        *executor_options(),
    ]


def executor_options() -> list:
    """Where a sweep's or study's runs train (:mod:`kerasxfer.executors`)."""
    from kerasxfer.executors import DEFAULT_CPUS_PER_RUN, EXECUTORS

    return [
        _opt("executor", "enum", "local", EXECUTORS),
        _opt("ray_address", "str", None),
        _opt("cpus_per_run", "float", DEFAULT_CPUS_PER_RUN),
        _opt("gpus_per_run", "float", 0.0),
    ]


def study_options() -> list:
    return [
        _opt("control", "bool", True),
        _opt("folds", "str", "auto"),
        _opt("backbones", "list", []),
        _opt("exhaustive", "bool", False),
        _opt("minutes", "float", 0.0),
        _opt("final", "str", "auto"),
    ]


#: The commands that train nothing of their own: reading runs, predicting with them, measuring.
TOOLS = ("predict", "compare", "repeat", "lr_find", "bench")


def tool_options(command: str) -> list:
    """The options of a tool (:data:`TOOLS`): name, kind, default and choices here, help in
    :data:`kerasxfer.options.TOOL_HELP` (``lr_find`` also takes every training option of scratch and finetune)."""
    from kerasxfer.engines import ENGINES

    table: dict[str, list[tuple]] = {
        "predict": [
            ("run", "str", None),
            ("model", "str", None),
            ("class_names", "list", None),
            ("images", "list", []),
            ("top_k", "int", 3),
            ("output", "str", None),
            ("batch_size", "int", 32),
            ("overwrite", "bool", False),
            ("verbose", "bool", False),
            ("engine", "enum", "auto", ENGINES),
            ("export", "enum", None, ("saved_model", "tflite", "onnx")),
        ],
        "compare": [
            ("runs", "list", ["runs/scratch", "runs/finetune"]),
            ("out_dir", "str", "runs/report"),
            ("overwrite", "bool", False),
        ],
        "repeat": [("run", "str", None), ("out_dir", "str", None), ("overwrite", "bool", False), ("verbose", "int", 0)],
        "lr_find": [
            ("recipe", "enum", "scratch", ("scratch", "finetune")),
            ("run", "str", None),
            ("phase", "str", None),
            ("min_lr", "float", 1e-7),
            ("max_lr", "float", 10.0),
            ("steps", "int", 100),
        ],
        "bench": [
            ("sections", "list", ["machine", "data", "models", "modes", "inference"]),
            ("image_size", "int", 64),
            ("batch_size", "int", 32),
            ("backbone", "str", "regnetx002"),
            ("data_dir", "str", "runs/bench/jpegs"),
            ("num_images", "int", 96),
            ("jpeg_size", "list", ["1200", "1600"]),
            ("steps", "int", 12),
            ("sizes", "list", ["64", "224"]),
            ("output", "str", None),
            ("inference_backbones", "list", ["efficientnet_lite0", "regnetx002"]),
            ("readings", "int", 6),
            ("study_sets", "list", ["230x2", "400x5"]),
            ("study_scans", "list", ["230x2"]),
            ("study_exhaustive", "bool", True),
            ("study_flags", "str", ""),
        ],
    }
    return [
        OptionSpec(row[0], row[1], row[2], tuple(row[3]) if len(row) > 3 else (), options.TOOL_HELP[f"{command}:{row[0]}"])
        for row in table[command]
    ]


def options_of(command: str) -> dict:
    """Every option of ``command`` (scratch, finetune, sweep, study, or a tool of :data:`TOOLS`) by name, with the
    command's defaults."""
    if command in TOOLS:
        return {spec.name: spec for spec in tool_options(command)}
    if command not in COMMANDS:
        raise UserError(f"{command!r} is not a training command: use one of {', '.join(COMMANDS)}.")
    specs = options.common_options()
    for recipe in ("scratch", "finetune") if command in ("sweep", "study") else (command,):
        specs += options.recipe_options(recipes.RECIPES[recipe], RECIPE_OPTIONS[recipe])
    if command in ("sweep", "study"):
        specs += sweep_options(SWEEP_KINDS[command])
    specs.append(
        min_steps_option(
            100 if command == "sweep" else config.DEFAULT_MIN_STEPS, "a sweep phase's" if command == "sweep" else "each phase's"
        )
    )
    if command == "study":
        specs += study_options()
    specs += run_options(command)
    out: dict[str, OptionSpec] = {}
    for spec in specs:
        if spec.name in out and out[spec.name].default != spec.default:  # lr, dropout: shared by two recipes
            raise TypeError(f"option {spec.name} has two defaults ({out[spec.name].default!r}, {spec.default!r})")
        out[spec.name] = spec
    for name, value in recipes.COMMAND_DEFAULTS.get(command, {}).items():
        out[name] = out[name]._replace(default=value)
    return out


class Options(NamedTuple):
    """A command's option values (every option) and the names the caller gave (the rest are defaults)."""

    values: dict
    given: frozenset


def resolve(command: str, given: dict) -> Options:
    """``given`` checked against ``command``'s options, the defaults filled in and ``~`` expanded in paths."""
    specs = options_of(command)
    unknown = sorted(set(given) - set(specs))
    if unknown:
        near = difflib.get_close_matches(unknown[0], list(specs), n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise UserError(
            f"{command} has no option {', '.join(unknown)}{hint}: options are the command-line flags' "
            f"names without --, listed by kerasxfer.options_of({command!r})."
        )
    values = {name: spec.default for name, spec in specs.items()}
    for name, value in given.items():
        spec = specs[name]
        value = typed(spec, value, path=name in PATH_OPTIONS)
        if spec.kind == "list" and isinstance(value, str):
            value = [v for v in value.split(",") if v]
        elif spec.kind == "list" and isinstance(value, (tuple, list)):
            value = [str(v) for v in value]
        if spec.kind == "enum" and value not in spec.choices:
            raise UserError(f"{name}={value!r} is unknown: use {', '.join(spec.choices)}.")
        values[name] = value
    for name in PATH_OPTIONS:
        if isinstance(values.get(name), str):
            values[name] = os.path.expanduser(values[name])
    return Options(values, frozenset(given))


def experiment_from(recipe, values: dict):
    """``recipe(...)`` given its options (:data:`RECIPE_OPTIONS`), the shared settings and ``data`` from the
    options named like DataConfig fields; a mapped option that is missing is an error."""
    import dataclasses

    names = (*RECIPE_OPTIONS[recipe.__name__], *recipes.COMMON)
    missing = [n for n in names if n not in values]
    if missing:
        raise TypeError(f"recipes.{recipe.__name__} needs the options {', '.join(missing)}, which are not given")
    data = config.DataConfig(
        **{
            f.name: values[f.name]
            for f in dataclasses.fields(config.DataConfig)
            if f.name in values and f.name not in PER_RUN_DATA
        }
    )
    return recipe(data=data, **{n: values[n] for n in names})


def min_steps_of(opts: Options) -> int:
    """The min_steps of a scratch/finetune run: 0 when the caller gave the epochs explicitly."""
    if any(n in opts.given for n in EPOCH_OPTIONS):
        return 0
    return check_min_steps(opts.values["min_steps"])


def check_min_steps(value) -> int:
    if not isinstance(value, int) or not 0 <= value <= 100_000:
        raise UserError(f"--min_steps={value} must be an integer from 0 (off) to 100000.")
    return value


def arms_from(values: dict) -> tuple:
    """(scratch, transfer) experiments of a sweep or a study, and the split seed they share."""
    if values["train_fraction"] != 1.0:
        raise UserError("--train_fraction is what a sweep varies: pass the sizes as --fractions=0.1,0.5,1 instead.")
    scratch = experiment_from(recipes.scratch, values)
    size = values["scratch_image_size"]
    if size:
        if not isinstance(size, int) or not 8 <= size <= 1024:
            raise UserError(f"--scratch_image_size={size} is out of range: use an integer from 8 to 1024, or 0 for --image_size.")
        scratch.data.image_size = size
    split_seed = values["split_seed"] if values["split_seed"] is not None else values["seed"]
    return scratch, experiment_from(recipes.finetune, values), split_seed


def sweep_from(values: dict, out_dir: str, kind=None):
    """The :class:`~kerasxfer.sweep.SweepConfig` the options describe, validated."""
    from kerasxfer.sweep import SweepConfig

    try:
        fractions = tuple(float(f) for f in values["fractions"])
    except ValueError:
        raise UserError(
            f"--fractions={','.join(map(str, values['fractions']))} must be numbers, e.g. 0.05,0.1,0.25,0.5,1."
        ) from None
    scratch, transfer, split_seed = arms_from(values)
    return SweepConfig(
        kind=kind or values["sweep"],
        out_dir=out_dir,
        scratch=scratch,
        transfer=transfer,
        fractions=tuple(sorted(fractions)),
        depths=values["depths"] or None,
        depth_fraction=values["depth_fraction"],
        seeds=values["seeds"],
        budget=values["budget"],
        min_steps=values["min_steps"],
        split_seed=split_seed,
        ray=ray_from(values),
    ).validate()


def ray_from(values: dict):
    """The :class:`~kerasxfer.executors.RayConfig` of ``--executor=ray`` (checked), None for ``local``."""
    from kerasxfer.executors import RayConfig, check_ray

    if values["executor"] != "ray":
        return None
    check_ray()
    return RayConfig(values["ray_address"], values["cpus_per_run"], values["gpus_per_run"]).validate()


def folds_of(value):
    """The folds option: None (auto) or an integer (checked by StudyConfig)."""
    if isinstance(value, int):
        return value
    if str(value).strip().lower() == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"--folds={value} must be auto or an integer from 1 (one split) to {config.MAX_FOLDS}.") from None


def study_from(values: dict, given=frozenset()):
    """The :class:`~kerasxfer.studies.StudyConfig` the options describe, validated (no TensorFlow yet).

    ``given``: the options the caller set; explicit ``frozen_epochs`` keep the frozen phase at that many epochs
    (it does not train until converged)."""
    from kerasxfer.studies import StudyConfig, dataset_name

    out = values["out_dir"] or os.path.join(
        "runs", "study", dataset_name(values["dataset"]) + ("-exhaustive" if values["exhaustive"] else "")
    )
    scratch, transfer, split_seed = arms_from(values)
    backbones = [str(b).strip().lower() for b in values["backbones"]]
    if "" in backbones or ("backbones" in given and not backbones):
        raise UserError(
            f"--backbones={','.join(values['backbones'])} holds an empty name: list backbones separated "
            "by commas, e.g. --backbones=efficientnet_lite0,regnetx002."
        )
    more = []
    for backbone in backbones[1:]:
        other = copy.deepcopy(transfer)
        other.model.backbone = backbone
        more.append(other)
    if backbones:
        transfer.model.backbone = backbones[0]
    sweep = None if values["sweep"] == "none" else sweep_from(values, os.path.join(out, "sweep"))
    return StudyConfig(
        out_dir=out,
        scratch=scratch,
        transfer=transfer,
        control=values["control"],
        seeds=values["seeds"],
        split_seed=split_seed,
        sweep=sweep,
        folds=folds_of(values["folds"]),
        min_steps=values["min_steps"],
        more_transfers=tuple(more),
        exhaustive=bool(values["exhaustive"]),
        minutes=values["minutes"] or None,
        frozen_given="frozen_epochs" in given,
        ray=ray_from(values),
        final=str(values["final"]).strip().lower(),
    ).validate()
