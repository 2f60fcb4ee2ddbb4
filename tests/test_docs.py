"""The docs: the options reference is generated from the commands and current, every flag has help, the site
builds with --strict (no dead link or anchor), and the README stays a front page that links into it."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments import options_reference  # noqa: E402


def test_the_options_page_is_what_the_commands_define_now():
    listed = {c: options_reference.flags_of(c) for c in options_reference.COMMANDS}
    with open(options_reference.PAGE, encoding="utf-8") as f:
        page = f.read()
    assert page == options_reference.render(listed), "docs/options.md is out of date: run make options-reference"
    # independent of the renderer: flags the command line really accepts are on the page, under their command
    study = page[page.index("\n## study\n") : page.index("\n## scratch\n")]
    for flag in ("--folds", "--exhaustive", "--minutes", "--executor", "--cpus_per_run", "--control"):
        assert f"`{flag}`" in study, flag
    predict = page[page.index("\n## predict\n") : page.index("\n## pretrain\n")]
    assert "`--engine`" in predict and "`--export`" in predict
    assert options_reference.undocumented(listed) == []


def test_a_flag_without_help_is_named():
    listed = {
        "study": [
            {"name": "folds", "help": "K-fold.", "type": "string", "default": "auto"},
            {"name": "mystery", "help": "  ", "type": "int", "default": "1"},
        ]
    }
    assert options_reference.undocumented(listed) == ["study --mystery"]


def test_the_site_builds_strictly(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "site" / "options.html").is_file() and (tmp_path / "site" / "contributing.html").is_file()


def test_the_readme_is_a_front_page_whose_links_lead_somewhere():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert len(readme.splitlines()) <= 300
    targets = re.findall(r"\]\(((?:docs/|CONTRIBUTING)[^)#]*)(?:#[^)]*)?\)", readme)
    assert len(targets) >= 10  # the depth is one link away
    for t in targets:
        assert os.path.isfile(os.path.join(ROOT, t)), t
    for command in ("make demo", "make test"):  # the two commands come first
        assert command in readme[: readme.index("## ", readme.index("## ") + 1)]
