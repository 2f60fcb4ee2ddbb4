"""Classify images with a trained run, or export it for serving.

    make predict RUN=runs/finetune IMAGES=photo.jpg,more_photos/
    python -m experiments.predict --run=runs/finetune --images=a.jpg,folder/ --top_k=3 --output=preds.csv
    python -m experiments.predict --run=runs/finetune --export=saved_model   # or tflite, onnx

One line per image on stdout: the path, then the top-k classes with their
probabilities; files that cannot be read are listed with the reason and the
others go on.  ``--output`` writes the same as CSV or JSON (by extension).
The exit code is non-zero only when no image at all could be classified.
Expected: about 5 s start-up, then hundreds of images per second on 2 CPU cores.
"""

import csv
import os
import sys

from absl import flags

from kerasxfer.errors import UserError, printable

from . import common

FLAGS = flags.FLAGS
common.define_command_flags("predict")


ENGINE_WORDS = {
    "tensorflow": "tensorflow (TensorFlow graph, BatchNorm folded into the convolutions)",
    "tflite": "tflite (TensorFlow Lite interpreter, XNNPACK)",
    "onnxruntime": "onnxruntime (ONNX Runtime)",
}


def _write_output(path, preds, top_k):
    from kerasxfer import fsio

    if path.lower().endswith(".json"):
        rows = [
            {"source": printable(p.source), "top": [{"class": c, "probability": pr} for c, pr in p.top], "error": p.error}
            for p in preds
        ]
        fsio.write_json(path, rows)
        return
    header = ["source"] + [f"{k}{i + 1}" for i in range(top_k) for k in ("class", "prob")] + ["error"]
    with fsio.atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for p in preds:
            cells = [x for c, pr in p.top for x in (c, f"{pr:.6f}")]
            cells += [""] * (2 * top_k - len(cells))
            w.writerow([printable(p.source)] + cells + [p.error or ""])


def rejoin_commas(parts: list, most: int = 8) -> list:
    """--images split at every comma: put back together the pieces of a file name that holds commas (up to
    ``most`` commas in one name; a piece that exists on its own is taken as it is, so this stays linear)."""
    out, i = [], 0
    while i < len(parts):
        j = next(
            (
                j
                for j in range(i + 2, min(len(parts), i + most + 1) + 1)
                if not os.path.exists(parts[i]) and os.path.exists(",".join(parts[i:j]))
            ),
            i + 1,
        )
        out.append(",".join(parts[i:j]))
        i = j
    return out


def _print(p) -> None:
    if p.error:
        print(f"{printable(p.source)}\tERROR: {p.error}", flush=True)
    else:
        print(printable(p.source) + "\t" + "\t".join(f"{c} {pr:.4f}" for c, pr in p.top), flush=True)


def _check_flags() -> None:
    """Refuse a flag combination in one sentence before any model loads."""
    if bool(FLAGS.run) == bool(FLAGS.model):
        raise UserError("pass exactly one of --run=RUN_DIR or --model=FILE.keras.")
    if FLAGS.top_k < 1:
        raise UserError(f"--top_k={FLAGS.top_k} must be 1 or more.")
    if FLAGS.batch_size < 1:
        raise UserError(f"--batch_size={FLAGS.batch_size} must be 1 or more.")
    if FLAGS.output and os.path.isdir(FLAGS.output):
        raise UserError(
            f"--output={FLAGS.output!r} is a folder: name a .csv or .json file, e.g. "
            f"{os.path.join(FLAGS.output, 'predictions.csv')}."
        )
    if FLAGS.output and not FLAGS.output.lower().endswith((".csv", ".json")):
        raise UserError(f"--output={FLAGS.output!r} must end in .csv or .json.")


def main(argv):
    from kerasxfer.inference import Classifier, export, study_model

    _check_flags()
    run = study_model(FLAGS.run) if FLAGS.run else None  # a study's folder: the model it hands over (final/)
    if run:
        clf = Classifier.from_run(run, batch_size=FLAGS.batch_size, engine=FLAGS.engine)
    else:
        if not FLAGS.class_names:
            raise UserError("--model needs --class_names=a,b,c (in the model's output order).")
        clf = Classifier.from_model(FLAGS.model, FLAGS.class_names, batch_size=FLAGS.batch_size, engine=FLAGS.engine)

    if FLAGS.export:
        from kerasxfer import rundir
        from kerasxfer.inference import EXPORT_FILES

        out = os.path.join(run or os.path.dirname(os.path.abspath(FLAGS.model)), "export")
        rundir.claim_output_folder(out, EXPORT_FILES, "export", FLAGS.overwrite, label=f"the export folder {out!r}")
        with rundir.locked(out):  # a second export of the same run waits its turn: one sentence
            path = export(clf, out, FLAGS.export)
        print(f"wrote {path}")
        return 0

    if not FLAGS.images:
        raise UserError("--images is empty: pass image files or folders, e.g. --images=photo.jpg,folder/.")
    images = rejoin_commas(FLAGS.images)
    missing = [p for p in images if not os.path.exists(p)]
    from kerasxfer.inference import Prediction

    preds = []  # one small record per image; the images themselves are held one batch at a time
    for p in clf.predict_iter([p for p in images if p not in missing], top_k=FLAGS.top_k):
        preds.append(p)
        _print(p)
    for p in (Prediction(p, [], error="file not found") for p in missing):
        preds.append(p)
        _print(p)
    if FLAGS.output:
        _write_output(FLAGS.output, preds, min(FLAGS.top_k, len(clf.class_names)))
    good = sum(p.error is None for p in preds)
    print(f"classified {good} of {len(preds)} inputs", file=sys.stderr)
    if FLAGS.verbose and clf.engine:
        print(f"engine: {ENGINE_WORDS[clf.engine]}", file=sys.stderr)
    if not preds:
        raise UserError(
            f"no image could be classified: {', '.join(FLAGS.images)} holds no files: pass image files "
            "or folders that contain images."
        )
    if good == 0:
        first = next(p for p in preds if p.error)
        more = f" (and {len(preds) - 1} more, listed above)" if len(preds) > 1 else ""
        raise UserError(
            f"no image could be classified: {printable(first.source)}: {first.error}{more}: check the paths and the files."
        )
    return 0


# --helpshort lists the shared flags too (they are defined in experiments.common).
flags.adopt_module_key_flags(common)


def run():
    """The command: `python -m experiments.predict` or `kerasxfer predict`."""
    common.run_main(main)


if __name__ == "__main__":
    run()
