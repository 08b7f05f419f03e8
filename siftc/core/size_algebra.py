"""couple's symbolic run without torch's ShapeEnv, for graphs made of ops with a size rule.

siftc.symdims runs the graph on fake tensors whose channel sizes are ShapeEnv symbols. That is
general (any op torch can run on symbolic sizes) but slow: each symbol costs ~5 ms of sympy
assumptions, each op a fake dispatch with guards, ~1 s for a ResNet. Most CNNs use a handful of
ops whose size behaviour is simple: a conv or linear ties its input channels to its weight and
gives the weight's output channels (the op registry's ``couple`` rule, siftc/core/ops.py; a
grouped conv adds that the groups divide the output, a depthwise conv's groups are a size of
their own with symdims' "output = multiplier x groups" equation), norms and activations keep
their input's sizes, pools keep the channels, ``add`` broadcasts, ``flatten`` multiplies,
``mean``/``sum``/``amax``/``amin`` drop the dims they reduce, a dropout or stochastic depth that
follows the train flag (passes/mode_ops.py) keeps its input's sizes. This module propagates
sizes through such graphs as plain sympy expressions, with the same symbols (one per channel-like weight dim, named s0, s1, ... in the order symdims makes
them) and records the same size equations, attributed to the node that raises them. The result
is a ``SymbolicRun`` that ``symdims.solve`` takes as it is.

Concatenation is left to the general run on purpose: torch's ShapeEnv eliminates the sum's
symbols in its own order, and the groups it then reports (which dims are free, which shared)
are what siftc has always widened; a different but equivalent parametrization here would change
the widths chosen for concat models. The first node without a rule here ends it: ``direct_run``
returns None and couple runs the general symbolic run instead, so an op this module does not
know is never guessed at. Spatial sizes (and every size that cannot widen) come from
shape-prop's recorded shapes.
"""
from __future__ import annotations

import sympy
import torch
import torch.nn.functional as F
from torch import nn

from siftc.core import ops
from siftc.core.symdims import (_ELEMENTWISE_MODULES, DimRef, Equation, SymbolicRun, _attr_dims, target_name,
                                weight_dims)


class _NoRule(Exception):
    """A node this module has no size rule for: the general symbolic run takes over."""


_POOLS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3, nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3,
          nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
          nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3}
_POOL_FUNCTIONS = {F.adaptive_avg_pool2d: 2, F.avg_pool2d: 2, F.max_pool2d: 2, F.adaptive_avg_pool1d: 1}


def _size(e):
    """A size as the rules take it: a Python int when constant, else the sympy expression."""
    e = sympy.expand(e)
    return int(e) if e.is_number else e


