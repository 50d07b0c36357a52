"""One self-contained HTML page: text, tables and PNG figures embedded as data URIs.

A report lives beside the graphs in a version folder that is copied, served and committed as
a unit, so it must not reach for anything outside itself: no stylesheet, script or image from
elsewhere. Figures are palette PNGs at a modest resolution, because the model repository is
size-limited and a page of a few hundred kilobytes is plenty to look at.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure
from PIL import Image

from training.common.files import atomic_path

DPI = 80
# Colour maps and a few line colours fit in a palette: an octree palette of 256 colours makes
# field figures four times smaller than RGB. (Median cut, PIL's default, merged the pale
# colours of a diverging map into greys that read as features.)
PALETTE_COLORS = 256

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 0.5em 0 1.5em; } img { max-width: 100%; }
figcaption, .note { color: #555; font-size: 0.9em; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as a compact palette PNG (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return compact_png(buf.getvalue())


def compact_png(png: bytes) -> bytes:
    """Any PNG as an optimised palette PNG."""
    with Image.open(io.BytesIO(png)) as img:
        paletted = img.convert("RGB").quantize(PALETTE_COLORS, Image.Quantize.FASTOCTREE)
    out = io.BytesIO()
    paletted.save(out, format="PNG", optimize=True)
    return out.getvalue()


def magnification(scale: float, error: float) -> int:
    """The factor (1, 2, 5, 10, 20, ...) by which to narrow the field's colour scale for its
    error panel, so that `error` (a high percentile of it) still fits: a small error's pattern
    is visible, and the panel's title says the factor."""
    if error <= 0 or error >= scale / 2:
        return 1
    best = 1
    for decade in range(0, 12):
        for step in (1, 2, 5):
            factor = step * 10**decade
            if factor * error <= scale:
                best = factor
    return best


def fmt(value: Any) -> str:
    """A metric value as a reader wants it: 4 significant digits, lists as [a, b]."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def table(rows: list[list[Any]], header: list[str] | None = None, css: str = "") -> str:
    """An HTML table; numbers are formatted by `fmt` and right-aligned."""
    out = [f'<table class="{css}">' if css else "<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = []
        for cell in row:
            numeric = isinstance(cell, int | float) and not isinstance(cell, bool)
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{html.escape(fmt(cell))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


@dataclass
class Page:
    """A report page built section by section; `write` publishes it atomically."""

    title: str
    parts: list[str] = field(default_factory=list)
    images: int = 0  # figures embedded so far

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str, css: str = "") -> None:
        cls = f' class="{css}"' if css else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def raw(self, markup: str) -> None:
        self.parts.append(markup)

    def figure(self, png: bytes, caption: str, alt: str) -> None:
        data = base64.b64encode(png).decode("ascii")
        self.parts.append(
            f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
        self.images += 1

    def render(self) -> str:
        body = "\n".join(self.parts)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head>\n"
            f"<body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n"
        )

    def write(self, path: Path) -> Path:
        with atomic_path(path) as tmp:
            tmp.write_text(self.render(), encoding="utf-8")
        return path
