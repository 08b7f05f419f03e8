"""Symbolic channel sizes: which weight dimensions must keep one width (Sparse Wide's coupling).

Every channel-like dimension of every parameter and buffer (and the size attributes a module
passes to its op, e.g. LayerNorm.normalized_shape, a depthwise conv's ``groups``) gets its own
symbol. The captured graph then runs once on fake tensors under a ShapeEnv, with those symbolic
sizes and the example inputs' static shapes. Each op checks its operands (add broadcasts, matmul
inner dims, norms, cat/split offsets, view/flatten factors, SDPA heads); the ShapeEnv records
every check as a guard, and we attribute each guard to the node that raised it.

The Eq guards form a system of size equations. ``solve`` expresses every symbol in a few free
ones: divisibility first (``Mod(s, k) == 0`` -> s = k*t, which is how a head count shows up),
exact floor divisions next, then Gaussian elimination with integer pivots. A free symbol is a
channel group; a symbol that comes out constant is tied to an input, an output or a literal size
in the graph. An equation that stays non-linear fixes its symbols, and the report names the node.
Inputs have static shapes, so image channels and token counts come out constant by themselves;
dims that reach the outputs (logits, vocabulary) are fixed afterwards by ``couple``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import sympy
import torch
from torch import nn
from torch.utils._sympy.functions import FloorDiv, Mod, PythonMod

from siftc.core.errors import ShapeError
from siftc.core.ops import ACTIVATIONS, size_expr as _expr

_MODS = (Mod, PythonMod, sympy.Mod)


@dataclass(frozen=True)
class DimRef:
    """One symbolic size: dim ``dim`` of tensor/attribute ``name`` of module ``owner``."""
    key: str        # "layer1.0.conv1.weight:0"
    owner: str      # module path ("" for the root)
    kind: str       # "param" | "buffer" | "attr"
    name: str       # "weight", "running_mean", "normalized_shape", "groups"
    dim: int
    hint: int       # original size


@dataclass
class Equation:
    expr: sympy.Expr      # == 0
    node: str             # node that raised it ("" when unknown)
    target: str = ""


@dataclass
class SymbolicRun:
    dims: dict                                   # key -> DimRef
    symbols: dict                                # key -> sympy.Symbol
    equations: list                              # [Equation]
    outputs: list                                # sympy expressions of every output dim
    hints: dict = field(default_factory=dict)    # Symbol -> int


# ----------------------------------------------------------------------------- which dims
def _symbolic_dims(mod: nn.Module, name: str, t: torch.Tensor) -> list[int]:
    """Dims of ``mod.<name>`` that are channel-like (may widen)."""
    if t.dim() == 0 or not (t.is_floating_point() or t.is_complex()):
        return []      # bool/int buffers are masks and index ranges (causal mask, position ids), not features
    dims = [d for d in range(t.dim()) if t.shape[d] > 1]
    if isinstance(mod, nn.modules.conv._ConvNd) and name == "weight":
        return [d for d in dims if d < 2]          # out, in/groups: never the kernel
    if isinstance(mod, (nn.Embedding, nn.EmbeddingBag)) and name == "weight":
        return [d for d in dims if d == 1]         # the vocabulary is an index range
    return dims


def _attr_dims(mod: nn.Module) -> dict:
    """Size attributes the module passes to its op: {attr: (values, dims that may widen)}."""
    if isinstance(mod, (nn.LayerNorm, nn.RMSNorm)):
        shape = tuple(mod.normalized_shape)
        return {"normalized_shape": (shape, [d for d, v in enumerate(shape) if v > 1])}
    if isinstance(mod, nn.modules.conv._ConvNd) and mod.groups > 1 and mod.groups == mod.in_channels:
        # depthwise (or depthwise multiplier): in == groups, so in and out widen together
        return {"groups": ((mod.groups,), [0])}
    return {}


def weight_dims(gm: torch.fx.GraphModule):
    """(full name, tensor, [DimRef of each dim, None where it cannot widen], share key) of every
    parameter and buffer, in the order both runs (symbolic_run, size_algebra.direct_run) make
    their symbols: one per DimRef, except that refs with one share key get one symbol (a norm's
    per-channel tensors: weight, bias, running stats have one size; creating a ShapeEnv symbol
    is the costliest step of the symbolic run, ~4 ms each, sympy assumptions)."""
    modules = dict(gm.named_modules())
    for kind, named in (("param", gm.named_parameters()), ("buffer", gm.named_buffers())):
        for full, t in named:
            owner, _, name = full.rpartition(".")
            mod = modules[owner]
            wide = _symbolic_dims(mod, name, t)
            share = (owner, "features") if isinstance(mod, _PER_CHANNEL_NORMS) and t.dim() == 1 else None
            yield full, t, [DimRef(f"{full}:{d}", owner, kind, name, d, t.shape[d]) if d in wide else None
                            for d in range(t.dim())], share


# ----------------------------------------------------------------------------- the run
def symbolic_run(gm: torch.fx.GraphModule, example_inputs: tuple, opaque=None, couple_rule=None) -> SymbolicRun:
    """Run ``gm`` on fake tensors with symbolic channel sizes; collect the size equations.

    ``opaque(module) -> bool`` names modules not to run symbolically (kinds the compiler has no
    rule for, e.g. nn.LSTM, whose kernels need concrete sizes): each such call keeps its inputs at
    their sizes (an equation per dim) and returns outputs of the sizes shape-prop recorded, so
    every channel group that reaches one keeps its width. ``couple_rule(module)`` gives the op
    registry's entry, whose ``couple`` function (when it has one) says a layer's equations and
    output without running it symbolically (siftc/core/ops.py)."""
    from torch._dynamo.source import ConstantSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv
    from torch.nn.utils import stateless

    env = ShapeEnv(duck_shape=False, specialize_zero_one=True)
    mode = FakeTensorMode(shape_env=env, allow_non_fake_inputs=True)
    dims, symbols, hints = {}, {}, {}

    shared: dict = {}      # share key -> symbol (sizes that are one size by construction)

    def symint(ref: DimRef, share=None):
        src = ConstantSource(ref.key)
        sym = shared.get(share) if share is not None else None
        if sym is None:
            sym = env.create_symbol(ref.hint, source=src, dynamic_dim=DimDynamic.DYNAMIC)
            if share is not None:
                shared[share] = sym
        dims[ref.key], symbols[ref.key], hints[sym] = ref, sym, ref.hint
        return env.create_symintnode(sym, hint=ref.hint, source=src)

    modules = dict(gm.named_modules())
    fakes: dict = {}
    for full, t, refs, share in weight_dims(gm):
        shape = [symint(ref, share) if ref is not None else t.shape[d] for d, ref in enumerate(refs)]
        with mode:
            fake = torch.empty(shape, dtype=t.dtype, device=t.device)
        # plain fake tensors, not nn.Parameter: wrapping detaches each one through fake
        # dispatch on symbolic strides (measured 2.3 s of resnet50's 6.5 s run under cProfile);
        # the run is in eval mode without autograd and only reads their sizes
        fakes[full] = fake
    patched, equations = [], []
    for owner, mod in modules.items():
        for attr, (values, wide) in _attr_dims(mod).items():
            new = tuple(symint(DimRef(f"{owner}.{attr}:{d}" if owner else f"{attr}:{d}", owner, "attr", attr, d, v))
                        if d in wide else v for d, v in enumerate(values))
            patched.append((mod, attr, getattr(mod, attr)))
            setattr(mod, attr, new if isinstance(getattr(mod, attr), tuple) else new[0])
            wkey = f"{owner}.weight:0" if owner else "weight:0"
            if attr == "groups" and wkey in symbols:   # depthwise: out = multiplier x groups (= in)
                mult = mod.out_channels // values[0]
                equations.append(Equation(symbols[wkey] - mult * new[0].node.expr, owner, "depthwise conv"))

    seen_repl: dict = {}

    class Tracer(torch.fx.Interpreter):
        def call_module(self, target, args, kwargs):
            mod = self.module.get_submodule(target)
            if opaque is not None and opaque(mod):
                return self._black_box(target, args, kwargs)
            fast = _shape_preserving(mod, args, kwargs)
            if fast is None and couple_rule is not None and len(args) == 1 and not kwargs:
                rule = couple_rule(mod)
                x = args[0]
                if rule is not None and rule.couple is not None and isinstance(x, torch.Tensor):
                    fast = rule.couple(mod, tuple(x.shape), lambda name: _sizes_of(mod, name))
                if fast is not None:
                    fast = (torch.empty(fast[0], dtype=x.dtype, device=x.device),
                            [(_expr(a), _expr(b)) for a, b in fast[1]])
            if fast is None:
                return super().call_module(target, args, kwargs)
            for a, b in fast[1]:
                equations.append(Equation(a - b, self._node.name, target))
            return fast[0]

        def _black_box(self, target, args, kwargs):
            for t in torch.utils._pytree.tree_leaves((args, kwargs)):
                if isinstance(t, torch.Tensor):
                    for size in t.shape:
                        if isinstance(size, torch.SymInt):
                            equations.append(Equation(size.node.expr - int(size.node.hint), self._node.name, target))
            recorded = self._node.meta.get("val")
            if recorded is None:
                raise ShapeError(f"node '{self._node.name}': no recorded output shape (run shape-prop first)")
            return torch.utils._pytree.tree_map(
                lambda v: torch.empty(tuple(int(d) for d in v.shape), dtype=v.dtype, device=v.device)
                if isinstance(v, torch.Tensor) else v, recorded)

        def run_node(self, n):
            self._node = n
            before = len(env.guards)
            try:
                result = super().run_node(n)
            except Exception as e:
                err = ShapeError(f"symbolic channel sizes could not be propagated through node '{n.name}' "
                                 f"({n.op} {target_name(n)}): {type(e).__name__}: {str(e).splitlines()[0]}. "
                                 f"Sparse Wide needs every size the node uses to follow from its inputs and "
                                 f"weights; make its module a leaf (leaf_modules=...) without a siftc rule: it is "
                                 f"then kept at its sizes, as the groups it touches; or use a per-layer member "
                                 f"(parallel, factorized, doped)")
                err.node = n
                raise err from None
            for g in env.guards[before:]:
                if isinstance(g.expr, sympy.Eq):
                    equations.append(Equation(g.expr.lhs - g.expr.rhs, n.name, target_name(n)))
            if len(env.replacements) != len(seen_repl):
                for s, e in env.replacements.items():
                    if s not in seen_repl:
                        seen_repl[s] = e
                        equations.append(Equation(s - e, n.name, target_name(n)))
            return result

    was_training = gm.training
    gm.eval()
    try:
        with mode:
            inputs = tuple(mode.from_tensor(x, static_shapes=True) if isinstance(x, torch.Tensor) else x
                           for x in example_inputs)
        with stateless._reparametrize_module(gm, fakes, tie_weights=True), mode:
            out = Tracer(gm).run(*inputs)
    finally:
        for mod, attr, value in patched:
            setattr(mod, attr, value)
        gm.train(was_training)
    outputs = []
    for leaf in torch.utils._pytree.tree_leaves(out):
        if isinstance(leaf, torch.Tensor):
            outputs += [s.node.expr for s in leaf.shape if isinstance(s, torch.SymInt)]
    return SymbolicRun(dims=dims, symbols=symbols, equations=equations, outputs=outputs, hints=hints)


_PER_CHANNEL_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)

_ELEMENTWISE_MODULES = (*ACTIVATIONS, nn.Dropout, nn.Identity)


def _sizes_of(mod, name) -> tuple:
    """The sizes of a module's tensor ``name``, or ``(value,)`` for a size attribute (groups)."""
    v = getattr(mod, name)
    return tuple(v.shape) if isinstance(v, torch.Tensor) else (v,)


