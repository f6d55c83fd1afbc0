"""Small HTML helpers: escaping, embedded PNGs, tables, number formats."""

from __future__ import annotations

import base64
import html


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def img(png: bytes, alt: str, cls: str = "") -> str:
    """An <img> with the PNG embedded as base64: the page needs no other file."""
    data = base64.b64encode(png).decode("ascii")
    klass = f' class="{esc(cls)}"' if cls else ""
    return f'<img alt="{esc(alt)}"{klass} src="data:image/png;base64,{data}">'


def table(head: list[str], rows: list[list[str]], num_cols: bool = False) -> str:
    """Cells are HTML already (escape text before); ``num_cols`` right-aligns all but the first column."""
    cls = ' class="num"' if num_cols else ""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table{cls}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def pct(x, sign: bool = True) -> str:
    if x is None:
        return "–"
    return f"{100 * x:.1f}{' %' if sign else ''}"


def minutes(seconds) -> str:
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
