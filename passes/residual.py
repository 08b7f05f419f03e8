"""Residual blocks by graph position: the two branches of every residual add.

A residual add sums two tensors computed from one block input x. Its *main* branch holds two or
more weight ops (conv1 -> bn1 -> relu -> conv2 -> bn2); its *shortcut* branch holds none (x
itself) or exactly one (a projection: ResNet's ``downsample`` 1x1 conv + BN). Found from the graph,
never from shapes or names (docs/method.md, "Shortcuts"):

- the block input is the latest node both operands descend from (their nearest common ancestor);
- a branch is what lies between it and the operand.

``roles`` reads the shortcut projections (policy key ``shortcut=``); ``masks`` reads the norm
that ends each main branch (policy ``init=reference`` zero-inits it in plain blocks).
"""
from __future__ import annotations

import heapq
import operator
from dataclasses import dataclass

import torch

_ADDS = {operator.add, operator.iadd, torch.add}
_ADD_METHODS = {"add", "add_"}


@dataclass
class Residual:
    add: torch.fx.Node
    main: list            # weight-op nodes of the main branch
    shortcut: list        # weight-op nodes of the shortcut branch (0 or 1)
    main_end: torch.fx.Node   # the main branch's operand of the add


def _is_add(n) -> bool:
    return (n.op == "call_function" and n.target in _ADDS) or (n.op == "call_method" and n.target in _ADD_METHODS)


def _branches(a, b, index) -> tuple:
    """(block input, nodes only ``a`` reaches back to, nodes only ``b`` does) down to their nearest
    common ancestor: a backward walk in reverse graph order, whose first node reached from both
    sides is that ancestor (every later node was already visited). Costs the block, not the graph."""
    side = {a: 1, b: 2} if a is not b else {a: 3}
    heap = [(-index[n], id(n), n) for n in side]
    heapq.heapify(heap)
    own = {1: [], 2: []}
    while heap:
        _, _, n = heapq.heappop(heap)
        s = side[n]
        if s == 3:
            return n, own[1], own[2]
        own[s].append(n)
        for p in n.all_input_nodes:
            if p not in side:
                side[p] = s
                heapq.heappush(heap, (-index[p], id(p), p))
            else:
                side[p] |= s
    return None, own[1], own[2]


def residual_blocks(gm, is_weight) -> list:
    """[Residual] of every add whose operands are two computed tensors from one input, one branch
    with at least two weight ops and the other with at most one. ``is_weight(node)``: a weight op."""
    nodes = list(gm.graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    out = []
    for n in nodes:
        if not _is_add(n) or len(n.args) < 2 or not all(isinstance(a, torch.fx.Node) for a in n.args[:2]):
            continue
        a, b = n.args[:2]
        x, only_a, only_b = _branches(a, b, index)
        if x is None:
            continue
        branches = [[m for m in own if is_weight(m)] for own in (only_a, only_b)]
        counts = [len(br) for br in branches]
        if max(counts) < 2 or min(counts) > 1:
            continue
        main = 0 if counts[0] >= counts[1] else 1
        out.append(Residual(n, sorted(branches[main], key=index.__getitem__),
                            sorted(branches[1 - main], key=index.__getitem__), (a, b)[main]))
    return out
