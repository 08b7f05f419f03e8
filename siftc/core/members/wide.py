"""Sparse Wide: widen every free channel group of the network at once (docs/method.md, "Sparse Wide is a
whole-graph rewrite").

Width rule. The nominal factor is f = sqrt(1/(1-s)) (sparse FLOPs (1-s) f^2 F = F per interior
layer); ``width=reference`` uses the reference code's sqrt(round(1/(1-s))) with truncation, which
gives ResNet-18's base widths 90/128/202 at s = .5/.75/.9. The *main* group (the one with the
most weight dims: the residual stream) is widened and rounded first; its realised factor F is then
applied to every other group, each rounded to its own multiple, so ratios such as FFN = 4 x d_model
or the 64/128/256/512 stage widths survive rounding. Multiples: the head count where a group is
split into heads (the head count is kept, the head size grows), ``round`` (default 8) elsewhere;
a group too narrow to widen when rounded to the nearest multiple is rounded up instead.
A dim that is a sum or difference of groups (a concat branch solved as total - other branches) is
not rounded by itself: when the rounded groups leave it below its original size x F (or at 0), the
group it is taken from is widened by whole multiples until it is not (``_grow_derived``).

Rebuild. Weight dims are rewritten in place on the captured copy: every parameter, buffer and
size attribute whose size is ``coeff x group`` gets its new size, and the module's own size fields
(in_features, out_channels, num_features, ...) follow. Sparse weights (role ``sparsifiable``)
are Kaiming-normal on the full new shape and get a mask; the parts docs/method.md keeps dense (stem,
head, embeddings, norms, biases) get fresh values of the same kind (Kaiming for conv/linear,
the original constant or the original mean/std otherwise). A tied parameter stays one object.
"""
from __future__ import annotations

import math

import sympy
import torch
from torch import nn

from siftc.core.errors import UsageError, VerifyError
from siftc.core.mask_api import is_masked
from siftc.core.symdims import linear_form
from siftc.core.members.base import kaiming_std, mark_pending, mark_sparse


def wide_factor(policy) -> float:
    k = 1.0 / (1.0 - policy.sparsity)
    if policy.width == "reference":
        return math.sqrt(math.floor(k + 0.5))
    return math.sqrt(k)


def round_to(x: float, multiple: int) -> int:
    return max(multiple, multiple * math.floor(x / multiple + 0.5))


def _widened(width: int, x: float, multiple: int) -> int:
    """``x`` rounded to the nearest multiple, or up to the next one when the nearest would not
    widen the group at all (an 8-wide group at x = 11.3 becomes 16, not 8)."""
    new = round_to(x, multiple)
    if new <= width < x:
        new = multiple * math.ceil(x / multiple)
    return new


