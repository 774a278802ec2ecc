"""Charts drawn on the server as SVG from the numbers (no script, no external file): presentation attributes
only, so the page's Content-Security-Policy (no inline styles) holds. Every label is escaped."""
from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

#: one colour per series, readable on white and told apart in grey scale too
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79", "#637939")


def stacked_bars(columns: Sequence[str], series: dict[str, Sequence[int]], title: str,
                 width: int = 760, height: int = 220) -> Markup:
    """One bar per column (e.g. an hour), stacked by series (e.g. category), with a legend."""
    left, bottom, top = 40, 30, 20
    plot_w, plot_h = width - left - 170, height - bottom - top
    totals = [sum(values[i] for values in series.values()) for i in range(len(columns))]
    peak = max(totals, default=0) or 1
    bar = plot_w / max(len(columns), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="{left}" y="12" font-size="12">{escape(title)} (peak {peak})</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>']
    for i, column in enumerate(columns):
        y = top + plot_h
        for colour, (name, values) in zip(_colours(), series.items()):
            h = values[i] / peak * plot_h
            if h:
                y -= h
                parts.append(f'<rect x="{left + i * bar + 1:.1f}" y="{y:.1f}" width="{max(bar - 2, 1):.1f}" '
                             f'height="{h:.1f}" fill="{colour}"><title>{escape(column)} {escape(name)}: '
                             f'{values[i]}</title></rect>')
        if i % max(1, len(columns) // 8) == 0:
            parts.append(f'<text x="{left + i * bar:.1f}" y="{height - 12}" font-size="10">{escape(column)}</text>')
    for row, (colour, name) in enumerate(zip(_colours(), series)):
        y = top + row * 15
        parts.append(f'<rect x="{width - 160}" y="{y}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{width - 145}" y="{y + 9}" font-size="11">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def confusion_matrix(labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str) -> Markup:
    """Rows: the true category; columns: the predicted one. Darker cells hold more messages; the diagonal is blue,
    mistakes red."""
    cell, margin = 34, 120
    size = margin + cell * len(labels) + 10
    peak = max((value for row in matrix for value in row), default=0) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size + 20}" width="{size}" '
             f'height="{size + 20}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="4" y="14" font-size="12">{escape(title)}</text>',
             f'<text x="{margin}" y="{size + 14}" font-size="11">predicted →</text>']
    for i, label in enumerate(labels):
        y = margin + i * cell
        parts.append(f'<text x="{margin - 4}" y="{y + cell / 2 + 4}" font-size="10" text-anchor="end">'
                     f'{escape(label)}</text>')
        parts.append(f'<text x="{margin + i * cell + cell / 2}" y="{margin - 6}" font-size="10" '
                     f'transform="rotate(-45 {margin + i * cell + cell / 2} {margin - 6})">{escape(label)}</text>')
        for j, value in enumerate(matrix[i] if i < len(matrix) else []):
            shade = value / peak
            colour = (f"rgb({int(255 - 200 * shade)},{int(255 - 150 * shade)},255)" if i == j
                      else f"rgb(255,{int(255 - 200 * shade)},{int(255 - 200 * shade)})")
            parts.append(f'<rect x="{margin + j * cell}" y="{y}" width="{cell - 1}" height="{cell - 1}" '
                         f'fill="{colour}"><title>true {escape(label)}, predicted {escape(labels[j])}: {value}'
                         f'</title></rect>')
            if value:
                parts.append(f'<text x="{margin + j * cell + cell / 2}" y="{y + cell / 2 + 4}" font-size="10" '
                             f'text-anchor="middle">{value}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _colours() -> Sequence[str]:
    return PALETTE * 4
