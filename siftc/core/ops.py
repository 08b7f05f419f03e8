"""The op registry: what siftc knows about each kind of module, in one entry per kind.

One ``ModuleRule`` says, for a torch.nn module kind (in the style of Torch-Pruning's handler
registry):
- ``category`` and ``cost``: its forward FLOPs at the node's shapes (convention in
  passes/README.md, "FLOP convention");
- ``weight``: what roles calls its weight op (``conv``, ``linear``, ``embedding``) or None;
- ``members``: the Sparse-IFT members substitute can build for it (an empty tuple: it is never
  rewritten, only costed);
- ``widen``: whether Sparse Wide may give its weights new sizes.

A module kind without an entry is **opaque**: ``flops`` costs it by running it under
``torch.utils.flop_counter.FlopCounterMode`` on meta tensors (its matmul-class FLOPs), ``roles``
lists its weights as left dense with the reason, and Sparse Wide keeps every channel group its
weights touch at its width (it never widens what it cannot sparsify). Supporting a new kind is
one ``register_module`` call here.

Functions (not modules) are listed by shape behaviour: ``SAME_SHAPE_FUNCTIONS`` (elementwise,
output shaped like the input) and ``BROADCAST_FUNCTIONS`` (two operands broadcast). shape-prop
builds their outputs without a fake dispatch and couple's size rules (siftc/core/size_algebra.py)
propagate channel sizes through them. The other tables (reductions, ``*_like`` factories,
reshapes, transposes, permutes, splits, matmuls, attention) only couple's size rules read. A
function in no table is dispatched by shape-prop, and sends couple to its general symbolic run.

Rules are found by the module's class and then its bases (``nn.Linear`` subclasses are costed as
linears), but members and widening need an entry for the *exact* class: a subclass may change
``forward``, so it is costed and left dense unless it is registered itself.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, unset_fake_temporarily

from siftc.core.mask_api import mask_of

# Members that rebuild a layer (substitute) and those that only mask it at its (possibly
# widened) shape: the latter work on any weight layout.
ALL_MEMBERS = ("sparse", "wide", "parallel", "factorized", "doped")
MASK_ONLY = ("sparse", "wide")


@dataclass(frozen=True)
class ModuleRule:
    name: str
    category: str                 # FLOP category (flops.FlopInfo.category)
    cost: Callable                # (out_shape, in_shape, module, nnz) -> (dense_flops, flops)
    weight: Optional[str] = None  # conv | linear | embedding | None
    members: tuple = ()           # members substitute can build for this exact class
    widen: bool = False           # Sparse Wide may resize its weights (a kind it has no rule for: never)
    exact_only: bool = True       # members/widening only for the exact class (not subclasses)
    shape: Optional[Callable] = None  # (module, x) -> fake output, or None to run the module (shape-prop)
    # (module, input sizes, sizes_of) -> (output sizes, [(size, size) pairs that must be equal]) on
    # couple's symbolic sizes, or None to run the module symbolically (siftc/core/symdims.py);
    # sizes_of(name) gives the sizes of the module's tensor ``name`` as the run sees them
    couple: Optional[Callable] = None


_RULES: dict = {}


def register_module(types, rule: ModuleRule) -> None:
    for t in (types if isinstance(types, tuple) else (types,)):
        _RULES[t] = rule


def rule_for(module) -> Optional[ModuleRule]:
    """The rule of ``module``'s class, else of its nearest registered base class; None: opaque."""
    for klass in type(module).__mro__:
        r = _RULES.get(klass)
        if r is not None:
            return r
    return None


def exact_rule(module) -> Optional[ModuleRule]:
    """The rule registered for exactly ``type(module)`` (members and widening need this)."""
    r = _RULES.get(type(module))
    if r is None:
        r = rule_for(module)
        if r is not None and r.exact_only:
            return None
    return r


# Containers and siftc's own wrapper modules (capture's decomposed attention and mode-aware
# functions register themselves): analyses look inside them, they are never black boxes.
_TRANSPARENT: set = {nn.Sequential, nn.ModuleList, nn.ModuleDict}


def register_transparent(*types) -> None:
    """Declare module kinds whose insides siftc's analyses understand (never opaque)."""
    _TRANSPARENT.update(types)


