"""Rendering of the report blocks to Markdown and HTML.

A report is a list of :class:`Block`; any table cell may be a :class:`Cell` to highlight it (the best value
of a column, say), so a new table slots in by building blocks, with no change here.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Block:
    """One piece of the report.

    ``kind`` and ``content``: ``heading`` (text, with ``level``), ``text`` (a paragraph), ``verdict`` (the
    one-line summary at the top), ``list`` (items), ``table`` (``(header, rows)``, cells text or
    :class:`Cell`), ``image`` (``(path, caption)``), ``gallery`` (a list of ``(path, caption)``: thumbnails
    in HTML, each a link to the full-size image).
    """

    kind: str
    content: Any
    level: int = 2
    wide: bool = False
    """Galleries: two thumbnails a row instead of four (for wide, multi-panel figures)."""


@dataclass(frozen=True)
class Cell:
    """A table cell: its text and whether it is highlighted as the best of its column or row."""

    text: str
    best: bool = False

    def __str__(self) -> str:
        return self.text


def mark_best(values: Sequence[float | None], *, higher: bool = True, digits: int = 3) -> list[bool]:
    """Return which of ``values`` are the best, comparing them as they are shown (rounded to ``digits``).

    Parameters
    ----------
    values
        One value per row; ``None`` or NaN never wins.
    higher
        Larger is better.
    digits
        Decimals shown: values equal once rounded are all best.

    Returns
    -------
    A flag per value; none when no value is finite or when every value ties (nothing stands out).
    """
    shown = [None if v is None or v != v else round(float(v), digits) for v in values]
    finite = [v for v in shown if v is not None]
    if not finite or (len(set(finite)) == 1 and len(finite) == len(values)):
        return [False] * len(values)
    best = max(finite) if higher else min(finite)
    return [v == best for v in shown]


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and one rename.

    Parameters
    ----------
    path
        File to (re)place; a reader sees the old file or the new one, never a half-written one.
    text
        UTF-8 content.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _md_cell(c: Any) -> str:
    text = str(c).replace("|", "\\|")
    return f"**{text}**" if isinstance(c, Cell) and c.best and text else text


def render_markdown(blocks: list[Block]) -> str:
    """Return the blocks as Markdown (highlighted cells in bold)."""
    out = []
    for bl in blocks:
        if bl.kind == "heading":
            out.append("#" * bl.level + " " + bl.content)
        elif bl.kind == "text":
            out.append(bl.content)
        elif bl.kind == "verdict":
            out.append(f"**{bl.content}**")
        elif bl.kind == "list":
            out.append("\n".join(f"- {x}" for x in bl.content))
        elif bl.kind == "table":
            head, rows = bl.content
            lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif bl.kind == "image":
            path, alt = bl.content
            out.append(f"![{alt}]({path})")
        elif bl.kind == "gallery":
            out.append("\n\n".join(f"[![{alt}]({path})]({path})" for path, alt in bl.content))
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}"
    ".verdict{font-size:1.1em;background:#eef5fb;border-left:4px solid #1f77b4;padding:.6em .9em}"
    "table{border-collapse:collapse;font-size:13px;margin:.6em 0}td,th{border:1px solid #ccc;"
    "padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}"
    "th{background:#f4f4f4}td.best{background:#dff0d8;font-weight:bold}"
    ".gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:12px;margin:.6em 0}"
    ".gallery figure{margin:0;border:1px solid #ddd;padding:6px;background:#fff}"
    ".gallery img{width:100%;height:200px;object-fit:contain;display:block}"
    ".gallery.wide{grid-template-columns:repeat(auto-fill,minmax(540px,1fr))}.gallery.wide img{height:180px}"
    "figure.main{margin:.6em 0;max-width:760px}figure.main img{width:100%}"
    ".gallery figcaption,figcaption{font-size:12px;color:#555;margin-top:4px}"
    "img{max-width:100%}"
)


def _html_cell(c: Any) -> str:
    text = html.escape(str(c))
    return f"<td class='best'>{text}</td>" if isinstance(c, Cell) and c.best else f"<td>{text}</td>"


def render_html(blocks: list[Block], title: str) -> str:
    """Return the blocks as one HTML page (highlighted cells shaded, galleries as linked thumbnails)."""
    out = [
        "<!doctype html>",
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
    ]
    for bl in blocks:
        if bl.kind == "heading":
            out.append(f"<h{bl.level}>{html.escape(bl.content)}</h{bl.level}>")
        elif bl.kind == "text":
            out.append(f"<p>{_inline(bl.content)}</p>")
        elif bl.kind == "verdict":
            out.append(f"<p class='verdict'>{_inline(bl.content)}</p>")
        elif bl.kind == "list":
            out.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in bl.content) + "</ul>")
        elif bl.kind == "table":
            head, rows = bl.content
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
            out += ["<tr>" + "".join(_html_cell(c) for c in r) + "</tr>" for r in rows]
            out.append("</table>")
        elif bl.kind == "image":
            path, alt = bl.content
            out.append(
                f"<figure class='main'><a href='{html.escape(path)}' target='_blank' title='open full size'>"
                f"<img src='{html.escape(path)}' "
                f"alt='{html.escape(alt)}'></a><figcaption>{html.escape(alt)}</figcaption></figure>"
            )
        elif bl.kind == "gallery":
            out.append("<div class='gallery wide'>" if bl.wide else "<div class='gallery'>")
            for path, alt in bl.content:
                src, cap = html.escape(path), html.escape(alt)
                out.append(
                    f"<figure><a href='{src}' target='_blank' title='open full size'>"
                    f"<img src='{src}' alt='{cap}' loading='lazy'></a><figcaption>{cap}</figcaption></figure>"
                )
            out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
