"""Experiment, its sections and the recipes: validation, round trips, the family table (no training)."""

import copy
import dataclasses
import os
import subprocess
import sys

import pytest

from kerasxfer import families, recipes
from kerasxfer.config import DataConfig, Experiment, ModelConfig, OptimConfig
from kerasxfer.errors import UserError
from kerasxfer.phases import parse_trainable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_library_layers_below_training_import_no_tensorflow():
    code = (
        "import sys, kerasxfer.rundir, kerasxfer.config, kerasxfer.recipes, kerasxfer.families, kerasxfer.figures\n"
        "import kerasxfer.reporting.compare_report, kerasxfer.reporting.sweep_report, kerasxfer.reporting.verdict\n"
        "import kerasxfer.commands, kerasxfer.datasets, kerasxfer.api, kerasxfer.reporting.html, kerasxfer.studies\n"
        "kerasxfer.commands.study_from(kerasxfer.commands.resolve('study', {}).values)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "assert not bad, bad\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("recipe", sorted(recipes.RECIPES))
def test_recipes_round_trip_through_config_json(recipe, tmp_path):
    exp = (
        recipes.RECIPES[recipe](out_dir=str(tmp_path / recipe)).validate()
        if recipe != "finetune"
        else recipes.finetune(out_dir=str(tmp_path / recipe), weights="none").validate()
    )
    d = exp.to_dict()
    assert Experiment.from_dict(d) == exp
    assert Experiment.from_dict(d).to_dict() == d
    assert exp.name == recipe and exp.total_epochs > 0


def test_finetune_recipe_is_frozen_then_unfrozen_with_the_given_settings(tmp_path):
    kw = dict(frozen_epochs=3, finetune_epochs=4, lr=2e-3, finetune_lr=3e-5, unfreeze_stages=1, weights="none")
    exp = recipes.finetune(frozen_head="epochs", out_dir=str(tmp_path), **kw)
    assert [(p.name, p.epochs, p.lr, p.trainable, p.solve) for p in exp.phases] == [
        ("frozen", 3, 2e-3, "head", False),
        ("unfrozen", 4, 3e-5, "stages:1", False),
    ]
    assert exp.model.weights is None and exp.model.is_transfer and exp.model.num_stages == 4
    assert exp.uses_cached_features(exp.phases[0]) and not exp.uses_cached_features(exp.phases[1])
    # the default solves the frozen phase: one entry on the epoch axis, never raised by min_steps
    solved = recipes.finetune(out_dir=str(tmp_path), **kw)
    assert [(p.name, p.epochs, p.solve) for p in solved.phases] == [("frozen", 1, True), ("unfrozen", 4, False)]
    assert [p.epochs for p in solved.with_min_steps(100, 300).phases] == [1, 75]  # 4 steps an epoch
    assert recipes.finetune(out_dir=str(tmp_path), **{**kw, "frozen_epochs": 0}).phases[0].epochs == 0
    solved.validate()
    with pytest.raises(UserError, match="--frozen_head"):
        recipes.finetune(out_dir=str(tmp_path), frozen_head="lbfgs")
    bad = copy.deepcopy(solved)
    bad.phases[1].solve = True  # only a head-only phase can be solved
    with pytest.raises(UserError, match="--frozen_head=epochs"):
        bad.validate()


def test_from_dict_fills_missing_fields_with_defaults_and_refuses_unknown_ones():
    exp = Experiment.from_dict({"name": "x", "out_dir": "o", "data": {"image_size": 32}, "phases": []})
    assert exp.data == DataConfig(image_size=32) and exp.model == ModelConfig() and exp.optim == OptimConfig()
    with pytest.raises(UserError, match="unknown OptimConfig field.*momentum.*--overwrite"):
        Experiment.from_dict({"name": "x", "out_dir": "o", "optim": {"momentum": 0.1}})


def _exp(tmp_path, **changes):
    exp = recipes.finetune(weights="none", out_dir=str(tmp_path / "run"))
    for path, value in changes.items():
        obj = exp
        *parents, leaf = path.split("__")
        for p in parents:
            obj = obj.phases[int(p[5:])] if p.startswith("phase") else getattr(obj, p)
        setattr(obj, leaf, value)
    return exp


BAD = [
    ({"data__image_size": 4}, "--image_size=4 is out of range"),
    ({"data__batch_size": 0}, "--batch_size=0 is out of range"),
    ({"data__val_fraction": 0.0}, "strictly between 0 and 1"),
    ({"data__on_bad_image": "ignore"}, "--on_bad_image='ignore' is unknown: use skip, error"),
    ({"data__augment": "wild"}, "--augment='wild' is unknown: use none, light, strong"),
    ({"data__mixup": 11.0}, "--mixup=11.0 is out of range"),
    ({"data__split_seed": -1}, "--split_seed=-1 is out of range"),
    ({"data__train_fraction": 0.0}, "--train_fraction=0.0 must be above 0 and at most 1"),
    ({"data__train_fraction": 1.5}, "--train_fraction=1.5 must be above 0 and at most 1"),
    ({"max_train_seconds": 0.0}, "the time budget 0.0 s must be a positive number"),
    ({"data__dataset": "tfds:"}, "needs a dataset name"),
    ({"data__dataset": "no/such/folder"}, "does not exist"),
    ({"model__backbone": "regnetq007"}, "not a known backbone: use one of these (RegNet: regnetx002, regnetx004"),
    ({"data__image_size": 16}, "too small for a RegNet backbone: use 32"),
    ({"model__weights": "missing.h5"}, "not a readable file"),
    ({"model__dropout": 1.0}, "--dropout=1.0 must be in [0, 1)"),
    ({"model__calibrate_bn": "sometimes"}, "--calibrate_bn='sometimes' is unknown"),
    ({"model__kind": "vit"}, "model kind 'vit' is unknown"),
    ({"optim__optimizer": "lion"}, "--optimizer='lion' is unknown: use adam, adamw, sgd"),
    ({"optim__weight_decay": -1.0}, "--weight_decay=-1.0 must be in [0, 1)"),
    ({"strategy": "cluster"}, "--strategy='cluster' is unknown"),
    ({"precision": "int8"}, "--precision='int8' is unknown"),
    ({"phase1__trainable": "stages:5"}, "from 0 to 4 (the backbone has 4 stages)"),
    ({"phase0__epochs": -1}, "the frozen phase has -1 epochs"),
    ({"phase1__lr": 0.0}, "learning rate 0.0 must be a positive number"),
    ({"seed": 2**31}, "--seed=2147483648 is out of range"),
    ({"out_dir": ""}, "--out_dir is empty"),
]


@pytest.mark.parametrize("changes, message", BAD, ids=[b[1] for b in BAD])
def test_each_bad_field_is_one_sentence_naming_it(tmp_path, changes, message):
    with pytest.raises(UserError) as e:
        _exp(tmp_path, **changes).validate()
    assert message in str(e.value)
    assert str(e.value).count("\n") == 0


def test_scratch_checks_its_own_fields(tmp_path):
    with pytest.raises(UserError, match="comma-separated integers"):
        recipes.scratch(widths=["a", "b"])
    for widths, convs in (([], 2), ([0], 2), ([8], 0), ([8], -1)):
        with pytest.raises(UserError):
            recipes.scratch(widths=widths, convs_per_block=convs, out_dir=str(tmp_path)).validate()
    with pytest.raises(UserError, match="from 0 to 0"):
        parse_trainable("stages:1", recipes.scratch().model.num_stages)


def test_every_phase_with_zero_epochs_is_refused(tmp_path):
    with pytest.raises(UserError, match="every phase has 0 epochs"):
        recipes.finetune(weights="none", frozen_epochs=0, finetune_epochs=0, out_dir=str(tmp_path)).validate()


def test_family_table_names_the_published_models():
    """The variants against sources outside the code under test: RegNet's design space as published (Radosavovic
    et al. 2020; tf-keras' RegNetX002 .. RegNetY320), the EfficientNet-Lite references in tests/oracles, and
    keras.applications' own constructors."""
    import keras

    sizes = ("002", "004", "006", "008", "016", "032", "040", "064", "080", "120", "160", "320")
    assert families.REGNET.variants == tuple(f"regnet{xy}{s}" for xy in "xy" for s in sizes)
    oracles = os.path.join(ROOT, "tests", "oracles")  # copied from ../shared/oracles (its README says how made)
    published = sorted(f.split("_reference")[0] for f in os.listdir(oracles) if f.endswith("_reference.json"))
    assert list(families.EFFICIENTNET_LITE.variants) == published
    from kerasxfer.models import keras_apps_specs

    for name, (_, constructor, *_) in keras_apps_specs.VARIANTS.items():
        assert callable(getattr(keras.applications, constructor)), name


def test_family_table_is_consistent_with_its_builder_module():
    from kerasxfer.models import efficientnet_lite, keras_apps_specs, regnet

    assert families.REGNET.variants == regnet.VARIANTS
    assert families.EFFICIENTNET_LITE.variants == tuple(efficientnet_lite.VARIANTS)
    assert families.all_backbones() == (regnet.VARIANTS + families.EFFICIENTNET_LITE.variants + tuple(keras_apps_specs.VARIANTS))
    assert len(set(families.all_backbones())) == len(families.all_backbones())  # no name in two families
    for name, family in families.FAMILIES.items():
        assert family.name == name and len(set(family.variants)) == len(family.variants)
        assert set(family.native) == set(family.variants), name  # every variant has its native size
        assert isinstance(family.load(), families.FamilyModule), name
    assert families.family_of("regnety016") is families.REGNET
    assert families.family_of("efficientnet_lite0") is families.EFFICIENTNET_LITE
    assert families.family_of("resnet50").title == "ResNet"
    assert recipes.finetune(backbone="efficientnet_lite0").model.num_stages == 8
    assert recipes.finetune(backbone="mobilenetv3small").model.num_stages == 4
    with pytest.raises(UserError, match="not a known backbone"):
        families.family_of("resnet51")


def test_variant_wrappers_have_real_docstrings():
    from kerasxfer.models import regnet

    doc = regnet.RegNetY004.__doc__
    assert "[1, 3, 6, 6] blocks of [48, 104, 208, 440] channels" in doc and "squeeze-and-excitation" in doc
    assert "squeeze" not in regnet.RegNetX002.__doc__
    assert "weights:" in doc and "regnety004" in doc


def test_every_config_field_is_documented_by_a_default():
    # from_dict relies on every field having a default except the experiment's name and folder
    for cls in (DataConfig, ModelConfig, OptimConfig):
        for f in dataclasses.fields(cls):
            assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING, f.name
