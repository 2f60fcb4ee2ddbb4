"""The ``kerasxfer`` console command: ``kerasxfer COMMAND [--flags]``, one subcommand per entry point.

    kerasxfer --help
    kerasxfer scratch --epochs=1 --image_size=16
    kerasxfer study --dataset=~/photos
    kerasxfer scratch --helpshort        # every flag of one command

Each subcommand runs the same code as ``python -m experiments.COMMAND`` (and
``make COMMAND``); installed, this folder is the package
``kerasxfer.experiments`` (setup.cfg), so no generic top-level package is
installed.
"""

import importlib
import importlib.util
import sys

#: Subcommand -> module of this package, in the order ``--help`` lists them.
COMMANDS = {
    "study": "study",
    "scratch": "scratch",
    "finetune": "finetune",
    "pretrain": "pretrain",
    "compare": "compare",
    "sweep": "sweep",
    "lr-find": "lr_find",
    "repeat": "repeat",
    "predict": "predict",
    "bench": "bench",
}


def _summary(module: str) -> str:
    spec = importlib.util.find_spec(f"{__package__}.{module}")
    with open(spec.origin, encoding="utf-8") as f:
        text = f.read()
    doc = text.split('"""', 2)[1] if text.lstrip().startswith('"""') else ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def usage() -> str:
    lines = ["usage: kerasxfer COMMAND [--flag=value ...]", "", "commands:"]
    lines += [f"  {name:<9} {_summary(module)}" for name, module in COMMANDS.items()]
    lines += ["", "kerasxfer COMMAND --helpshort lists the flags of a command; the README tells the whole story."]
    return "\n".join(lines)


def _print(text: str) -> None:
    try:
        print(text)
    except BrokenPipeError:  # kerasxfer --help | head
        sys.stderr.close()


def main(argv=None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help", "--helpshort"):
        _print(usage())
        sys.exit(0 if len(argv) >= 2 else 2)
    name = argv[1]
    if name not in COMMANDS:
        print(
            f"kerasxfer: error: unknown command {name!r}: use one of {', '.join(COMMANDS)} "
            "(kerasxfer --help says what each does).",
            file=sys.stderr,
        )
        sys.exit(2)
    # absl lists the key flags of the module named by argv[0] (--helpshort): name the subcommand's module.
    sys.argv = [f"{__package__}.{COMMANDS[name]}", *argv[2:]]
    try:
        module = importlib.import_module(f"{__package__}.{COMMANDS[name]}")
    except ImportError as e:  # no TensorFlow, or another Keras backend: kerasxfer's own one-sentence message
        if not str(e).startswith("kerasxfer"):
            raise
        print(f"kerasxfer: error: {e}", file=sys.stderr)
        sys.exit(2)
    module.run()


if __name__ == "__main__":
    main()
