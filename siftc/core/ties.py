"""Weight ties: one tensor reached under several names (an LM head that is its embedding).

A tie is part of the user's model (docs/method.md, "What every member keeps"): members that only
mask a layer at its shape (``sparse``, ``wide``) keep it, the masked tensor being the one both
names read; members that rebuild a layer (``parallel``, ``factorized``, ``doped``) cannot and
refuse such a layer; two sparsifiable layers sharing one weight are refused by every member,
since each sparse layer gets its own mask. The report lists the ties the compiled model holds.
"""
from __future__ import annotations

from torch import nn

from siftc.core.errors import UsageError


def ties(model: nn.Module) -> list:
    """[[name, name, ...], ...]: the parameter and buffer names that share one tensor, each
    sorted, in the order of their first name."""
    by_id: dict = {}
    for name, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        by_id.setdefault(id(t), []).append(name)
    return [sorted(names) for names in by_id.values() if len(names) > 1]


def check_tied_layers(gm: nn.Module, layers, member: str) -> dict:
    """Refuse what ``member`` cannot do with a tied weight among the sparsifiable ``layers``
    (module paths); returns {layer path: [the other names of its weight]} for the ties kept."""
    names_of: dict = {}
    for names in ties(gm):
        for n in names:
            names_of[n] = names
    kept: dict = {}
    layers = list(layers)
    for q in layers:
        names = names_of.get(f"{q}.weight")
        if names is None:
            continue
        others = [n for n in names if n != f"{q}.weight"]
        sparse_too = [n for n in others if n.rpartition(".")[0] in layers and n.endswith(".weight")]
        if sparse_too:
            raise UsageError(f"layers '{q}' and '{sparse_too[0].rpartition('.')[0]}' share one weight (a tie); each "
                             f"sparse layer gets its own mask, so member '{member}' cannot sparsify both.\n  How to "
                             f"fix: exclude=... one of them (it then reads the other's sparse weight), or untie them")
        if member not in ("sparse", "wide"):
            raise UsageError(f"layer '{q}' shares its weight with {', '.join(repr(n) for n in others)} (a tie); member "
                             f"'{member}' replaces the layer by new weights, which would break the tie.\n  How to fix: "
                             f"keep the layer dense (head=dense if it is the head, or exclude={q}), use member "
                             f"'sparse' or 'wide' (they mask the shared weight and keep the tie), or untie the "
                             f"weights before compiling")
        kept[q] = others
    return kept
