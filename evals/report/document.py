"""A small report document model rendered to Markdown and to one self-contained HTML file.

A report is a title plus sections; a section holds blocks (paragraphs, tables, figures, code, notes
about missing inputs). The Markdown links figures by relative path (the PNGs sit beside it); the HTML
embeds every figure as a base64 data URI, so the one file opens anywhere, and carries a small script
that records on load how many figures decoded (`<body data-figures="loaded/total">`), which the
headless-browser test reads.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import os
from pathlib import Path
from typing import Sequence, Union


@dataclasses.dataclass
class Paragraph:
    text: str


@dataclasses.dataclass
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[object]]
    caption: str = ""


@dataclasses.dataclass
class Figure:
    path: Path            # a PNG on disk
    caption: str


@dataclasses.dataclass
class Code:
    text: str


@dataclasses.dataclass
class Missing:
    """A part of the report whose inputs are not there: say what is missing instead of failing."""
    what: str


Block = Union[Paragraph, Table, Figure, Code, Missing]


@dataclasses.dataclass
class Section:
    title: str
    blocks: list[Block] = dataclasses.field(default_factory=list)

    def add(self, *blocks: Block) -> "Section":
        self.blocks.extend(blocks)
        return self


@dataclasses.dataclass
class Report:
    title: str
    intro: str = ""
    sections: list[Section] = dataclasses.field(default_factory=list)

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]


def fmt(value: object) -> str:
    """Table cell text: floats with 4 significant digits, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def _md_cell(value: object) -> str:
    return fmt(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(report: Report, base_dir: Path) -> str:
    """Markdown with figure links relative to `base_dir` (where report.md is written)."""
    out = [f"# {report.title}", ""]
    if report.intro:
        out += [report.intro, ""]
    for section in report.sections:
        out += [f"## {section.title}", ""]
        for b in section.blocks:
            if isinstance(b, Paragraph):
                out += [b.text, ""]
            elif isinstance(b, Missing):
                out += [f"> **Not available:** {b.what}", ""]
            elif isinstance(b, Code):
                out += ["```", b.text.rstrip("\n"), "```", ""]
            elif isinstance(b, Table):
                if b.caption:
                    out += [f"*{b.caption}*", ""]
                out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
                out.append("|" + "---|" * len(b.headers))
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
                out.append("")
            elif isinstance(b, Figure):
                rel = os.path.relpath(Path(b.path).resolve(), base_dir.resolve())
                out += [f"![{b.caption}]({rel})", "", f"*{b.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
     color:#1b1f24;line-height:1.45}
h1{border-bottom:2px solid #ddd;padding-bottom:.3em}h2{margin-top:2em;border-bottom:1px solid #eee}
table{border-collapse:collapse;margin:.6em 0 1.2em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f4f6f8}td{font-variant-numeric:tabular-nums}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.9em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.85em}
.missing{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em .8em}
.caption{color:#555;font-style:italic}
"""

_LOAD_CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-figures', ok + '/' + imgs.length);
});
</script>"""


def _data_uri(path: Path) -> str | None:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def to_html(report: Report) -> str:
    """One self-contained HTML page (figures embedded)."""
    e = html.escape
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(report.title)}</title><style>{_CSS}</style></head><body>", f"<h1>{e(report.title)}</h1>"]
    if report.intro:
        out.append(f"<p>{e(report.intro)}</p>")
    toc = "".join(f'<li><a href="#s{i}">{e(s.title)}</a></li>' for i, s in enumerate(report.sections))
    out.append(f"<ol>{toc}</ol>")
    for i, section in enumerate(report.sections):
        out.append(f'<h2 id="s{i}">{e(section.title)}</h2>')
        for b in section.blocks:
            if isinstance(b, Paragraph):
                out.append(f"<p>{e(b.text)}</p>")
            elif isinstance(b, Missing):
                out.append(f'<p class="missing"><b>Not available:</b> {e(b.what)}</p>')
            elif isinstance(b, Code):
                out.append(f"<pre>{e(b.text)}</pre>")
            elif isinstance(b, Table):
                if b.caption:
                    out.append(f'<p class="caption">{e(b.caption)}</p>')
                head = "".join(f"<th>{e(fmt(h))}</th>" for h in b.headers)
                body = "".join("<tr>" + "".join(f"<td>{e(fmt(c))}</td>" for c in row) + "</tr>" for row in b.rows)
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif isinstance(b, Figure):
                uri = _data_uri(b.path)
                if uri is None:
                    out.append(f'<p class="missing"><b>Figure missing:</b> {e(str(b.path))}</p>')
                else:
                    out.append(f'<figure><img src="{uri}" alt="{e(b.caption)}">'
                               f"<figcaption>{e(b.caption)}</figcaption></figure>")
    out += [_LOAD_CHECK, "</body></html>"]
    return "\n".join(out) + "\n"


def write_report(report: Report, out_dir: Path) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` into out_dir atomically; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (("report.md", to_markdown(report, out_dir)), ("report.html", to_html(report))):
        path = out_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        paths.append(path)
    return paths[0], paths[1]