def _shape_preserving(mod, args, kwargs):
    """(output, [(a, b) size pairs that must be equal]) for modules whose output has the input's
    shape (activations, dropout, norms in eval mode); None to run the module.

    Running them symbolically costs most of the time (batch_norm and hardtanh decompose into
    dozens of symbolic ops), and all they tell is "these channel sizes are equal".
    """
    if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
        return None
    x = args[0]
    if isinstance(mod, _ELEMENTWISE_MODULES):
        return x, []
    if isinstance(mod, nn.modules.batchnorm._BatchNorm) and x.dim() >= 2:
        c = _expr(x.shape[1])
        tensors = [t for t in (mod.weight, mod.bias, mod.running_mean, mod.running_var) if t is not None]
        return x, [(c, _expr(t.shape[0])) for t in tensors]
    if isinstance(mod, nn.LayerNorm):
        shape = tuple(mod.normalized_shape)
        tail = x.shape[x.dim() - len(shape):]
        pairs = [(_expr(a), _expr(b)) for a, b in zip(tail, shape)]
        for t in (mod.weight, mod.bias):
            if t is not None:
                pairs += [(_expr(a), _expr(b)) for a, b in zip(t.shape, shape)]
        return x, pairs
    return None


def target_name(n) -> str:
    """A node's target as text: a method or module path as it is, a function by its name."""
    t = n.target
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


