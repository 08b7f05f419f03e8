"""flops: forward FLOPs and weight counts per node, at the example inputs' shapes.

Convention (documented in passes/README.md):
- conv / linear / matmul / bmm: 2 FLOPs per multiply-accumulate, bias adds not counted. This is
  torch.utils.flop_counter's convention (mm_flop = 2*m*n*k; conv_flop = 2*prod(out)*Cin/g*prod(k)),
  so dense totals of these ops equal FlopCounterMode's (tests/test_flops.py checks every zoo model).
- Masked weights count only their non-zeros: 2 * nnz(weight) * output positions (docs/method.md,
  "FLOP accounting": conv/linear FLOPs scale with the mask density).
- scaled_dot_product_attention: the two batched matmuls, 2*B*H*L*S*(E + Ev) (the formula of
  flop_counter's sdpa_flop, which FlopCounterMode does not apply on CPU: it counts 0 there).
- embedding lookups: 0 (a gather). Norms: 4 per output element (subtract mean, multiply by
  rstd, scale, shift; statistics not counted). Activations and elementwise add/mul: 1 per
  output element. Softmax: 5 per element (max, subtract, exp, sum, divide). Pooling: one per
  window element per output. These are counted in their own categories and reported apart.
Writes ``node.meta["siftc.flops"]`` (a FlopInfo).
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from siftc.core.symdims import target_name
from siftc.core import ops
from siftc.core.mask_api import mask_of
from siftc.core.masking import count_mask
from .mode_ops import FollowTraining, TrainingSDPA
from siftc.core.pass_registry import PassResult, register

WEIGHT_CATEGORIES = ("conv", "linear")
# What FlopCounterMode counts (and what hardware spends its time on): the "matmul-class" FLOPs.
# "opaque" is a module without a rule, measured with FlopCounterMode, so it is matmul-class too.
MATMUL_CATEGORIES = ("conv", "linear", "matmul", "attention", "opaque")
# What the authors' FLOP counter counts (forward hooks on conv, linear, norm and pooling modules;
# not activations, residual adds, attention matmuls or embeddings): policy count=layers
LAYER_CATEGORIES = ("conv", "linear", "opaque", "norm", "pool")
# policy key count= -> the categories iso=exact equalises (None: every category)
COUNTED = {"matmul": MATMUL_CATEGORIES, "layers": LAYER_CATEGORIES, "all": None}


@dataclass(frozen=True)
class FlopInfo:
    # conv | linear | matmul | attention | opaque | norm | act | elementwise | softmax | pool | embedding
    # | none (costs nothing) | uncounted (no rule, and FlopCounterMode could not run it: listed in the report)
    category: str
    flops: int           # counted with mask non-zeros
    dense_flops: int     # as if every weight entry were non-zero
    params: int = 0      # weight entries of the op's weight (0 for weightless ops)
    nnz: int = 0         # non-zero (unmasked) weight entries
    note: str = ""       # how a node without a rule was costed (or why it could not be)


def _shape(arg):
    if isinstance(arg, torch.fx.Node):
        s = arg.meta.get("siftc.shape")
        return s if isinstance(s, tuple) and all(isinstance(d, int) for d in s) else None
    if isinstance(arg, torch.Tensor):
        return tuple(arg.shape)
    return None


def _weight_nnz(module) -> tuple[int, int]:
    mask = mask_of(module)
    if mask is not None:
        return mask.numel(), count_mask(mask)
    return module.weight.numel(), module.weight.numel()


def _module_flops(gm, node, mod) -> FlopInfo:
    out = node.meta.get("siftc.shape")
    if isinstance(mod, TrainingSDPA):                 # capture's mode-aware attention (same formula)
        info = _sdpa(node)
        if info is not None:
            return info
    if isinstance(mod, FollowTraining):               # a function call capture made mode-aware
        return _measured(gm, node, "matmul", f"function {getattr(mod.fn, '__name__', mod.fn)} has no siftc rule")
    rule = ops.rule_for(mod)
    if rule is None:                                  # opaque: measured, never silently zero
        return _measured(gm, node, "opaque", f"{type(mod).__name__} has no siftc rule")
    params = nnz = 0
    if rule.weight in ("conv", "linear"):
        params, nnz = _weight_nnz(mod)
    elif rule.weight == "embedding":
        params = nnz = mod.weight.numel()
    d, s = rule.cost(out if isinstance(out, tuple) else None, _shape(node.args[0]) if node.args else None,
                     mod, nnz)
    return FlopInfo(rule.category, s, d, params, nnz)


_ACT_FUNCS = {F.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.leaky_relu, F.elu, torch.relu,
              torch.tanh, torch.sigmoid, F.sigmoid if hasattr(F, "sigmoid") else torch.sigmoid}
_ACT_METHODS = {"relu", "relu_", "tanh", "sigmoid", "gelu"}
_ELEMENTWISE = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd,
                operator.imul, torch.add, torch.sub, torch.mul, torch.div, torch.neg}
_ELEMENTWISE_METHODS = {"add", "add_", "sub", "mul", "mul_", "div", "neg", "masked_fill"}
_MATMUL_FUNCS = {torch.matmul, operator.matmul, torch.bmm, torch.mm}
_MATMUL_METHODS = {"matmul", "bmm", "mm"}
_SDPA = {F.scaled_dot_product_attention, torch.ops.aten.scaled_dot_product_attention.default}
_NORM_FUNCS = {F.layer_norm, F.batch_norm, F.group_norm}
_SOFTMAX_FUNCS = {F.softmax, torch.softmax, F.log_softmax}


# Ops that move or view data and cost nothing: never measured (keeps the FlopCounterMode
# fallback off the hot path of every annotate).
_FREE_FUNCS = {operator.getitem, getattr, torch.flatten, torch.cat, torch.concat, torch.stack, torch.reshape,
               torch.transpose, torch.permute, torch.squeeze, torch.unsqueeze, torch.split, torch.chunk,
               torch.narrow, torch.zeros, torch.ones, torch.arange, torch.full, torch.zeros_like,
               torch.ones_like, torch.empty, torch.tensor, F.dropout, F.pad, torch.roll, torch.where,
               operator.floordiv, operator.mod, operator.lt, operator.gt, operator.le, operator.ge,
               operator.eq, operator.ne, operator.not_, operator.neg, len, F.embedding}
_FREE_METHODS = {"view", "reshape", "permute", "transpose", "contiguous", "size", "flatten", "unsqueeze",
                 "squeeze", "expand", "expand_as", "chunk", "split", "to", "type", "float", "half", "double",
                 "bfloat16", "long", "int", "bool", "dim", "repeat", "unbind", "view_as", "reshape_as",
                 "clone", "detach", "t", "narrow", "masked_fill_", "fill_", "zero_", "numel", "new_zeros",
                 "new_ones", "new_empty", "unflatten", "movedim", "__getitem__", "item", "tolist", "cpu",
                 "cuda", "requires_grad_", "type_as", "split_with_sizes", "roll", "flip"}


def _meta(gm, x):
    """``x`` (an fx argument) as meta tensors: node values from shape-prop, parameters by shape."""
    def one(a):
        if isinstance(a, torch.fx.Node):
            v = a.meta.get("val")
            if v is None and a.op == "get_attr":
                v = _fetch(gm, a.target)
            return torch.fx.node.map_aggregate(v, _to_meta)
        return _to_meta(a)
    return torch.fx.node.map_aggregate(x, one)


def _to_meta(v):
    if isinstance(v, torch.Tensor):
        return torch.empty_strided(tuple(v.shape), tuple(v.stride()), dtype=v.dtype, device="meta")
    return v


def _fetch(gm, target: str):
    return operator.attrgetter(target)(gm)


class _ForeignOps(TorchDispatchMode):
    """Records every op outside aten/prims that runs under it: FlopCounterMode has no formula for
    a custom op (a fused kernel may hide a matmul), so a count that went through one is not a
    count siftc can vouch for."""

    def __init__(self):
        super().__init__()
        self.seen: set = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if getattr(func, "namespace", "aten") not in ("aten", "prims"):
            self.seen.add(str(func))
        return func(*args, **(kwargs or {}))


def _run(gm, node, args, kwargs, state=None):
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if state is None:
            return mod(*args, **kwargs)
        return torch.func.functional_call(mod, state, tuple(args), dict(kwargs), tie_weights=False, strict=False)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    self_, *rest = args
    return getattr(self_, node.target)(*rest, **kwargs)


def measure(gm, node) -> int:
    """Matmul-class FLOPs of one node, measured with FlopCounterMode (math SDPA).

    First on meta tensors (modules through torch.func.functional_call with meta parameters: no
    weight copied, nothing computed). An op that cannot run on meta tensors (a value read with
    ``.item()``) runs for real on zero inputs, as shape-prop does for such leaves. Raises when
    neither runs, or when a custom op without a FLOP formula ran (its cost is unknown)."""
    foreign = _ForeignOps()
    try:
        args, kwargs = _meta(gm, node.args), _meta(gm, node.kwargs)
        state = None
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            state = {k: _to_meta(v) for k, v in
                     [*mod.named_parameters(remove_duplicate=False), *mod.named_buffers(remove_duplicate=False)]}
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, foreign:
            _run(gm, node, args, kwargs, state)
    except Exception:   # noqa: BLE001 - not runnable on meta tensors: run it for real on zeros
        foreign = _ForeignOps()
        args, kwargs = _zeros(gm, node.args), _zeros(gm, node.kwargs)
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, foreign:
            _run(gm, node, args, kwargs)
    if foreign.seen:
        raise RuntimeError(f"custom op(s) {', '.join(sorted(foreign.seen))} without a FLOP formula "
                           f"(neither siftc nor FlopCounterMode knows their cost)")
    return int(counter.get_total_flops())


def _zeros(gm, x):
    """``x`` with every node value as a real zero tensor of its shape (parameters as they are)."""
    def one(a):
        if isinstance(a, torch.fx.Node):
            if a.op == "get_attr":
                return _fetch(gm, a.target)
            return torch.fx.node.map_aggregate(
                a.meta.get("val"),
                lambda v: torch.zeros(tuple(v.shape), dtype=v.dtype) if isinstance(v, torch.Tensor) else v)
        return a
    return torch.fx.node.map_aggregate(x, one)


def _signature(gm, node) -> tuple:
    """What a measurement depends on: the target, argument shapes/constants, the module's tensors."""
    def sig(a):
        v = a.meta.get("val")
        return f"%{tuple(v.shape) if isinstance(v, torch.Tensor) else a.name}"
    parts = [repr(torch.fx.node.map_arg(node.args, sig)), repr(torch.fx.node.map_arg(node.kwargs, sig))]
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        parts.append(tuple((k, tuple(v.shape)) for k, v in mod.state_dict(keep_vars=True).items()
                           if isinstance(v, torch.Tensor)))
    return (node.op, str(node.target), *parts)


