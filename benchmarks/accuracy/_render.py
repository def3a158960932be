"""Rendering of the report blocks to Markdown and HTML."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any


@dataclass
class Block:
    """One piece of the report: ``kind`` is heading, text, table or image."""

    kind: str
    content: Any
    level: int = 2


def render_markdown(blocks: list[Block]) -> str:
    out = []
    for bl in blocks:
        if bl.kind == "heading":
            out.append("#" * bl.level + " " + bl.content)
        elif bl.kind == "text":
            out.append(bl.content)
        elif bl.kind == "list":
            out.append("\n".join(f"- {x}" for x in bl.content))
        elif bl.kind == "table":
            head, rows = bl.content
            lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif bl.kind == "image":
            path, alt = bl.content
            out.append(f"![{alt}]({path})")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def render_html(blocks: list[Block], title: str) -> str:
    out = [
        "<!doctype html>",
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%;display:block;margin:1em 0}</style></head><body>",
    ]
    for bl in blocks:
        if bl.kind == "heading":
            out.append(f"<h{bl.level}>{html.escape(bl.content)}</h{bl.level}>")
        elif bl.kind == "text":
            out.append(f"<p>{_inline(bl.content)}</p>")
        elif bl.kind == "list":
            out.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in bl.content) + "</ul>")
        elif bl.kind == "table":
            head, rows = bl.content
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows]
            out.append("</table>")
        elif bl.kind == "image":
            path, alt = bl.content
            out.append(
                f"<figure><img src='{html.escape(path)}' alt='{html.escape(alt)}'>"
                f"<figcaption>{html.escape(alt)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"
