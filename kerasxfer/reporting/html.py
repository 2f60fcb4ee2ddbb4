"""report.html: the report as one self-contained page (pictures embedded), readable on a phone.

Rendered from report.md (the verdict first, the side-by-side table, every
run's section, the curves and confusion matrices), then each run's
per-class precision and recall and its top losses.  The Markdown is the
small subset :mod:`kerasxfer.reporting.compare_report` writes: headings,
bullets, pipe tables, paragraphs, images, ``**bold**``, ``*italic*`` and
`` `code` ``.  No TensorFlow, no template engine.
"""

from __future__ import annotations

import base64
import html
import logging
import os
import re
import stat

log = logging.getLogger("kerasxfer")

STYLE = """
body{font:16px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:72rem;padding:1rem;
color:#1b1b1b;background:#fff}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.3rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1.1rem}
.verdict{background:#eef6ee;border-left:.35rem solid #2e7d32;padding:.6rem 1rem;font-size:1.1rem}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}
img{max-width:100%;height:auto;display:block;margin:.5rem 0}
code{background:#f3f3f3;padding:0 .2rem;word-break:break-all}
"""


def _inline(text: str) -> str:
    """One line of the Markdown subset as HTML: escaped first; ``\\X`` (a user's string, see
    :func:`kerasxfer.reporting.text.shown`) is the character X, never formatting."""
    literal = []

    def keep(m):
        literal.append(html.escape(m.group(1)))
        return f"\x00{len(literal) - 1}\x00"

    out = html.escape(re.sub(r"\\([\\`*\[\]|<>!#])", keep, text.replace("\x00", " ")), quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"<em>\1</em>", out)
    return re.sub("\x00(\\d+)\x00", lambda m: literal[int(m.group(1))], out)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_bytes(path: str):
    """The bytes of ``path`` when it is a picture kerasxfer could have drawn: a regular file (not a symlink,
    not a FIFO or device) that is a PNG by its first bytes; else None and the reason."""
    try:
        st = os.lstat(path)
    except OSError:
        return None, "is missing"
    if stat.S_ISLNK(st.st_mode):
        return None, "is a symlink, not a figure kerasxfer drew: left out"
    if not stat.S_ISREG(st.st_mode):
        return None, "is not a regular file: left out"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, f"could not be read ({e.strerror}): left out"
    if not data.startswith(PNG_SIGNATURE):
        return None, "is not a PNG: left out"
    return data, ""


def _image(path: str, alt: str) -> str:
    """``path`` embedded (a figure the report wrote: see :func:`markdown_to_html`'s allow-list); only a
    regular PNG file is, anything else (a symlink to /etc/passwd, say) is named and left out."""
    data, why = _png_bytes(path)
    if data is None:
        if why != "is missing":
            log.warning("report.html: %s %s", path, why)
        return f"<p><em>{html.escape(alt)}: {html.escape(os.path.basename(path))} {html.escape(why)}</em></p>"
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _table(lines: list) -> str:
    rows = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in lines]
    head, body = rows[0], rows[2:]  # rows[1] is the |---| line
    out = ["<div class='scroll'><table><thead><tr>"] + [f"<th>{_inline(c)}</th>" for c in head] + ["</tr></thead><tbody>"]
    for r in body:
        out += ["<tr>"] + [f"<td>{_inline(c)}</td>" for c in r] + ["</tr>"]
    return "".join(out + ["</tbody></table></div>"])


def markdown_to_html(md: str, folder: str, figures=()) -> str:
    """The body of ``md``; the first bullet is marked as the verdict.

    A picture line is embedded only when it names one of ``figures``, the
    files the report itself wrote into ``folder`` (an allow-list: nothing a
    line of text names, wherever it points, is ever read); any other picture
    line is shown as text.
    """
    out, lines, i, bullets = [], md.splitlines(), 0, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out.append(_table(lines[i:j]))
            i = j
            continue
        if m := re.match(r"(#{1,3}) (.*)", line):
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif (m := re.match(r"!\[([^\]]*)\]\(([^)]+)\)$", line.strip())) and m.group(2) in figures:
            out.append(_image(os.path.join(folder, m.group(2)), m.group(1)))
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                cls = " class='verdict'" if bullets == 0 else ""
                items.append(f"<li{cls}>{_inline(lines[i][2:])}</li>")
                bullets += 1
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def _per_class(summaries) -> list:
    """Each run's per-class precision, recall and F1 on the test split (a cross-validated arm: over every
    pooled test image), and its top losses (a cross-validated arm: each fold's)."""
    out = ["<h2>Per class and top losses</h2>"]
    for s in summaries:
        rows = ["| class | precision | recall | F1 | test images |", "|---|---|---|---|---|"]
        for name, c in s.per_class.items():  # names as the report shows them (records: shown() on reading)
            rows.append(f"| {name} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |")
        out += [f"<h3>{html.escape(s.name)}</h3>", _table(rows)]
        if s.folds:
            out.append(f"<p>{len(s.folds)} folds pooled: {sum(c['support'] for c in s.per_class.values())} test images.</p>")
        for where, caption in _top_losses_of(s):
            out.append(_image(os.path.join(where, "top_losses.png"), caption))
    return out


def _top_losses_of(s) -> list:
    """``(run folder, caption)`` of the top-losses pictures of ``s``: its own, or each of its folds'."""
    if not s.folds:
        return [(s.dir, f"{s.name}: top losses (test)")]
    return [(f.dir, f"{s.name}, fold {f.fold}: top losses of the {f.num_test} images it tested") for f in s.folds]


def render(md: str, folder: str, summaries, figures=()) -> str:
    """The whole page: report.md's content (embedding only ``figures``, the pictures the report wrote into
    ``folder``), then per-class scores and top losses of each run."""
    title = html.escape(re.sub(r"\\(.)", r"\1", md.splitlines()[0].lstrip("# ").strip()) if md else "kerasxfer report")
    body = [markdown_to_html(md, folder, figures), *_per_class(summaries)]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{title}</title><style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
