"""Registry of named passes: each pass has a kebab-case name, a one-line summary and a kind.

A pass is a callable ``(gm, ctx) -> PassResult``. Analyses write node.meta keys and never
modify the graph (tests check that); transforms rewrite the graph and report ``modified``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import torch.fx


@dataclass
class PassResult:
    gm: torch.fx.GraphModule
    modified: bool
    stats: dict = field(default_factory=dict)   # named counters, reported per pass


@dataclass(frozen=True)
class PassInfo:
    name: str
    fn: Callable
    summary: str
    analysis: bool      # True: reads the graph, writes only node.meta


PASSES: dict[str, PassInfo] = {}
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def register(name: str, summary: str, analysis: bool = False):
    """Decorator: register ``fn`` as the pass ``name``."""
    if not _NAME.match(name):
        raise ValueError(f"pass name {name!r} must be kebab-case")

    def wrap(fn):
        if name in PASSES:
            raise ValueError(f"pass {name!r} is registered twice")
        PASSES[name] = PassInfo(name, fn, summary, analysis)
        return fn
    return wrap


def get_pass(name: str) -> PassInfo:
    try:
        return PASSES[name]
    except KeyError:
        raise ValueError(f"unknown pass {name!r}; registered passes: {', '.join(sorted(PASSES))}") from None
