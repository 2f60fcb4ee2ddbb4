"""Benchmarks: one JSON line per case, then a readable table.

    make bench                      # every section
    make bench-data                 # the input pipeline against the train step it feeds
    python -m experiments.bench --sections=data --image_size=64 --batch_size=32

Sections:

* ``machine``: float32 matmul GFLOP/s (2048x2048, ``tf.function``), the
  reference every other number is compared with in the same run;
* ``data``: a folder of photo-sized JPEGs (written once under
  ``--data_dir``): pipeline images/s in the first epoch (read, decode at
  reduced size, resize, cache) and in later epochs (from the cache), the
  same with full-size JPEG decoding, and next to them the train-step
  images/s of the default RegNet (frozen and unfrozen) at the same image
  size, with the ratio "cached pipeline / train step" (goal: at least 3);
* ``models``: train-step images/s of the scratch CNN, RegNet frozen (phase
  1) and unfrozen (phase 2, last 2 stages), and inference, at
  ``--image_size`` and at 224, with FLOPs per image and the fraction of the
  matmul peak each case reaches;
* ``modes``: at ``--image_size``, the scratch CNN and RegNet phase 2 in
  float32, with XLA (``jit_compile=True``), and in ``mixed_bfloat16`` (and
  ``mixed_float16`` on a GPU), each with its speed relative to float32;
* ``study`` (not in the default list: it trains whole studies): on generated
  photo-sized sets (``--study_sets``: the real 8x8 digits upscaled to 300 px,
  tinted and grained; ``N x C`` = N images of C classes, written once under
  ``runs/bench/``) and sets far from ImageNet (``--study_scans``: the same
  digits as dark, low-contrast greyscale 224 px scans with noise), the
  default ``make study`` wall time beside ``--exhaustive``'s
  (``--study_exhaustive``), their ratio and both verdicts, each study a
  fresh process as a user runs it; for each study every arm's pooled test
  accuracy and training fit, and scikit-learn's standardised probe on the
  pretrained backbone's features of the same folds (the reference the
  transfer arm must reach); and the unfrozen phase's train step
  (EfficientNet-Lite0 at 224, 4 stages) on the whole model and on cached
  activations.
"""

import json
import os

from absl import flags

from . import common
from .bench_study import executor_section, study_section

FLAGS = flags.FLAGS
common.define_command_flags("bench")


SECTIONS = ("machine", "data", "models", "modes", "inference", "study", "executor")


def _check():
    from kerasxfer.errors import UserError
    from kerasxfer.families import family_of

    bad = [s for s in FLAGS.sections if s not in SECTIONS]
    if bad:
        raise UserError(f"--sections has unknown section(s) {', '.join(bad)}: use {', '.join(SECTIONS)}.")
    for backbone in (FLAGS.backbone, *FLAGS.inference_backbones):
        family_of(backbone)  # one sentence when unknown
    for name, v, lo in (
        ("image_size", FLAGS.image_size, 32),
        ("batch_size", FLAGS.batch_size, 1),
        ("steps", FLAGS.steps, 1),
        ("num_images", FLAGS.num_images, 8),
    ):
        if v < lo:
            raise UserError(f"--{name}={v} is too small: use {lo} or more.")
    try:
        sizes = [int(s) for s in FLAGS.sizes]
        jpeg = [int(s) for s in FLAGS.jpeg_size]
    except ValueError:
        raise UserError("--sizes and --jpeg_size take comma-separated integers, e.g. --sizes=64,224.") from None
    if len(jpeg) != 2 or min(jpeg) < 8 or min(sizes) < 32 or max(jpeg) > 10_000 or max(sizes) > 1024:
        raise UserError("--jpeg_size needs height,width (each from 8 to 10000) and --sizes integers from 32 to 1024.")
    if FLAGS.image_size > 1024 or FLAGS.batch_size > 4096 or FLAGS.num_images > 100_000:
        raise UserError(
            "--image_size above 1024, --batch_size above 4096 or --num_images above 100000 would not fit "
            "a benchmark: choose smaller values."
        )
    return sizes, tuple(jpeg)


def _transfer(size):
    """The bench's transfer model at ``size`` px (random weights, TensorFlow's grouped convolutions)."""
    from kerasxfer.models import build_transfer_model
    from kerasxfer.models.fastconv import use_native_grouped_conv

    m = build_transfer_model(FLAGS.backbone, (size, size, 3), 10, weights=None)
    use_native_grouped_conv(m)
    return m