def opaque(module) -> bool:
    """A module kind siftc does not understand: no rule, or (with parameters) a rule that only
    costs it. Analyses treat it as a black box with fixed input and output sizes."""
    if isinstance(module, tuple(_TRANSPARENT)):
        return False
    r = rule_for(module)
    if r is None:
        return True
    return not (r.weight or r.widen) and any(True for _ in module.parameters())


def members_for(module) -> tuple:
    r = exact_rule(module)
    return r.members if r is not None else ()


def numel(shape) -> int:
    """Elements of a static shape; 0 for an unknown or symbolic one."""
    return math.prod(shape) if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape) else 0


# --- cost functions: (out_shape, in_shape, module, nnz) -> (dense FLOPs, FLOPs with nnz) ------------

def weight_shape(mod) -> tuple:
    """The weight's dense shape, read from its mask when it has one (a lowered sparse kernel
    builds its dense weight only on request)."""
    mask = mask_of(mod)
    return tuple(mask.shape) if mask is not None else tuple(mod.weight.shape)


def linear_flops(out, shape, nnz):
    """(dense, with nnz) FLOPs of a linear with weight ``shape`` (out x in) giving ``out``."""
    out_f, in_f = shape
    rows = numel(out) // out_f
    return 2 * rows * in_f * out_f, 2 * rows * nnz


def conv_flops(out, shape, nnz):
    """2 x output positions x weight entries (flop_counter's conv_flop)."""
    positions = numel(out) // shape[0]          # batch x spatial output positions
    return 2 * positions * math.prod(shape), 2 * positions * nnz


def linear_cost(out, _in, mod, nnz):
    return linear_flops(out, weight_shape(mod), nnz)


def conv_cost(out, _in, mod, nnz):
    return conv_flops(out, weight_shape(mod), nnz)


def conv_transpose_cost(_out, inp, mod, nnz):
    """A transposed conv multiplies every *input* position by every weight entry (flop_counter's
    conv_flop with transposed=True: the input's spatial size, weight stored in x out/g x k)."""
    positions = numel(inp) // mod.weight.shape[0] if inp else 0
    return 2 * positions * mod.weight.numel(), 2 * positions * nnz


def per_output(k: int):
    def cost(out, _in, _mod, _nnz):
        n = k * numel(out)
        return n, n
    return cost


def pool_window_cost(out, _in, mod, _nnz):
    k = mod.kernel_size
    dims = 3 if "3d" in type(mod).__name__ else 2 if "2d" in type(mod).__name__ else 1
    window = math.prod(k) if isinstance(k, tuple) else k ** dims
    return window * numel(out), window * numel(out)


def per_input(_out, inp, _mod, _nnz):
    n = numel(inp) if inp else 0
    return n, n


def free(_out, _in, _mod, _nnz):
    return 0, 0


# --- output shapes shape-prop takes from here instead of running the op on fake tensors ----------------
# A fake conv dispatches through torch's Python meta kernel (~3 ms per call here: 0.35 s of the two
# propagations of a resnet18 parallel:0.75 compile). Only for torch's own forward, a contiguous
# batched input of the layer's dtype and channels, so anything unusual still runs the real op
# (which also raises the real error).

def _own_forward(mod) -> bool:
    """The layer's class runs torch's own forward (not an override)."""
    return type(mod).forward is _OWN_FORWARD.get(type(mod))


def _own(mod, x) -> bool:
    """torch's own forward of the layer's class, on a tensor input."""
    return isinstance(x, torch.Tensor) and _own_forward(mod)


def _plain_input(mod, x, dims: int) -> bool:
    w = getattr(mod, "weight", None)
    return (_own(mod, x) and isinstance(w, torch.Tensor) and w.dtype == x.dtype and x.dim() == dims
            and x.is_contiguous())


