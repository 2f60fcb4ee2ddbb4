"""Every flag reachable from make, and docs that name only what exists (issue 18).

The flags of each command are read from the command itself (the absl flags
its modules define); each must reach the command through the make variable
of the same name in capitals, checked with ``make -n``.  The tables of make
targets and variables (``docs/make.md``) are checked against the Makefile both ways.
"""

import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = {
    "scratch": "scratch",
    "finetune": "finetune",
    "pretrain": "pretrain",
    "compare": "compare",
    "sweep": "sweep",
    "study": "study",
    "lr-find": "lr_find",
    "repeat": "repeat",
    "predict": "predict",
    "bench": "bench",
}


def command_flags(module):
    """The names of the flags ``experiments.<module>`` defines, read in a fresh process (the docs' listing)."""
    from experiments.options_reference import flags_of

    return [f["name"] for f in flags_of(module)]


def make_n(makefile, target, *assignments):
    p = subprocess.run(
        ["make", "-n", "-s", "-f", makefile, target, "VENV=/nonexistent", *assignments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1]


def missing_variables(makefile, target, module):
    names = command_flags(module)
    assert len(names) >= 2  # the listing found the command's flags (compare has two)
    return [n for n in names if f"--{n}=7" not in make_n(makefile, target, f"{n.upper()}=7").split()]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_flag_of_a_command_has_its_make_variable(target):
    assert missing_variables("Makefile", target, TARGETS[target]) == []
    assert "--" not in make_n("Makefile", target).split("experiments.")[-1]  # nothing passed when nothing is set


def test_the_check_fails_when_a_variable_is_dropped(tmp_path):
    with open(os.path.join(ROOT, "Makefile")) as f:
        text = f.read()
    broken = tmp_path / "Makefile"
    broken.write_text(text.replace("val_fraction test_fraction", "test_fraction", 1))
    assert missing_variables(str(broken), "scratch", "scratch") == ["val_fraction"]


def test_overwrite_and_demo_directories():
    assert "--overwrite=1" in make_n("Makefile", "finetune", "OVERWRITE=1").split()
    demo = subprocess.run(["make", "-n", "-s", "demo", "VENV=/nonexistent"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "--out_dir=runs/demo" in demo  # the demo's own folder: make scratch/finetune defaults stay free


def _make_page_section(title_start, title_end=None):
    with open(os.path.join(ROOT, "docs", "make.md"), encoding="utf-8") as f:
        text = f.read()
    return text[text.index(title_start) : text.index(title_end) if title_end else None]


def _makefile():
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as f:
        return f.read()


def test_the_targets_table_matches_the_makefile():
    table = _make_page_section("# Makefile targets", "Every flag of a command has a make variable")
    in_readme = set(re.findall(r"^\| `make ([a-z-]+)`", table, re.M))
    phony = re.search(r"^\.PHONY:(.*?)(?<!\\)$", _makefile(), re.M | re.S).group(1)
    in_makefile = set(phony.replace("\\", " ").split())
    assert in_readme == in_makefile, in_readme ^ in_makefile


def test_the_variables_table_matches_the_makefile():
    table = _make_page_section("Every flag of a command has a make variable")
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    in_readme = {v for row in rows for v in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}
    mk = _makefile()
    passed = set(re.findall(r"\$\(call flag,([A-Z0-9_]+),", mk))
    for group in re.findall(r"\$\(call flags,([a-z0-9_ \\\n]+)\)", mk):
        passed |= {name.upper() for name in group.replace("\\", " ").split()}
    settings = set(re.findall(r"^([A-Z_]+) \?=", mk, re.M)) | {"BENCH_FLAGS"}
    assert passed - in_readme == set(), "variables missing from docs/make.md's table"
    assert in_readme - passed - settings == set(), "docs/make.md names variables the Makefile does not have"
