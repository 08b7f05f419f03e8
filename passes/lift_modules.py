"""Map ATen-level weight ops back to module calls (capture's second step, fx and export alike).

A graph from torch.export (or an fx trace through a hand-written linear such as GPT-2's
``Conv1D``) calls ``aten.linear``/``addmm``/``conv2d``/``embedding`` on parameters instead of
calling modules. Every node carries ``nn_module_stack`` (the modules whose forward it ran in), so
each module call is a contiguous run of nodes with the same owner. A run is replaced by one
``call_module`` when it has one activation input and one output and touches only its owner's own
parameters/buffers:

- torch.nn leaf modules (the ones torch.fx would not trace into: Linear, Conv2d, Embedding,
  norms, activations, pools, dropout): the model's own module is called, so parameters,
  ties and buffer updates (BatchNorm running stats) are exactly those of eager PyTorch;
- Conv1D-style linears (a childless module with a 2-D ``weight`` of shape in x out used as the
  right operand of one ``addmm``/``mm``/``matmul``, as GPT-2 writes its projections): swapped for
  an ``nn.Linear`` with the weight transposed (same function; the bias Parameter is kept) and
  named in the capture notes.

Runs that do not fit stay as they are; ``normalise_aten`` then rewrites the remaining ATen
calls whose signature matches a torch function (matmul, add, softmax, sdpa, ...) to that
function, so FLOP counting, roles and coupling see one vocabulary.
"""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

from .decompose import TRACE_THROUGH

aten = torch.ops.aten

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _is_torch_leaf(m: nn.Module) -> bool:
    # torch.fx's default leaf rule (Tracer.is_leaf_module), less the layers capture traces through
    return (type(m).__module__.startswith("torch.nn") and not isinstance(m, _CONTAINERS)
            and type(m) not in TRACE_THROUGH)


def _conv1d_like(m: nn.Module) -> bool:
    w, b = getattr(m, "weight", None), getattr(m, "bias", None)
    return (not _is_torch_leaf(m) and not list(m.children()) and isinstance(w, nn.Parameter) and w.dim() == 2
            and (b is None or (isinstance(b, torch.Tensor) and b.shape == (w.shape[1],))))