def _data_section(emit, jpeg_size, bs, steps):
    """The input pipeline (JPEG decode, cache) against the train steps it feeds."""
    import keras

    from kerasxfer import bench
    from kerasxfer.data.sources import list_images
    from kerasxfer.models import unfreeze

    root = bench.write_jpeg_folder(FLAGS.data_dir, FLAGS.num_images, jpeg_size)
    paths = []
    labels = []
    for c in sorted(d for d in os.listdir(root) if not d.startswith(".")):
        files = list_images(os.path.join(root, c))[0]
        paths += files
        labels += [int(c.replace("class", ""))] * len(files)
    mb = sum(os.path.getsize(p) for p in paths) / 1e6
    s = FLAGS.image_size
    reduced = bench.pipeline_rates(paths, labels, s, bs, min_side=True)
    full = bench.pipeline_rates(paths, labels, s, bs, min_side=False)
    m = _transfer(s)
    frozen = bench.train_step_rate(m, bs, steps)
    unfreeze(m, 2)
    unfrozen = bench.train_step_rate(m, bs, steps, lr=1e-5)
    common_ = {"image_size": s, "batch_size": bs, "jpegs": len(paths), "jpeg_hw": list(jpeg_size), "jpeg_mb": round(mb, 1)}
    emit(
        {
            "case": "pipeline epoch 1 (read+decode 1/8+resize+cache)",
            "images_per_s": round(reduced["first_epoch"], 1),
            **common_,
        }
    )
    emit({"case": "pipeline epoch 1, full-size JPEG decode", "images_per_s": round(full["first_epoch"], 1), **common_})
    emit({"case": "pipeline epochs 2-11 (from cache)", "images_per_s": round(reduced["cached_epochs"], 1), **common_})
    emit({"case": f"train step {FLAGS.backbone} frozen", "images_per_s": round(frozen, 1), **common_})
    emit({"case": f"train step {FLAGS.backbone} unfrozen (2 stages)", "images_per_s": round(unfrozen, 1), **common_})
    emit(
        {
            "case": "cached pipeline / fastest train step",
            "ratio": round(reduced["cached_epochs"] / max(frozen, unfrozen), 1),
            "goal": ">= 3",
        }
    )
    emit(
        {
            "case": "reduced-size JPEG decode speed-up (epoch 1)",
            "ratio": round(reduced["first_epoch"] / full["first_epoch"], 2),
        }
    )
    keras.backend.clear_session()


def _models_section(emit, sizes, peak, bs, steps):
    """Train and inference speed of the scratch CNN and the backbone per image size, and the cached phase 1."""
    import keras

    from kerasxfer import bench
    from kerasxfer.families import family_of
    from kerasxfer.models import build_scratch_cnn, freeze, unfreeze
    from kerasxfer.models.head import head_on, pooled_features

    for s in sizes:
        scratch = build_scratch_cnn((s, s, 3), 10)
        fl_s = bench.forward_flops(scratch)
        r = bench.train_step_rate(scratch, bs, steps)
        emit(_model_row("train scratch CNN", s, r, 3 * fl_s, peak))
        m = _transfer(s)
        fl = bench.forward_flops(m)
        emit(
            {
                "case": f"{FLAGS.backbone} forward GFLOP/image",
                "image_size": s,
                "gflop": round(fl / 1e9, 4),
                "train_step_gflop_estimate": round(3 * fl / 1e9, 4),
            }
        )
        freeze(m)
        r = bench.train_step_rate(m, bs, steps)
        emit(_model_row(f"train {FLAGS.backbone} frozen (phase 1)", s, r, fl, peak))  # backward of head only
        unfreeze(m, 2)
        r = bench.train_step_rate(m, bs, steps, lr=1e-5)
        emit(_model_row(f"train {FLAGS.backbone} unfrozen 2 stages (phase 2)", s, r, 3 * fl, peak))
        all_stages = len(family_of(FLAGS.backbone).stages)
        unfreeze(m, all_stages)
        r = bench.train_step_rate(m, bs, steps, lr=1e-5)
        emit(_model_row(f"train {FLAGS.backbone} unfrozen {all_stages} stages", s, r, 3 * fl, peak))
        infer = bench.inference_rate(m, bs, steps)
        emit(_model_row(f"inference {FLAGS.backbone}", s, infer, fl, peak))
        # Phase 1 with --cache_features: one forward pass per image (inference speed), then the head
        # trains on the features; without: the frozen train step every epoch.
        freeze(m)
        frozen = bench.train_step_rate(m, bs, steps)
        feats = keras.Input(pooled_features(m).shape[1:])
        head = keras.Model(feats, head_on(m, feats))
        head_rate = bench.train_step_rate(head, bs, steps)
        epochs = 10
        cached_s = 1.0 / infer + epochs / head_rate
        emit(
            {
                "case": f"phase 1 ({epochs} epochs) with cached features",
                "image_size": s,
                "head_train_images_per_s": round(head_rate, 1),
                "frozen_step_images_per_s": round(frozen, 1),
                "feature_pass_images_per_s": round(infer, 1),
                "speedup_vs_frozen_step": round((epochs / frozen) / cached_s, 1),
            }
        )
        keras.backend.clear_session()