def empty_as(x: torch.Tensor, shape=None) -> torch.Tensor:
    """An output of ``shape`` (contiguous) or, without one, of ``x``'s shape and strides, with ``x``'s
    dtype and device. For a FakeTensor ``x`` it is built as one directly: a factory call dispatched
    through FakeTensorMode costs ~150-270 us, this ~27 us (0.3 s of a resnet50 shape-prop)."""
    mode = getattr(x, "fake_mode", None)
    if isinstance(x, FakeTensor) and mode is not None:
        with unset_fake_temporarily():
            meta = (torch.empty(shape, dtype=x.dtype, device="meta") if shape is not None else
                    torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta"))
        return FakeTensor(mode, meta, x.device)
    return torch.empty(shape, dtype=x.dtype, device=x.device) if shape is not None else torch.empty_like(x)


# --- functions by shape behaviour: what shape-prop and couple's size rules know of a function ---
# Output shape = the (first) tensor argument's: elementwise unary functions, and methods that
# copy or alias without reshaping. torch.relu_ and relu(inplace=True) alias their input.
SAME_SHAPE_FUNCTIONS = frozenset({
    F.relu, torch.relu, torch.relu_, F.relu6, F.gelu, F.silu, torch.sigmoid, torch.tanh, F.hardswish,
    F.hardsigmoid, F.dropout, F.leaky_relu, F.elu, F.mish, F.softmax, torch.softmax, F.log_softmax})
SAME_SHAPE_METHODS = frozenset({"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "detach", "softmax",
                                "log_softmax"})
# Output shape = the broadcast of two operands (a tensor and a tensor or a Python number).
BROADCAST_FUNCTIONS = frozenset({operator.add, operator.iadd, operator.mul, operator.imul, operator.sub,
                                 operator.truediv, torch.add, torch.mul, torch.sub})
BROADCAST_METHODS = frozenset({"add", "add_", "mul", "mul_", "sub"})
# Output shape = the input's without the reduced dims (kept as 1 with keepdim=True).
REDUCE_FUNCTIONS = frozenset({torch.mean, torch.sum, torch.amax, torch.amin})
REDUCE_METHODS = frozenset({"mean", "sum", "amax", "amin"})
# The tables below only couple's size rules read (siftc/core/size_algebra.py): they say what
# torch checks on symbolic sizes; shape-prop dispatches these functions. aten ops appear in graphs
# captured with torch.export (Hugging Face models).
_aten = torch.ops.aten
# Output sizes = the first tensor argument's (dtype and layout may differ): factories "like" a
# tensor, casts, elementwise aten ops, comparisons with a number.
SIZE_KEEPING_FUNCTIONS = frozenset({
    torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like, torch.rand_like, torch.randn_like,
    _aten.to.dtype, _aten.to.device, _aten.to.dtype_layout, _aten.to.other, _aten._to_copy.default,
    _aten.contiguous.default, _aten.clone.default, _aten.rsqrt.default, _aten.abs.default,
    _aten.log.default, _aten.exp.default, _aten.neg.default, _aten.pow.Tensor_Scalar, _aten.full_like.default,
    _aten.gt.Scalar, _aten.ge.Scalar, _aten.lt.Scalar, _aten.le.Scalar, _aten.eq.Scalar, _aten.ne.Scalar,
    _aten.softmax.int, _aten._softmax.default, _aten.gelu.default, _aten.relu.default, _aten.tanh.default,
    _aten.silu.default, _aten.sigmoid.default, _aten.rsub.Scalar, _aten.add.Scalar, _aten.sub.Scalar,
    _aten.mul.Scalar, _aten.div.Scalar, torch.rsqrt, torch.abs, torch.log, torch.exp,
    _aten.cos.default, _aten.sin.default, _aten.sqrt.default, _aten.reciprocal.default, _aten.erf.default,
    _aten.logical_not.default, _aten.bitwise_not.default,
    _aten.alias.default, _aten.detach.default, _aten.dropout.default, _aten.type_as.default, torch.cos, torch.sin,
    torch.sqrt})
SIZE_KEEPING_METHODS = frozenset({"to", "float", "type_as", "rsqrt", "abs", "exp"})
# Output sizes = the broadcast of every tensor operand (numbers broadcast as scalars).
BROADCAST_SIZES_FUNCTIONS = frozenset({
    torch.div, torch.where, torch.minimum, torch.maximum, _aten.where.self, _aten.where.ScalarOther,
    _aten.where.ScalarSelf, _aten.min.other, _aten.max.other, _aten.minimum.default, _aten.maximum.default,
    _aten.add.Tensor, _aten.sub.Tensor, _aten.mul.Tensor, _aten.div.Tensor})
BROADCAST_SIZES_METHODS = frozenset({"div", "where"})
# Reshapes (the sizes given, numel kept), dim swaps, splits along a dim (by a size or a list of
# sizes), batched matmuls and attention.
RESHAPE_FUNCTIONS = frozenset({torch.reshape, _aten.view.default, _aten.reshape.default, _aten._unsafe_view.default})
RESHAPE_METHODS = frozenset({"view", "reshape"})
TRANSPOSE_FUNCTIONS = frozenset({torch.transpose, _aten.transpose.int})
TRANSPOSE_METHODS = frozenset({"transpose"})
PERMUTE_FUNCTIONS = frozenset({torch.permute, _aten.permute.default})
PERMUTE_METHODS = frozenset({"permute"})
UNSQUEEZE_FUNCTIONS = frozenset({torch.unsqueeze, _aten.unsqueeze.default})
UNSQUEEZE_METHODS = frozenset({"unsqueeze"})
EXPAND_FUNCTIONS = frozenset({_aten.expand.default})
EXPAND_METHODS = frozenset({"expand"})
SPLIT_FUNCTIONS = frozenset({torch.split, _aten.split.Tensor, _aten.split_with_sizes.default})
SPLIT_METHODS = frozenset({"split"})
CHUNK_FUNCTIONS = frozenset({torch.chunk, _aten.chunk.default})      # a split by ceil(D / chunks)
CHUNK_METHODS = frozenset({"chunk"})
MATMUL_FUNCTIONS = frozenset({operator.matmul, torch.matmul, torch.bmm, _aten.matmul.default, _aten.bmm.default,
                              _aten.mm.default})
MATMUL_METHODS = frozenset({"matmul", "bmm"})
ATTENTION_FUNCTIONS = frozenset({F.scaled_dot_product_attention, torch._C._nn.scaled_dot_product_attention,
                                 _aten.scaled_dot_product_attention.default})
SIZE_FUNCTIONS = frozenset({_aten.sym_size.int})             # x.size(d) in an exported graph
ARANGE_FUNCTIONS = frozenset({torch.arange, _aten.arange.default, _aten.arange.start, _aten.arange.start_step})
SLICE_FUNCTIONS = frozenset({_aten.slice.Tensor})
CAT_FUNCTIONS = frozenset({torch.cat, torch.concat, torch.concatenate, _aten.cat.default})
STACK_FUNCTIONS = frozenset({torch.stack, _aten.stack.default})     # equal shapes, a new dim of their count
SELECT_FUNCTIONS = frozenset({torch.select, _aten.select.int})          # x.select(d, i) = x[..., i] at d
FACTORY_FUNCTIONS = frozenset({torch.zeros, torch.ones, torch.empty, torch.full, _aten.zeros.default,
                               _aten.ones.default, _aten.empty.memory_format, _aten.full.default})
# Rows of a weight looked up by an index tensor: (weight, indices) for aten, (indices, weight) for F.
EMBEDDING_FUNCTIONS = frozenset({_aten.embedding.default})
LAYER_NORM_FUNCTIONS = frozenset({F.layer_norm, _aten.layer_norm.default})
# Advanced indexing x[i0, i1, ...] with index tensors (None keeps a dim): aten.index.Tensor.
INDEX_FUNCTIONS = frozenset({_aten.index.Tensor})
# Constant padding: (x, pad) with pad pairs from the last dim backward.
CONSTANT_PAD_FUNCTIONS = frozenset({torch.constant_pad_nd, _aten.constant_pad_nd.default})   # (x, pad, value)
PAD_FUNCTIONS = frozenset({F.pad, _aten.pad.default}) | CONSTANT_PAD_FUNCTIONS
# Output sizes = the broadcast of the input and its mask (the value a number).
MASKED_FILL_FUNCTIONS = frozenset({torch.masked_fill, _aten.masked_fill.Scalar, _aten.masked_fill.Tensor})
MASKED_FILL_METHODS = frozenset({"masked_fill", "masked_fill_"})
# Repeats: repeat_interleave(x, r, dim) multiplies one dim by an int r, repeat(x, sizes) every dim.
REPEAT_INTERLEAVE_FUNCTIONS = frozenset({torch.repeat_interleave, _aten.repeat_interleave.self_int})
REPEAT_FUNCTIONS = frozenset({_aten.repeat.default})
# A 2-d transpose (numpy's .T, torch's .t()).
REVERSE_FUNCTIONS = frozenset({torch.t, _aten.t.default, _aten.numpy_T.default})
REVERSE_METHODS = frozenset({"t"})
# Module kinds whose output has their first argument's shape when the predicate holds for the
# instance (the other arguments being no tensors): passes register theirs (mode_ops' FollowTraining
# around a dropout or stochastic depth).
SAME_SHAPE_MODULES: dict = {}


def same_shape_module(module) -> bool:
    """Whether ``module``'s output has its first argument's shape (SAME_SHAPE_MODULES)."""
    test = SAME_SHAPE_MODULES.get(type(module))
    return test is not None and bool(test(module))


def linear_shape(mod, x):
    if not (isinstance(x, torch.Tensor) and x.dim() >= 1 and _plain_input(mod, x, x.dim())
            and x.shape[-1] == mod.in_features):
        return None
    return empty_as(x, (*x.shape[:-1], mod.out_features))


def _conv_spatial(mod, spatial):
    """A conv's output spatial sizes (numeric padding); None where the input is too small (the
    real op then raises its own error)."""
    size = []
    for d, n in enumerate(spatial):
        span = n + 2 * mod.padding[d] - mod.dilation[d] * (mod.kernel_size[d] - 1) - 1
        if span < 0:
            return None
        size.append(span // mod.stride[d] + 1)
    return size


def conv_shape(mod, x):
    k = len(mod.kernel_size)
    if not (_plain_input(mod, x, k + 2) and x.shape[1] == mod.in_channels) or isinstance(mod.padding, str):
        return None
    size = _conv_spatial(mod, x.shape[2:])
    return None if size is None else empty_as(x, (x.shape[0], mod.out_channels, *size))


# torch's own forward of every class a shape or couple rule answers for without running it: a
# subclass that overrides forward (or a class not listed) is run instead
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Hardswish, nn.Hardsigmoid,
               nn.LeakyReLU, nn.ELU, nn.Mish)
_OWN_FORWARD = {t: t.forward for t in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm1d, nn.BatchNorm2d,
                                       nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm, *ACTIVATIONS)}