def direct_run(gm: torch.fx.GraphModule, opaque=None, couple_rule=None):
    """The SymbolicRun of ``gm`` by size rules, or None when a node has none (see the module
    docstring). Needs shape-prop's ``siftc.shape`` on every node."""
    modules = dict(gm.named_modules())
    dims, symbols, hints = {}, {}, {}
    shared: dict = {}
    tensor_sizes: dict = {}       # full parameter/buffer name -> tuple of sizes
    count = [0]

    def symbol(ref: DimRef, share=None):
        sym = shared.get(share) if share is not None else None
        if sym is None:
            sym = sympy.Symbol(f"s{count[0]}", positive=True, integer=True)
            count[0] += 1
            if share is not None:
                shared[share] = sym
        dims[ref.key], symbols[ref.key], hints[sym] = ref, sym, ref.hint
        return sym

    # the same symbols, in the same order, as symdims.symbolic_run makes them
    for full, t, refs, share in weight_dims(gm):
        tensor_sizes[full] = tuple(symbol(ref, share) if ref is not None else int(t.shape[d])
                                   for d, ref in enumerate(refs))
    # size attributes after the weights, as symdims makes them: a depthwise conv's groups (its
    # output = multiplier x groups, said up front as there); LayerNorm's normalized_shape: not here
    equations: list = []
    for owner, mod in modules.items():
        for attr, (values, wide) in _attr_dims(mod).items():
            if attr != "groups":
                return None
            key = f"{owner}.{attr}:0" if owner else f"{attr}:0"
            g = symbol(DimRef(key, owner, "attr", attr, 0, values[0]))
            tensor_sizes[f"{owner}.{attr}" if owner else attr] = (g,)
            wkey = f"{owner}.weight:0" if owner else "weight:0"
            if wkey in symbols:
                equations.append(Equation(symbols[wkey] - mod.out_channels // values[0] * g, owner,
                                          "depthwise conv"))

    env: dict = {}

    def equal(a, b, n) -> None:
        if isinstance(a, int) and isinstance(b, int):
            if a != b:
                raise _NoRule()
            return
        equations.append(Equation(sympy.sympify(a) - sympy.sympify(b), n.name, target_name(n)))

    def recorded(n) -> tuple:
        shape = n.meta.get("siftc.shape")
        if not (isinstance(shape, tuple) and all(isinstance(d, int) for d in shape)):
            raise _NoRule()
        return shape

    def sizes_of(owner):
        def sizes(name):
            full = f"{owner}.{name}" if owner else name
            if full in tensor_sizes:
                return tensor_sizes[full]
            value = getattr(modules[owner], name)       # a size attribute kept as it is (groups)
            if not isinstance(value, int):
                raise _NoRule()
            return (value,)
        return sizes

    def tensor_arg(a):
        if not isinstance(a, torch.fx.Node) or not isinstance(env.get(a), tuple):
            raise _NoRule()
        return env[a]

    def broadcast(a, b, n) -> tuple:
        out = []
        for i in range(1, max(len(a), len(b)) + 1):
            x = a[-i] if i <= len(a) else 1
            y = b[-i] if i <= len(b) else 1
            if isinstance(x, int) and x == 1:
                out.append(y)
            elif isinstance(y, int) and y == 1:
                out.append(x)
            else:
                equal(x, y, n)
                out.append(x)
        return tuple(reversed(out))

    def flatten(x, start=0, end=-1) -> tuple:
        start, end = start % len(x), end % len(x)
        prod = sympy.Integer(1)
        for d in x[start:end + 1]:
            prod *= d
        return (*x[:start], _size(prod), *x[end + 1:])

    def reduced(x, args, kwargs) -> tuple:
        # a reduction over listed dims: those dims go (or stay as 1 with keepdim); no size is
        # checked, so no equation. A full reduction, a dtype or anything else: no rule
        if set(kwargs) - {"dim", "keepdim"} or len(args) > 3:
            raise _NoRule()
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        keep = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
        dims = dim if isinstance(dim, (list, tuple)) else [dim]
        if not dims or not all(isinstance(d, int) and -len(x) <= d < len(x) for d in dims) \
                or not isinstance(keep, bool):
            raise _NoRule()
        gone = {d % len(x) for d in dims}
        return tuple(1 if i in gone else s for i, s in enumerate(x) if keep or i not in gone)

    def pooled(x, k, n) -> tuple:
        # channels (and batch) kept; the pooled spatial sizes are fixed: shape-prop's
        shape = recorded(n)
        if len(shape) != len(x) or len(x) < k + 1:
            raise _NoRule()
        return (*x[:-k], *shape[-k:])

    def call_module(n, mod, args, kwargs):
        if opaque is not None and opaque(mod):
            for a in n.all_input_nodes:                 # inputs keep their sizes, outputs as recorded
                for d, h in zip(env.get(a) or (), recorded(a)):
                    if not isinstance(d, int):
                        equal(d, h, n)
            return recorded(n)
        if ops.same_shape_module(mod) and args and not any(
                isinstance(a, torch.fx.Node) for a in (*args[1:], *kwargs.values())):
            return tensor_arg(args[0])
        if kwargs or len(args) != 1:
            raise _NoRule()
        x = tensor_arg(args[0])
        if isinstance(mod, _ELEMENTWISE_MODULES):
            return x
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and len(x) >= 2:
            for name in ("weight", "bias", "running_mean", "running_var"):
                if getattr(mod, name, None) is not None:
                    equal(x[1], sizes_of(n.target)(name)[0], n)
            return x
        if type(mod) in _POOLS:
            return pooled(x, _POOLS[type(mod)], n)
        if type(mod) is nn.Flatten:
            return flatten(x, mod.start_dim, mod.end_dim)
        rule = couple_rule(mod) if couple_rule is not None else None
        got = rule.couple(mod, x, sizes_of(n.target)) if rule is not None and rule.couple is not None else None
        if got is None:
            raise _NoRule()
        for a, b in got[1]:
            equal(a, b, n)
        return tuple(_size(d) if not isinstance(d, int) else d for d in got[0])

    def call_function(n, fn, args, kwargs, method=False):
        if (fn in ops.SAME_SHAPE_FUNCTIONS or (method and fn in ops.SAME_SHAPE_METHODS)) and args:
            return tensor_arg(args[0])
        if fn in ops.BROADCAST_FUNCTIONS or (method and fn in ops.BROADCAST_METHODS):
            if len(args) != 2 or set(kwargs) - {"alpha"}:
                raise _NoRule()
            shapes = [tensor_arg(a) for a in args if isinstance(a, torch.fx.Node)]
            if any(not isinstance(a, (torch.fx.Node, int, float)) for a in args) or not shapes:
                raise _NoRule()
            return shapes[0] if len(shapes) == 1 else broadcast(shapes[0], shapes[1], n)
        if fn in ops.REDUCE_FUNCTIONS or (method and fn in ops.REDUCE_METHODS):
            return reduced(tensor_arg(args[0]), args, kwargs)
        if fn in (torch.flatten, "flatten"):
            x = tensor_arg(args[0])
            rest = list(args[1:]) + [0, -1][len(args) - 1:]       # torch's defaults: start 0, end -1
            return flatten(x, kwargs.get("start_dim", rest[0]), kwargs.get("end_dim", rest[1]))
        if fn in _POOL_FUNCTIONS and args:
            return pooled(tensor_arg(args[0]), _POOL_FUNCTIONS[fn], n)
        raise _NoRule()

    outputs = []
    try:
        for n in gm.graph.nodes:
            if n.op == "placeholder":
                val = n.meta.get("val")
                env[n] = recorded(n) if isinstance(val, torch.Tensor) else None
            elif n.op == "get_attr":
                if n.target not in tensor_sizes:
                    raise _NoRule()
                env[n] = tensor_sizes[n.target]
            elif n.op == "call_module":
                env[n] = call_module(n, gm.get_submodule(n.target), n.args, n.kwargs)
            elif n.op in ("call_function", "call_method"):
                env[n] = call_function(n, n.target, n.args, n.kwargs, method=n.op == "call_method")
            elif n.op == "output":
                for leaf in torch.utils._pytree.tree_leaves(n.args[0]):
                    if isinstance(leaf, torch.fx.Node):
                        outputs += [sympy.sympify(d) for d in tensor_arg(leaf) if not isinstance(d, int)]
    except _NoRule:
        return None
    return SymbolicRun(dims=dims, symbols=symbols, equations=equations, outputs=outputs, hints=hints)
