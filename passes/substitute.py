"""substitute: replace every sparsifiable layer by the policy's Sparse-IFT member.

For each module whose role is ``sparsifiable`` the member's nn.Module (siftc.members) is built,
installed at the layer's module path (so parameters are named ``layer1.0.conv1.branches.0.weight``),
traced, and its graph is inlined at every call site. The inlined nodes carry
``node.meta["siftc.origin"]`` (the original module path) so reports can add up what each layer
became. Layers rewritten by an earlier compile (role ``substituted``) are left alone.
"""
from __future__ import annotations

from fractions import Fraction

import torch
import torch.fx

from siftc.core.state import LayerRecord
from siftc.core.errors import SiftcError
from siftc.core.members import BUILDERS, sparse_children
from siftc.core.members.base import defer_init, init_mode, seeded_init
from siftc.core.ties import check_tied_layers
from siftc.core.members.wide import check_nonlinear, choose_widths, new_sizes, widen
from siftc.core import ops
from siftc.core.symdims import target_name
from .flops import MATMUL_CATEGORIES
from siftc.core.pass_registry import PassResult, register


def _inline(gm: torch.fx.GraphModule, call: torch.fx.Node, qualname: str, sub: torch.fx.GraphModule):
    """Copy ``sub``'s graph in place of ``call``; its module targets get the ``qualname.`` prefix."""
    graph = gm.graph
    env = {}
    placeholders = [n for n in sub.graph.nodes if n.op == "placeholder"]
    env[placeholders[0]] = call.args[0]
    result = None
    with graph.inserting_before(call):
        for n in sub.graph.nodes:
            if n.op == "placeholder":
                continue
            if n.op == "output":
                result = env[n.args[0]]
                continue
            new = graph.node_copy(n, lambda a: env[a])
            if n.op in ("call_module", "get_attr"):
                new.target = f"{qualname}.{n.target}"
            if hasattr(new, "_rename"):     # readable dumps: layer1_0_conv1_branches_0
                new._rename(f"{call.name}_{n.name}")
            new.meta = {"siftc.origin": qualname}
            env[n] = new
    call.replace_all_uses_with(result)
    graph.erase_node(call)


def _sparsifiable_calls(gm) -> dict:
    """{module path: its call_module nodes} for every module roles marked sparsifiable."""
    calls: dict = {}
    for n in gm.graph.nodes:
        if n.op == "call_module" and n.meta.get("siftc.role") == "sparsifiable":
            calls.setdefault(n.target, []).append(n)
    return calls


def _structure(layer) -> tuple:
    """What a member layer's traced graph depends on: its class, its submodules' paths and kinds,
    and its plain settings (k, scale, ...). Sizes live inside the leaf modules and do not change
    the graph, so layers with one structure share one trace (19 traces were 0.18 s of a resnet18
    parallel compile)."""
    settings = tuple(sorted((k, v) for k, v in vars(layer).items()
                            if not k.startswith("_") and k not in ("original_repr", "detail")
                            and isinstance(v, (bool, int, float, str, tuple, type(None)))))
    return type(layer), tuple((n, type(m)) for n, m in layer.named_modules()), settings


def _flops_before(nodes) -> int:
    return sum(c.meta["siftc.flops"].flops for c in nodes) if nodes[0].meta.get("siftc.flops") else 0


def _warn_nothing_sparsifiable(ctx, member: str) -> None:
    ctx.warn(f"substitute: the model has no sparsifiable layer for member '{member}' "
             f"(every weight op is a stem, head, embedding or unsupported: see the report's "
             f"'left dense' list); the model is returned unchanged")


@register("substitute", "replace sparsifiable layers by the policy's member (parallel, factorized, doped, sparse)",
          kind="transform", requires=("roles", "couple"), once=True,
          policy_keys=("member", "sparsity", "width", "round", "combine", "buffers", "parallel_form",
                       "lowrank"))