# --- channel coupling: what couple's symbolic run learns from a layer, without running it ----------
# Running a conv or linear on fake tensors with symbolic channel sizes goes through torch's
# dynamic-shape machinery (guards, sympy) per call: most of couple's ~1-2 s on a ResNet. All it
# learns is "input channels = weight in-dim, bias = weight out-dim, output channels = weight
# out-dim", which these rules say directly. A grouped conv says what torch's conv checks on
# symbolic sizes, in the order it checks them: the groups divide the output channels (Mod, which
# keeps widths multiples of the groups), input channels = groups x weight in-dim, then the bias.
# ``groups`` is a number, or a size of its own for a depthwise conv (symdims._attr_dims).

def linear_couple(mod, x, sizes_of):
    """``x``: the input's sizes; ``sizes_of(name)``: the sizes of the module's tensor ``name``
    (symbolic where they may widen). (output sizes, [(size, size) pairs that must be equal])."""
    if not (_own_forward(mod) and len(x) >= 1):
        return None
    w = sizes_of("weight")
    pairs = [(x[-1], w[1])] + ([(w[0], sizes_of("bias")[0])] if mod.bias is not None else [])
    return (*x[:-1], w[0]), pairs


def conv_couple(mod, x, sizes_of):
    """As linear_couple; ``sizes_of("groups")``: the groups, a number or a symbolic size."""
    k = len(mod.kernel_size)
    if not (_own_forward(mod) and len(x) == k + 2) or isinstance(mod.padding, str) \
            or not all(isinstance(d, int) for d in (x[0], *x[2:])):
        return None
    size = _conv_spatial(mod, x[2:])
    if size is None:
        return None
    w = sizes_of("weight")
    groups = sizes_of("groups")[0]
    bias = [(w[0], sizes_of("bias")[0])] if mod.bias is not None else []
    if isinstance(groups, int) and groups == 1:
        return (x[0], w[0], *size), [(x[1], w[1])] + bias
    import sympy          # (imported here: only couple, which loads it anyway, gets this far)
    from torch.utils._sympy.functions import Mod      # the Mod torch's ShapeEnv writes
    g, w0, w1 = size_expr(groups), size_expr(w[0]), size_expr(w[1])
    return (x[0], w[0], *size), [(Mod(w0, g), sympy.Integer(0)), (size_expr(x[1]), g * w1)] + bias


