"""One self-contained HTML page for a compile: pipeline, per-pass graph/diff/code, per-layer
tables and charts. No scripts and no external resources, so it opens offline and cannot log
console errors; sections are <details> elements, collapsed, so large models stay usable.
"""
from __future__ import annotations

import difflib
import html

from siftc.viewer.charts import bar_chart
from siftc.viewer.fmt import commas, human_flops
from siftc.viewer.graph_svg import graph_svg

MAX_DIFF_LINES = 600      # a diff table longer than this is cut (the full code is on the page)

_CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#111;max-width:1400px}
h1{font-size:22px} h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
details{margin:6px 0;border:1px solid #e5e7eb;border-radius:6px;padding:4px 10px}
summary{cursor:pointer;font-weight:600}
pre{background:#f9fafb;padding:8px;overflow:auto;max-height:600px;font-size:12px}
.graphbox{overflow:auto;max-height:700px;border:1px solid #eee}
svg.graph{max-width:none} .note{color:#6b7280;font-size:12px}
table.diff{font-family:monospace;font-size:11px} .diff_add{background:#aaffaa} .diff_chg{background:#ffff77}
.diff_sub{background:#ffaaaa} .diff_header{background:#e0e0e0} td.diff_next{background:#c0c0c0}
.warn{color:#92400e}
"""


class _Html(str):
    """A table cell that is already HTML (escaped by its maker)."""


def _table(header: list[str], rows: list[list], numeric=()) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>'
                                    f'{c if isinstance(c, _Html) else html.escape(str(c))}</td>'
                                    for i, c in enumerate(r)) + "</tr>")
    return "\n".join(out + ["</table>"])


def _summary(d: dict) -> str:
    r = d["report"]
    rows = [["dense budget FLOPs", commas(r["budget_flops"])], ["compiled FLOPs", commas(r["sparse_flops"])],
            [f"iso-FLOP ratio (count={r.get('count', 'matmul')})",
             f"{r['iso_flop_ratio']:.4f} {r.get('iso_note', '')}"],
            ["all-FLOP ratio (every op)", f"{r.get('all_ratio', r['iso_flop_ratio']):.4f}"],
            ["params original", commas(r["original_params"])], ["params compiled (dense-equivalent)", commas(r["dense_params"])],
            ["params non-zero", commas(r["nonzero_params"])]]
    return _table(["", ""], rows, numeric=(1,))


def _pipeline_table(passes: list[dict]) -> str:
    rows = [[f"{p['index']:02d}", _Html(f'<a href="#pass-{p["index"]}">{html.escape(p["name"])}</a>'), p["kind"],
             f"{p['seconds']:.3f}", f"{p['nodes_before']} -> {p['nodes_after']}", commas(p["flops_before"]),
             commas(p["flops_after"])] for p in passes]
    return _table(["#", "pass", "kind", "seconds", "nodes", "FLOPs before", "FLOPs after"], rows, numeric=(3, 5, 6))


def _diff(differ, prev: str, cur: str, prev_name: str, cur_name: str) -> str:
    if prev == cur:
        return '<p class="note">graph code and weight shapes unchanged by this pass.</p>'
    a, b = prev.splitlines(), cur.splitlines()
    changed = sum(1 for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if op[0] != "equal")
    table = differ.make_table(a, b, prev_name, cur_name, context=True, numlines=2)
    rows = table.split("</tr>")
    note = ""
    if len(rows) > MAX_DIFF_LINES:
        table = "</tr>".join(rows[:MAX_DIFF_LINES]) + "</tr></tbody></table>"
        note = f'<p class="note">diff cut after {MAX_DIFF_LINES} rows; the full code is below.</p>'
    return f'<p class="note">{changed} changed hunks against the previous pass.</p>{table}{note}'


def _pass_sections(passes: list[dict], use_dot) -> str:
    differ = difflib.HtmlDiff(wrapcolumn=110)
    out, prev_text, prev_name, drawn_at, prev_nodes = [], "", "(input)", None, None
    for p in passes:
        opts = ", ".join(f"{k}={v}" for k, v in p["options"].items()) or "none"
        stats = ", ".join(f"{k}={v}" for k, v in p["stats"].items()) or "none"
        flops = f"{human_flops(p['flops_before'])} -> {human_flops(p['flops_after'])}"
        body = [f"<p>{html.escape(p['summary'])}</p>",
                f"<p>options: {html.escape(opts)}<br>counters: {html.escape(stats)}<br>"
                f"nodes {p['nodes_before']} -> {p['nodes_after']}, FLOPs {html.escape(flops)}, "
                f"{p['seconds']:.3f} s</p>"]
        shape = [(n["name"], n["op"], n["target"], tuple(n["inputs"])) for n in p["nodes"]]
        if shape == prev_nodes:
            body.append(f'<p class="note">graph picture: same graph as pass {drawn_at:02d}.</p>')
        else:
            svg, caption = graph_svg(p["nodes"], use_dot)
            drawn_at, prev_nodes = p["index"], shape
            body.append(f'<details><summary>graph picture ({html.escape(caption)})</summary>'
                        f'<div class="graphbox">{svg}</div></details>')
        text = p["code"] + "\n\n# weight modules: " + p.get("modules", "")
        if prev_text:       # the first pass has nothing to diff against: its code is right below
            body.append(f"<details><summary>diff against {html.escape(prev_name)} (code and weight shapes)</summary>"
                        f"{_diff(differ, prev_text, text, prev_name, p['name'])}</details>")
        body.append(f"<details><summary>graph code after {html.escape(p['name'])}</summary>"
                    f"<pre>{html.escape(p['code'])}</pre><pre>{html.escape(p.get('modules', ''))}</pre></details>")
        out.append(f'<details class="pass" id="pass-{p["index"]}"><summary>{p["index"]:02d} {html.escape(p["name"])} '
                   f'({p["kind"]}; {html.escape(flops)})</summary>{"".join(body)}</details>')
        prev_text, prev_name = text, p["name"]
    return "\n".join(out)


def _layers(r: dict) -> str:
    out = []
    if r["layers"]:
        rows = [[L["name"], f"{L['member']} ({L['detail']})", "x".join(map(str, L["orig_shape"])),
                 "; ".join(f"{k[len(L['name']) + 1:] or k}: {'x'.join(map(str, v))}" for k, v in L["new_shapes"].items()),
                 f"{L['sparsity']:.4f}", commas(L["flops_before"]), commas(L["flops_after"])] for L in r["layers"]]
        out.append("<h2>Layers transformed</h2>")
        out.append(bar_chart([(L["name"], [L["flops_before"], L["flops_after"]]) for L in r["layers"]],
                             ["FLOPs before", "FLOPs after"], human_flops))
        out.append(bar_chart([(L["name"], [L["sparsity"]]) for L in r["layers"]], ["sparsity"], lambda v: f"{v:.3f}"))
        out.append(_table(["layer", "member", "original shape", "new shapes", "sparsity", "FLOPs before", "FLOPs after"],
                          rows, numeric=(4, 5, 6)))
    if r.get("groups"):
        widened = [g for g in r["groups"] if g["width"] is not None]
        out.append("<h2>Channel groups (Sparse Wide)</h2>")
        if widened:
            out.append(bar_chart([(g["group"], [g["width"], g["new_width"]]) for g in widened],
                                 ["original width", "new width"], lambda v: f"{v:,}"))
        rows = [[g["group"], "" if g["width"] is None else g["width"], "" if g["new_width"] is None else g["new_width"],
                 g.get("fixed") or "", ", ".join(g["members"][:8]) + (f" ... ({len(g['members'])})" if len(g["members"]) > 8 else "")]
                for g in r["groups"]]
        out.append(_table(["group", "width", "new width", "kept because", "members"], rows, numeric=(1, 2)))
    if r.get("extended"):
        out.append("<h2>Extended tensors (outside the layers; original values in place)</h2>")
        out.append(_table(["tensor", "shape", "new entries"], [[e["name"], f"{'x'.join(map(str, e['from']))} -> "
                                                               f"{'x'.join(map(str, e['to']))}", e["rule"]]
                                                              for e in r["extended"]]))
    if r.get("ties"):
        out.append("<h2>Ties kept</h2>")
        out.append(_table(["names sharing one tensor"], [[" = ".join(names)] for names in r["ties"]]))
    out.append("<h2>Left dense</h2>")
    if r["left_dense"]:
        out.append(_table(["op / layer", "reason", "FLOPs"], [[d["name"], d["reason"], commas(d["flops"])]
                                                                for d in r["left_dense"]], numeric=(2,)))
    else:
        out.append('<p class="note">every weight op was transformed.</p>')
    if r.get("kernels"):
        out.append("<h2>Inference kernels</h2>")
        out.append(_table(["layer", "kernel", "detail"], [[k, v.get("kernel", ""), ", ".join(
            f"{a}={b}" for a, b in v.items() if a != "kernel")] for k, v in r["kernels"].items()]))
    if r.get("warnings"):
        out.append("<h2>Warnings</h2>" + "".join(f'<p class="warn">{html.escape(w)}</p>' for w in r["warnings"]))
    return "\n".join(out)


def render_page(d: dict, use_dot=None) -> str:
    r = d["report"]
    title = f"siftc: {d['model']} {d['policy']} ({d['target']})"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>pipeline: <code>{html.escape(d['pipeline'])}</code></p>",
        _summary(d), "<h2>Passes</h2>", _pipeline_table(d["passes"]), _pass_sections(d["passes"], use_dot),
        _layers(r), "</body></html>"])
