"""The verify pass's accounting: every parameter and buffer of the user's model is in the compiled
model as it was, or something says what became of it (docs/method.md, "What every member keeps").

Each tensor of the original model (every name it answers to, ties included) is one of:
- ``kept``: the compiled model has it under the same name, same shape, dtype and values;
- ``member``: it belongs to a layer the member rewrote (a per-layer member's layer, a layer Sparse
  Wide rebuilt at a new width, a norm Sparse Parallel's branch norms replaced), or shares its
  tensor with one (a tie the member kept);
- ``init``: the policy's ``init=`` set it (``ctx.initialised``: init=reference's zero residual norms);
- ``extended``: Sparse Wide extended it by a listed rule (``ctx.extended``): its original values
  sit at their original indices;
- ``captured``: capture changed its form and says so (nn.MultiheadAttention as four nn.Linear,
  a Conv1D-style module as nn.Linear with the weight transposed);
- ``unused``: the forward never reads it, so the captured graph does not hold it (listed).
Anything else, or a tie that no longer holds, is a VerifyError naming the tensor.
"""
from __future__ import annotations

import torch
from torch import nn

from siftc.core import ops
from siftc.core.errors import VerifyError
from siftc.core.ties import ties
from .decompose import DecomposedMHA


def _tensors(model: nn.Module) -> dict:
    return {**dict(model.named_parameters(remove_duplicate=False)), **dict(model.named_buffers(remove_duplicate=False))}


def _in(path: str, prefixes) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def _rebuilt_by_wide(original: nn.Module, now: dict) -> set:
    """Module paths of the layers Sparse Wide rebuilt: a kind with a widen rule (siftc/core/ops.py)
    one of whose own tensors has a new shape. All their tensors are the member's (fresh values),
    except buffers other than a norm's statistics, which ``ctx.extended`` lists."""
    out = set()
    for path, mod in original.named_modules():
        rule = ops.exact_rule(mod)
        if rule is None or not rule.widen:
            continue
        own = [*mod.named_parameters(recurse=False), *mod.named_buffers(recurse=False)]
        if any((f"{path}.{n}" if path else n) in now and now[f"{path}.{n}" if path else n].shape != t.shape
               for n, t in own):
            out.add(path)
    return out


def _captured(original: nn.Module, name: str, gm) -> str:
    """What capture made of the module holding ``name`` ('' where it kept it)."""
    owner_path = name.rpartition(".")[0]
    path = owner_path
    while True:
        try:
            mod = gm.get_submodule(path)
        except AttributeError:
            mod = None
        if isinstance(mod, DecomposedMHA):
            return "nn.MultiheadAttention decomposed into q/k/v/out nn.Linear (weights copied)"
        if not path:
            break
        path = path.rpartition(".")[0]
    try:
        now, then = gm.get_submodule(owner_path), original.get_submodule(owner_path)
    except AttributeError:
        return ""
    if type(now) is nn.Linear and type(then) is not nn.Linear:
        return f"{type(then).__name__} (x @ W) captured as nn.Linear with the weight transposed"
    return ""


def account(gm, ctx) -> dict:
    """{tensor name: category} of the original model's tensors (ctx.model); raises VerifyError for
    a tensor nothing accounts for, or a tie broken."""
    original = ctx.model
    member_layers = list(ctx.layers) + [q for rec in ctx.layers.values() for q in rec.absorbed]
    now = _tensors(gm)
    rebuilt = _rebuilt_by_wide(original, now) if ctx.policy.member == "wide" else set()
    out: dict = {}
    for name, t in _tensors(original).items():
        owner, _, attr = name.rpartition(".")
        if _in(name, member_layers) or (owner in rebuilt and name not in ctx.extended):
            out[name] = "member"
        elif name in ctx.initialised:
            out[name] = "init"
        elif name in ctx.extended:
            rec = ctx.extended[name]
            got = now.get(name)
            if got is None or list(got.shape) != rec["to"] or \
                    not torch.equal(got[tuple(slice(0, n) for n in t.shape)].detach().cpu(), t.detach().cpu()):
                raise VerifyError(f"verify: '{name}' was to be extended {tuple(rec['from'])} -> {tuple(rec['to'])} "
                                  f"with its original values in place, and is not (a siftc bug; please report it)")
            out[name] = "extended"
        elif name in now and now[name].shape == t.shape and now[name].dtype == t.dtype \
                and torch.equal(now[name].detach().cpu(), t.detach().cpu()):
            out[name] = "kept"
        elif _captured(original, name, gm):
            out[name] = "captured"
        elif name not in now:        # the captured graph holds every tensor the forward reads
            out[name] = "unused"
        else:
            out[name] = None
    for names in ties(original):          # a tie: all its names share one fate
        if any(out[n] == "member" for n in names):
            for n in names:
                out[n] = "member"
        alive = [n for n in names if n in now]
        if len({id(now[n]) for n in alive}) > 1:
            raise VerifyError(f"verify: the tie {' = '.join(names)} of the original model no longer holds in the "
                              f"compiled model (they are separate tensors now): a siftc bug; please report it")
    lost = [n for n, how in out.items() if how is None]
    if lost:
        n = lost[0]
        got = now.get(n)
        was = _tensors(original)[n]
        what = "is missing" if got is None else (f"changed shape {tuple(was.shape)} -> {tuple(got.shape)}"
                                                  if got.shape != was.shape else "changed its values")
        raise VerifyError(f"verify: '{n}' of the original model {what} in the compiled model, and neither the "
                          f"member ('{ctx.policy.member}') nor a listed rule accounts for it"
                          + (f" ({len(lost) - 1} more: {', '.join(lost[1:4])})" if len(lost) > 1 else "")
                          + ": a siftc bug; please report it with the model and policy")
    return out
