"""Quote the demo's numbers in README.md and docs/demo.md from the demo's own summary.json.

    make demo && make demo-quote        # or: python -m experiments.demo_quote --summary=runs/demo/report/summary.json

The numbers a page quotes from a run are never typed: this keeps what the
pages need of the demo's ``summary.json`` in ``docs/demo-summary.json`` (with
the commit and the date it ran at) and rewrites the blocks between
``<!-- demo-quote:NAME -->`` and ``<!-- /demo-quote:NAME -->`` from it.
``tests/test_docs.py`` fails while a page's block differs from what this
renders from the committed ``docs/demo-summary.json``.
"""

import datetime
import json
import os
import re
import subprocess
import sys
import textwrap

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD = os.path.join(ROOT, "docs", "demo-summary.json")
PAGES = {"readme": os.path.join(ROOT, "README.md"), "demo": os.path.join(ROOT, "docs", "demo.md")}
#: the reference study this project reproduces (an ImageNet RegNet on its own dataset; published validation numbers)
REFERENCE = {
    "scratch": "98.99 % (epoch 10)",
    "control-pretrained": "95.56 % (epoch 10)",
    "transfer": "98.33 % (epoch 7)",
    "control": "—",
}
ROWS = (
    ("scratch", "scratch CNN", 0),
    ("control-pretrained", "ImageNet backbone, frozen (head solved)", 0),
    ("transfer", "ImageNet backbone, unfrozen", -1),
    ("control", "random backbone, frozen (head solved)", 0),
)


def record_of(summary: dict, commit: str, date: str) -> dict:
    """What the pages quote of a demo's summary.json: its sentences and each arm's numbers."""
    runs = {
        r["name"]: {
            "test_accuracy": r["test_accuracy"],
            "test_interval": list(r["test_interval"]),
            "phases": [{"best_val_accuracy": p["best_val_accuracy"], "best_epoch": p["best_epoch"]} for p in r["phases"]],
            "train_seconds": r["train_seconds"],
        }
        for r in summary["runs"]
    }
    base = summary["verdict"]["baseline"]
    return {
        "commit": commit,
        "date": date,
        "sentences": list(summary["summary"]),
        "runs": runs,
        "baseline": {"accuracy": base["accuracy"], "class_name": base["class_name"]},
        "num_images": summary["verdict"]["num_images"],
    }


def _first_sentence(text: str) -> str:
    """The headline's first sentence: up to its closing parenthesis and full stop."""
    end = text.find(").")
    return text[: end + 2] if end >= 0 else text


def _control_sentence(rec: dict) -> str:
    return next((s for s in rec["sentences"] if "random-backbone control" in s), "")


def _quote(text: str) -> list:
    return ["> " + line for line in textwrap.wrap(text, 72, break_on_hyphens=False)]


def _pct(v: float) -> str:
    return f"{100 * v:.2f} %"


def render(name: str, rec: dict) -> str:
    """The block ``name`` (readme, demo) of the pages, from the record ``rec``."""
    when = f"{rec['date']}, at commit {rec['commit']}"
    head, control = _first_sentence(rec["sentences"][0]), _control_sentence(rec)
    if name == "readme":
        lines = [f"2-core machine it said ({when}):", ""]
        lines += _quote(head + (" [...] " + control if control else ""))
        return "\n".join(lines)
    rows = []
    for arm, label, phase in ROWS:
        r = rec["runs"].get(arm)
        if r is None:
            continue
        p = r["phases"][phase]
        lo, hi = r["test_interval"]
        rows.append(
            f"| {label} | {_pct(p['best_val_accuracy'])} (epoch {p['best_epoch']}) | {_pct(r['test_accuracy'])} "
            f"({100 * lo:.1f}–{100 * hi:.1f} %) | {REFERENCE[arm]} |"
        )
    b = rec["baseline"]
    rows.append(f"| majority class ('{b['class_name']}') | | {_pct(b['accuracy'])} | — |")
    lines = [
        f"What it measured (`make demo` on a fresh clone, {when}; best val_acc per phase, then the best "
        f"checkpoint on the {rec['num_images']} held-out test images with its 95 % Wilson interval), next to the "
        "reference study this project reproduces (an ImageNet RegNet on its own dataset; validation numbers):",
        "",
        "| arm | kerasxfer demo: best val_acc | test accuracy | reference study |",
        "|---|---|---|---|",
        *rows,
        "",
        "The report's summary:",
        "",
    ]
    for sentence in rec["sentences"][:2] + ([control] if control and control not in rec["sentences"][:2] else []):
        lines += _quote(sentence) + [">"]
    return "\n".join(lines[:-1])


def rewrite(page: str, name: str, rec: dict) -> str:
    """``page`` with its block ``name`` rendered from ``rec`` (one sentence when the page has no such block)."""
    pattern = re.compile(rf"(<!-- demo-quote:{name} -->\n)(.*?)(\n<!-- /demo-quote:{name} -->)", re.S)
    if not pattern.search(page):
        raise ValueError(f"the page has no <!-- demo-quote:{name} --> block: add one where the quote belongs.")
    return pattern.sub(lambda m: m.group(1) + render(name, rec) + m.group(3), page)


def block(page: str, name: str) -> str:
    """The text of ``page``'s block ``name`` as it stands."""
    m = re.search(rf"<!-- demo-quote:{name} -->\n(.*?)\n<!-- /demo-quote:{name} -->", page, re.S)
    return m.group(1) if m else ""


_SUMMARY = flags.DEFINE_string("summary", "runs/demo/report/summary.json", "The demo report's summary.json to quote.")
_COMMIT = flags.DEFINE_string("commit", None, "The commit the demo ran at (default: git rev-parse --short HEAD).")


def main(argv):
    del argv
    if not os.path.isfile(_SUMMARY.value):
        sys.exit(f"demo-quote: {_SUMMARY.value} does not exist: run make demo first, or pass --summary=<a summary.json>.")
    with open(_SUMMARY.value, encoding="utf-8") as f:
        summary = json.load(f)
    commit = (
        _COMMIT.value
        or subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    )
    date = datetime.date.fromtimestamp(os.path.getmtime(_SUMMARY.value)).isoformat()
    rec = record_of(summary, commit, date)
    with open(RECORD, "w", encoding="utf-8") as f:
        json.dump(rec, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for name, path in PAGES.items():
        with open(path, encoding="utf-8") as f:
            page = f.read()
        with open(path, "w", encoding="utf-8") as f:
            f.write(rewrite(page, name, rec))
        print(f"{path}: the demo's numbers quoted from {_SUMMARY.value}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
