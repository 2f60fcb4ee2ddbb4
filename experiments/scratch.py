"""Train the compact CNN from random weights (the "scratch" arm of the study).

    make scratch
    python -m experiments.scratch --dataset=digits --epochs=10 --out_dir=runs/scratch

Expected on 2 CPU cores with the defaults (digits, 64x64, batch 32, 10
epochs): about 2 minutes, best val_accuracy about 0.98-0.99.
"""

from absl import flags

from experiments import common
from kerasxfer.config import Experiment, ModelConfig, PhaseConfig

FLAGS = flags.FLAGS
common.define_common_flags("runs/scratch")
flags.DEFINE_integer("epochs", 10, "Training epochs.")
flags.DEFINE_list("widths", ["32", "64", "128"], "Filters of each conv block (each block halves the resolution).")
flags.DEFINE_integer("convs_per_block", 2, "Conv-BN-ReLU layers per block.")


def make_experiment() -> Experiment:
    try:
        widths = [int(w) for w in FLAGS.widths]
    except ValueError:
        from kerasxfer.errors import UserError

        raise UserError(f"--widths={','.join(FLAGS.widths)} must be comma-separated integers, e.g. 32,64,128.") from None
    return Experiment(
        name="scratch",
        out_dir=FLAGS.out_dir,
        data=common.data_config(),
        model=ModelConfig(kind="scratch", widths=widths, convs_per_block=FLAGS.convs_per_block, dropout=FLAGS.dropout),
        phases=[PhaseConfig(name="scratch", epochs=FLAGS.epochs, lr=FLAGS.lr, trainable="all")],
        seed=FLAGS.seed,
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
