"""The report shows a user's strings as text and embeds only the pictures it wrote (no TensorFlow, no training)."""

import base64
import logging
import os
import re

import numpy as np
import pytest

from kerasxfer import fsio, recipes
from kerasxfer.reporting.compare_report import write_report
from kerasxfer.reporting.html import markdown_to_html
from kerasxfer.reporting.text import shown
from tests.test_report import fake_run

SECRET = "kerasxfer-secret-7f3a9c: this file must never be inside a report"


def _runs(tmp_path, classes, names=("scratch", "finetune")):
    """Two finished runs on ``classes``; run k's class i has test precision 0.5 + 0.1 i and recall 0.25 + 0.1 k."""
    a = fake_run(tmp_path, names[0], recipes.scratch(epochs=3), [0.5, 0.9, 0.8], [True] * 57 + [False] * 3, classes=classes)
    b = fake_run(
        tmp_path,
        names[1],
        recipes.finetune(frozen_epochs=2, finetune_epochs=2, weights="none", frozen_head="epochs"),
        [0.4, 0.6, 0.7, 0.75],
        [True] * 40 + [False] * 20,
        seconds=20.0,
        classes=classes,
    )
    for k, d in enumerate((a, b)):
        m = fsio.read_json(f"{d}/metrics.json")
        m["test"]["per_class"] = {
            c: {"precision": 0.5 + 0.1 * i, "recall": 0.25 + 0.1 * k, "f1": 0.4, "support": 20 + i} for i, c in enumerate(classes)
        }
        fsio.write_json(f"{d}/metrics.json", m)
    return [str(a), str(b)]


@pytest.mark.parametrize("brk", ["\n", "\u2028", "\r", "\u2029"])
def test_a_label_cannot_put_a_file_into_the_report(tmp_path, brk):
    """The leak of the fourth round: a label that starts a line of report.md with a picture of a system file."""
    secret = tmp_path / "secret.png"
    secret.write_text(SECRET)
    evil = f"z{brk}![leak]({secret}){brk}z"
    runs = _runs(tmp_path / "runs", (evil, "b", f"c{brk}# heading"))
    # the "test split holds no image of ..." sentence names classes too
    for d in runs:
        data = fsio.read_json(f"{d}/data.json")
        fsio.write_json(f"{d}/data.json", {**data, "classes_missing": {"val": [evil]}})
    write_report(runs, str(tmp_path / "report"))
    page = (tmp_path / "report" / "report.html").read_text()
    md = (tmp_path / "report" / "report.md").read_text()
    for text in (page, md):
        assert SECRET not in text and base64.b64encode(SECRET.encode()).decode()[:24] not in text
    assert page.count("data:image/png;base64,") == 4  # verdict, curves, learning rates, confusion: nothing else
    pictures = [line for line in md.splitlines() if line.strip().startswith("![")]
    assert pictures == [
        "![each arm's test accuracy with its interval, and the majority-class baseline](verdict.png)",
        "![curves](curves.png)",
        "![learning rate](lr.png)",
        "![confusion matrices](confusion.png)",
    ]
    assert not any(line.startswith("# heading") for line in md.splitlines())
    assert "\u2028" not in md and "\u2029" not in md and "\r" not in md
    assert "z \\!\\[leak\\]" in md  # the label is there, as text
    assert "z ![leak](" in page  # and the page shows it as the characters it is


def test_markdown_special_characters_in_names_stay_text(tmp_path):
    runs = _runs(tmp_path / "runs", ("a|b", "**bold**", "<script>x</script>"), names=("scr`atch", "fine*tune"))
    write_report(runs, str(tmp_path / "report"))
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<strong>bold</strong>" not in page and "**bold**" in page
    assert "scr`atch" in page and "fine*tune" in page
    # a class name holding " | " stays one cell of the per-run tables: every row has the header's cells
    md = (tmp_path / "report" / "report.md").read_text()
    for block in re.findall(r"((?:^\|.*\n)+)", md, flags=re.M):
        rows = [r for r in block.splitlines() if not r.startswith("|---")]
        counts = {len(re.split(r"(?<!\\)\|", r)) for r in rows}
        assert len(counts) == 1, block