def _modes_section(emit, bs, steps):
    """Precisions and XLA against float32, then TensorFlow's grouped convolution against stock Keras'."""
    import keras
    import tensorflow as tf

    from kerasxfer import bench
    from kerasxfer.models import build_scratch_cnn

    s = FLAGS.image_size
    precisions = ["float32", "mixed_bfloat16"] + (["mixed_float16"] if tf.config.list_physical_devices("GPU") else [])
    for label, build, lr in (
        ("scratch CNN", lambda: build_scratch_cnn((s, s, 3), 10), 1e-3),
        (f"{FLAGS.backbone} unfrozen 2 stages", lambda: _unfrozen(_transfer(s)), 1e-5),
    ):
        base = None
        for precision, jit in [(p, False) for p in precisions] + [("float32", True)]:
            keras.mixed_precision.set_global_policy(precision)
            m = build()
            n = steps if (precision == "float32" and not jit) else min(steps, 6)
            r = bench.train_step_rate(m, bs, n, lr=lr, jit_compile=jit)
            base = base or r
            emit(
                {
                    "case": f"train {label} {precision}{' + XLA' if jit else ''}",
                    "image_size": s,
                    "images_per_s": round(r, 1),
                    "vs_float32": round(r / base, 2),
                }
            )
            keras.mixed_precision.set_global_policy("float32")
            keras.backend.clear_session()

    # Keras' own grouped convolution (XLA-compiled even without jit_compile) against TensorFlow's kernel
    from kerasxfer.models import use_stock_grouped_conv

    s = FLAGS.image_size
    m = _unfrozen(_transfer(s))
    native = bench.train_step_rate(m, bs, min(steps, 6), lr=1e-5)
    use_stock_grouped_conv(m)
    stock = bench.train_step_rate(m, bs, 2, warmup=1, lr=1e-5)
    emit(
        {
            "case": f"train {FLAGS.backbone} unfrozen 2 stages, grouped conv: native vs stock Keras",
            "image_size": s,
            "native_images_per_s": round(native, 1),
            "stock_images_per_s": round(stock, 2),
            "speedup": round(native / stock, 1),
        }
    )
    keras.backend.clear_session()


def main(argv):
    sizes, jpeg_size = _check()  # before TensorFlow loads
    from kerasxfer import bench
    from kerasxfer.rundir import environment

    env = environment()
    rows = []
    out = open(FLAGS.output, "w", encoding="utf-8") if FLAGS.output else None

    def emit(row):
        rows.append(row)
        line = json.dumps(row)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    emit(
        {
            "case": "environment",
            **{k: env[k] for k in ("tensorflow", "keras", "processor", "cpu_count", "devices")},
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        }
    )
    bs, steps = FLAGS.batch_size, FLAGS.steps
    peak = bench.matmul_gflops()
    emit({"case": "matmul float32 2048^2", "gflops": round(peak, 1)})
    if "data" in FLAGS.sections:
        _data_section(emit, jpeg_size, bs, steps)
    if "models" in FLAGS.sections:
        _models_section(emit, sizes, peak, bs, steps)
    if "modes" in FLAGS.sections:
        _modes_section(emit, bs, steps)
    if "inference" in FLAGS.sections:
        _inference_section(emit, bs)

    if "study" in FLAGS.sections:
        study_section(emit, bs)

    if "executor" in FLAGS.sections:
        executor_section(emit)

    print("\n| case | images/s | other |\n|---|---:|---|")
    for row in rows[1:]:
        other = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("case", "images_per_s"))
        print(f"| {row['case']} | {row.get('images_per_s', '')} | {other} |")
    if out:
        out.close()


def _inference_section(emit, bs):
    """Each --inference_backbones at its native size: kerasxfer's predict engines against Keras as saved."""
    import keras

    from kerasxfer import bench
    from kerasxfer.families import family_of
    from kerasxfer.models import build_transfer_model

    for backbone in FLAGS.inference_backbones:
        size = family_of(backbone).native[backbone]
        r = bench.inference_engines(build_transfer_model(backbone, (size, size, 3), 10, weights=None), bs, FLAGS.readings)
        rates = {k: round(v, 1) for k, v in r["images_per_s"].items()}
        row = {
            "case": f"inference {backbone} (best of {FLAGS.readings})",
            "image_size": size,
            "batch_size": bs,
            "images_per_s": rates["tensorflow"],
            "auto_engine": r["auto_engine"],
            "predict_auto_images_per_s": rates[r["auto_engine"]],
            **{f"{k}_images_per_s": v for k, v in rates.items()},
        }
        row.update(
            {f"predict_auto_vs_{k}": round(rates[r["auto_engine"]] / v, 2) for k, v in rates.items() if k != r["auto_engine"]}
        )
        row["max_probability_difference"] = {k: float(f"{v:.2g}") for k, v in r["max_probability_difference"].items()}
        emit(row)
        keras.backend.clear_session()


def _unfrozen(model):
    from kerasxfer.models import unfreeze

    unfreeze(model, 2)
    return model


def _model_row(case, size, rate, flops_per_image, peak_gflops):
    achieved = rate * flops_per_image / 1e9
    return {
        "case": case,
        "image_size": size,
        "images_per_s": round(rate, 1),
        "gflops_achieved": round(achieved, 1),
        "fraction_of_matmul_peak": round(achieved / peak_gflops, 3),
    }


# --helpshort lists the shared flags too (they are defined in experiments.common).
flags.adopt_module_key_flags(common)


def run():
    """The command: `python -m experiments.bench` or `kerasxfer bench`."""
    common.run_main(main)


if __name__ == "__main__":
    run()