def _measured(gm, node, category: str, why: str) -> FlopInfo:
    """A node without a FLOP rule: FlopCounterMode's count, or 'uncounted' with the reason."""
    sig = _signature(gm, node)
    cached = node.meta.get("siftc.measured")
    if cached is not None and cached[0] == sig:
        return cached[1]
    try:
        f = measure(gm, node)
        info = (FlopInfo(category, f, f, note=f"{why}: FlopCounterMode counted its matmul-class FLOPs") if f
                else FlopInfo("none", 0, 0))
    except Exception as e:   # noqa: BLE001 - any failure means: not costed, and said so
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        info = FlopInfo("uncounted", 0, 0, note=f"{why}, and FlopCounterMode could not cost it "
                                                  f"({type(e).__name__}: {msg})")
    node.meta["siftc.measured"] = (sig, info)
    return info


def _matmul(node):
    a, b = _shape(node.args[0]), _shape(node.args[1])
    out = node.meta.get("siftc.shape")
    if not a or not b or not isinstance(out, tuple):
        return FlopInfo("matmul", 0, 0)
    f = 2 * ops.numel(out) * a[-1]
    return FlopInfo("matmul", f, f)


def sdpa_flops(q, k, v) -> int:
    """2*B*H*L*S*(E + Ev): the QK^T and AV batched matmuls (flop_counter's sdpa_flop formula)."""
    *batch, L, E = q
    S, Ev = k[-2], v[-1]
    return 2 * math.prod(batch) * L * S * (E + Ev)