def test_a_picture_the_report_did_not_write_is_never_read(tmp_path):
    (tmp_path / "other.png").write_bytes(b"\x89PNG\r\n\x1a\n not ours")
    (tmp_path / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\n ours")
    body = markdown_to_html("![a](other.png)\n\n![b](curves.png)\n\n![c](../curves.png)", str(tmp_path), figures=("curves.png",))
    assert body.count("data:image/png;base64,") == 1
    assert base64.b64encode(b"\x89PNG\r\n\x1a\n ours").decode() in body
    assert "other.png" in body and base64.b64encode(b"\x89PNG\r\n\x1a\n not ours").decode() not in body


@pytest.mark.parametrize("kind", ["symlink", "fifo", "not a png", "symlink to a png"])
def test_a_run_folders_top_losses_is_embedded_only_when_it_is_a_png_file(tmp_path, kind, caplog):
    """compare embeds each run's top_losses.png: a symlink to a system file (even one named .png), a FIFO, or
    a file that is not a PNG by its bytes is named and left out with one log line, never read into the page."""
    runs = _runs(tmp_path / "runs", ("a", "b", "c"))
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    png = tmp_path / "real.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + SECRET.encode())
    target = os.path.join(runs[0], "top_losses.png")
    if os.path.lexists(target):
        os.remove(target)
    if kind == "symlink":
        os.symlink(secret, target)
    elif kind == "symlink to a png":
        os.symlink(png, target)
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        with open(target, "w") as f:
            f.write(SECRET)
    with caplog.at_level(logging.WARNING, logger="kerasxfer"):
        write_report(runs, str(tmp_path / "report"))  # a FIFO opened for reading would hang here
    page = (tmp_path / "report" / "report.html").read_text()
    assert SECRET not in page and base64.b64encode(SECRET.encode()).decode()[:24] not in page
    assert base64.b64encode(b"\x89PNG\r\n\x1a\n" + SECRET.encode()).decode()[:24] not in page
    assert "top_losses.png" in page and "left out" in page
    assert len([r for r in caplog.records if "top_losses.png" in r.getMessage() and "left out" in r.getMessage()]) == 1


@pytest.mark.parametrize("classes", [("cat", "dog", "bird"), ("1", "2", "3")])
def test_the_per_class_table_finds_each_class_by_its_name(tmp_path, classes):
    """The page used to look per-class scores up by index (0.000 for every named class, integer labels shifted
    by one); now they come from the run's per-image test predictions, each row under its class's name, as
    scikit-learn computes them (not from metrics.json, which the runs of this test fill with other numbers)."""
    from sklearn.metrics import precision_recall_fscore_support

    runs = _runs(tmp_path / "runs", classes)
    write_report(runs, str(tmp_path / "report"))
    page = (tmp_path / "report" / "report.html").read_text()
    for d in runs:
        t = fsio.read_json(f"{d}/metrics.json")["test"]
        p, r, f1, n = precision_recall_fscore_support(t["labels"], t["predictions"], labels=[0, 1, 2], zero_division=0)
        for i, c in enumerate(classes):
            assert f"<td>{c}</td><td>{p[i]:.3f}</td><td>{r[i]:.3f}</td><td>{f1[i]:.3f}</td><td>{n[i]}</td>" in page


def test_a_class_named_like_a_formula_is_drawn_as_text():
    """matplotlib parsed ``$\\frac{$`` as mathtext and crashed after training."""
    from kerasxfer import figures

    png = figures.confusion_png([[1, 0], [0, 1]], ["$\\frac{$", "b$"], "$\\frac{$ run")
    assert png.startswith(b"\x89PNG")


def test_shown_is_one_line_and_escapes_only_markdown():
    assert shown("golden_retriever") == "golden_retriever"
    assert shown("a\nb\u2028c\x00d\u202ee") == "a b c d e"
    assert shown("![x](y)") == "\\!\\[x\\](y)"
    assert shown(3) == "3"


def test_a_report_leaves_the_users_matplotlib_as_it_was(tmp_path):
    """figures.py switched the backend and turned text.parse_math off globally on import, which changed a
    notebook user's own plots and printed log-axis ticks as raw '$\\mathdefault{10^{-1}}$'."""
    import matplotlib

    before = dict(matplotlib.rcParams)
    runs = _runs(tmp_path / "runs", ("$\\frac{$", "b", "c"))
    write_report(runs, str(tmp_path / "report"))
    assert dict(matplotlib.rcParams) == before
    assert (tmp_path / "report" / "lr.png").read_bytes().startswith(b"\x89PNG")


def test_log_axis_ticks_are_typeset_and_a_users_dollar_is_text():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from kerasxfer import figures

    lrs = [10.0**k for k in np.linspace(-6, 0, 30)]
    result = {"lrs": lrs, "losses": [1.0] * 30, "smoothed": [1.0] * 30, "valley": 1e-3, "minimum_over_10": 1e-4}
    fig = figures.lr_find_figure(result, "$\\frac{$ run")
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    ticks = [t for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and all(t.get_parse_math() and "10^{" in t.get_text() for t in ticks)  # drawn as 10 to a power
    assert ax.get_title() == "\\$\\frac{\\$ run"  # escaped: typeset as the characters it is
