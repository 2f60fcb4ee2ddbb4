"""Entry points: bad input ends in one clear line and exit code 2, never a traceback."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(module, *args, cwd=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", f"experiments.{module}", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def _lines(stderr):
    return [l for l in stderr.splitlines() if l.startswith("kerasxfer: error:")]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    import keras

    from kerasxfer.models.regnet import RegNet
    from tests.conftest import _write_image

    root = tmp_path_factory.mktemp("cli")
    # weights of another variant, and a text file posing as weights
    RegNet("regnetx004", include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(str(root / "x004.weights.h5"))
    (root / "not_weights.h5").write_text("hello")
    (root / "notes.txt").write_text("x")
    # a real (tiny) finished run, for the cases that point --out_dir at it
    p = run("scratch", "--image_size=8", "--epochs=1", "--widths=4", f"--out_dir={root / 'done'}")
    assert p.returncode == 0, p.stderr
    keras.backend.clear_session()
    (root / "empty_class" / "a").mkdir(parents=True)
    (root / "empty_class" / "b").mkdir(parents=True)
    _write_image(str(root / "empty_class" / "a" / "1.png"), 8, (1, 2, 3))
    (root / "single" / "only").mkdir(parents=True)
    for i in range(3):
        _write_image(str(root / "single" / "only" / f"{i}.png"), 8, (1, 2, 3))
    (root / "file.txt").write_text("x")
    for c in ("red", "blue"):  # a folder dataset, for the --out_dir inside it cases
        (root / "two" / c).mkdir(parents=True)
        for i in range(3):
            _write_image(str(root / "two" / c / f"{i}.png"), 8, (1, 2, i))
    return root


CASES = [
    ("scratch", ["--dataset={root}/does_not_exist"], "does not exist"),
    ("scratch", ["--dataset={root}/file.txt"], "is a file, not a folder"),
    ("scratch", ["--dataset={root}/empty_class"], "single class (a) (1 sub-folder(s) without images ignored: b)"),
    ("scratch", ["--dataset={root}/single"], "single class"),
    ("finetune", ["--backbone=regnetq007"], "not a known backbone: use one of these (RegNet: regnetx002, regnetx004"),
    ("finetune", ["--weights={root}/missing.h5"], "not a readable file"),
    ("finetune", ["--unfreeze_stages=7"], "from 0 to 4"),
    ("scratch", ["--image_size=0"], "out of range"),
    ("scratch", ["--val_fraction=1.5"], "between 0 and 1"),
    ("scratch", ["--epochs=-1"], "epochs"),
    ("scratch", ["--widths=a,b"], "comma-separated integers"),
    ("scratch", ["stray_argument"], "unexpected argument"),
    ("scratch", ["--batch_size=0"], "--batch_size=0 is out of range"),
    ("scratch", ["--lr=0"], "learning rate 0.0 must be a positive number"),
    ("scratch", ["--lr=nan"], "learning rate nan must be a positive number"),
    ("scratch", ["--dropout=1"], "--dropout=1.0 must be in [0, 1)"),
    ("scratch", ["--seed=-3"], "--seed=-3 is out of range"),
    ("scratch", ["--epochs=x"], "flag --epochs=x: invalid literal"),
    ("scratch", ["--no_such_flag=1"], "Unknown command line flag 'no_such_flag'"),
    ("finetune", ["--image_size=16", "--weights=none"], "too small for a RegNet"),
    ("finetune", ["--frozen_epochs=0", "--finetune_epochs=0", "--weights=none"], "every phase has 0 epochs"),
    ("finetune", ["--weights={root}/x004.weights.h5", "--image_size=32"], "does not fit regnetx002"),
    ("finetune", ["--weights={root}/not_weights.h5", "--image_size=32"], "not_weights.h5"),
    ("scratch", ["--out_dir={root}/notes.txt/run"], "is a file, not a folder"),
    (
        "scratch",
        ["--out_dir={root}/done", "--image_size=8", "--epochs=2", "--widths=4"],
        "holds a run made with other settings (phases.0.epochs: 1 there, 2 now)",
    ),
    ("pretrain", ["--image_size=16"], "too small for a RegNet"),
    ("scratch", ["--dataset=tfds:"], "needs a dataset name"),
    ("scratch", ["--mixup=-1"], "--mixup=-1.0 is out of range"),
    ("scratch", ["--augment=wild"], "flag --augment=wild: value should be one of"),
    ("finetune", ["--cache_features", "--augment=light", "--weights=none"], "--cache_features needs images"),
    ("scratch", ["--strategy=multi_worker", "--image_size=8"], "--strategy=multi_worker needs TF_CONFIG"),
    ("predict", ["--run={root}/does_not_exist", "--images={root}/notes.txt"], "does_not_exist"),
    ("predict", ["--run={root}/done", "--images={root}/missing.png"], "missing.png"),
    ("compare", ["--runs={root}/done"], "at least two"),
    ("scratch", ["--epochs=20000"], "use an integer from 0 to 2,000"),
    ("finetune", ["--finetune_epochs=100000000", "--weights=none"], "use an integer from 0 to 2,000"),
    ("scratch", ["--image_size=big"], "'big' is neither a whole number of pixels nor auto"),
    ("pretrain", ["--synthetic_train=100000000", "--image_size=64"], "the synthetic dataset does not fit"),
    ("study", ["--scratch_image_size=4"], "--scratch_image_size=4 is out of range"),
    ("bench", ["--jpeg_size=100000,100000"], "each from 8 to 10000"),
    ("bench", ["--sizes=100000"], "--sizes integers from 32 to 1024"),
    ("predict", ["--run={root}/done", "--images={root}/notes.txt", "--output={root}"], "is a folder: name a .csv"),
    ("scratch", ["--dataset={root}/two", "--out_dir={root}/two"], "is inside --dataset="),
    ("study", ["--dataset={root}/two", "--out_dir={root}/two/red/results"], "choose an --out_dir outside the dataset"),
    ("finetune", ["--dataset={root}/two/", "--out_dir={root}/two/blue"], "would be read as classes and images"),
    ("study", ["--executor=ray", "--ray_address=127.0.0.1:1"], "the Ray cluster at 127.0.0.1:1 could not be reached"),
    ("study", ["--executor=ray", "--cpus_per_run=64"], "no node of the Ray cluster has 64 CPU(s) and 0 GPU(s)"),
    ("study", ["--executor=ray", "--gpus_per_run=1"], "so every run would wait forever"),
    ("study", ["--executor=ray", "--cpus_per_run=nan"], "--cpus_per_run=nan must be a finite positive number"),
    ("study", ["--executor=ray", "--cpus_per_run=inf"], "--cpus_per_run=inf must be a finite positive number"),
    ("study", ["--executor=ray", "--gpus_per_run=inf"], "--gpus_per_run=inf must be a finite non-negative number"),
]


@pytest.mark.parametrize("module, args, message", CASES, ids=[c[2] for c in CASES])
def test_bad_input_one_line_exit_2_no_traceback(folders, tmp_path, module, args, message):
    out = tmp_path / "run"
    args = [a.format(root=folders) for a in args]
    if module not in ("predict", "bench") and not any(a.startswith("--out_dir=") for a in args):
        args.append(f"--out_dir={out}")
    before = _snapshot(folders)
    p = run(module, *args)
    assert p.returncode == 2, p.stderr
    lines = _lines(p.stderr)
    assert len(lines) == 1 and message in lines[0], p.stderr
    assert "Traceback" not in p.stderr
    assert not out.exists()  # nothing written before the input was checked
    assert _snapshot(folders) == before  # and no run directory (nor anything else) changed


def _snapshot(root):
    """Every file under ``root`` with its bytes."""
    return {os.path.join(d, f): open(os.path.join(d, f), "rb").read() for d, _, files in os.walk(root) for f in files}


def test_kerasxfer_command_lists_and_runs_subcommands(tmp_path):
    help_ = run("cli", "--help")
    assert help_.returncode == 0
    for name in ("study", "scratch", "finetune", "pretrain", "compare", "sweep", "lr-find", "repeat", "predict", "bench"):
        assert f"\n  {name} " in help_.stdout
    unknown = run("cli", "nope")
    assert unknown.returncode == 2 and _lines(unknown.stderr) == [
        "kerasxfer: error: unknown command 'nope': use one of study, scratch, finetune, pretrain, compare, sweep, "
        "lr-find, repeat, predict, bench (kerasxfer --help says what each does)."
    ]
    short = run("cli", "scratch", "--helpshort")
    flags_shown = {
        line.split()[0].rstrip(":").replace("[no]", "") for line in short.stdout.splitlines() if line.startswith("  --")
    }
    assert {
        "--epochs",
        "--widths",
        "--dataset",
        "--val_fraction",
        "--out_dir",
        "--overwrite",
        "--schedule",
        "--max_image_pixels",
    } <= flags_shown  # the shared flags too, not only the command's own
    ok = run("cli", "scratch", "--epochs=1", "--image_size=16", "--widths=8", f"--out_dir={tmp_path / 'o'}")
    assert ok.returncode == 0 and (tmp_path / "o" / "metrics.json").is_file(), ok.stderr[-2000:]


def test_paths_expand_the_home_folder(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "experiments.scratch", "--dataset=~/no-such-photos", f"--out_dir={tmp_path / 'o'}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env=dict(os.environ, HOME=str(tmp_path)),
    )
    assert p.returncode == 2
    assert _lines(p.stderr)[0].startswith(f"kerasxfer: error: --dataset='{tmp_path}/no-such-photos' is neither")


def test_verbosity_minus_one_keeps_only_warnings(tmp_path):
    quiet = run("scratch", "--epochs=1", "--image_size=16", "--widths=8", f"--out_dir={tmp_path / 'o'}", "--verbosity=-1")
    assert quiet.returncode == 0 and "[kerasxfer" not in quiet.stderr, quiet.stderr[-2000:]


def test_another_keras_backend_is_refused_in_one_sentence():
    """kerasxfer needs Keras' TensorFlow backend: KERAS_BACKEND=jax is refused on import and by the command."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": ROOT}
    p = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "scratch", "--epochs=1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in p.stderr.splitlines() if line.startswith("kerasxfer: error:")]
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert lines == [
        "kerasxfer: error: kerasxfer runs on Keras' TensorFlow backend, but KERAS_BACKEND='jax': unset it "
        "or set KERAS_BACKEND=tensorflow."
    ]
    p = subprocess.run([sys.executable, "-c", "import kerasxfer"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "ImportError: kerasxfer runs on Keras' TensorFlow backend" in p.stderr


def test_every_recipe_parameter_has_its_flag_and_every_help_text_its_option():
    """The flag -> recipe mapping is explicit and complete: a recipe parameter added without a flag, a flag that
    names no parameter, or help text for an option that no longer exists fails here (not silently at run time)."""
    import dataclasses
    import inspect

    from kerasxfer import config, optim_config, options, recipes
    from kerasxfer.commands import RECIPE_OPTIONS as RECIPE_FLAGS

    assert set(RECIPE_FLAGS) == set(recipes.RECIPES)
    for name, recipe in recipes.RECIPES.items():
        params = {n for n, p in inspect.signature(recipe).parameters.items() if p.kind is not p.VAR_KEYWORD}
        assert params - {"data", "out_dir"} == set(RECIPE_FLAGS[name]), name
        specs = options.recipe_options(recipe, RECIPE_FLAGS[name])
        defaults = {n: p.default for n, p in inspect.signature(recipe).parameters.items()}
        assert all(s.default == defaults[s.name] or s.kind == "list" for s in specs)  # the recipe's own defaults
    fields = {f.name for cls in (config.DataConfig, config.Experiment, optim_config.OptimConfig) for f in dataclasses.fields(cls)}
    params = {n for r in recipes.RECIPES.values() for n in inspect.signature(r).parameters}
    assert set(options.HELP) <= fields | params, set(options.HELP) - fields - params
    assert set(options.CHOICES) <= fields | params


def test_a_renamed_recipe_parameter_fails_loudly():
    from kerasxfer import options

    def scratch(num_epochs: int = 3, **common):  # "epochs" renamed
        return None

    with pytest.raises(KeyError, match="epochs"):
        options.recipe_options(scratch, ("epochs",))


@pytest.mark.parametrize("module", ["scratch", "finetune", "pretrain", "study", "sweep", "lr_find"])
def test_flag_defaults_are_the_config_and_recipe_defaults(module):
    """No default is restated: every derived flag's default is its field's or recipe parameter's (the study and
    sweep start from kerasxfer.recipes.COMMAND_DEFAULTS)."""
    code = f"""
import dataclasses, inspect
import experiments.{module}
from absl import flags
from kerasxfer import config, optim_config, recipes
F = flags.FLAGS
expected = {{}}
for cls in (config.DataConfig, config.Experiment, optim_config.OptimConfig):
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            expected[f.name] = f.default
for r in ("scratch", "finetune", "pretrain"):
    if r in "{module}" or ("{module}" != "pretrain" and r != "pretrain"):
        for n, p in inspect.signature(recipes.RECIPES[r]).parameters.items():
            if p.default is not inspect.Parameter.empty and not isinstance(p.default, tuple):
                expected.setdefault(n, p.default)
if "{module}" == "pretrain":
    expected.update(dataset="synthetic", dropout=0.0, epochs=8)
expected.update(recipes.COMMAND_DEFAULTS.get("{module}", {{}}))
bad = {{n: (F[n].default, v) for n, v in expected.items() if n in F and n not in ("out_dir", "folds", "fold", "min_steps")
        and F[n].default != v}}
assert not bad, bad
"""
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