# ----------------------------------------------------------------------------- the solver
@dataclass
class Solution:
    values: dict      # eliminated Symbol -> expression in free symbols (an Integer when fixed)
    hints: dict       # every symbol (incl. the solver's own) -> original value
    fixed_by: dict    # Symbol -> (node, target, why) for symbols that came out constant
    nonlinear: list   # [Equation] still non-linear: checked at the chosen widths

    def expr(self, sym):
        return self.values.get(sym, sym)


def _divides(a, b) -> bool:
    """True when a/b is a polynomial with integer coefficients (so a//b == a/b exactly)."""
    if b.is_Integer and b != 0:
        return _divides_by_integer(a, int(b))
    return _divides_general(a, b)


def _divides_by_integer(a, b: int) -> bool:
    """``_divides`` for an integer divisor, by reading the expanded terms: every term a monomial
    (symbols to positive integer powers) with a coefficient b divides. The common case (a channel
    shuffle's or a head split's ``FloorDiv(s, k)``, re-checked on every pass of the solver) costs
    ~20 us instead of sympy.cancel + Poly's ~3 ms (measured: 1323 calls, 3.9 s of shufflenet_v2's
    couple). Same answer as the general route: a test compares both on generated expressions."""
    for term, coeff in sympy.expand(a).as_coefficients_dict().items():
        if not (coeff.is_Integer and int(coeff) % b == 0) or not _is_monomial(term):
            return False
    return True


