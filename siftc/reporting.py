"""The compile report: FLOP budget vs compiled FLOPs, parameters, and what became of each layer.

``siftc.report(gm)`` (or ``gm.siftc.report()``) recounts FLOPs from the graph as it is now, so
a report after training (masks moved by DST) is still true. ``to_dict()`` is JSON-ready;
``str()`` prints tables.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from siftc.core.ties import ties
from siftc.core.mask_api import mask_of
from siftc.passes import flops as flops_pass
from siftc.passes.shape_prop import ensure_shapes


# what each policy count= counts, as the report says it
COUNT_TEXT = {"matmul": "conv/linear/matmul/attention FLOPs, as FlopCounterMode counts them",
              "all": "every op's FLOPs",
              "layers": "conv/linear, norm and pooling FLOPs, as the authors' counter counts them"}


@dataclass
class Report:
    model: str
    policy: str
    target: str
    budget_flops: int
    sparse_flops: int
    iso_flop_ratio: float            # compiled / budget FLOPs as policy count= counts them (what iso=exact solves)
    flops_by_category: dict
    budget_by_category: dict
    original_params: int
    dense_params: int
    nonzero_params: int
    iso_note: str
    matmul_budget_flops: int = 0     # matmul-class part of the budget (what FlopCounterMode counts)
    matmul_flops: int = 0            # matmul-class part of the compiled FLOPs (mask non-zeros counted)
    matmul_ratio: float = 1.0        # matmul_flops / matmul_budget_flops
    count: str = "matmul"            # which FLOPs iso_flop_ratio counts (policy key count=)
    all_ratio: float = 1.0           # every op's FLOPs (norms, activations, adds too) / the budget's
    layers_ratio: float = 1.0        # the authors' counter's FLOPs (conv/linear, norms, pooling) / the budget's
    preset: str = "none"             # the preset the policy was written with
    uncounted: list = field(default_factory=list)   # {node, target, reason}: costs siftc could not see
    measured: list = field(default_factory=list)    # {node, target, flops, reason}: costed by FlopCounterMode
    layers: list = field(default_factory=list)
    left_dense: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    groups: list = field(default_factory=list)
    kernels: dict = field(default_factory=dict)
    extended: list = field(default_factory=list)    # {name, from, to, rule}: tensors outside the layers that
                                                    # Sparse Wide extended (original values kept in place)
    ties: list = field(default_factory=list)        # [[name, ...]]: names sharing one tensor (kept ties)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        preset = f" (preset={self.preset})" if self.preset != "none" else ""
        lines = [f"siftc report: {self.model}  policy={self.policy}{preset}  target={self.target}",
                 f"  dense budget FLOPs   {self.budget_flops:>18,}   (all ops)",
                 f"  compiled FLOPs       {self.sparse_flops:>18,}   (all ops, mask non-zeros counted)",
                 f"  iso-FLOP ratio       {self.iso_flop_ratio:>18.4f}   "
                 f"(count={self.count}: {COUNT_TEXT[self.count]}) {self.iso_note}",
                 f"  all-FLOP ratio       {self.all_ratio:>18.4f}   (every op: norms, activations and adds too)"]
        if self.count != "matmul":
            lines.append(f"  matmul-class ratio   {self.matmul_ratio:>18.4f}   ({COUNT_TEXT['matmul']}: "
                         f"{self.matmul_flops:,} / {self.matmul_budget_flops:,})")
        lines += [
                 f"  params original      {self.original_params:>18,}",
                 f"  params compiled      {self.dense_params:>18,}   (dense-equivalent)",
                 f"  params non-zero      {self.nonzero_params:>18,}"]
        if self.layers:
            lines += ["", "  layer | member | original shape | new shapes | sparsity | FLOPs before -> after"]
            for L in self.layers:
                shapes = ", ".join(f"{k[len(L['name']) + 1:]}{tuple(v)}" for k, v in L["new_shapes"].items())
                lines.append(f"  {L['name']} | {L['member']} ({L['detail']}) | {tuple(L['orig_shape'])} | {shapes} | "
                             f"{L['sparsity']:.4f} | {L['flops_before']:,} -> {L['flops_after']:,}")
        if self.groups:
            lines += ["", "  channel group | width -> new width | members"]
            for g in self.groups:
                lines.append("  " + _group_line(g))
        if self.extended:
            lines += ["", "  extended (outside the layers; original values in place) | shape | new entries"]
            lines += [f"  {e['name']} | {tuple(e['from'])} -> {tuple(e['to'])} | {e['rule']}" for e in self.extended]
        if self.ties:
            lines += ["", "  tied (one tensor, kept) | names"]
            lines += [f"  {names[0]} | {' = '.join(names)}" for names in self.ties]
        if self.kernels:
            use = "training" if any(k.get("use") == "training" for k in self.kernels.values()) else "inference"
            lines += ["", f"  {use} kernel | layer | density | dense ms | sparse ms | speedup"]
            for name, k in self.kernels.items():
                if "dense_ms" in k:
                    lines.append(f"  {k['kernel']} | {name} | {k['density']:.4f} | {k['dense_ms']:.3f} | "
                                 f"{k['sparse_ms']:.3f} | {k['speedup']:.2f}x")
                else:    # CUDA 2:4: no timing, a reason
                    lines.append(f"  {k['kernel']} | {name} | {k.get('reason', '')}")
        if self.measured:
            lines += ["", "  costed by FlopCounterMode (no siftc rule) | FLOPs"]
            lines += [f"  {m['node']} ({m['target']}) | {m['flops']:,}" for m in self.measured]
        if self.uncounted:
            lines += ["", "  UNCOUNTED (not in any ratio above) | reason"]
            lines += [f"  {u['node']} ({u['target']}) | {u['reason']}" for u in self.uncounted]
        if self.left_dense:
            lines += ["", "  left dense | reason | FLOPs"]
            for names, reason, flops in _grouped(self.left_dense):
                lines.append(f"  {names} | {reason} | {flops:,}")
        if self.warnings:
            lines += ["", *[f"  warning: {w}" for w in self.warnings]]
        return "\n".join(lines)

    def flops_markdown(self) -> str:
        cats = sorted(set(self.flops_by_category) | set(self.budget_by_category))
        out = [f"# FLOPs: {self.model}, policy {self.policy}", "",
               "Forward FLOPs at the example inputs (conventions: passes/README.md).", "",
               "| category | dense original | compiled |", "|---|---:|---:|"]
        for c in cats:
            out.append(f"| {c} | {self.budget_by_category.get(c, 0):,} | {self.flops_by_category.get(c, 0):,} |")
        out.append(f"| **total** | **{self.budget_flops:,}** | **{self.sparse_flops:,}** |")
        out += ["", f"iso-FLOP ratio (count={self.count}): {self.iso_flop_ratio:.6f} ({self.iso_note})",
                f"all-FLOP ratio: {self.all_ratio:.6f}",
                f"matmul-class ratio: {self.matmul_ratio:.6f} ({self.matmul_flops:,} / {self.matmul_budget_flops:,})", ""]
        if self.uncounted:
            out += _md_table(["uncounted node", "target", "reason"], "lll",
                             [(u["node"], u["target"], u["reason"]) for u in self.uncounted])
        if self.layers:
            out += _md_table(["layer", "member", "FLOPs before", "FLOPs after", "sparsity"], "llrrr",
                             [(L["name"], L["member"], f"{L['flops_before']:,}", f"{L['flops_after']:,}",
                               f"{L['sparsity']:.4f}") for L in self.layers])
        if self.groups:
            out += _md_table(["channel group", "width", "new width", "members"], "lrrl",
                             [(g["group"] + (f" (kept: {g['fixed']})" if g["fixed"] else ""),
                               "" if g["width"] is None else f"{g['width']:,}",
                               "" if g["new_width"] is None else f"{g['new_width']:,}", _members(g["members"]))
                              for g in self.groups])
        if self.extended:
            out += _md_table(["extended tensor (values kept in place)", "shape", "new entries"], "lll",
                             [(e["name"], f"{tuple(e['from'])} -> {tuple(e['to'])}", e["rule"]) for e in self.extended])
        if self.ties:
            out += _md_table(["tied names (one tensor, kept)"], "l", [(" = ".join(names),) for names in self.ties])
        if self.left_dense:
            out += _md_table(["left dense", "reason", "FLOPs"], "llr",
                             [(d["name"], d["reason"], f"{d['flops']:,}") for d in self.left_dense])
        return "\n".join(out)


def _md_table(headers, aligns: str, rows) -> list[str]:
    """A markdown table (``aligns``: l or r per column), then a blank line."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in aligns) + "|"
    return ["| " + " | ".join(headers) + " |", rule, *("| " + " | ".join(map(str, r)) + " |" for r in rows), ""]


