"""Textual pipelines: ``capture,shape-prop,flops{detail=1}`` parses and prints back identically.

Syntax (after LLVM's ``-passes=``): passes separated by commas; options of one pass in braces,
``key=value`` pairs separated by spaces.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from siftc.core.pass_registry import get_pass

# The pipelines, in order; passes/README.md says why this order. They share the analysis and
# rewrite front and differ in the last pass: training lowering (targets cpu, cuda), the ONNX
# emitter (target onnx), or CPU inference kernels (mode "inference").
_FRONT = "capture,shape-prop,flops,roles,couple,substitute,masks,verify"
TRAIN_PIPELINE = f"{_FRONT},lower-train"
ONNX_PIPELINE = f"{_FRONT},export-onnx"
INFERENCE_PIPELINE = f"{_FRONT},lower-inference"

_ITEM = re.compile(r"\s*([a-z][a-z0-9-]*)\s*(?:\{([^{}]*)\})?\s*$")


@dataclass(frozen=True)
class PipelineItem:
    name: str
    options: tuple = field(default_factory=tuple)   # ((key, value), ...) in written order

    def __str__(self):
        if not self.options:
            return self.name
        return self.name + "{" + " ".join(f"{k}={v}" for k, v in self.options) + "}"


def parse_pipeline(text: str) -> list[PipelineItem]:
    """Parse a pipeline string; unknown passes raise ValueError listing the registered ones."""
    items = []
    for part in _split_top(text):
        m = _ITEM.match(part)
        if not m:
            raise ValueError(f"cannot parse pipeline element {part!r} in {text!r}; "
                             "write 'name' or 'name{key=value ...}'")
        name, opts = m.group(1), m.group(2)
        get_pass(name)
        options = []
        for tok in (opts or "").split():
            key, eq, value = tok.partition("=")
            if not eq or not key:
                raise ValueError(f"pass option {tok!r} of {name!r} must be key=value")
            options.append((key, value))
        items.append(PipelineItem(name, tuple(options)))
    if not items:
        raise ValueError("empty pipeline")
    return items


def format_pipeline(items) -> str:
    return ",".join(str(i) for i in items)


def _split_top(text: str):
    """Split on commas outside braces."""
    depth, cur = 0, ""
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            yield cur
            cur = ""
        else:
            cur += ch
    if cur.strip():
        yield cur