def _sdpa(node):
    """FlopInfo of an attention call from its q, k, v shapes (None when they are unknown)."""
    shapes = [_shape(a) for a in node.args[:3]]
    if not all(shapes):
        return None
    f = sdpa_flops(*shapes)
    return FlopInfo("attention", f, f)


def _function_flops(gm, node) -> FlopInfo:
    t = node.target
    out = node.meta.get("siftc.shape")
    n_out = ops.numel(out) if isinstance(out, tuple) else 0
    if t is F.linear:
        w = _shape(node.args[1] if len(node.args) > 1 else node.kwargs.get("weight"))
        if w:
            d, _ = ops.linear_flops(out, w, 0)
            return FlopInfo("linear", d, d, ops.numel(w), ops.numel(w))
    if t in (F.conv1d, F.conv2d, F.conv3d):
        w = _shape(node.args[1] if len(node.args) > 1 else node.kwargs.get("weight"))
        if w:
            d, _ = ops.conv_flops(out, w, 0)
            return FlopInfo("conv", d, d, ops.numel(w), ops.numel(w))
    if t in _MATMUL_FUNCS:
        return _matmul(node)
    if t in _SDPA:
        info = _sdpa(node)
        if info is not None:
            return info
    if t is F.embedding:
        return FlopInfo("embedding", 0, 0)
    if t in _NORM_FUNCS:
        return FlopInfo("norm", 4 * n_out, 4 * n_out)
    if t in _ACT_FUNCS:
        return FlopInfo("act", n_out, n_out)
    if t in _SOFTMAX_FUNCS:
        return FlopInfo("softmax", 5 * n_out, 5 * n_out)
    if t in _ELEMENTWISE:
        return FlopInfo("elementwise", n_out, n_out)
    if t in (F.adaptive_avg_pool2d, torch.mean):
        n_in = ops.numel(_shape(node.args[0]) or ())
        return FlopInfo("pool", n_in, n_in)
    if t in (F.avg_pool2d, F.max_pool2d):     # one op per window element per output, as the modules
        k = node.args[1] if len(node.args) > 1 else node.kwargs.get("kernel_size")
        window = math.prod(k) if isinstance(k, (tuple, list)) else (k or 1) ** 2
        return FlopInfo("pool", window * n_out, window * n_out)
    if t in _FREE_FUNCS:
        return FlopInfo("none", 0, 0)
    return _measured(gm, node, "matmul", f"function {getattr(t, '__name__', t)} has no siftc rule")