def substitute(gm, ctx) -> PassResult:
    member = ctx.policy.member
    if member == "dense":
        return PassResult(gm, False, {"rewritten": 0})
    _resolve_reference_preset(gm, ctx)
    # weights follow the policy's seed, as masks do, and its init's fan mode
    with seeded_init(gm, ctx.policy.seed), init_mode(ctx.policy):
        if member == "wide":
            return _substitute_wide(gm, ctx)
        return _substitute_members(gm, ctx, BUILDERS[member])


def _resolve_reference_preset(gm, ctx) -> None:
    """preset=reference under Sparse Wide follows the authors' vision code (s' solved) on a model
    without attention, and their GPT-3 Small configs on one with it: those keep s on every sparse
    weight and do not rebalance FLOPs (docs/method.md, "Fidelity"). The policy the compile reports
    says which."""
    p = ctx.policy
    if p.preset != "reference" or p.member != "wide" or p.iso != "exact":
        return
    if any(n.meta.get("siftc.flops") is not None and n.meta["siftc.flops"].category == "attention"
           for n in gm.graph.nodes):
        ctx.policy = p.replace(iso="nominal")
        ctx.warn("substitute: preset=reference on a model with attention follows the authors' GPT-3 configs: "
                 "iso=nominal (s on every sparse weight, no FLOP rebalancing); the report shows the FLOP "
                 "ratio that gives. Add iso=exact to solve s' instead")


def _substitute_members(gm, ctx, build) -> PassResult:
    member = ctx.policy.member
    calls = _sparsifiable_calls(gm)
    tied = check_tied_layers(gm, calls, member)       # refused before any layer is rebuilt
    traced: dict = {}         # structure -> graph: a model has few distinct member layouts
    for qualname, nodes in calls.items():
        original = gm.get_submodule(qualname)
        shortcut = any(n.meta.get("siftc.shortcut") for n in nodes)     # shortcut=sparse (roles)
        layer = (BUILDERS["sparse"] if shortcut else build)(original, ctx.policy,
                                                             out_shape=nodes[0].meta.get("siftc.shape"))
        if qualname in tied:          # sparse: the masked weight is the shared tensor (ties.py)
            layer.W.weight = original.weight
            defer_init(layer.W)
        absorbed = _absorb_following_norm(gm, nodes, layer) if getattr(layer, "replaces_norm", False) else []
        gm.set_submodule(qualname, layer)
        key = _structure(layer)
        if key not in traced:
            traced[key] = torch.fx.symbolic_trace(layer)
        sub = traced[key]
        for call in nodes:
            _inline(gm, call, qualname, sub)
        for q in absorbed:            # the member's branch norms replaced it: no longer a dense norm
            ctx.left_dense.pop(q, None)
        ctx.layers[qualname] = LayerRecord(
            name=qualname, kind=type(original).__name__, member="sparse" if shortcut else member,
            orig_shape=tuple(original.weight.shape), flops_before=_flops_before(nodes),
            new_modules=[f"{qualname}.{n}" for n, m in layer.named_modules()
                         if isinstance(m, (torch.nn.Linear, torch.nn.modules.conv._ConvNd))],
            sparse_modules=[f"{qualname}.{n}" for n, _ in sparse_children(layer)],
            detail=layer.detail + (f"; replaces the norm {', '.join(absorbed)}" if absorbed else "")
            + ("; shortcut: one sparse layer (policy shortcut=sparse)" if shortcut else ""),
            absorbed=absorbed)
    gm.delete_all_unused_submodules()
    if not calls and not ctx.layers:
        _warn_nothing_sparsifiable(ctx, member)
    return PassResult(gm, bool(calls), {"rewritten": len(calls)})


