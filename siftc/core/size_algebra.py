"""couple's symbolic run without torch's ShapeEnv, for graphs made of ops with a size rule.

siftc.symdims runs the graph on fake tensors whose channel sizes are ShapeEnv symbols. That is
general (any op torch can run on symbolic sizes) but slow: each symbol costs ~5 ms of sympy
assumptions, each op a fake dispatch with guards, ~1 s for a ResNet, 5-8 s for gpt3_small. Most
models use a handful of ops whose size behaviour is simple, and this module propagates sizes
through such graphs as plain sympy expressions, with the same symbols (one per channel-like
weight dim, named s0, s1, ... in the order symdims makes them), and records the size equations
torch's checks would raise, attributed to the node that raises them. The result is a
``SymbolicRun`` that ``symdims.solve`` takes as it is. The rules:
- layers: a conv or linear ties its input channels to its weight and gives the weight's output
  channels (the op registry's ``couple`` rule, siftc/core/ops.py; a grouped conv adds that the
  groups divide the output, a depthwise conv's groups are a size of their own with symdims'
  "output = multiplier x groups" equation); BatchNorm and LayerNorm tie their tensors (and
  LayerNorm's normalized_shape) to the input; an embedding appends its row size;
- shape-keeping ops: norms, activations, softmax, dropouts (also those that follow the train
  flag, passes/mode_ops.py), ``zeros_like`` and kin; pools keep the channels; ``add``/``mul``
  broadcast; ``flatten`` multiplies; ``mean``/``sum``/``amax``/``amin`` drop the dims they reduce;
- sizes as Python values: ``x.size()``, ``x.shape``, indexing them, ``//``, ``*``, ``+``, ``-``;
- reshapes: ``view``/``reshape`` keep the element count, and a size ``a // k`` in the new shape
  needs ``k | a`` (the head split: a width = heads x head size; torch's view guard says the
  same); ``transpose``/``permute`` reorder; ``split`` by a size (a ceil equation the chosen
  widths are checked against) or by a list (the sum); ``x[:, 0]``-style indexing that leaves
  widening dims whole;
- ``matmul``/``bmm`` (inner sizes equal, batch dims broadcast) and ``scaled_dot_product_attention``
  (batch and head dims broadcast, so one key/value head serves all query heads; q, k and v share
  the head size, as torch's CPU kernel checks; other head sizes: no rule);
- the aten forms of all these in graphs captured with torch.export (Hugging Face models), and
  what such graphs add: ``unsqueeze``, ``expand`` (a size other than 1 must equal the one
  given), ``slice`` (whole dims, a part of a fixed size, or a literal head or tail of a size
  that may widen: Sparse Wide only widens, so the literal bounds stay inside), ``select``,
  ``where`` and other broadcasting ops, casts and comparisons with a number, factories (``full``, ``zeros``),
  ``embedding`` as a function, ``index`` by index tensors, ``masked_fill`` (input and mask
  broadcast), ``stack``, ``repeat``/``repeat_interleave``, 2-d transposes, and constant ``pad``
  (which, as torch's own pad does on symbolic sizes, fixes every size of its input);
- any other function whose inputs all have fixed sizes (position ids, attention-mask
  arithmetic: ``cumsum``, ``diff``...): its outputs have the fixed sizes shape-prop recorded, and
  no width can reach an equation through it.
Every rule that reshapes checks its output, at the original sizes, against the shape shape-prop
recorded for the node; a mismatch is treated as "no rule".

Concatenation: ``cat`` makes the cat dim the sum of the parts (the other dims equal), ``chunk``
is a split by ceil(D / chunks), as torch computes it. Which dim of "total = sum of parts" the
solver derives is decided by creation order (symdims._Solver), in this run and the symbolic one
alike, so both give the same groups. The first node without a rule here ends it: ``direct_run``
returns None and couple runs the general symbolic run instead, so an op this module does not
know is never guessed at. Tests hold both runs to the same groups, widths and fixed dims on CNNs,
concat models and transformers (tests/test_wide.py). Spatial sizes (and every size that cannot
widen) come from shape-prop's recorded shapes.
"""
from __future__ import annotations

import operator

import sympy
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._sympy.functions import FloorDiv, Mod

from siftc.core import ops
from siftc.core.symdims import (_ELEMENTWISE_MODULES, DimRef, Equation, SymbolicRun, _attr_dims, _divides,
                                target_name, weight_dims)