def _grouped(left_dense: list, at_least: int = 4):
    """(names, reason, FLOPs) rows: entries sharing a reason (20 BatchNorms) become one row once
    there are ``at_least`` of them; to_dict() keeps every entry."""
    by_reason: dict = {}
    for d in left_dense:
        by_reason.setdefault(d["reason"], []).append(d)
    for reason, rows in by_reason.items():
        if len(rows) >= at_least:
            shown = ", ".join(r["name"] for r in rows[:3])
            yield f"{len(rows)} modules ({shown}, ...)", reason, sum(r["flops"] for r in rows)
        else:
            for r in rows:
                yield r["name"], reason, r["flops"]


def _members(keys: list, limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} dims)" if len(keys) > limit else "")


def _group_line(g: dict) -> str:
    if g["width"] is None:
        return f"kept ({g['fixed']}) | {_members(g['members'])}"
    why = f" (kept: {g['fixed']})" if g["fixed"] else ""
    unit = f" (multiple of {g['unit']})" if g["unit"] > 1 else ""
    return f"{g['group']}{why} | {g['width']} -> {g['new_width']}{unit} | {_members(g['members'])}"


def _node_flops_by_module(gm) -> dict:
    """FLOPs by module path (a rewritten layer's nodes count for it), by node name for a function
    node (a functional weight op: F.linear(x, self.W)), and by parameter for a parameter that nodes
    read directly (the FLOPs of the nodes reading it), as the report's left-dense rows name them."""
    out: dict = {}
    for n in gm.graph.nodes:
        info = n.meta.get("siftc.flops")
        if info is None:
            continue
        key = n.meta.get("siftc.origin") or (n.target if n.op == "call_module" else n.name)
        out[key] = out.get(key, 0) + info.flops
    for n in gm.graph.nodes:
        if n.op == "get_attr" and n.target not in out:
            readers = [u.meta["siftc.flops"].flops for u in n.users if u.meta.get("siftc.flops") is not None]
            if readers:
                out[n.target] = sum(readers)
    return out