def _is_monomial(e) -> bool:
    if e is sympy.S.One or e.is_Symbol:
        return True
    if e.is_Pow:
        return e.base.is_Symbol and e.exp.is_Integer and e.exp > 0
    return e.is_Mul and all(_is_monomial(f) for f in e.args)


def _divides_general(a, b) -> bool:
    q = sympy.cancel(a / b)
    if not q.free_symbols:
        return bool(q.is_integer)
    syms = sorted(q.free_symbols, key=lambda s: s.name)
    if not q.is_polynomial(*syms):
        return False
    return all(c.is_integer for c in sympy.Poly(q, *syms).coeffs())


def _exact(expr):
    """Replace FloorDiv(a, b) by a/b and Mod(a, b) by 0 where b divides a as polynomials."""
    if not expr.has(FloorDiv, *_MODS):
        return expr

    def simplify(e):
        a, b = e.args
        if not _divides(a, b):
            return e
        return sympy.Integer(0) if isinstance(e, _MODS) else sympy.cancel(a / b)
    return expr.replace(lambda e: isinstance(e, (FloorDiv, *_MODS)), simplify)


def linear_form(expr):
    """({symbol: coeff}, const) when ``expr`` is linear with integer coefficients, else None.

    Read from the expanded terms (each a number, or a symbol times an integer): ~20x cheaper
    than sympy.Poly, which was most of the solver's time on concat-heavy graphs (densenet121:
    2041 calls). A test holds it to the Poly route (``_linear_form_general``)."""
    if expr.has(FloorDiv, *_MODS):
        return None
    if not expr.free_symbols:
        return {}, expr
    coeffs, const = {}, 0
    for term, c in sympy.expand(expr).as_coefficients_dict().items():
        if not c.is_Integer:
            return None
        if term is sympy.S.One:
            const += int(c)
        elif term.is_Symbol:
            coeffs[term] = coeffs.get(term, 0) + int(c)
        else:
            return None
    return {t: c for t, c in sorted(coeffs.items(), key=lambda kv: kv[0].name) if c != 0}, const


def _linear_form_general(expr):
    """``linear_form`` through sympy.Poly (the reference the fast route is tested against)."""
    if expr.has(FloorDiv, *_MODS):
        return None
    syms = sorted(expr.free_symbols, key=lambda s: s.name)
    if not syms:
        return {}, expr
    try:
        poly = sympy.Poly(expr, *syms)
    except sympy.PolynomialError:
        return None
    if poly.total_degree() > 1:
        return None
    coeffs = {s: poly.coeff_monomial(s) for s in syms}
    const = poly.coeff_monomial(1)
    if not all(c.is_integer for c in [*coeffs.values(), const]):
        return None
    return {s: int(c) for s, c in coeffs.items() if c != 0}, int(const)


