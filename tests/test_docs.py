"""The docs: the options reference is generated from the commands and current, every flag has help, the site
builds with --strict (no dead link or anchor), and the README stays a front page that links into it."""

import json
import os
import re
import subprocess
import sys

import pytest

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


# ----------------------------------------------------------------- quoted numbers are generated
def test_the_pages_quote_the_demo_from_its_summary_not_typed_numbers():
    """README.md and docs/demo.md quote the demo's numbers as experiments.demo_quote renders them from the
    committed docs/demo-summary.json (make demo-quote writes both from a run's summary.json)."""
    from experiments import demo_quote

    with open(demo_quote.RECORD, encoding="utf-8") as f:
        rec = json.load(f)
    for name, path in demo_quote.PAGES.items():
        with open(path, encoding="utf-8") as f:
            page = f.read()
        assert demo_quote.block(page, name) == demo_quote.render(name, rec), f"{path}: run make demo && make demo-quote"
    readme = open(demo_quote.PAGES["readme"], encoding="utf-8").read()
    scratch = rec["runs"]["scratch"]["test_accuracy"]
    assert f"{100 * scratch:.2f} %" in demo_quote.block(readme, "readme") and rec["commit"] in readme


def test_demo_quote_renders_what_a_reports_summary_says(tmp_path):
    from experiments import demo_quote
    from kerasxfer import recipes
    from kerasxfer.reporting.compare_report import write_report
    from tests.test_report import fake_run

    scratch = fake_run(tmp_path, "scratch", recipes.scratch(epochs=3), [0.5, 0.9, 0.8], [True] * 57 + [False] * 3)
    transfer = fake_run(
        tmp_path,
        "transfer",
        recipes.finetune(frozen_epochs=1, finetune_epochs=2),
        [0.4, 0.6, 0.7],
        [True] * 50 + [False] * 10,
        seconds=20.0,
    )
    summary = write_report([str(scratch), str(transfer)], str(tmp_path / "report"))
    rec = demo_quote.record_of(json.loads(json.dumps(summary)), "abc1234", "2026-12-08")
    demo = demo_quote.render("demo", rec)
    assert "| scratch CNN | 90.00 % (epoch 2) | 95.00 % (" in demo
    assert "| ImageNet backbone, unfrozen | 70.00 % (epoch 3) | 83.33 % (" in demo
    assert "held-out test images" in demo and "2026-12-08, at commit abc1234" in demo
    head = summary["summary"][0]
    readme = demo_quote.render("readme", rec)
    assert readme.startswith("2-core machine it said (2026-12-08, at commit abc1234):")
    assert " ".join(line[2:] for line in readme.splitlines()[2:]) == head[: head.index(").") + 2]
    page = "before\n<!-- demo-quote:readme -->\nold 12.34 %\n<!-- /demo-quote:readme -->\nafter\n"
    assert (
        demo_quote.rewrite(page, "readme", rec)
        == f"before\n<!-- demo-quote:readme -->\n{readme}\n<!-- /demo-quote:readme -->\nafter\n"
    )
    with pytest.raises(ValueError, match="has no <!-- demo-quote:demo --> block"):
        demo_quote.rewrite(page, "demo", rec)