def build_report(gm, state, refresh: bool = True) -> Report:
    """Build the report of ``gm`` from its compile ``state`` (the .siftc handle)."""
    if refresh:
        ensure_shapes(gm, state.example_inputs)
        flops_pass.annotate(gm)
    t = flops_pass.totals(gm)
    by_module = _node_flops_by_module(gm)
    dense_params = nonzero = 0
    seen = set()
    for name, mod in gm.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            dense_params += p.numel()
            mask = mask_of(mod, pname)
            nonzero += int(torch.count_nonzero(mask)) if mask is not None else p.numel()
    layers = []
    for rec in state.layers.values():
        new_shapes = {q: list(gm.get_submodule(q).weight.shape) for q in rec.new_modules}
        masks = [mask_of(gm.get_submodule(q)) for q in rec.sparse_modules]
        numel = sum(m.numel() for m in masks)
        sparsity = 1.0 - sum(int(torch.count_nonzero(m)) for m in masks) / numel if numel else 0.0
        layers.append({"name": rec.name, "kind": rec.kind, "member": rec.member, "detail": rec.detail,
                       "orig_shape": list(rec.orig_shape), "new_shapes": new_shapes, "sparsity": sparsity,
                       "absorbed": list(getattr(rec, "absorbed", [])),
                       "densities": {q: state.densities.get(q) for q in rec.sparse_modules},
                       "flops_before": rec.flops_before, "flops_after": by_module.get(rec.name, 0)})
    left = [{"name": k, "reason": v, "flops": by_module.get(k, 0)} for k, v in state.left_dense.items()]
    budget = state.budget_flops or t["total"]
    by_cat = state.budget_by_category or {k: v for k, v in t.items() if k not in ("total", "dense_total")}

    def ratio(count: str) -> float:
        spent = t["total"] if count == "all" else flops_pass.counted_total(t, count)
        base = budget if count == "all" else flops_pass.counted_total(by_cat, count)
        return spent / base if base else 1.0
    mm_budget = flops_pass.matmul_total(by_cat)
    mm = flops_pass.matmul_total(t)
    count = state.policy.count
    return Report(model=state.model_name, policy=str(state.policy), target=state.target,
                  budget_flops=budget, sparse_flops=t["total"],
                  iso_flop_ratio=ratio(count), all_ratio=ratio("all"), layers_ratio=ratio("layers"),
                  preset=getattr(state.policy, "preset", "none"),
                  matmul_budget_flops=mm_budget, matmul_flops=mm, matmul_ratio=mm / mm_budget if mm_budget else 1.0,
                  count=count, uncounted=flops_pass.uncounted(gm), measured=flops_pass.measured(gm),
                  flops_by_category={k: v for k, v in t.items() if k not in ("total", "dense_total")},
                  budget_by_category=dict(state.budget_by_category),
                  original_params=state.original_params or dense_params, dense_params=dense_params,
                  nonzero_params=nonzero, iso_note=state.iso_note, layers=layers, left_dense=left,
                  warnings=list(state.warnings), groups=list(getattr(state, "groups", [])),
                  kernels=dict(getattr(state, "kernels", {})),
                  extended=[{"name": k, **v} for k, v in getattr(state, "extended", {}).items()],
                  ties=ties(gm))
