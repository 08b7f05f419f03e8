"""roles: what each weight op is, decided by graph position (never by shape).

- ``embedding``: nn.Embedding lookups (dense, docs/method.md).
- ``stem``: a conv/linear with no weight op (conv, linear, embedding) upstream of it: the first
  weight op on the input path. ``head``: a conv/linear with no weight op downstream: the last
  weight op on the output path. Both stay dense unless the policy says stem=sparse / head=sparse.
- ``norm``: normalisation modules (dense, docs/method.md).
- ``sparsifiable``: every other nn.Linear / nn.Conv2d with groups=1, called with one input.
- ``grouped``: grouped / depthwise convs, left dense unless the policy says ``grouped=apply`` (then
  the member is built per group: siftc.members keeps ``groups`` on every conv it makes).
- ``excluded``: a module path that the policy's ``include=`` globs miss or ``exclude=`` globs hit.
- ``functional`` / ``unsupported``: weight ops substitute cannot rewrite (F.linear with a
  parameter, a layer kind the policy's member has no builder for: siftc/core/ops.py), left dense.
- ``opaque``: a module with weights that has no entry in the op registry (siftc/core/ops.py), e.g.
  nn.GRU or nn.MultiheadAttention: costed with FlopCounterMode, its weights left dense at their
  size (Sparse Wide keeps every channel group they touch).
- ``substituted``: modules inside a layer that siftc already rewrote, or already masked (a widened
  layer); compiling twice is a no-op.
- ``shortcut``: the one weight op of a residual block's shortcut branch (ResNet's downsample conv),
  left dense under ``shortcut=dense``; under ``shortcut=sparse`` (default) it stays sparsifiable and
  is marked ``siftc.shortcut``: a per-layer member makes it one sparse layer (passes/residual.py).
Writes ``node.meta["siftc.role"]`` on weight/norm nodes, ``node.meta["siftc.shortcut"]``,
``ctx.left_dense`` (module -> reason) and ``ctx.residual_norms``.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from siftc.core import ops
from siftc.core.mask_api import is_masked
from siftc.core.pass_registry import PassResult, register

LEFT_DENSE_REASONS = {
    "stem": "stem: first weight op on the input path (kept dense, docs/method.md; policy stem=sparse changes it)",
    "head": "head: last weight op on the output path (kept dense, docs/method.md; policy head=sparse changes it)",
    "embedding": "embedding: lookups cost no FLOPs and stay dense (docs/method.md)",
    "grouped": "grouped/depthwise conv (groups>1): left dense by default; policy grouped=apply applies the member per group",
    "excluded": "excluded by the policy's include=/exclude= module globs",
    "norm": "norm: normalisation layers stay dense (docs/method.md); their FLOPs count in the budget",
    "functional": "functional weight op (not an nn.Module call): substitute rewrites nn.Linear/nn.Conv2d modules",
    "unsupported": "unsupported weight op: the policy's member has no builder for this layer kind (siftc/core/ops.py)",
    "multi-input": "called with extra arguments: substitute rewrites single-input calls only",
    "opaque": "opaque module: no siftc rule",
    "shortcut": "shortcut: the one weight op on a residual block's shortcut branch (policy shortcut=dense keeps it "
                "dense; docs/method.md, \"Shortcuts\")",
}

def _is_norm(module) -> bool:
    rule = ops.rule_for(module)
    return rule is not None and rule.category == "norm"


def is_siftc_member(module) -> bool:
    from siftc.core.members import MemberLayer
    return isinstance(module, MemberLayer)


def inside_member(gm, qualname: str) -> bool:
    """True when some ancestor module of ``qualname`` is a layer siftc already rewrote."""
    parts = qualname.split(".")
    mod = gm
    for p in parts[:-1]:
        mod = getattr(mod, p, None)
        if mod is None:
            return False
        if is_siftc_member(mod):
            return True
    return False


def _weight_kind(gm, node):
    """'conv' / 'linear' / 'embedding' / 'functional' / 'opaque' for weight ops, else None."""
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        rule = ops.rule_for(m)
        if rule is not None and (rule.weight or rule.widen):
            return rule.weight
        if any(True for _ in m.parameters()):      # no rule, or one that only costs it
            return "opaque"
        return None
    if node.op == "call_function":
        if node.target in (F.linear, F.conv1d, F.conv2d, F.conv3d):
            return "functional"
        if node.target is F.embedding:
            return "embedding"
    return None


def _classify(gm, node, first: bool, last: bool, policy) -> str:
    kind = _weight_kind(gm, node)
    if kind in ("embedding", "functional", "opaque"):
        return kind
    m = gm.get_submodule(node.target)
    if inside_member(gm, node.target) or is_masked(m):
        return "substituted"
    if policy.member not in ops.members_for(m) and policy.member != "dense":
        return "unsupported"
    if not policy.selects(node.target):
        return "excluded"
    if isinstance(m, nn.modules.conv._ConvNd) and m.groups != 1 and policy.grouped == "dense":
        return "grouped"
    if len(node.args) != 1 or node.kwargs:
        return "multi-input"
    if first and policy.stem == "dense":
        return "stem"
    if last and policy.head == "dense":
        return "head"
    return "sparsifiable"


def _reason(gm, key: str, role: str, policy) -> str:
    if role == "excluded":
        return (f"excluded by policy (include={policy.include}"
                + (f", exclude={policy.exclude}" if policy.exclude else "") + ")")
    if role == "opaque":
        mod = gm.get_submodule(key)
        rule = ops.rule_for(mod)
        if rule is not None:
            return (f"{type(mod).__name__}: its rule '{rule.name}' costs it but no member rewrites it; "
                    f"its weights stay dense at their size")
        return (f"opaque module {type(mod).__name__}: siftc has no rule for it (siftc/core/ops.py); costed "
                f"with FlopCounterMode, its weights stay dense at their size")
    if role == "unsupported":
        return (f"{type(gm.get_submodule(key)).__name__} has no '{policy.member}' builder "
                f"(supported: {', '.join(ops.members_for(gm.get_submodule(key))) or 'none'}; siftc/core/ops.py)")
    return LEFT_DENSE_REASONS[role]


def _direct_parameters(gm) -> dict:
    """{parameter path: reason} of parameters the graph reads directly (get_attr), not through a
    module call: no member rewrites them, so the report lists them (e.g. a weight used by einsum)."""
    out = {}
    params = dict(gm.named_parameters())
    for n in gm.graph.nodes:
        if n.op == "get_attr" and n.target in params and params[n.target].dim() >= 2:
            users = ", ".join(f"'{u.name}'" for u in n.users)
            out[n.target] = (f"parameter read directly by node {users}, not through an nn.Module layer: "
                             f"no member rewrites it; left dense")
    return out


def _list_the_rest(gm, by_module: dict, left_dense: dict) -> None:
    """Every weight (a parameter with 2+ dims) that no member will rewrite and no entry lists yet
    gets one, so the report accounts for all of them (e.g. a parameter forward never reads)."""
    covered = [k for k, role in by_module.items() if role in ("sparsifiable", "substituted")] + list(left_dense)
    for name, p in gm.named_parameters():
        if p.dim() < 2 or inside_member(gm, name) or any(name == c or name.startswith(c + ".") for c in covered):
            continue
        left_dense[name] = "not read by the captured graph at these inputs (unused in forward): left as it is"


def _residuals(gm, nodes, weight, by_module: dict, ctx) -> None:
    """Shortcut projections and the norms that end residual branches (passes/residual.py).

    A sparsifiable layer alone on a shortcut branch is marked ``siftc.shortcut`` (policy
    ``shortcut=sparse``: one sparse layer; ``member``: the member like any layer) or becomes role
    ``shortcut`` (``dense``). ``ctx.residual_norms`` gets (norm path, main-branch layer paths) for
    every main branch that ends in a norm module (``init=reference`` zero-inits it)."""
    from .residual import residual_blocks
    for n in nodes:
        n.meta.pop("siftc.shortcut", None)
    ctx.residual_norms = []
    for r in residual_blocks(gm, lambda n: weight[n]):
        for s in r.shortcut:
            if s.op == "call_module" and by_module.get(s.target) == "sparsifiable":
                if ctx.policy.shortcut == "dense":
                    by_module[s.target] = "shortcut"
                elif ctx.policy.shortcut == "sparse":
                    s.meta["siftc.shortcut"] = True
        end = r.main_end
        if end.op == "call_module" and _is_norm(gm.get_submodule(end.target)):
            ctx.residual_norms.append((end.target, [m.target for m in r.main if m.op == "call_module"]))


@register("roles", "stem / head / embedding / norm / sparsifiable / shortcut, by graph position",
          kind="analysis", requires=("flops",),
          policy_keys=("include", "exclude", "grouped", "stem", "head", "shortcut"))
def roles(gm, ctx) -> PassResult:
    nodes = list(gm.graph.nodes)
    weight = {n: _weight_kind(gm, n) is not None for n in nodes}
    # upstream[n]: some weight op lies on a path from the inputs to n (n excluded)
    upstream = {}
    for n in nodes:
        upstream[n] = any(upstream[a] or weight[a] for a in n.all_input_nodes)
    downstream = {}
    for n in reversed(nodes):
        downstream[n] = any(downstream[u] or weight[u] for u in n.users)
    counts: dict = {}
    by_module: dict = {}
    norms: dict = {}
    for n in nodes:
        if weight[n]:
            role = _classify(gm, n, not upstream[n], not downstream[n], ctx.policy)
            n.meta["siftc.role"] = role
            key = n.target if n.op == "call_module" else n.name
            # a module called at several places takes its most restrictive role
            prev = by_module.get(key)
            if prev is None or prev == "sparsifiable":
                by_module[key] = role
        elif n.op == "call_module" and _is_norm(gm.get_submodule(n.target)):
            n.meta["siftc.role"] = "norm"
            if not inside_member(gm, n.target):     # a member's own norms belong to its layer
                norms.setdefault(n.target, "norm")
        else:
            n.meta.pop("siftc.role", None)
            continue
        counts[n.meta["siftc.role"]] = counts.get(n.meta["siftc.role"], 0) + 1
    _residuals(gm, nodes, weight, by_module, ctx)
    for n in nodes:   # a shared module is rewritten only if every call site may be
        if weight[n] and n.op == "call_module":
            n.meta["siftc.role"] = by_module[n.target]
    for key, role in {**by_module, **norms}.items():
        if role in LEFT_DENSE_REASONS or role == "opaque":
            ctx.left_dense[key] = _reason(gm, key, role, ctx.policy)
    for key, reason in _direct_parameters(gm).items():
        ctx.left_dense.setdefault(key, reason)
    _list_the_rest(gm, by_module, ctx.left_dense)
    return PassResult(gm, False, counts)
