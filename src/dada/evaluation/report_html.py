"""``report.html``: one self-contained page per evaluation (``dada eval``) and per comparison
(``dada compare``), to open in any browser or send by mail.

The tables are those of ``results.md`` / ``comparison.md`` (converted with Python-Markdown's ``tables``
extension); the figures (per-class IoU chart, depth-range chart, training curves, the qualitative grid,
predictions and depth maps) are embedded as base64 PNG ``data:`` URIs. No script, no stylesheet or font
from the network: the page needs nothing but itself.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from dada.io import now_utc, write_text

REPORT_NAME = "report.html"
#: Order of the figures on the page (by their key in ``results.json``'s ``figures``), then the rest.
FIGURE_ORDER = ("per-class IoU", "mIoU by depth range", "training curves", "qualitative grid")

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; margin: 2em auto;
       max-width: 1400px; padding: 0 1.5em; color: #1d2330; background: #ffffff; line-height: 1.45; }
h1 { border-bottom: 3px solid #3b6bd6; padding-bottom: .3em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #d5dae3; padding-bottom: .2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; display: block; overflow-x: auto; }
th, td { border: 1px solid #c9cfdb; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #eef2fa; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #f8f9fc; }
code { background: #f0f2f6; padding: 1px 4px; border-radius: 3px; font-size: 0.9em; }
figure { margin: 1.2em 0; }
img { max-width: 100%; }
figure img { border: 1px solid #d5dae3; }
figcaption { color: #4a5264; font-size: 0.9em; margin-top: .3em; }
.thumbs { display: flex; flex-wrap: wrap; gap: 12px; }
.thumbs figure { margin: 0; flex: 0 1 320px; }
footer { margin-top: 3em; color: #6b7385; font-size: 0.8em; }
"""


def markdown_to_html(text: str) -> str:
    """Our Markdown (headings, lists, pipe tables, ``code``, **bold**) → HTML."""
    import markdown

    return markdown.markdown(text, extensions=["tables"], output_format="html")


def image_data_uri(path: str | os.PathLike) -> str | None:
    """A PNG file as a ``data:image/png;base64,…`` URI; None when the file is missing."""
    path = Path(path)
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def figure_html(caption: str, path: str | os.PathLike) -> str:
    uri = image_data_uri(path)
    if uri is None:
        return f"<p><em>{html.escape(caption)}: {html.escape(str(path))} is missing</em></p>"
    return (f'<figure><img src="{uri}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def embed_local_images(body: str, base_dir: Path) -> str:
    """Replace ``<img src="relative.png">`` (from Markdown image links) by embedded data URIs."""

    def embed(match: re.Match) -> str:
        source = html.unescape(match.group(2))
        if source.startswith(("data:", "http:", "https:")):
            return match.group(0)
        uri = image_data_uri(base_dir / source)
        return match.group(0) if uri is None else f'{match.group(1)}"{uri}"'

    return re.sub(r'(<img[^>]*?src=)"([^"]+)"', embed, body)


def drop_section(markdown_text: str, title: str) -> str:
    """``markdown_text`` without its ``## title`` section (shown differently on the page)."""
    return re.sub(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", "", markdown_text, flags=re.S | re.M)


def page(title: str, body: str) -> str:

    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
            f"<footer>Written by dada-seg on {now_utc()}; every figure is embedded in this file.</footer>\n"
            "</body>\n</html>\n")


def ordered_figures(figures: Mapping[str, str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(charts and grids in :data:`FIGURE_ORDER`, then per-image predictions and depth maps)."""
    main = [(name, figures[name]) for name in FIGURE_ORDER if name in figures]
    others = [(name, path) for name, path in figures.items() if name not in FIGURE_ORDER]
    return main, others


def eval_report_html(out_dir: str | os.PathLike, results: Mapping, markdown_text: str) -> str:
    """The page of one evaluation: ``results.md`` as HTML, then every figure of ``results['figures']``."""
    out_dir = Path(out_dir)
    body = markdown_to_html(drop_section(markdown_text, "Figures"))
    main, per_image = ordered_figures(results.get("figures") or {})
    if main or per_image:
        body += "\n<h2>Figures</h2>\n" + "\n".join(figure_html(name, out_dir / path) for name, path in main)
    if per_image:
        body += ("\n<h3>Predictions and depth maps</h3>\n<div class=\"thumbs\">\n"
                 + "\n".join(figure_html(name, out_dir / path) for name, path in per_image) + "\n</div>")
    return page(f"Evaluation: {results['model']['label']}", embed_local_images(body, out_dir))


def write_eval_report(out_dir: str | os.PathLike, results: Mapping, markdown_text: str) -> Path:
    path = Path(out_dir) / REPORT_NAME
    write_text(path, eval_report_html(out_dir, results, markdown_text))
    return path


def compare_report_html(out_dir: str | os.PathLike, title: str, markdown_text: str,
                        runs: Sequence[tuple[str, Path, Mapping]]) -> str:
    """The page of a comparison: ``comparison.md`` with its chart, then each run's training curves and
    qualitative grid (``runs``: (label, the folder of its results.json, its results))."""
    out_dir = Path(out_dir)
    body = markdown_to_html(markdown_text)
    sections = []
    for label, folder, results in runs:
        figures = results.get("figures") or {}
        shown = [figure_html(f"{label}: {name}", folder / figures[name])
                 for name in ("training curves", "qualitative grid") if name in figures
                 and (folder / figures[name]).is_file()]
        if shown:
            sections.append(f"<h3>{html.escape(label)}</h3>\n" + "\n".join(shown))
    if sections:
        body += "\n<h2>Runs</h2>\n" + "\n".join(sections)
    return page(title, embed_local_images(body, out_dir))


def write_compare_report(out_dir: str | os.PathLike, title: str, markdown_text: str,
                         runs: Sequence[tuple[str, Path, Mapping]]) -> Path:
    path = Path(out_dir) / REPORT_NAME
    write_text(path, compare_report_html(out_dir, title, markdown_text, runs))
    return path
