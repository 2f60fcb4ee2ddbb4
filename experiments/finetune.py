"""Transfer a RegNet: phase 1 with the backbone frozen, phase 2 with its last stages unfrozen.

    make finetune                 # ImageNet weights (downloaded once; see README for offline)
    make finetune WEIGHTS=none    # random backbone
    python -m experiments.finetune --backbone=regnetx002 --weights=none \
        --frozen_epochs=10 --finetune_epochs=10 --unfreeze_stages=2 --out_dir=runs/finetune

Expected on 2 CPU cores with the defaults (digits, 64x64, batch 32,
RegNetX002, 10 + 10 epochs, random backbone): about 3 minutes.  From a
*random* backbone the frozen phase is a probe of random features and the
unfrozen phase does the learning; with pretrained weights phase 1 already
transfers.
"""

from absl import flags

from experiments import common
from kerasxfer.config import Experiment, ModelConfig, PhaseConfig

FLAGS = flags.FLAGS
common.define_common_flags("runs/finetune")
flags.DEFINE_string("backbone", "regnetx002", "RegNet variant, regnetx002 ... regnety320.")
flags.DEFINE_string(
    "weights", "imagenet",
    "Backbone weights: 'imagenet' (official keras-applications file, downloaded once into the Keras "
    "cache), 'none' (random), or the path of a weights file (.h5 from keras-applications or a "
    "kerasxfer .weights.h5).",
)
flags.DEFINE_integer("frozen_epochs", 10, "Phase 1 epochs (backbone frozen).")
flags.DEFINE_integer("finetune_epochs", 10, "Phase 2 epochs (last stages unfrozen).")
flags.DEFINE_float("finetune_lr", 1e-5, "Phase 2 learning rate.")
flags.DEFINE_bool(
    "cache_features", None,
    "Phase 1 trains the head on backbone features computed once per image (the same result, many times "
    "faster). Default: on unless --augment or --mixup/--cutmix change the images every epoch.",
)
flags.DEFINE_integer("unfreeze_stages", 2, "How many of the 4 backbone stages phase 2 unfreezes (BatchNorm stays frozen).")


def make_experiment() -> Experiment:
    weights = None if FLAGS.weights.lower() in ("none", "") else FLAGS.weights
    return Experiment(
        name="finetune",
        out_dir=FLAGS.out_dir,
        data=common.data_config(),
        model=ModelConfig(kind="transfer", backbone=FLAGS.backbone.lower(), weights=weights, dropout=FLAGS.dropout),
        phases=[
            PhaseConfig(name="frozen", epochs=FLAGS.frozen_epochs, lr=FLAGS.lr, trainable="head"),
            PhaseConfig(
                name="unfrozen", epochs=FLAGS.finetune_epochs, lr=FLAGS.finetune_lr,
                trainable=f"stages:{FLAGS.unfreeze_stages}",
            ),
        ],
        seed=FLAGS.seed,
        cache_features=FLAGS.cache_features,
        deterministic=FLAGS.deterministic,
        precision=FLAGS.precision,
        jit_compile=FLAGS.jit_compile,
        strategy=FLAGS.strategy,
    )


def main(argv):
    exp = make_experiment().validate()  # before TensorFlow loads: a bad flag is answered at once
    from kerasxfer.training import run_experiment

    run_experiment(exp, verbose=FLAGS.verbose, overwrite=FLAGS.overwrite)


if __name__ == "__main__":
    common.run_main(main)
