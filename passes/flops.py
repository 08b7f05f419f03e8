"""flops: forward FLOPs and weight counts per node, at the example inputs' shapes.

Convention (documented in passes/README.md):
- conv / linear / matmul / bmm: 2 FLOPs per multiply-accumulate, bias adds not counted. This is
  torch.utils.flop_counter's convention (mm_flop = 2*m*n*k; conv_flop = 2*prod(out)*Cin/g*prod(k)),
  so dense totals of these ops equal FlopCounterMode's (tests/test_flops.py checks every zoo model).
- Masked weights count only their non-zeros: 2 * nnz(weight) * output positions (SPEC.md,
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
from torch import nn

from siftc.kernels import CSRConv2d, CSRLinear
from .registry import PassResult, register

WEIGHT_CATEGORIES = ("conv", "linear")
MATMUL_CATEGORIES = ("conv", "linear", "matmul", "attention")


@dataclass(frozen=True)
class FlopInfo:
    category: str        # conv | linear | matmul | attention | norm | act | elementwise | softmax | pool | embedding | none
    flops: int           # counted with mask non-zeros
    dense_flops: int     # as if every weight entry were non-zero
    params: int = 0      # weight entries of the op's weight (0 for weightless ops)
    nnz: int = 0         # non-zero (unmasked) weight entries


def _numel(shape) -> int:
    return math.prod(shape) if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape) else 0


def _shape(arg):
    if isinstance(arg, torch.fx.Node):
        s = arg.meta.get("siftc.shape")
        return s if isinstance(s, tuple) and all(isinstance(d, int) for d in s) else None
    if isinstance(arg, torch.Tensor):
        return tuple(arg.shape)
    return None


def _weight_nnz(module) -> tuple[int, int]:
    w = module.weight
    mask = getattr(module, "weight_mask", None)
    nnz = int(torch.count_nonzero(mask)) if isinstance(mask, torch.Tensor) else w.numel()
    return w.numel(), nnz


def _linear(out_shape, weight_shape, nnz):
    out_f, in_f = weight_shape
    rows = _numel(out_shape) // out_f
    return 2 * rows * in_f * out_f, 2 * rows * nnz


def _conv(out_shape, weight_shape, nnz):
    cout = weight_shape[0]
    positions = _numel(out_shape) // cout          # batch x spatial output positions
    return 2 * positions * _numel(weight_shape), 2 * positions * nnz


def _module_flops(node, mod) -> FlopInfo:
    out = node.meta.get("siftc.shape")
    n_out = _numel(out) if isinstance(out, tuple) else 0
    if isinstance(mod, (CSRLinear, CSRConv2d)):       # lowered sparse kernels: same count as masked dense
        shape = tuple(mod.weight_mask.shape)
        nnz = int(torch.count_nonzero(mod.weight_mask))
        d, s = (_linear if isinstance(mod, CSRLinear) else _conv)(out, shape, nnz)
        return FlopInfo("linear" if isinstance(mod, CSRLinear) else "conv", s, d, _numel(shape), nnz)
    if isinstance(mod, nn.Linear):
        params, nnz = _weight_nnz(mod)
        d, s = _linear(out, tuple(mod.weight.shape), nnz)
        return FlopInfo("linear", s, d, params, nnz)
    if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        params, nnz = _weight_nnz(mod)
        d, s = _conv(out, tuple(mod.weight.shape), nnz)
        return FlopInfo("conv", s, d, params, nnz)
    if isinstance(mod, (nn.Embedding, nn.EmbeddingBag)):
        return FlopInfo("embedding", 0, 0, mod.weight.numel(), mod.weight.numel())
    if isinstance(mod, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)):
        return FlopInfo("norm", 4 * n_out, 4 * n_out)
    if isinstance(mod, _ACT_MODULES):
        return FlopInfo("act", n_out, n_out)
    if isinstance(mod, (nn.Softmax, nn.LogSoftmax)):
        return FlopInfo("softmax", 5 * n_out, 5 * n_out)
    if isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)):
        k = mod.kernel_size
        window = math.prod(k) if isinstance(k, tuple) else k ** (2 if "2d" in type(mod).__name__ else 1)
        return FlopInfo("pool", window * n_out, window * n_out)
    if isinstance(mod, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        n_in = _numel(_shape(node.args[0]) or ())
        return FlopInfo("pool", n_in, n_in)
    return FlopInfo("none", 0, 0)


_ACT_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Hardswish,
                nn.Hardsigmoid, nn.LeakyReLU, nn.ELU, nn.Mish)
_ACT_FUNCS = {F.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.leaky_relu, F.elu, torch.relu,
              torch.tanh, torch.sigmoid, F.sigmoid if hasattr(F, "sigmoid") else torch.sigmoid}
_ACT_METHODS = {"relu", "relu_", "tanh", "sigmoid", "gelu"}
_ELEMENTWISE = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd,
                operator.imul, torch.add, torch.sub, torch.mul, torch.div, torch.neg}
_ELEMENTWISE_METHODS = {"add", "add_", "sub", "mul", "mul_", "div", "neg", "masked_fill"}
_MATMUL_FUNCS = {torch.matmul, operator.matmul, torch.bmm, torch.mm}
_MATMUL_METHODS = {"matmul", "bmm", "mm"}
_NORM_FUNCS = {F.layer_norm, F.batch_norm, F.group_norm}
_SOFTMAX_FUNCS = {F.softmax, torch.softmax, F.log_softmax}


def _matmul(node):
    a, b = _shape(node.args[0]), _shape(node.args[1])
    out = node.meta.get("siftc.shape")
    if not a or not b or not isinstance(out, tuple):
        return FlopInfo("matmul", 0, 0)
    f = 2 * _numel(out) * a[-1]
    return FlopInfo("matmul", f, f)


def sdpa_flops(q, k, v) -> int:
    """2*B*H*L*S*(E + Ev): the QK^T and AV batched matmuls (flop_counter's sdpa_flop formula)."""
    *batch, L, E = q
    S, Ev = k[-2], v[-1]
    return 2 * math.prod(batch) * L * S * (E + Ev)


def _function_flops(node) -> FlopInfo:
    t = node.target
    out = node.meta.get("siftc.shape")
    n_out = _numel(out) if isinstance(out, tuple) else 0
    if t is F.linear:
        w = _shape(node.args[1] if len(node.args) > 1 else node.kwargs.get("weight"))
        if w:
            d, _ = _linear(out, w, 0)
            return FlopInfo("linear", d, d, _numel(w), _numel(w))
    if t in (F.conv1d, F.conv2d, F.conv3d):
        w = _shape(node.args[1] if len(node.args) > 1 else node.kwargs.get("weight"))
        if w:
            d, _ = _conv(out, w, 0)
            return FlopInfo("conv", d, d, _numel(w), _numel(w))
    if t in _MATMUL_FUNCS:
        return _matmul(node)
    if t is F.scaled_dot_product_attention:
        shapes = [_shape(a) for a in node.args[:3]]
        if all(shapes):
            f = sdpa_flops(*shapes)
            return FlopInfo("attention", f, f)
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
        n_in = _numel(_shape(node.args[0]) or ())
        return FlopInfo("pool", n_in, n_in)
    if t in (F.avg_pool2d, F.max_pool2d):     # one op per window element per output, as the modules
        k = node.args[1] if len(node.args) > 1 else node.kwargs.get("kernel_size")
        window = math.prod(k) if isinstance(k, (tuple, list)) else (k or 1) ** 2
        return FlopInfo("pool", window * n_out, window * n_out)
    return FlopInfo("none", 0, 0)


def _method_flops(node) -> FlopInfo:
    out = node.meta.get("siftc.shape")
    n_out = _numel(out) if isinstance(out, tuple) else 0
    if node.target in _MATMUL_METHODS:
        return _matmul(node)
    if node.target in _ACT_METHODS:
        return FlopInfo("act", n_out, n_out)
    if node.target in _ELEMENTWISE_METHODS:
        return FlopInfo("elementwise", n_out, n_out)
    if node.target == "softmax":
        return FlopInfo("softmax", 5 * n_out, 5 * n_out)
    if node.target == "mean":
        n_in = _numel(_shape(node.args[0]) or ())
        return FlopInfo("pool", n_in, n_in)
    return FlopInfo("none", 0, 0)


def node_flops(gm, node) -> FlopInfo:
    if node.op == "call_module":
        return _module_flops(node, gm.get_submodule(node.target))
    if node.op == "call_function":
        return _function_flops(node)
    if node.op == "call_method":
        return _method_flops(node)
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
        if info is None or info.category == "none":
            continue
        out[info.category] = out.get(info.category, 0) + info.flops
        total += info.flops
        dense += info.dense_flops
    out["total"], out["dense_total"] = total, dense
    return out


@register("flops", "FLOPs and weight counts per node; the first run fixes the dense budget", analysis=True)
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
