"""couple: the channel groups that must keep one width (Sparse Wide only).

Runs the graph once with a symbol for every channel-like weight dimension and solves the size
equations the ops raise: by per-op size rules (siftc.size_algebra) when every node has one, else
on torch's symbolic shapes (siftc.symdims); both give the same equations (tested). Each free
symbol left is a channel group: every weight dim in it is ``coeff x symbol`` (coeff > 1 where a
view splits the group into heads: the head count is kept and the head size grows). Dims that
come out constant are tied to the model's inputs or outputs or to a literal size in the graph;
they keep their size and the report lists them with the node responsible. Groups joined by a
concat (a dim that is the sum of several groups) form one region (networkx connected
components), reported together.

Writes ``ctx.coupling`` (a Coupling), ``ctx.groups`` (report rows) and, on every call_module node
with weights, ``node.meta["siftc.group"]``: {"weight": ("G3", None, ...), ...} (the group of each
dim; None where the dim is fixed or not channel-like).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import networkx as nx
import sympy
import torch

from siftc.core.symdims import DimRef, Solution, SymbolicRun, solve, symbolic_run
from siftc.core import ops
from siftc.core.size_algebra import direct_run
from siftc.core.pass_registry import PassResult, register


@dataclass
class ChannelGroup:
    name: str                 # "G0", "G1", ... in order of first appearance
    symbol: sympy.Symbol      # the free symbol
    unit: int                 # smallest coefficient among its members (the head count, or 1)
    width: int                # original width: unit x symbol's original value
    members: list = field(default_factory=list)   # [(dim key, coefficient)]
    shared: list = field(default_factory=list)    # dim keys that are sums with other groups (concat)
    region: int = 0           # networkx component (groups joined by concat)
    new_width: int = 0        # set by substitute (wide)
    fixed: str = ""           # why the group keeps its width (set by substitute when it must)


@dataclass
class Coupling:
    run: SymbolicRun
    solution: Solution
    groups: list                      # [ChannelGroup]
    fixed: dict                       # dim key -> (size, reason) of dims that keep their size
    engine: str = "symbolic"          # "rules" (siftc.size_algebra) or "symbolic" (torch ShapeEnv)

    def expr(self, key: str):
        return self.solution.expr(self.run.symbols[key])

    @property
    def dims(self) -> dict:
        return self.run.dims


def _reason(where) -> str:
    node, target, why = where
    if why == "model output":
        return "reaches a model output (logits / classes keep their size)"
    if why == "non-linear size relation":
        return f"non-linear size relation at node '{node}' ({target})"
    return f"tied to a fixed size at node '{node}' ({target}): a model input or a literal size in the graph"


def build_groups(run: SymbolicRun, sol: Solution) -> tuple[list, dict]:
    by_symbol: dict = {}
    shared: dict = {}
    fixed: dict = {}
    graph = nx.Graph()
    for key, sym in run.symbols.items():
        e = sol.expr(sym)
        if e.is_number:
            ref = run.dims[key]
            fixed[key] = (int(e), _reason(sol.fixed_by.get(sym, ("?", "?", "fixed size"))) if ref.hint > 1 else "")
            continue
        free = sorted(e.free_symbols, key=lambda s: s.name)
        graph.add_nodes_from(free)
        # c x symbol (a number c): a member of that symbol's group (e / symbol is a number only
        # then; sympy.Poly's coeff_monomial said the same at ~1 ms a call, 0.24 s of a ResNet)
        if len(free) == 1 and (e / free[0]).is_number:
            by_symbol.setdefault(free[0], []).append((key, int(e / free[0])))
        else:
            for s in free:
                shared.setdefault(s, []).append(key)
            # a chain joins them into one component as all pairs would (densenet121: 290 sums
            # of up to ~60 groups each, 0.45 s as all pairs)
            nx.add_path(graph, free)
    region = {s: i for i, comp in enumerate(nx.connected_components(graph)) for s in comp}
    groups = []
    order = {sym: i for i, sym in enumerate(run.symbols.values())}
    for sym in sorted(graph.nodes, key=lambda s: min((order.get(run.symbols[k], 0) for k, _ in by_symbol.get(s, [])),
                                                        default=len(order))):
        members = by_symbol.get(sym, [])
        unit = min((c for _, c in members), default=1)
        groups.append(ChannelGroup(name=f"G{len(groups)}", symbol=sym, unit=unit, width=unit * sol.hints[sym],
                                   members=members, shared=shared.get(sym, []), region=region[sym]))
    return groups, fixed


# The symbolic run costs seconds on large models; compiles of one model at several sparsities
# (tests, sweeps) share it. Key: graph code, every weight shape and module size attribute, inputs.
_CACHE: dict = {}
_CACHE_SIZE = 8


def _cache_key(gm, inputs) -> str:
    h = hashlib.sha256(gm.code.encode())
    for name, t in list(gm.named_parameters()) + list(gm.named_buffers()):
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
    for name, m in gm.named_modules():
        h.update(f"{name}:{type(m).__name__}:{getattr(m, 'groups', '')}:{getattr(m, 'normalized_shape', '')}".encode())
    for x in inputs:
        h.update(repr((tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else x).encode())
    return h.hexdigest()


def couple_graph(gm, inputs) -> Coupling:
    key = _cache_key(gm, inputs)
    if key not in _CACHE:
        # per-op size rules where every node has one (fast); else torch's symbolic shapes
        run = direct_run(gm, opaque=ops.opaque, couple_rule=ops.rule_for)
        engine = "rules" if run is not None else "symbolic"
        if run is None:
            run = symbolic_run(gm, inputs, opaque=ops.opaque, couple_rule=ops.rule_for)
        sol = solve(run)
        groups, fixed = build_groups(run, sol)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (run, sol, groups, fixed, engine)
    run, sol, groups, fixed, engine = _CACHE[key]
    fresh = [ChannelGroup(**{**g.__dict__, "members": list(g.members), "shared": list(g.shared)}) for g in groups]
    return Coupling(run=run, solution=sol, groups=fresh, fixed=dict(fixed), engine=engine)


def _annotate(gm, coupling: Coupling) -> None:
    name_of = {g.symbol: g.name for g in coupling.groups}
    by_tensor: dict = {}      # id(parameter/buffer) -> {dim: group}; tied parameters share one entry
    by_attr: dict = {}        # (owner, attribute) -> {dim: group}
    for key, ref in coupling.dims.items():
        syms = sorted(coupling.expr(key).free_symbols, key=lambda s: s.name)
        group = "+".join(name_of[s] for s in syms) if syms else None
        if ref.kind == "attr":
            by_attr.setdefault((ref.owner, ref.name), {})[ref.dim] = group
        else:
            by_tensor.setdefault(id(getattr(gm.get_submodule(ref.owner), ref.name)), {})[ref.dim] = group
    for n in gm.graph.nodes:
        n.meta.pop("siftc.group", None)
        if n.op != "call_module":
            continue
        mod = gm.get_submodule(n.target)
        info = {}
        for name, t in [*mod.named_parameters(recurse=False), *mod.named_buffers(recurse=False)]:
            if id(t) in by_tensor:
                info[name] = tuple(by_tensor[id(t)].get(d) for d in range(t.dim()))
        for (owner, name), dims in by_attr.items():
            if owner == n.target:
                value = getattr(mod, name)
                info[name] = tuple(dims.get(d) for d in range(len(value) if isinstance(value, tuple) else 1))
        if info:
            n.meta["siftc.group"] = info


@register("couple", "channel groups that must keep one width (Sparse Wide), by symbolic sizes",
          kind="analysis", requires=("shape-prop",), once=True)
def couple(gm, ctx) -> PassResult:
    if ctx.policy.member != "wide":
        return PassResult(gm, False, {"groups": 0})
    coupling = couple_graph(gm, ctx.example_inputs)
    _annotate(gm, coupling)
    ctx.coupling = coupling
    return PassResult(gm, False, {"groups": len(coupling.groups), "fixed_dims": len(coupling.fixed),
                                  "run": coupling.engine})


__all__ = ["ChannelGroup", "Coupling", "couple_graph", "DimRef"]