def _absorb_following_norm(gm, nodes, layer) -> list:
    """The authors' Sparse Parallel: the branch norms replace the norm that follows the layer
    (relu(sum_j BN_j(conv_j x)) where the model had relu(BN(conv x))). Done where every call of
    the layer feeds only a norm module of the kind the branches use, called there alone; returns
    the norms' paths (their call nodes are removed; the layer's output takes their place)."""
    kind = type(layer.norms[0])
    follow = []
    for call in nodes:
        users = list(call.users)
        if len(users) != 1 or users[0].op != "call_module" or users[0].args != (call,) or users[0].kwargs:
            return []
        norm = gm.get_submodule(users[0].target)
        if type(norm) is not kind or not isinstance(norm, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm)):
            return []
        follow.append(users[0])
    targets = {n.target for n in follow}
    if sum(1 for n in gm.graph.nodes if n.op == "call_module" and n.target in targets) != len(follow):
        return []            # the norm is also called elsewhere: it stays
    for n in follow:
        n.replace_all_uses_with(n.args[0])
        gm.graph.erase_node(n)
    return sorted(targets)


def _substitute_wide(gm, ctx) -> PassResult:
    """Sparse Wide: widen every free channel group (couple's), then mark the interior layers sparse."""
    coupling = ctx.coupling
    if coupling is None:
        raise SiftcError("member 'wide' needs the channel groups of the 'couple' pass: put 'couple' "
                         "before 'substitute' in the pipeline")
    calls = _sparsifiable_calls(gm)
    check_tied_layers(gm, calls, "wide")    # widen() keeps ties (one tensor, rewritten once)
    if not calls:                           # widening dense layers only would just add FLOPs
        _warn_nothing_sparsifiable(ctx, "wide")
        return PassResult(gm, False, {"rewritten": 0, "groups_widened": 0})
    keep_opaque_groups(gm, coupling)
    keep_groups_without_a_layer(gm, coupling)
    for g in keep_per_head_tables(gm, coupling):
        ctx.warn(f"wide: channel group {g.name} ({g.width} wide) keeps its width: {g.fixed}")
    if ctx.policy.buffers == "keep":
        keep_buffer_groups(gm, coupling)
    for _ in range(len(coupling.groups) + 1):      # a broken non-linear relation fixes groups; retry
        values = choose_widths(coupling, ctx.policy)
        if not check_nonlinear(coupling, values):
            break
    sizes = new_sizes(coupling, values)
    old_shapes = widen(gm, coupling, sizes, set(calls), ctx.policy, ctx.extended)
    for qualname, nodes in calls.items():
        mod = gm.get_submodule(qualname)
        old, new = old_shapes[qualname], tuple(mod.weight.shape)
        ctx.layers[qualname] = LayerRecord(
            name=qualname, kind=type(mod).__name__, member="wide", orig_shape=old, flops_before=_flops_before(nodes),
            new_modules=[qualname], sparse_modules=[qualname],
            detail=f"in {old[1]}->{new[1]}, out {old[0]}->{new[0]}")
    ctx.groups = _group_rows(coupling)
    widened = sum(1 for g in coupling.groups if g.new_width != g.width)
    return PassResult(gm, bool(old_shapes), {"rewritten": len(calls), "groups_widened": widened})


# roles of call_module nodes whose weights Sparse Wide must not resize: siftc would widen them
# dense (or into code it does not understand) without a mask to pay for it
_NOT_WIDENED = {"opaque": "opaque module", "unsupported": "layer without a 'wide' rule",
                "functional": "functional weight op", "multi-input": "layer called with extra arguments"}


def keep_opaque_groups(gm, coupling) -> None:
    """Fix (keep at their width) the channel groups that touch a weight siftc cannot sparsify:
    weights of opaque modules (and their children), and parameters read directly by a
    matmul-class op (einsum, matmul, F.linear). Every kept group says which weight kept it."""
    blocked: dict = {}
    for n in gm.graph.nodes:
        role = n.meta.get("siftc.role")
        if n.op == "call_module" and role in _NOT_WIDENED:
            blocked[n.target] = (f"touches {_NOT_WIDENED[role]} '{n.target}' "
                                 f"({type(gm.get_submodule(n.target)).__name__}), which siftc cannot sparsify")
        elif n.op == "get_attr":
            users = [u for u in n.users if u.meta.get("siftc.flops") is not None
                     and u.meta["siftc.flops"].category in (*MATMUL_CATEGORIES, "uncounted")]
            if users:
                blocked[n.target] = (f"touches parameter '{n.target}', read directly by '{users[0].name}' "
                                     f"({target_name(users[0])}), "
                                     f"which siftc cannot sparsify")

    def hit(ref) -> str:
        full = f"{ref.owner}.{ref.name}" if ref.owner else ref.name
        for key, why in blocked.items():
            if full == key or ref.owner == key or ref.owner.startswith(key + "."):
                return why
        return ""
    for g in coupling.groups:
        if g.fixed:
            continue
        for key in [k for k, _ in g.members] + list(g.shared):
            why = hit(coupling.dims[key])
            if why:
                g.fixed = why
                break


