"""Write the options reference of the docs (docs/options.md) from the flags every command defines.

    make options-reference            # or: python -m experiments.options_reference

Each command's flags are read from the command itself (the absl flags its
modules define, one fresh process per command, as ``make`` would run it), so
the page cannot drift from the code: ``tests/test_docs.py`` fails while the
committed page differs from what this writes, or when a flag has no help.
"""

import json
import os
import subprocess
import sys

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: every entry point with flags (``experiments.<name>``; its make target and subcommand spell ``_`` as ``-``),
#: in the order a user meets them
COMMANDS = ("study", "scratch", "finetune", "sweep", "compare", "predict", "pretrain", "repeat", "lr_find", "bench")
PAGE = os.path.join(ROOT, "docs", "options.md")
_LIST = (
    "import importlib, json, sys; importlib.import_module('experiments.' + sys.argv[1]); "
    "from absl import flags; print(json.dumps(sorted(("
    "{'name': f.name, 'help': f.help or '', 'type': f.flag_type(), 'default': f.default_as_str or ''} "
    "for m, fl in flags.FLAGS.flags_by_module_dict().items() if m.startswith('experiments') for f in fl), "
    "key=lambda d: d['name'])))"
)


def flags_of(command: str) -> list:
    """The flags ``python -m experiments.<command>`` defines: name, help, type, default."""
    p = subprocess.run(
        [sys.executable, "-c", _LIST, command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
        timeout=300,
    )
    if p.returncode != 0:
        raise RuntimeError(f"listing the flags of experiments.{command} failed: {p.stderr[-2000:]}")
    seen, out = set(), []
    for f in json.loads(p.stdout):
        if f["name"] not in seen:  # a flag defined by two modules of one command is listed once
            seen.add(f["name"])
            out.append(f)
    return out


def undocumented(listed: dict) -> list:
    """``command --flag`` for every flag of ``listed`` (``{command: flags_of(command)}``) without help."""
    return [f"{c} --{f['name']}" for c, fl in listed.items() for f in fl if not f["help"].strip()]


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render(listed: dict | None = None) -> str:
    """The page's Markdown; ``listed``: ``{command: flags_of(command)}`` when the caller has it."""
    listed = listed or {c: flags_of(c) for c in COMMANDS}
    out = [
        "# Options reference",
        "",
        "Every flag of every command, generated from the commands themselves by `make options-reference` "
        "(do not edit by hand). On the command line: `kerasxfer COMMAND --flag=value` or "
        "`python -m experiments.COMMAND --flag=value`; through make, the variable of the same name in "
        "capitals (`make study FOLDS=3`, see [Makefile targets and variables](make.md)); from Python, "
        "the same names without `--` (`kerasxfer.study(..., folds=3)`) for study, scratch, finetune and "
        "sweep. A boolean flag `--x` is turned off with `--nox`.",
        "",
    ]
    out += ["Commands: " + ", ".join(f"[{c.replace('_', '-')}](#{c.replace('_', '-')})" for c in COMMANDS), ""]
    for command in COMMANDS:
        name = command.replace("_", "-")
        out += [
            f"## {name}",
            "",
            f"`make {name}`, `kerasxfer {name}`, `python -m experiments.{command}`: {len(listed[command])} flags.",
            "",
            "| flag | type | default | what it does |",
            "|---|---|---|---|",
        ]
        for f in listed[command]:
            default = _cell(f["default"])
            default = default[1:-1] if len(default) > 1 and default[0] == default[-1] == "'" else default
            out.append(f"| `--{f['name']}` | {f['type']} | {default and '`' + default + '`'} | {_cell(f['help'])} |")
        out.append("")
    return "\n".join(out)


def main(argv):
    del argv
    listed = {c: flags_of(c) for c in COMMANDS}
    missing = undocumented(listed)
    if missing:
        raise app.UsageError(
            f"these flags have no help: {', '.join(missing)}: give each a help text where it "
            "is defined, then run make options-reference again."
        )
    text = render(listed)
    with open(flags.FLAGS.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {flags.FLAGS.output}")


if __name__ == "__main__":
    # defined here, not at import: the tests import this module beside commands whose --output is theirs
    flags.DEFINE_string("output", PAGE, "Where to write the page.")
    app.run(main)