class _Solver:
    def __init__(self, hints: dict, created: list):
        self.values: dict = {}       # eliminated symbol -> expression in free symbols
        self.users: dict = {}        # free symbol -> eliminated symbols whose value mentions it
        self.hints = dict(hints)
        self.fixed_by: dict = {}
        self.count = 0
        # creation order of the symbols (the weight dims' order, symdims.weight_dims), then the
        # solver's own g<N>. Not their names: ShapeEnv names a symbol by a hash of its source
        # (torch 2.14: s<sha256(name) % 100>), so name order is arbitrary, and the two runs
        # (ShapeEnv, size_algebra) would pick different pivots for the same equations
        self.rank = {sym: i for i, sym in enumerate(dict.fromkeys(created))}

    def order(self, sym) -> int:
        rank = self.rank.get(sym)
        if rank is not None:
            return rank
        digits = sym.name[1:]           # the solver's own g<N>, in the order it made them
        return 1_000_000 + int(digits) if digits.isdigit() else 2_000_000

    def current(self, expr):
        return _exact(sympy.expand(expr.xreplace(self.values))) if self.values else _exact(expr)

    def bind(self, sym, expr, origin: Equation, why: str) -> None:
        expr = sympy.expand(expr)
        where = (origin.node, origin.target, why)
        for k in self.users.pop(sym, ()):
            v = sympy.expand(self.values[k].xreplace({sym: expr}))
            self.values[k] = v
            for f in v.free_symbols:
                self.users.setdefault(f, set()).add(k)
            if v.is_number:
                self.fixed_by.setdefault(k, where)
        self.values[sym] = expr
        for f in expr.free_symbols:
            self.users.setdefault(f, set()).add(sym)
        if expr.is_number:
            self.fixed_by.setdefault(sym, where)

    def fix(self, sym, origin: Equation, why: str) -> None:
        self.bind(sym, sympy.Integer(self.hints[sym]), origin, why)

    def fresh(self, hint: int):
        self.count += 1
        t = sympy.Symbol(f"g{self.count}", positive=True, integer=True)
        self.hints[t] = hint
        return t

    def step(self, eq: Equation) -> bool:
        """Use ``eq`` if it is usable now; True when done with it (used, or true as it stands)."""
        e = self.current(eq.expr)
        if e == 0:
            return True
        if isinstance(e, _MODS) and e.args[1].is_Integer:     # Eq(Mod(a, k), 0): divisibility
            lin = linear_form(e.args[0])
            if lin and len(lin[0]) == 1 and lin[1] == 0:
                (s, c), = lin[0].items()
                k = int(e.args[1]) // math.gcd(c, int(e.args[1]))
                if k > 1:
                    self.bind(s, k * self.fresh(self.hints[s] // k), eq, "divisible")
                return True
            return False
        lin = linear_form(e)
        if lin is None:
            return False
        coeffs, const = lin
        if not coeffs:
            raise ShapeError(f"inconsistent size equation {eq.expr} = 0 raised at node '{eq.node}'")
        # pivot: a symbol whose coefficient divides all the others, newest first, so the
        # earliest weights' symbols stay free and name the groups
        for s in sorted(coeffs, key=lambda s: -self.order(s)):
            c = coeffs[s]
            if all(o % c == 0 for o in [*coeffs.values(), const]):
                rest = sympy.Integer(const) + sum(o * t for t, o in coeffs.items() if t is not s)
                self.bind(s, -rest / sympy.Integer(c), eq, "fixed size" if len(coeffs) == 1 else "tied")
                return True
        if len(coeffs) == 2 and const == 0:     # a*x + b*y = 0, neither divides: x, y = |b|t/g, |a|t/g
            (x, a), (y, b) = coeffs.items()
            if (a > 0) != (b > 0):
                g = math.gcd(a, b)
                t = self.fresh(self.hints[x] * g // abs(b))
                self.bind(x, abs(b) // g * t, eq, "tied")
                self.bind(y, abs(a) // g * t, eq, "tied")
                return True
        return False


def solve(run: SymbolicRun) -> Solution:
    """Express every symbol of ``run`` in free symbols (see the module docstring).

    Dims reaching the model's outputs are fixed. Equations that stay non-linear (e.g. split's
    chunk count, ceil(a/b) == 3) are returned, to be checked at the widths finally chosen.
    """
    solver = _Solver(run.hints, list(run.symbols.values()))
    pending = list(run.equations)
    progress = True
    while progress and pending:
        progress = False
        left = []
        for eq in pending:
            if solver.step(eq):
                progress = True
            else:
                left.append(eq)
        pending = left
    out = Equation(sympy.Integer(0), "output", "output")
    for e in run.outputs:
        for s in solver.current(e).free_symbols:
            solver.fix(s, out, "model output")
    return Solution(values=solver.values, hints=solver.hints, fixed_by=solver.fixed_by,
                    nonlinear=[eq for eq in pending if solver.current(eq.expr) != 0])