def choose_widths(coupling, policy) -> dict:
    """New width of every free group (sets ``group.new_width``); returns {symbol: new value}."""
    free = [g for g in coupling.groups if not g.fixed]
    for g in coupling.groups:
        if g.fixed:
            g.new_width = g.width
    if free:
        _grow_derived(coupling, policy, _widen_free(free, policy))
    # width = unit x symbol's value, for kept groups too (new_width = width)
    return {g.symbol: g.new_width // g.unit for g in coupling.groups}


def _widen_free(free: list, policy) -> float:
    """Widen the main group, then every other free group by its realised factor (returned)."""
    main = max(free, key=lambda g: (len(g.members), g.width))
    f = wide_factor(policy)
    target = math.floor(main.width * f) if policy.width == "reference" else main.width * f
    main.new_width = _widened(main.width, target, _multiple(main, policy))
    factor = main.new_width / main.width
    for g in free:
        if g is not main:
            g.new_width = _widened(g.width, g.width * factor, _multiple(g, policy))
    return factor


def _multiple(g, policy) -> int:
    """What a group's width is rounded to: its head count, or ``round``; with a structured mask
    pattern also whole blocks (block:BxB) or N:M groups."""
    pattern = policy.mask_pattern
    block = pattern.block if pattern.kind == "block" else pattern.m if pattern.kind == "nm" else 1
    base = g.unit if g.unit > 1 else policy.round
    return base * block // math.gcd(base, block)


def _grow_derived(coupling, policy, factor: float) -> None:
    """Widen the groups a derived dim is taken from until that dim is >= floor(orig x ``factor``).

    The solver keeps one symbol per concat branch but one of them, e.g. the last branch, can come
    out as (concat total) - (other branches): a dim couple lists in its groups' ``shared``. The
    groups are rounded independently, so that difference can shrink or vanish: a 4-wide branch of
    a 12-wide concat next to an 8-wide one becomes 16 - 16 = 0 when 12 -> 16 and 8 -> 16. The fix
    adds whole multiples to a free group with a positive coefficient (the total) until every
    derived dim has its share; repeated, because growing one total can shrink a dim that subtracts
    it. Kept groups count at their own width."""
    groups = {g.symbol: g for g in coupling.groups}
    derived = []                                    # (dim key, {symbol: coeff}, const), linear ones
    for key in dict.fromkeys(k for g in coupling.groups if not g.fixed for k in g.shared):
        lin = linear_form(coupling.expr(key))
        if lin is not None and len(lin[0]) > 1:
            derived.append((key, *lin))
    hints = coupling.solution.hints
    for _ in range(4 * len(derived) + 1):
        short = []
        for key, coeffs, const in derived:
            orig = const + sum(c * hints[s] for s, c in coeffs.items())
            now = const + sum(c * (groups[s].new_width // groups[s].unit) for s, c in coeffs.items())
            need = max(1, math.floor(orig * factor))
            if now < need:
                short.append((key, coeffs, need - now))
        if not short:
            return
        key, coeffs, deficit = short[0]
        ups = [(c, groups[s]) for s, c in coeffs.items() if c > 0 and not groups[s].fixed]
        if not ups:
            break
        coeff, g = max(ups, key=lambda cg: cg[1].new_width)
        step = _multiple(g, policy) // g.unit        # symbol values per multiple of the group's width
        g.new_width += g.unit * step * math.ceil(deficit / (coeff * step))
    raise UsageError(f"wide: the dims {', '.join(k for k, _, _ in short)} (sums of channel groups, e.g. concat "
                     f"branches) cannot all keep a positive widened size; exclude the concat's layers "
                     f"(exclude=...) or use another member")


def check_nonlinear(coupling, values: dict) -> list:
    """Groups whose chosen widths break a non-linear size relation; marks them fixed."""
    broken = []
    by_symbol = {g.symbol: g for g in coupling.groups}
    chosen = {s: sympy.Integer(v) for s, v in values.items()}
    for eq in coupling.solution.nonlinear:
        solved = eq.expr.xreplace(coupling.solution.values)
        if sympy.simplify(solved.xreplace(chosen)) != 0:
            for s in solved.free_symbols:
                g = by_symbol.get(s)
                if g is not None and not g.fixed:
                    g.fixed = f"a non-linear size relation at node '{eq.node}' ({eq.target}) does not hold when widened"
                    broken.append(g)
    return broken


def new_sizes(coupling, values: dict) -> dict:
    """{dim key: new size} for every symbolic dim."""
    out = {}
    values = {s: sympy.Integer(v) for s, v in values.items()}
    for key, ref in coupling.dims.items():
        v = sympy.sympify(coupling.expr(key).xreplace(values))
        if not v.is_Integer or int(v) < 1:
            raise VerifyError(f"wide: the widened size of {key} comes out as {v}, not a positive integer; "
                              f"exclude the layers around it (exclude=...) or use another member")
        out[key] = int(v)
    return out


def _fresh_like(old: torch.Tensor, shape, kaiming: bool, zero: bool = False) -> torch.Tensor:
    """A new value for a tensor of a layer Sparse Wide rebuilds (the member owns it)."""
    new = torch.empty(shape, dtype=old.dtype, device=old.device)
    with torch.no_grad():
        if zero:
            new.zero_()
        elif kaiming:
            new.normal_(0.0, kaiming_std(shape))
        elif old.numel() and not old.is_floating_point():
            new.fill_(old.flatten()[0].item())
        elif _constant(old) is not None:
            new.fill_(_constant(old))                         # ones/zeros stay ones/zeros
        elif old.numel() > 1:
            new.normal_(old.float().mean().item(), old.float().std().item())
        else:
            new.zero_()
    return new


def _constant(t: torch.Tensor):
    """The one value every entry of ``t`` holds, or None."""
    if not t.numel():
        return None
    first = t.flatten()[0]
    return first.item() if bool((t == first).all()) else None


# A norm's running statistics are the norm's own: new channels start where a fresh norm does
_NORM_STATS = {"running_mean": 0.0, "running_var": 1.0}


def _extended(old: torch.Tensor, shape, fill) -> torch.Tensor:
    """``old`` in place (its original indices), every new entry ``fill`` (a number, or
    "draw": the original's mean and std)."""
    new = torch.empty(shape, dtype=old.dtype, device=old.device)
    with torch.no_grad():
        if fill == "draw":
            new.normal_(old.float().mean().item(), old.float().std().item() if old.numel() > 1 else 0.0)
        else:
            new.fill_(fill)
        new[tuple(slice(0, n) for n in old.shape)] = old
    return new


def _not_a_layer(mod: nn.Module, name: str) -> bool:
    """A tensor no Sparse Wide layer rule owns: a buffer (other than a norm's statistics) or a
    parameter of a module kind without a widen rule (a position table, a class token)."""
    from siftc.core.ops import exact_rule
    if name in mod._buffers:
        return not (name in _NORM_STATS and _is_norm(mod))
    rule = exact_rule(mod)
    return rule is None or not rule.widen


def _is_norm(mod) -> bool:
    from siftc.core.ops import rule_for
    rule = rule_for(mod)
    return rule is not None and rule.category == "norm"


def extension_rule(full: str, old: torch.Tensor, is_buffer: bool, policy):
    """(fill, text) of a tensor siftc does not own that sits on a widened channel group: its
    original values stay in place (docs/method.md, "What Sparse Wide keeps"); ``buffers=refuse``
    refuses a buffer instead."""
    c = _constant(old)
    if is_buffer:
        if policy.buffers == "refuse":
            raise UsageError(f"wide: buffer '{full}' {tuple(old.shape)} sits on a widened channel group, and "
                             f"policy buffers=refuse keeps buffers as they are.\n  How to fix: buffers=pad (its "
                             f"values stay in place, new channels are padded: its constant, else zero), "
                             f"buffers=keep (the channel groups a buffer sits on keep their width), or a "
                             f"per-layer member")
        if c is not None:
            return c, f"buffer: original values in place, new channels {c:g} (its constant)"
        return 0.0, "buffer: original values in place, new channels 0"
    if c is not None:
        return c, f"parameter: original values in place, new entries {c:g} (its constant)"
    return "draw", "parameter: original values in place, new entries drawn with its mean and std"


def _update_size_fields(mod: nn.Module) -> None:
    w = getattr(mod, "weight", None)
    if isinstance(mod, nn.Linear):
        mod.out_features, mod.in_features = w.shape
    elif isinstance(mod, nn.modules.conv._ConvNd) and isinstance(w, torch.Tensor):
        mod.out_channels, mod.in_channels = w.shape[0], w.shape[1] * mod.groups
    elif isinstance(mod, nn.modules.batchnorm._NormBase):
        t = mod.weight if mod.weight is not None else mod.running_mean
        if t is not None:
            mod.num_features = t.shape[0]
    elif isinstance(mod, nn.GroupNorm) and mod.weight is not None:
        mod.num_channels = mod.weight.shape[0]
    elif isinstance(mod, (nn.Embedding, nn.EmbeddingBag)):
        mod.embedding_dim = w.shape[1]


def widen(gm: torch.fx.GraphModule, coupling, sizes: dict, sparse: set, policy, extended: dict) -> dict:
    """Rewrite every weight, buffer and size attribute of ``gm`` to ``sizes``.

    ``sparse``: module paths whose weight becomes sparse (a mask, and a fresh Kaiming init
    that the masks pass draws at the kept entries: base.mark_pending). Tensors of the layers
    Sparse Wide rebuilds get fresh values; every other tensor on a widened group (a buffer, a
    parameter outside a layer) keeps its values in place and is extended by a rule
    (``extension_rule``), recorded in ``extended`` {name: {"from", "to", "rule"}}.
    Returns {module path: original weight shape} of the modules that changed or became sparse.
    """
    modules = dict(gm.named_modules())
    wanted: dict = {}      # (owner, kind, name) -> {dim: size}
    for key, ref in coupling.dims.items():
        if sizes[key] != ref.hint:
            wanted.setdefault((ref.owner, ref.kind, ref.name), {})[ref.dim] = sizes[key]
    for owner in sparse:   # sparse weights are drawn fresh even where no dim changed
        wanted.setdefault((owner, "param", "weight"), {})
    changed = {owner: tuple(modules[owner].weight.shape) for owner, kind, name in wanted
               if kind != "attr" and name == "weight" and isinstance(getattr(modules[owner], "weight", None), torch.Tensor)}
    # id(old tensor) -> (old, new), so tied parameters stay one object. The old tensor is kept
    # alive here: once freed, its id could be reused by a new tensor, which the tie fix-up below
    # would then swap for an unrelated one (seen: a resnet50 conv given a BatchNorm's weight)
    replaced: dict = {}
    deferred: set = set()     # ids of fresh zero weights whose Kaiming draw the masks pass makes
    for (owner, kind, name), dims in wanted.items():
        mod = modules[owner]
        old = getattr(mod, name)
        if kind == "attr":
            values = list(old) if isinstance(old, tuple) else [old]
            for d, v in dims.items():
                values[d] = v
            setattr(mod, name, tuple(values) if isinstance(old, tuple) else values[0])
            continue
        if id(old) not in replaced:
            shape = list(old.shape)
            for d, v in dims.items():
                shape[d] = v
            is_weight = isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)) and name == "weight"
            # a sparse weight is left zero and drawn by the masks pass at its kept entries only
            zero = is_weight and owner in sparse
            full = f"{owner}.{name}" if owner else name
            if _not_a_layer(mod, name):
                fill, rule = extension_rule(full, old, kind == "buffer", policy)
                new = _extended(old, shape, fill)
                extended[full] = {"from": list(old.shape), "to": list(shape), "rule": rule}
            elif name in _NORM_STATS and kind == "buffer":
                new = _extended(old, shape, _NORM_STATS[name])
            else:
                new = _fresh_like(old, shape, kaiming=is_weight and not zero, zero=zero)
            if isinstance(old, nn.Parameter):
                new = nn.Parameter(new, requires_grad=old.requires_grad)
            if zero:
                deferred.add(id(new))
            replaced[id(old)] = (old, new)
        (mod._parameters if kind == "param" else mod._buffers)[name] = replaced[id(old)][1]
    for mod in modules.values():   # a parameter tied to a rewritten one (lm_head.weight is wte.weight)
        for name, p in list(mod._parameters.items()):
            if p is not None and id(p) in replaced and replaced[id(p)][0] is p:
                mod._parameters[name] = replaced[id(p)][1]
                _update_size_fields(mod)     # its in/out sizes follow the tied weight
    for owner in {o for o, _, _ in wanted}:
        mod = modules[owner]
        _update_size_fields(mod)
        bias = getattr(mod, "bias", None)
        if isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)) and isinstance(bias, torch.Tensor):
            with torch.no_grad():
                bias.zero_()
    for owner in sparse:
        if not is_masked(modules[owner]):
            mark_sparse(modules[owner])
        if id(modules[owner].weight) in deferred:     # (a weight tied to a dense one was drawn in full)
            mark_pending(modules[owner])
    return changed
