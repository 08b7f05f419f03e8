"""Inline SVG bar charts (no scripts, no CDN): a grouped horizontal bar per row, e.g. FLOPs of
each layer before/after, or each channel group's width before/after."""
from __future__ import annotations

import html

COLORS = ("#9ca3af", "#2563eb", "#f59e0b")


def bar_chart(rows: list[tuple[str, list]], series: list[str], fmt=str, max_rows: int = 60) -> str:
    """``rows``: (label, [value per series]); values may be None (no bar). Rows beyond
    ``max_rows`` are cut, largest first kept, and the cut is said under the chart."""
    note = ""
    if len(rows) > max_rows:
        keep = sorted(rows, key=lambda r: -max(v or 0 for v in r[1]))[:max_rows]
        keep_ids = {id(r) for r in keep}
        note = f'<p class="note">{len(rows) - max_rows} smaller rows not drawn (all are in the table).</p>'
        rows = [r for r in rows if id(r) in keep_ids]
    top = max((v or 0 for _, vals in rows for v in vals), default=0) or 1
    label_w, bar_w, bar_h, pad = 260, 420, 9, 6
    row_h = bar_h * len(series) + pad
    height = 24 + row_h * len(rows)
    width = label_w + bar_w + 140
    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}">']
    x = label_w
    for k, name in enumerate(series):        # legend
        out.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{COLORS[k % len(COLORS)]}"/>'
                   f'<text x="{x + 14}" y="13" font-size="11">{html.escape(name)}</text>')
        x += 20 + 7 * len(name)
    for i, (label, vals) in enumerate(rows):
        y = 24 + i * row_h
        out.append(f'<text x="{label_w - 6}" y="{y + bar_h * len(series) / 2 + 4}" font-size="11" '
                   f'text-anchor="end">{html.escape(label[-40:])}</text>')
        for k, v in enumerate(vals):
            if v is None:
                continue
            w = max(1.0, bar_w * v / top)
            out.append(f'<rect x="{label_w}" y="{y + k * bar_h}" width="{w:.1f}" height="{bar_h - 1}" '
                       f'fill="{COLORS[k % len(COLORS)]}"><title>{html.escape(label)}: {html.escape(series[k])} '
                       f'{html.escape(fmt(v))}</title></rect>'
                       f'<text x="{label_w + w + 4:.1f}" y="{y + k * bar_h + bar_h - 1}" font-size="9">'
                       f'{html.escape(fmt(v))}</text>')
    return "\n".join(out + ["</svg>"]) + note