def _method_flops(gm, node) -> FlopInfo:
    out = node.meta.get("siftc.shape")
    n_out = ops.numel(out) if isinstance(out, tuple) else 0
    if node.target in _MATMUL_METHODS:
        return _matmul(node)
    if node.target in _ACT_METHODS:
        return FlopInfo("act", n_out, n_out)
    if node.target in _ELEMENTWISE_METHODS:
        return FlopInfo("elementwise", n_out, n_out)
    if node.target == "softmax":
        return FlopInfo("softmax", 5 * n_out, 5 * n_out)
    if node.target == "mean":
        n_in = ops.numel(_shape(node.args[0]) or ())
        return FlopInfo("pool", n_in, n_in)
    if node.target in _FREE_METHODS:
        return FlopInfo("none", 0, 0)
    return _measured(gm, node, "matmul", f"method .{node.target}() has no siftc rule")


def node_flops(gm, node) -> FlopInfo:
    if node.op == "call_module":
        return _module_flops(gm, node, gm.get_submodule(node.target))
    if node.op == "call_function":
        return _function_flops(gm, node)
    if node.op == "call_method":
        return _method_flops(gm, node)
    return FlopInfo("none", 0, 0)


def annotate(gm) -> None:
    """(Re)compute node.meta["siftc.flops"] for every node; needs shape-prop's meta."""
    for node in gm.graph.nodes:
        node.meta["siftc.flops"] = node_flops(gm, node)


