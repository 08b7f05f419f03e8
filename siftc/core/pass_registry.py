"""Registry of named passes: what each pass is, needs and accepts, declared where it is defined.

A pass is a callable ``(gm, ctx) -> PassResult``, registered with::

    @register("masks", "one-line summary", kind="weights", requires=("substitute",),
              policy_keys=("dist", "iso", ...), options={})

- ``kind`` says what the pass may change (the pass manager holds it to that):
  ``analysis`` writes node.meta and compile state only; ``transform`` rewrites the graph or
  its modules and says ``modified``; ``weights`` changes tensor contents, hooks or device, never
  the graph; ``check`` only checks; ``emit`` produces an artefact from the final graph (ONNX).
- ``requires``: passes that must come earlier in the same pipeline (ordering rules, enforced when
  a pipeline is parsed). ``last``: the pass must end the pipeline (lowerings and emitters).
- ``options``: ``{key: allowed values}`` of ``name{key=value}`` in a pipeline (a tuple of allowed
  strings, or None for any value). Anything else is a parse error listing what is allowed.
- ``invalidates``: the analyses whose node meta the pass makes stale (``shapes``, ``flops``); the
  pass manager refreshes them after it, before the verifier (which only checks). Default: a
  transform invalidates both, a weights pass ``flops``, the other kinds nothing.
- ``once``: the pass rewrites the original model's layers (or describes them for that): it never
  runs on an already compiled GraphModule, whose default pipelines leave it out.
- ``policy_keys``: the Policy keys this pass owns (reads to make its decisions); every key has
  one owner (docs/architecture.md lists them).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import torch.fx

from .errors import PipelineError

KINDS = ("analysis", "transform", "weights", "check", "emit")
# kinds that must leave the graph's nodes as they were
GRAPH_PRESERVING = ("analysis", "weights", "check", "emit")
# analyses whose node meta a pass can make stale, and what each kind makes stale unless it says
ANALYSES = ("shapes", "flops")
_INVALIDATES = {"transform": ("shapes", "flops"), "weights": ("flops",), "analysis": (), "check": (), "emit": ()}


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
    kind: str = "transform"
    requires: tuple = ()
    last: bool = False
    options: dict = field(default_factory=dict)
    policy_keys: tuple = ()
    once: bool = False
    invalidates: tuple = ()

    @property
    def analysis(self) -> bool:
        return self.kind == "analysis"


PASSES: dict[str, PassInfo] = {}
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def register(name: str, summary: str, kind: str = "transform", requires=(), last: bool = False,
             options: dict | None = None, policy_keys=(), once: bool = False, invalidates=None):
    """Decorator: register ``fn`` as the pass ``name`` (see the module docstring)."""
    if not _NAME.match(name):
        raise ValueError(f"pass name {name!r} must be kebab-case")
    if kind not in KINDS:
        raise ValueError(f"pass {name!r}: kind {kind!r} is not one of {', '.join(KINDS)}")

    def wrap(fn):
        if name in PASSES:
            raise ValueError(f"pass {name!r} is registered twice")
        stale = _INVALIDATES[kind] if invalidates is None else tuple(invalidates)
        unknown = set(stale) - set(ANALYSES)
        if unknown:
            raise ValueError(f"pass {name!r}: invalidates {sorted(unknown)}; analyses: {', '.join(ANALYSES)}")
        PASSES[name] = PassInfo(name, fn, summary, kind, tuple(requires), last, dict(options or {}),
                                tuple(policy_keys), once, stale)
        return fn
    return wrap


def get_pass(name: str) -> PassInfo:
    try:
        return PASSES[name]
    except KeyError:
        raise PipelineError(f"unknown pass {name!r}; registered passes: {', '.join(sorted(PASSES))}") from None
