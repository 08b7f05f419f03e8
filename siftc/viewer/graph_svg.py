"""The graph picture of one pass: graphviz ``dot`` to inline SVG when installed, else a plain
layered layout drawn here; graphs above ``max_nodes`` are summarised one box per module block.

Input is the compact node list of siftc.recorder (name, op, target, inputs, module, FLOPs).
"""
from __future__ import annotations

import html
import re
import shutil
import subprocess

from siftc.viewer.fmt import human_flops

MAX_NODES = 150          # above this a graph is drawn per block (readable and small for resnet50/gpt3_small)
MAX_BLOCKS = 80


def _block_key(module: str, depth: int) -> str:
    return ".".join(module.split(".")[:depth]) if module else ""


def summarise(nodes: list[dict], max_nodes: int = MAX_NODES):
    """(boxes, edges, depth): one box per node, or per module block at the deepest module-path
    depth that keeps at most MAX_BLOCKS boxes. A box: {id, label, title, kind}."""
    if len(nodes) <= max_nodes:
        boxes = [{"id": n["name"], "kind": n["op"],
                  "label": f"{n['name']}\n{n['target']}" if n["op"] not in ("placeholder", "output") else n["name"],
                  "title": f"{n['op']} {n['target']}" + (f" | {n['module']}" if n["module"] else "")
                  + (f" | {n['flops']:,} FLOPs" if n["flops"] else "")} for n in nodes]
        edges = [(i, n["name"]) for n in nodes for i in n["inputs"]]
        return boxes, _dedupe(edges), 0
    depth, seen = 1, 0
    for d in range(1, 6):          # the deepest path depth that still adds blocks and stays readable
        keys = len({_block_key(n["module"], d) for n in nodes})
        if keys > MAX_BLOCKS or keys == seen:
            break
        depth, seen = d, keys
    block_of, order, count, flops = {}, [], {}, {}
    for n in nodes:
        key = {"placeholder": "inputs", "output": "output"}.get(n["op"]) or _block_key(n["module"], depth) or "(top level)"
        block_of[n["name"]] = key
        if key not in count:
            order.append(key)
            count[key], flops[key] = 0, 0
        count[key] += 1
        flops[key] += n["flops"] or 0
    boxes = [{"id": k, "kind": "block", "title": f"{count[k]} nodes, {flops[k]:,} FLOPs",
              "label": f"{k}\n{count[k]} nodes" + (f", {human_flops(flops[k])}" if flops[k] else "")} for k in order]
    edges = [(block_of[i], block_of[n["name"]]) for n in nodes for i in n["inputs"] if block_of[i] != block_of[n["name"]]]
    return boxes, _dedupe(edges), depth


def _dedupe(edges):
    seen, out = set(), []
    for e in edges:
        if e not in seen:
            seen.add(e)
            out.append(e)
    return out


_FILL = {"placeholder": "#dbeafe", "output": "#dbeafe", "call_module": "#fde68a", "get_attr": "#e5e7eb",
         "call_function": "#ffffff", "call_method": "#f3f4f6", "block": "#fef3c7"}


def _dot_source(boxes, edges) -> str:
    def q(s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    lines = ["digraph G {", "  graph [rankdir=TB, nodesep=0.25, ranksep=0.35];",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
             '  edge [arrowsize=0.6, color="#6b7280"];']
    for b in boxes:
        lines.append(f"  {q(b['id'])} [label={q(b['label'])}, tooltip={q(b['title'])}, "
                     f"fillcolor={q(_FILL.get(b['kind'], '#ffffff'))}];")
    lines += [f"  {q(a)} -> {q(b)};" for a, b in edges]
    return "\n".join(lines + ["}"])


def dot_available() -> bool:
    return shutil.which("dot") is not None


def _dot_svg(boxes, edges) -> str | None:
    try:
        out = subprocess.run(["dot", "-Tsvg"], input=_dot_source(boxes, edges), capture_output=True,
                             text=True, timeout=120, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None    # a broken graphviz install falls back to the plain layout
    start = out.find("<svg")
    # dot writes fixed pt sizes; let the page scale the picture instead
    return re.sub(r'<svg width="[^"]*" height="[^"]*"', '<svg class="graph"', out[start:], count=1) if start >= 0 else None


def _plain_svg(boxes, edges) -> str:
    """Layered layout: a box's row is its longest path from an input (edges taken in the
    order boxes appear, which is topological for nodes and first-use order for blocks)."""
    index = {b["id"]: i for i, b in enumerate(boxes)}
    rank = [0] * len(boxes)
    for a, b in sorted(edges, key=lambda e: index[e[1]]):
        if index[a] < index[b]:
            rank[index[b]] = max(rank[index[b]], rank[index[a]] + 1)
    rows: dict = {}
    pos = {}
    for i, r in enumerate(rank):
        pos[i] = (len(rows.setdefault(r, [])), r)
        rows[r].append(i)
    w, h, gx, gy = 170, 34, 20, 26
    width = max(len(v) for v in rows.values()) * (w + gx) + gx if rows else 100
    height = (max(rows) + 1) * (h + gy) + gy if rows else 50
    xy = {i: (gx + c * (w + gx), gy + r * (h + gy)) for i, (c, r) in pos.items()}
    parts = [f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}">']
    for a, b in edges:
        (x1, y1), (x2, y2) = xy[index[a]], xy[index[b]]
        parts.append(f'<line x1="{x1 + w / 2}" y1="{y1 + h}" x2="{x2 + w / 2}" y2="{y2}" stroke="#9ca3af"/>')
    for i, bx in enumerate(boxes):
        x, y = xy[i]
        lines = bx["label"].split("\n")
        parts.append(f'<g><title>{html.escape(bx["title"])}</title>'
                     f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="5" fill="{_FILL.get(bx["kind"], "#fff")}" '
                     f'stroke="#6b7280"/>')
        for k, t in enumerate(lines[:2]):
            parts.append(f'<text x="{x + w / 2}" y="{y + 14 + 12 * k}" font-size="10" text-anchor="middle" '
                         f'font-family="Helvetica,sans-serif">{html.escape(t[:30])}</text>')
        parts.append("</g>")
    return "\n".join(parts + ["</svg>"])


def graph_svg(nodes: list[dict], use_dot: bool | None = None) -> tuple[str, str]:
    """(inline SVG, a caption saying how it was drawn)."""
    boxes, edges, depth = summarise(nodes)
    what = f"{len(nodes)} nodes" if not depth else \
        f"{len(nodes)} nodes summarised as {len(boxes)} blocks (module path depth {depth})"
    if use_dot is None:
        use_dot = dot_available()
    svg = _dot_svg(boxes, edges) if use_dot else None
    if svg is not None:
        return svg, f"{what}; drawn by graphviz dot"
    return _plain_svg(boxes, edges), f"{what}; plain layout (install graphviz for dot)"