class _NoRule(Exception):
    """A node this module has no size rule for: the general symbolic run takes over."""


class _Py:
    """A node's value that is not a tensor: a size or a tuple of sizes (``x.size()``, ``x.shape``,
    ``s // 4``), a device or dtype, or the tensors of a split (``parts``: their sizes)."""
    __slots__ = ("value", "parts")

    def __init__(self, value=None, parts=None):
        self.value, self.parts = value, parts


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
    tied: dict = {}           # id(tensor) -> the name named_parameters() gives it (tied weights)
    for full, t, refs, share in weight_dims(gm):
        tensor_sizes[full] = tuple(symbol(ref, share) if ref is not None else int(t.shape[d])
                                   for d, ref in enumerate(refs))
        tied.setdefault(id(t), full)
    # size attributes after the weights, as symdims makes them: a depthwise conv's groups (its
    # output = multiplier x groups, said up front as there) and LayerNorm's normalized_shape
    equations: list = []
    for owner, mod in modules.items():
        for attr, (values, wide) in _attr_dims(mod).items():
            if attr not in ("groups", "normalized_shape"):
                return None
            sizes = tuple(symbol(DimRef(f"{owner}.{attr}:{d}" if owner else f"{attr}:{d}", owner, "attr", attr, d, v))
                          if d in wide else v for d, v in enumerate(values))
            tensor_sizes[f"{owner}.{attr}" if owner else attr] = sizes
            wkey = f"{owner}.weight:0" if owner else "weight:0"
            if attr == "groups" and wkey in symbols:
                equations.append(Equation(symbols[wkey] - mod.out_channels // values[0] * sizes[0], owner,
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
            value = getattr(modules[owner], name)
            if isinstance(value, torch.Tensor) and id(value) in tied:    # a tied weight: its first name's sizes
                return tensor_sizes[tied[id(value)]]
            if not isinstance(value, int):      # a size attribute kept as it is (groups)
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

    def numel(sizes):
        prod = sympy.Integer(1)
        for d in sizes:
            prod *= d
        return prod

    def broadcast_operands(n, args, kwargs, allowed) -> tuple:
        # every tensor operand broadcast with the others (numbers broadcast as scalars)
        if set(kwargs) - allowed:
            raise _NoRule()
        shapes = [tensor_arg(a) for a in args if isinstance(a, torch.fx.Node)]
        if not shapes or any(not isinstance(a, (torch.fx.Node, int, float)) for a in args):
            raise _NoRule()
        out = shapes[0]
        for other in shapes[1:]:
            out = broadcast(out, other, n)
        return out

    def flatten(x, start=0, end=-1) -> tuple:
        start, end = start % len(x), end % len(x)
        return (*x[:start], _size(numel(x[start:end + 1])), *x[end + 1:])

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

    def layer_norm(n, x, shape, tensors) -> tuple:
        # symdims' LayerNorm pairs, in its order: the input's last dims, then weight and bias,
        # equal normalized_shape; the output has the input's sizes
        if len(x) < len(shape):
            raise _NoRule()
        for a, b in zip(x[len(x) - len(shape):], shape):
            equal(a, b, n)
        for t in tensors:
            for a, b in zip(t, shape):
                equal(a, b, n)
        return x

    def pooled(x, k, n) -> tuple:
        # channels (and batch) kept; the pooled spatial sizes are fixed: shape-prop's
        shape = recorded(n)
        if len(shape) != len(x) or len(x) < k + 1:
            raise _NoRule()
        return (*x[:-k], *shape[-k:])

    def call_module(n, mod, args, kwargs):
        if opaque is not None and opaque(mod):
            for a in n.all_input_nodes:                 # inputs keep their sizes, outputs as recorded
                if not isinstance(env.get(a), tuple):
                    raise _NoRule()
                for d, h in zip(env[a], recorded(a)):
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
        if type(mod) is nn.LayerNorm:       # normalized_shape: a size of its own (symdims._attr_dims)
            sizes = sizes_of(n.target)
            return layer_norm(n, x, sizes("normalized_shape"),
                              [sizes(name) for name in ("weight", "bias") if getattr(mod, name, None) is not None])
        if type(mod) is nn.Embedding:        # an index tensor in, a row of the weight per index out
            return checked((*x, sizes_of(n.target)("weight")[1]), n)
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

    # --- Python values (sizes) and the ops that reshape: views, dim swaps, splits, matmuls
    def py(a):
        """A Python argument as a value: an int/float/None as it is, a size node's size."""
        if isinstance(a, torch.fx.Node):
            v = env.get(a)
            if not isinstance(v, _Py) or v.parts is not None:
                raise _NoRule()
            return v.value
        if isinstance(a, (list, tuple)):
            return type(a)(py(b) for b in a)
        if a is None or isinstance(a, (bool, int, float, torch.dtype, torch.device, str)):
            return a
        raise _NoRule()

    def size_arg(a):
        v = py(a)
        if isinstance(v, bool) or not isinstance(v, (int, sympy.Expr)):
            raise _NoRule()
        return v

    def hint(e) -> int:
        """A size at the original sizes (a size that does not evaluate to an integer: no rule)."""
        if isinstance(e, int):
            return e
        value = sympy.sympify(e.xreplace(hints))
        if not value.is_Integer:
            raise _NoRule()
        return int(value)

    def fits(out, shape) -> None:
        """``out`` (sizes a rule gave) at the original sizes is ``shape``, or no rule."""
        if len(shape) != len(out) or any(hint(d) != h for d, h in zip(out, shape)):
            raise _NoRule()

    def checked(out, n) -> tuple:
        """``out`` after checking it against the shape shape-prop recorded for ``n``: a rule that
        does not fit the node falls back, never guesses."""
        fits(out, recorded(n))
        return out

    def reshaped(n, x, sizes):
        # view/reshape: the sizes given (one -1 inferred), the element count kept. A size
        # a // k in the new shape makes the view need k | a: that Mod is what turns a head split
        # into "the width is heads x head size" in the solver (torch's view guard says the same)
        if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
            sizes = sizes[0]
        sizes = [size_arg(d) for d in sizes]
        total = numel(x)
        if sum(1 for d in sizes if isinstance(d, int) and d == -1) > 1:
            raise _NoRule()
        if -1 in [d for d in sizes if isinstance(d, int)]:
            known = sympy.expand(numel(d for d in sizes if not (isinstance(d, int) and d == -1)))
            if _divides(sympy.expand(total), known):
                inferred = _size(sympy.cancel(total / known))
            elif known.is_Integer and hint(total) % int(known) == 0:
                # numel // known, which needs known | numel (torch's view says the same)
                inferred = FloorDiv(sympy.expand(total), known)
                equations.append(Equation(Mod(sympy.expand(total), known), n.name, target_name(n)))
            else:
                raise _NoRule()
            sizes = [inferred if isinstance(d, int) and d == -1 else d for d in sizes]
        sizes = tuple(_size(d) if not isinstance(d, int) else d for d in sizes)
        checked(sizes, n)
        # (only the divisions this view makes: a size that was already a floor division, such
        # as chunk's ceil, is taken as it is)
        inherited = set().union(*(d.atoms(FloorDiv) for d in x if not isinstance(d, int)))
        for e in sizes:
            for f in (e.atoms(FloorDiv) - inherited if not isinstance(e, int) else ()):
                a, k = f.args
                if not k.is_Integer or hint(a) % int(k):
                    raise _NoRule()
                equations.append(Equation(Mod(a, k), n.name, target_name(n)))
        # the dims that merge or split into each other, found as torch's view finds them (at the
        # sizes themselves, here the original ones): each run of old dims whose product is a run
        # of new dims gives one equation. A reshape across the batch (64 rows out of 2 x C)
        # thereby fixes C, where the element count alone would let it grow
        old = [d for d in x if not (isinstance(d, int) and d == 1)]
        new = [d for d in sizes if not (isinstance(d, int) and d == 1)]
        i = j = 0
        while i < len(old) and j < len(new):
            a, b, pa, pb = [old[i]], [new[j]], hint(old[i]), hint(new[j])
            while pa != pb:
                if pa < pb and i + 1 < len(old):
                    i += 1
                    a.append(old[i])
                    pa *= hint(old[i])
                elif pb < pa and j + 1 < len(new):
                    j += 1
                    b.append(new[j])
                    pb *= hint(new[j])
                else:
                    raise _NoRule()
            if sympy.expand(numel(a) - numel(b)) != 0:
                equal(_size(numel(a)), _size(numel(b)), n)
            i, j = i + 1, j + 1
        if i != len(old) or j != len(new):
            raise _NoRule()
        return sizes

    def dim_of(d, x) -> int:
        if not isinstance(d, int) or isinstance(d, bool) or not -len(x) <= d < len(x):
            raise _NoRule()
        return d % len(x)

    def split(n, x, size, dim):
        # by a size s: ceil(D / s) parts (recorded), the last D - (k-1) s; ceil is not linear, so
        # it stays an equation the widths chosen are checked against (as torch's guard does)
        dim = dim_of(dim, x)
        parts = n.meta.get("siftc.shape")
        if not isinstance(parts, tuple) or not parts or not all(isinstance(p, tuple) for p in parts):
            raise _NoRule()
        total = x[dim]
        if isinstance(size, (list, tuple)):
            sizes = [size_arg(d) for d in size]
            equal(_size(sympy.Add(*[sympy.sympify(d) for d in sizes])), total, n)
        else:
            size = size if isinstance(size, sympy.Expr) else size_arg(size)
            k = len(parts)
            count = FloorDiv(sympy.sympify(total) + size - 1, size)
            if not isinstance(total, int) or not isinstance(size, int):
                equations.append(Equation(count - k, n.name, target_name(n)))
            sizes = [size] * (k - 1) + [_size(sympy.sympify(total) - (k - 1) * size)]
        out = [tuple(s if i != dim else d for i, s in enumerate(x)) for d in sizes]
        if len(out) != len(parts):
            raise _NoRule()
        for o, p in zip(out, parts):
            fits(o, p)
        return _Py(parts=out)

    def matmul(n, a, b):
        # (..., m, k) @ (..., k, p): the inner sizes equal, the batch dims broadcast
        if len(a) < 2 or len(b) < 2:
            raise _NoRule()
        equal(a[-1], b[-2], n)
        return checked((*broadcast(a[:-2], b[:-2], n), a[-2], b[-1]), n)

    def expanded(n, args, kwargs):
        # expand: -1 keeps a size, new leading dims take the size given, a 1 becomes the size
        # given, any other size must equal it (torch's check)
        if set(kwargs) - {"implicit"} or len(args) < 2:
            raise _NoRule()
        x = tensor_arg(args[0])
        sizes = [size_arg(d) for d in (args[1] if len(args) == 2 and isinstance(args[1], (list, tuple))
                                       else args[1:])]
        lead = len(sizes) - len(x)
        if lead < 0:
            raise _NoRule()
        out = list(sizes[:lead])
        for d, s in zip(x, sizes[lead:]):
            if isinstance(s, int) and s == -1:
                out.append(d)
            elif isinstance(d, int) and d == 1:
                out.append(s)
            else:
                equal(d, s, n)
                out.append(d)
        if any(isinstance(d, int) and d == -1 for d in out):
            raise _NoRule()
        return checked(tuple(out), n)

    def tensor_list(args, kwargs) -> tuple:
        """(sizes of each tensor of ``cat``/``stack``'s list, all of one rank; the dim argument)."""
        named = dict(zip(("tensors", "dim"), args), **kwargs)
        if set(named) - {"tensors", "dim"} or not isinstance(named.get("tensors"), (list, tuple)):
            raise _NoRule()
        parts = [tensor_arg(t) for t in named["tensors"]]
        if not parts or any(len(p) != len(parts[0]) for p in parts):
            raise _NoRule()
        return parts, named.get("dim", 0)

    def concatenated(n, args, kwargs):
        # cat: the other dims equal, the cat dim the sum (a width made of several groups: the
        # solver's creation-order pivot then derives the same dims the symbolic run derives)
        parts, d = tensor_list(args, kwargs)
        d = dim_of(d, parts[0])
        for p in parts[1:]:
            for i in range(len(p)):
                if i != d:
                    equal(parts[0][i], p[i], n)
        total = _size(sympy.Add(*[sympy.sympify(p[d]) for p in parts]))
        return checked(tuple(total if i == d else s for i, s in enumerate(parts[0])), n)

    def sliced(n, args, kwargs):
        # aten.slice(x, dim, start, end, step): the whole dim (a size that may widen keeps its
        # symbol), or a narrower part of a fixed size (shape-prop's)
        named = dict(zip(("input", "dim", "start", "end", "step"), args), **kwargs)
        if set(named) - {"input", "dim", "start", "end", "step"}:
            raise _NoRule()
        x = tensor_arg(named["input"])
        d = dim_of(named.get("dim", 0), x)
        start, end, step = (py(named.get(k)) for k in ("start", "end", "step"))
        whole = start in (None, 0) and step in (None, 1) and (
            end is None or (isinstance(end, int) and end >= 2 ** 62))
        # a literal part [start, end) of a size that may widen: end below its size now, so below
        # it at any wider size too (Sparse Wide only widens): the part keeps its size
        head = (isinstance(start, int) and isinstance(end, int) and step in (None, 1)
                and 0 <= start <= end < hint(x[d]))
        # the rest from a literal start ([8:] of a rotary half-split): the size minus the start
        to_end = end is None or (isinstance(end, int) and end >= 2 ** 62)
        tail = isinstance(start, int) and step in (None, 1) and to_end and 0 < start < hint(x[d])
        if not whole and not isinstance(x[d], int) and not head and not tail:
            raise _NoRule()
        shape = recorded(n)
        if len(shape) != len(x):
            raise _NoRule()
        part = _size(sympy.sympify(x[d]) - start) if tail and not isinstance(x[d], int) else shape[d]
        return checked(tuple(x[i] if i != d or whole else part for i in range(len(x))), n)

    def attention(n, args, kwargs):
        # q (..., L, E), k (..., S, E), v (..., S, Ev) -> (..., L, Ev); a mask broadcasts to (..., L, S)
        named = dict(zip(("query", "key", "value", "attn_mask", "dropout_p", "is_causal"), args), **kwargs)
        if len(args) > 6 or set(named) - {"query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale"}:
            raise _NoRule()
        q, k, v = (tensor_arg(named.get(name)) for name in ("query", "key", "value"))
        if not len(q) == len(k) == len(v) >= 2:
            raise _NoRule()
        # batch and head dims broadcast, as torch's kernels do (one key/value head for all query
        # heads: multi-query attention)
        lead = broadcast(broadcast(q[:-2], k[:-2], n), v[:-2], n)
        # torch's CPU attention kernel also takes one head size for q, k and v (its check ties
        # them, as the symbolic run shows); a model with another value head size: no rule here
        if hint(q[-1]) != hint(v[-1]):
            raise _NoRule()
        equal(q[-1], k[-1], n)
        equal(q[-1], v[-1], n)
        equal(k[-2], v[-2], n)
        mask = named.get("attn_mask")
        if isinstance(mask, torch.fx.Node):
            broadcast(tensor_arg(mask), (*lead, q[-2], k[-2]), n)
        elif mask is not None:
            raise _NoRule()
        return checked((*lead, q[-2], v[-1]), n)

    def indexed(n, x, index):
        # basic indexing: ``:`` keeps a size, an int drops its dim, None adds a 1, ``...`` keeps the
        # rest; a narrower slice or an int on a size that may widen has no rule here
        index = list(index) if isinstance(index, tuple) else [index]
        if sum(1 for i in index if i is Ellipsis) > 1:
            raise _NoRule()
        if Ellipsis in index:
            at = index.index(Ellipsis)
            used = sum(1 for i in index if i is not None and i is not Ellipsis)
            index[at:at + 1] = [slice(None)] * (len(x) - used)
        out, d = [], 0
        for i in index:
            if i is None:
                out.append(1)
                continue
            if d >= len(x):
                raise _NoRule()
            if isinstance(i, slice) and i == slice(None):
                out.append(x[d])
            elif isinstance(i, bool) or not isinstance(i, (int, slice)) or not isinstance(x[d], int):
                raise _NoRule()
            elif isinstance(i, slice):
                out.append(None)          # a fixed size narrowed: shape-prop's
            d += 1
        out += x[d:]
        shape = recorded(n)
        if len(shape) != len(out):
            raise _NoRule()
        return checked(tuple(shape[k] if o is None else o for k, o in enumerate(out)), n)

    def python_op(n, fn, args, kwargs, method):
        """Ops on Python values and tensor metadata; None when ``fn`` is none of them."""
        if ((method and fn == "size") or fn in ops.SIZE_FUNCTIONS) and args:
            x = tensor_arg(args[0])
            if len(args) == 1 and not kwargs:
                return _Py(tuple(x))
            return _Py(x[dim_of(kwargs.get("dim", args[1] if len(args) > 1 else None), x)])
        if fn is getattr and len(args) == 2 and isinstance(args[1], str):
            v = env.get(args[0]) if isinstance(args[0], torch.fx.Node) else None
            if not isinstance(v, tuple) or args[1] not in ("shape", "device", "dtype"):
                raise _NoRule()
            return _Py(v if args[1] == "shape" else None)
        if fn is operator.getitem and len(args) == 2 and isinstance(args[0], torch.fx.Node):
            v = env.get(args[0])
            if isinstance(v, _Py) and isinstance(args[1], int):
                seq = v.parts if v.parts is not None else v.value
                if not isinstance(seq, (tuple, list)) or not -len(seq) <= args[1] < len(seq):
                    raise _NoRule()
                return seq[args[1]] if v.parts is not None else _Py(seq[args[1]])
            if isinstance(v, _Py):
                raise _NoRule()
            return indexed(n, tensor_arg(args[0]), args[1])
        if fn in (operator.floordiv, operator.mul, operator.add, operator.sub) and not kwargs and not any(
                isinstance(a, torch.fx.Node) and isinstance(env.get(a), tuple) for a in args):
            a, b = (size_arg(x) for x in args)
            if fn is operator.floordiv:
                if isinstance(a, int) and isinstance(b, int):
                    return _Py(a // b)
                return _Py(FloorDiv(sympy.sympify(a), sympy.sympify(b)))
            return _Py(_size(fn(sympy.sympify(a), sympy.sympify(b))))
        return None

    def call_function(n, fn, args, kwargs, method=False):
        value = python_op(n, fn, args, kwargs, method)
        if value is not None:
            return value
        if (fn in ops.SIZE_KEEPING_FUNCTIONS or fn in ops.SAME_SHAPE_FUNCTIONS
                or (method and (fn in ops.SIZE_KEEPING_METHODS or fn in ops.SAME_SHAPE_METHODS))) and args:
            return tensor_arg(args[0])
        if fn in ops.BROADCAST_SIZES_FUNCTIONS or (method and fn in ops.BROADCAST_SIZES_METHODS):
            return broadcast_operands(n, args, kwargs, {"alpha", "rounding_mode"})
        if fn in ops.UNSQUEEZE_FUNCTIONS or (method and fn in ops.UNSQUEEZE_METHODS):
            if kwargs or len(args) != 2 or not isinstance(args[1], int):
                raise _NoRule()
            x = tensor_arg(args[0])
            d = args[1] + len(x) + 1 if args[1] < 0 else args[1]
            if not 0 <= d <= len(x):
                raise _NoRule()
            return (*x[:d], 1, *x[d:])
        if fn in ops.EXPAND_FUNCTIONS or (method and fn in ops.EXPAND_METHODS):
            return expanded(n, args, kwargs)
        if fn in ops.SLICE_FUNCTIONS:
            return sliced(n, args, kwargs)
        if fn in ops.CAT_FUNCTIONS:
            return concatenated(n, args, kwargs)
        if fn in ops.STACK_FUNCTIONS:     # equal shapes, a new dim of their count
            parts, d = tensor_list(args, kwargs)
            for p in parts[1:]:
                for a, b in zip(parts[0], p):
                    equal(a, b, n)
            if not isinstance(d, int) or not -len(parts[0]) - 1 <= d <= len(parts[0]):
                raise _NoRule()
            d %= len(parts[0]) + 1
            return checked((*parts[0][:d], len(parts), *parts[0][d:]), n)
        if fn in ops.SELECT_FUNCTIONS:
            if kwargs or len(args) != 3 or not isinstance(args[2], int):
                raise _NoRule()
            x = tensor_arg(args[0])
            return indexed(n, x, (slice(None),) * dim_of(args[1], x) + (args[2],))
        if fn in ops.FACTORY_FUNCTIONS and args:
            # torch.zeros(2, C) / full([2, C], v): the sizes given (full's value is its last argument)
            given = args[0] if isinstance(args[0], (list, tuple)) else args[:-1] if fn in (
                torch.full, ops._aten.full.default) else args
            return checked(tuple(size_arg(d) for d in given), n)
        if fn in ops.ARANGE_FUNCTIONS:
            # the length must not depend on a channel size (it is a position range)
            if any(not isinstance(py(a), (int, float, type(None))) for a in (*args, kwargs.get("start"),
                                                                             kwargs.get("end"), kwargs.get("step"))):
                raise _NoRule()
            return recorded(n)
        if fn in ops.RESHAPE_FUNCTIONS or (method and fn in ops.RESHAPE_METHODS):
            if kwargs or len(args) < 2:
                raise _NoRule()
            return reshaped(n, tensor_arg(args[0]), list(args[1:]))
        if fn in ops.TRANSPOSE_FUNCTIONS or (method and fn in ops.TRANSPOSE_METHODS):
            if kwargs or len(args) != 3:
                raise _NoRule()
            x = tensor_arg(args[0])
            i, j = dim_of(args[1], x), dim_of(args[2], x)
            out = list(x)
            out[i], out[j] = out[j], out[i]
            return tuple(out)
        if fn in ops.PERMUTE_FUNCTIONS or (method and fn in ops.PERMUTE_METHODS):
            x = tensor_arg(args[0])
            order = kwargs.get("dims", args[1] if len(args) == 2 and isinstance(args[1], (list, tuple))
                               else args[1:])
            order = [dim_of(d, x) for d in order]
            if sorted(order) != list(range(len(x))) or set(kwargs) - {"dims"}:
                raise _NoRule()
            return tuple(x[d] for d in order)
        if fn in ops.SPLIT_FUNCTIONS or (method and fn in ops.SPLIT_METHODS):
            if len(args) < 2 or len(args) > 3 or set(kwargs) - {"dim"}:
                raise _NoRule()
            dim = kwargs.get("dim", args[2] if len(args) > 2 else 0)
            return split(n, tensor_arg(args[0]), args[1], dim)
        if fn in ops.CHUNK_FUNCTIONS or (method and fn in ops.CHUNK_METHODS):
            # chunk(c): a split by ceil(D / c), which is how torch computes it (the same expressions)
            named = dict(zip(("input", "chunks", "dim"), args), **kwargs)
            if set(named) - {"input", "chunks", "dim"} or not isinstance(named.get("chunks"), int):
                raise _NoRule()
            x = tensor_arg(named["input"])
            total, c = x[dim_of(named.get("dim", 0), x)], named["chunks"]
            size = (total + c - 1) // c if isinstance(total, int) else FloorDiv(total + c - 1, c)
            return split(n, x, size, named.get("dim", 0))
        if fn in ops.MATMUL_FUNCTIONS or (method and fn in ops.MATMUL_METHODS):
            if kwargs or len(args) != 2:
                raise _NoRule()
            return matmul(n, tensor_arg(args[0]), tensor_arg(args[1]))
        if fn in ops.ATTENTION_FUNCTIONS:
            return attention(n, args, kwargs)
        if fn in ops.LAYER_NORM_FUNCTIONS:   # as the LayerNorm module, normalized_shape given in the call
            if len(args) > 6 or set(kwargs) - {"weight", "bias", "eps"}:
                raise _NoRule()
            named = dict(zip(("input", "normalized_shape", "weight", "bias", "eps", "cudnn_enable"), args), **kwargs)
            return layer_norm(n, tensor_arg(named["input"]), [size_arg(d) for d in py(named["normalized_shape"])],
                              [tensor_arg(named[k]) for k in ("weight", "bias") if named.get(k) is not None])
        if fn in ops.BROADCAST_FUNCTIONS or (method and fn in ops.BROADCAST_METHODS):
            if len(args) != 2:
                raise _NoRule()
            return broadcast_operands(n, args, kwargs, {"alpha"})
        if fn in ops.REDUCE_FUNCTIONS or (method and fn in ops.REDUCE_METHODS):
            return reduced(tensor_arg(args[0]), args, kwargs)
        if fn in (torch.flatten, "flatten"):
            x = tensor_arg(args[0])
            rest = list(args[1:]) + [0, -1][len(args) - 1:]       # torch's defaults: start 0, end -1
            return flatten(x, kwargs.get("start_dim", rest[0]), kwargs.get("end_dim", rest[1]))
        if fn in _POOL_FUNCTIONS and args:
            return pooled(tensor_arg(args[0]), _POOL_FUNCTIONS[fn], n)
        if fn in ops.EMBEDDING_FUNCTIONS or fn is F.embedding:
            # a row of the weight (rows x width) per index; the rows are never checked (values)
            if len(args) < 2:
                raise _NoRule()
            weight, index = (args[0], args[1]) if fn in ops.EMBEDDING_FUNCTIONS else (args[1], args[0])
            w = tensor_arg(weight)
            if len(w) != 2:
                raise _NoRule()
            return checked((*tensor_arg(index), w[1]), n)
        if fn in ops.INDEX_FUNCTIONS:
            return advanced_index(n, args, kwargs)
        if fn in ops.PAD_FUNCTIONS:
            return padded(n, args, kwargs)
        if fn in ops.MASKED_FILL_FUNCTIONS or (method and fn in ops.MASKED_FILL_METHODS):
            if kwargs or len(args) != 3 or isinstance(args[2], torch.fx.Node):
                raise _NoRule()
            return checked(broadcast(tensor_arg(args[0]), tensor_arg(args[1]), n), n)
        if fn in ops.REPEAT_INTERLEAVE_FUNCTIONS and len(args) == 3 and not kwargs and isinstance(args[1], int):
            x = tensor_arg(args[0])
            d = dim_of(args[2], x)
            return checked(tuple(_size(s * args[1]) if i == d else s for i, s in enumerate(x)), n)
        if fn in ops.REPEAT_FUNCTIONS and len(args) == 2 and not kwargs:
            x, times = tensor_arg(args[0]), [size_arg(r) for r in py(args[1])]
            if len(times) < len(x):
                raise _NoRule()
            lead = len(times) - len(x)
            return checked((*times[:lead], *(_size(sympy.sympify(s) * r) for s, r in zip(x, times[lead:]))), n)
        if fn in ops.REVERSE_FUNCTIONS or (method and fn in ops.REVERSE_METHODS):
            x = tensor_arg(args[0])
            if kwargs or len(args) != 1 or len(x) > 2:
                raise _NoRule()
            return tuple(reversed(x))
        return fixed(n)

    def advanced_index(n, args, kwargs):
        # x[i0, i1, ...] with index tensors: the indexed dims go, the indices' broadcast shape
        # comes in their place (first, when None splits them); the indexed sizes are never
        # checked (index values are bounds-checked at run time, as on fake tensors)
        if kwargs or len(args) != 2 or not isinstance(args[1], (list, tuple)):
            raise _NoRule()
        x = tensor_arg(args[0])
        index = list(args[1])
        if len(index) > len(x) or not any(i is not None for i in index):
            raise _NoRule()
        at = [d for d, i in enumerate(index) if i is not None]
        shape = ()
        for d in at:
            shape = broadcast(shape, tensor_arg(index[d]), n)
        rest = [x[d] for d in range(len(x)) if d >= len(index) or index[d] is None]
        if at == list(range(at[0], at[-1] + 1)):       # adjacent: the result goes where they were
            before = [x[d] for d in range(at[0])]
            return checked((*before, *shape, *rest[len(before):]), n)
        return checked((*shape, *rest), n)

    def padded(n, args, kwargs):
        # constant padding (pairs from the last dim backward): a padded dim grows by both pads.
        # torch's pad specializes every size of its input (the symbolic run fixes them at the
        # pad, padded or not): so does this rule, which keeps a padded tensor's widths
        keys = ("input", "pad", "value") if n.target in ops.CONSTANT_PAD_FUNCTIONS else ("input", "pad", "mode", "value")
        named = dict(zip(keys, args), **kwargs)
        if set(named) - set(keys) or named.get("mode", "constant") != "constant":
            raise _NoRule()
        x = tensor_arg(named["input"])
        pad = [size_arg(p) for p in py(named["pad"])]
        if len(pad) % 2 or len(pad) // 2 > len(x):
            raise _NoRule()
        for d in x:
            if not isinstance(d, int):
                equal(d, hint(d), n)
        out = [hint(d) for d in x]
        for k in range(len(pad) // 2):
            d = len(x) - 1 - k
            out[d] = _size(out[d] + sympy.sympify(pad[2 * k]) + pad[2 * k + 1])
        return checked(tuple(out), n)

    def symbolic(v) -> bool:
        """Whether a node's value carries a size that may widen (a sympy expression)."""
        if isinstance(v, _Py):
            v = v.parts if v.parts is not None else v.value
        if isinstance(v, (tuple, list)):
            return any(symbolic(e) for e in v)
        return isinstance(v, sympy.Expr)

    def fixed(n):
        # any other function whose inputs have fixed sizes only (position ids, attention-mask
        # arithmetic: cumsum, diff, masked_fill on integer tensors...): its outputs have fixed sizes
        # too, shape-prop's, and it can raise no equation on a width. An input that may widen: no rule
        if any(not isinstance(env.get(a), (tuple, _Py)) or symbolic(env[a]) for a in n.all_input_nodes):
            raise _NoRule()
        shape = n.meta.get("siftc.shape")
        if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape):
            return shape
        if isinstance(shape, tuple) and shape and all(
                isinstance(p, tuple) and all(isinstance(d, int) for d in p) for p in shape):
            return _Py(parts=list(shape))
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