def _layer_dim(gm, ref) -> bool:
    """A channel dim of a weight layer Sparse Wide rebuilds (conv/linear out or in, an embedding's
    features): what makes a group a channel group."""
    if ref.kind != "param" or ref.name != "weight":
        return False
    rule = ops.exact_rule(gm.get_submodule(ref.owner))
    return rule is not None and rule.widen and rule.weight in ("conv", "linear", "embedding")


def keep_groups_without_a_layer(gm, coupling) -> None:
    """Fix every group in which no weight layer has a dim: a length such as a position table's
    (a buffer sliced by the sequence length) is not a channel, and widening it would change what
    the model computes and which inputs it accepts (docs/method.md, "What Sparse Wide keeps")."""
    for g in coupling.groups:
        keys = [k for k, _ in g.members] + list(g.shared)
        if not g.fixed and not any(_layer_dim(gm, coupling.dims[k]) for k in keys):
            g.fixed = (f"no weight layer has a dim in it ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}): "
                       f"not a channel dimension")


def keep_per_head_tables(gm, coupling) -> list:
    """Fix a head size that a buffer spans (a rotary embedding's cos/sin table is per head: its
    width is the head size, c' / c heads of a layer share it). Widening the head size would move
    the table's entries (a rotary half-split pairs i with i + size/2); Sparse Wide widens heads
    instead where the model reshapes by head size, and keeps the head size here. Returns the
    groups it fixed."""
    kept = []
    for g in coupling.groups:
        if g.fixed:
            continue
        layer = [c for k, c in g.members if _layer_dim(gm, coupling.dims[k])]
        for key, c in g.members:
            ref = coupling.dims[key]
            # narrower than every layer dim of the group (a flatten's spatial factor leaves the
            # conv's own channel dim at the buffer's coefficient)
            if ref.kind == "buffer" and ref.name not in ("running_mean", "running_var") and layer \
                    and min(layer) > c:
                g.fixed = (f"the head size is the width of buffer '{key.rpartition(':')[0]}', a per-head table "
                           f"(rotary-embedding-like) whose entries would move if it grew; reshape by head size "
                           f"(view(B, T, -1, head_dim)) to let Sparse Wide add heads instead")
                kept.append(g)
                break
    return kept


def keep_buffer_groups(gm, coupling) -> None:
    """policy buffers=keep: a group a buffer sits on keeps its width (norm statistics excepted)."""
    for g in coupling.groups:
        for key in [k for k, _ in g.members] + list(g.shared):
            ref = coupling.dims[key]
            if not g.fixed and ref.kind == "buffer" and ref.name not in ("running_mean", "running_var"):
                g.fixed = f"holds buffer '{key.rpartition(':')[0]}' (policy buffers=keep)"


def _group_rows(coupling) -> list:
    rows = [{"group": g.name, "width": g.width, "new_width": g.new_width, "unit": g.unit, "region": g.region,
             "members": [k if c == g.unit else f"{k} x{Fraction(c, g.unit)}" for k, c in g.members]
             + [f"{k} (sum with other groups)" for k in g.shared],
             "fixed": g.fixed} for g in coupling.groups]
    by_reason: dict = {}
    for key, (size, reason) in coupling.fixed.items():
        if reason:
            by_reason.setdefault(reason, []).append(f"{key}={size}")
    rows += [{"group": "fixed", "width": None, "new_width": None, "unit": 1, "region": -1,
              "members": keys, "fixed": reason} for reason, keys in by_reason.items()]
    return rows