def totals(gm) -> dict:
    """FLOPs by category plus 'total' and 'dense_total' (masks ignored), from node meta."""
    out: dict = {}
    total = dense = 0
    for node in gm.graph.nodes:
        info = node.meta.get("siftc.flops")
        if info is None or info.category in ("none", "uncounted"):
            continue
        out[info.category] = out.get(info.category, 0) + info.flops
        total += info.flops
        dense += info.dense_flops
    out["total"], out["dense_total"] = total, dense
    return out


def matmul_total(by_category: dict) -> int:
    """The matmul-class part of a FLOPs-by-category dict (what FlopCounterMode counts)."""
    return sum(v for k, v in by_category.items() if k in MATMUL_CATEGORIES)


def counted_total(by_category: dict, count: str) -> int:
    """The part of a FLOPs-by-category dict that policy key ``count=`` counts."""
    cats = COUNTED[count]
    return sum(v for k, v in by_category.items() if k not in ("total", "dense_total") and (cats is None or k in cats))


def iso_budget(policy, budget_flops: int, budget_by_category: dict) -> int:
    """The budget iso=exact solves for and verify checks: the original's FLOPs as policy key
    ``count=`` counts them (matmul-class, all, or the authors' layers)."""
    return budget_flops if policy.count == "all" else counted_total(budget_by_category, policy.count)


def uncounted(gm) -> list:
    """[{node, target, reason}] of every node whose cost siftc could not establish."""
    return [{"node": n.name, "target": target_name(n), "reason": n.meta["siftc.flops"].note}
            for n in gm.graph.nodes
            if n.meta.get("siftc.flops") is not None and n.meta["siftc.flops"].category == "uncounted"]


def measured(gm) -> list:
    """[{node, target, flops, note}] of the nodes without a rule that FlopCounterMode costed."""
    return [{"node": n.name, "target": target_name(n), "flops": n.meta["siftc.flops"].flops,
             "reason": n.meta["siftc.flops"].note}
            for n in gm.graph.nodes
            if n.meta.get("siftc.flops") is not None and n.meta["siftc.flops"].note
            and n.meta["siftc.flops"].category != "uncounted"]


@register("flops", "FLOPs and weight counts per node; the first run fixes the dense budget",
          kind="analysis", requires=("shape-prop",))
def flops(gm, ctx) -> PassResult:
    annotate(gm)
    t = totals(gm)
    if ctx.budget_flops is None:             # the original model: this is the iso-FLOP budget
        ctx.budget_flops = t["total"]
        ctx.budget_by_category = {k: v for k, v in t.items() if k not in ("total", "dense_total")}
        ctx.original_params = sum(p.numel() for p in gm.parameters())
        ctx.original_flops_by_node = {n.name: (str(n.target), n.meta["siftc.flops"].category,
                                               n.meta["siftc.flops"].flops)
                                      for n in gm.graph.nodes if n.meta["siftc.flops"].category != "none"}
    return PassResult(gm, False, {"total_flops": t["total"]})