def _owner(node, model) -> str | None:
    """The outermost module on the node's stack that is liftable (leaf or Conv1D-like)."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    for value in stack.values():
        path = value[0] if isinstance(value, tuple) else value
        try:
            m = model.get_submodule(path) if path else None
        except AttributeError:
            return None
        if m is not None and (_is_torch_leaf(m) or _conv1d_like(m)):
            return path
    return None


def _runs(graph, model):
    """[(path, [nodes])]: maximal contiguous runs of compute nodes with one liftable owner
    (get_attr nodes in between do not break a run)."""
    runs, cur, cur_path = [], [], None
    for n in graph.nodes:
        if n.op == "get_attr":
            continue
        path = _owner(n, model) if n.op in ("call_function", "call_method") else None
        if path is not None and path == cur_path:
            cur.append(n)
            continue
        if cur:
            runs.append((cur_path, cur))
        cur, cur_path = ([n], path) if path is not None else ([], None)
    if cur:
        runs.append((cur_path, cur))
    return runs


def _resolve(model, target: str):
    obj = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


_MATMULS = {aten.addmm.default, aten.mm.default, aten.matmul.default, torch.addmm, torch.mm, torch.matmul}


def _conv1d_as_linear(m: nn.Module, nodes, weight_nodes) -> nn.Linear | None:
    """The nn.Linear equal to a Conv1D-style module, when its run is one x @ W (+ b)."""
    mms = [n for n in nodes if n.target in _MATMULS]
    if len(mms) != 1:
        return None
    mm = mms[0]
    w_arg = mm.args[2] if mm.target in (aten.addmm.default, torch.addmm) else mm.args[1]
    if w_arg not in weight_nodes:
        return None
    w = m.weight
    lin = nn.Linear(w.shape[0], w.shape[1], bias=m.bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        lin.weight = nn.Parameter(w.detach().t().contiguous(), requires_grad=w.requires_grad)
    if m.bias is not None:
        lin.bias = m.bias          # the same Parameter object
    return lin


def lift_modules(gm_or_graph, model: nn.Module) -> tuple[int, list[str]]:
    """Replace liftable runs in the graph by call_module nodes on ``model``'s modules (``model``
    is the root the GraphModule is built on; Conv1D-style modules in it are replaced by
    nn.Linear). Returns (runs lifted, notes)."""
    graph = gm_or_graph.graph if hasattr(gm_or_graph, "graph") else gm_or_graph
    lifted, notes, converted = 0, [], []
    for path, nodes in _runs(graph, model):
        members = set(nodes)
        m = model.get_submodule(path)
        own = {id(t) for t in list(m.parameters()) + list(m.buffers())}
        acts, params = [], []
        for n in nodes:
            for a in n.all_input_nodes:
                if a in members:
                    continue
                if a.op == "get_attr":
                    params.append(a)
                elif not isinstance(a.meta.get("val", a.meta.get("example_value")), (torch.Tensor, type(None))):
                    continue      # a size (SymInt) computed outside: the module call does not need it
                elif a not in acts:
                    acts.append(a)
        outs = [n for n in nodes if any(u not in members for u in n.users)]
        if len(acts) != 1 or len(outs) != 1:
            continue
        try:
            if any(id(_resolve(model, p.target)) not in own for p in params):
                continue            # touches another module's tensors: leave it functional
        except AttributeError:
            continue
        if _conv1d_like(m):
            lin = _conv1d_as_linear(m, nodes, {p for p in params if _resolve(model, p.target) is m.weight})
            if lin is None:
                continue
            model.set_submodule(path, lin)
            converted.append(path)
        with graph.inserting_after(nodes[-1]):
            # create_node: the graph may still belong to export's module, which lacks ``path``
            call = graph.create_node("call_module", path, (acts[0],))
        call.meta["nn_module_stack"] = dict(outs[0].meta.get("nn_module_stack", {}))
        outs[0].replace_all_uses_with(call)
        for n in reversed(nodes):
            graph.erase_node(n)
        lifted += 1
    for n in list(graph.nodes):          # parameters now reached through their module
        if n.op == "get_attr" and not n.users:
            graph.erase_node(n)
    if converted:
        notes.append(f"capture: {len(converted)} Conv1D-style module(s) (weight in x out, x @ W + b) became "
                     f"nn.Linear with the weight transposed: {', '.join(converted[:6])}"
                     + (" ..." if len(converted) > 6 else ""))
    return lifted, notes


# ATen overload -> torch function with the same positional signature (the FLOP rules, roles and
# ONNX export know the torch functions); mapped only when no keyword arguments are given
_ATEN_TO_TORCH = {
    aten.linear.default: F.linear, aten.conv2d.default: F.conv2d, aten.matmul.default: torch.matmul,
    aten.mm.default: torch.mm, aten.bmm.default: torch.bmm,
    aten.scaled_dot_product_attention.default: F.scaled_dot_product_attention,
    aten.add.Tensor: torch.add, aten.sub.Tensor: torch.sub, aten.mul.Tensor: torch.mul,
    aten.div.Tensor: torch.div, aten.add_.Tensor: operator.iadd, aten.mul_.Tensor: operator.imul,
    aten.relu.default: torch.relu, aten.relu_.default: torch.relu_, aten.gelu.default: F.gelu,
    aten.silu.default: F.silu, aten.tanh.default: torch.tanh, aten.sigmoid.default: torch.sigmoid,
    aten.softmax.int: torch.softmax, aten.mean.dim: torch.mean, aten.flatten.using_ints: torch.flatten,
    aten.adaptive_avg_pool2d.default: F.adaptive_avg_pool2d,
}
_MAX_ARGS = {aten.softmax.int: 2, aten.add_.Tensor: 2, aten.mul_.Tensor: 2, aten.add.Tensor: 2,
             aten.sub.Tensor: 2, aten.gelu.default: 1}


def normalise_aten(gm_or_graph) -> int:
    graph = gm_or_graph.graph if hasattr(gm_or_graph, "graph") else gm_or_graph
    count = 0
    for n in graph.nodes:
        fn = _ATEN_TO_TORCH.get(n.target) if n.op == "call_function" else None
        if fn is None or len(n.args) > _MAX_ARGS.get(n.target, 99):
            continue
        if n.kwargs and not (n.target is aten.gelu.default and set(n.kwargs) == {"approximate"}):
            continue
        n.target = fn
        count += 1
    return count