def size_expr(size):
    """A size as a sympy expression: a SymInt's, a number's, or a sympy expression as it is."""
    import sympy
    if isinstance(size, sympy.Basic):
        return size
    return size.node.expr if isinstance(size, torch.SymInt) else sympy.Integer(size)


# --- the entries -------------------------------------------------------------------------------------

register_module(nn.Linear, ModuleRule("linear", "linear", linear_cost, weight="linear", members=ALL_MEMBERS,
                                      widen=True, shape=linear_shape, couple=linear_couple))
register_module((nn.Conv1d, nn.Conv2d, nn.Conv3d),
                ModuleRule("conv", "conv", conv_cost, weight="conv", members=ALL_MEMBERS, widen=True,
                           shape=conv_shape, couple=conv_couple))
# Transposed convs: masking works on any layout and Sparse Parallel copies the layer; factorized
# and doped would need a transposed U with a 1x1 V at another resolution (not built yet).
register_module((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d),
                ModuleRule("conv-transpose", "conv", conv_transpose_cost, weight="conv",
                           members=("sparse", "wide", "parallel"), widen=True))
register_module((nn.Embedding, nn.EmbeddingBag),
                ModuleRule("embedding", "embedding", free, weight="embedding", members=("wide",), widen=True))


def norm_shape(mod, x):
    """A norm's output has its input's shape and dtype: shape-prop takes it from here instead of
    running the norm on fake tensors (eval-mode batch_norm goes through a Python decomposition
    there, measured 7 ms per call, 0.85 s of a resnet18 compile). Only for torch's own norms
    (forward not overridden), with the channel check torch would make; otherwise None (run it)."""
    if not _own(mod, x):
        return None
    w = getattr(mod, "weight", None)
    if isinstance(w, torch.Tensor) and w.dtype != x.dtype:
        return None
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        ok = x.dim() in _BN_DIMS[type(mod)] and x.shape[1] == mod.num_features
    elif isinstance(mod, nn.LayerNorm):
        n = len(mod.normalized_shape)
        ok = x.dim() >= n and tuple(x.shape[-n:]) == tuple(mod.normalized_shape)
    elif isinstance(mod, nn.GroupNorm):
        ok = x.dim() >= 2 and x.shape[1] == mod.num_channels
    else:
        ok = False
    return empty_as(x) if ok else None


_BN_DIMS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}

register_module((nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm),
                ModuleRule("norm", "norm", per_output(4), widen=True, exact_only=False, shape=norm_shape))


def activation_shape(mod, x):
    """An activation's output has its input's shape, strides and dtype (torch's own forward)."""
    return empty_as(x) if _own(mod, x) and x.is_floating_point() else None


register_module(ACTIVATIONS, ModuleRule("activation", "act", per_output(1), widen=True, exact_only=False,
                                         shape=activation_shape))
register_module(nn.PReLU, ModuleRule("activation", "act", per_output(1), widen=True, exact_only=False))
register_module((nn.Softmax, nn.LogSoftmax), ModuleRule("softmax", "softmax", per_output(5), exact_only=False))
register_module((nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d),
                ModuleRule("pool", "pool", pool_window_cost, exact_only=False))
register_module((nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                 nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d),
                ModuleRule("adaptive-pool", "pool", per_input, exact_only=False))
register_module((nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity,
                 nn.Flatten, nn.Unflatten, nn.Upsample, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d,
                 nn.ReflectionPad2d, nn.ChannelShuffle, nn.PixelShuffle, nn.PixelUnshuffle),
                ModuleRule("free", "none", free, exact_only=False))
