"""Textual pipelines: ``capture,shape-prop,flops,export-onnx{sparse=always}`` parses and prints back identically.

Syntax (after LLVM's ``-passes=``): passes separated by commas; options of one pass in braces,
``key=value`` pairs separated by spaces. Parsing checks the pipeline against what each pass
declared when it registered (siftc/core/pass_registry.py): its options and their values, the
passes it requires earlier, and whether it must come last.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import PipelineError
from .pass_registry import get_pass


# The pipelines, in order; passes/README.md says why this order. They share the analysis and
# rewrite front and differ in the last pass: training lowering (targets cpu, cuda), the ONNX
# emitter (target onnx), or CPU inference kernels (mode "inference").
_FRONT = "capture,shape-prop,flops,roles,couple,substitute,masks,verify"
TRAIN_PIPELINE = f"{_FRONT},lower-train"
ONNX_PIPELINE = f"{_FRONT},export-onnx"
INFERENCE_PIPELINE = f"{_FRONT},lower-inference"
# Compiling a compiled GraphModule again (a trained model to ONNX or to inference kernels): the
# passes that rewrite layers (``once``) are left out; the rest re-checks and lowers what is there.
_AGAIN = "capture,shape-prop,flops,verify"
AGAIN_PIPELINES = {"train": f"{_AGAIN},lower-train", "onnx": f"{_AGAIN},export-onnx",
                   "inference": f"{_AGAIN},lower-inference"}

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
    """Parse and check a pipeline string. Unknown passes, unknown options or values, and passes
    out of order (a pass before one it requires, a lowering that is not last) raise
    PipelineError (a ValueError) saying what is allowed."""
    items = []
    for part in _split_top(text):
        m = _ITEM.match(part)
        if not m:
            raise PipelineError(f"cannot parse pipeline element {part!r} in {text!r}; "
                                "write 'name' or 'name{key=value ...}'")
        name, opts = m.group(1), m.group(2)
        try:
            info = get_pass(name)
        except ValueError as e:
            raise PipelineError(str(e)) from None
        options = []
        for tok in (opts or "").split():
            key, eq, value = tok.partition("=")
            if not eq or not key:
                raise PipelineError(f"pass option {tok!r} of {name!r} must be key=value")
            _check_option(info, key, value)
            options.append((key, value))
        items.append(PipelineItem(name, tuple(options)))
    if not items:
        raise PipelineError("empty pipeline")
    _check_order(items, text)
    return items


def _check_option(info, key: str, value: str) -> None:
    if key not in info.options:
        allowed = ", ".join(sorted(info.options)) or "none"
        raise PipelineError(f"pass {info.name!r} has no option {key!r}; its options: {allowed}")
    choices = info.options[key]
    if choices is not None and value not in choices:
        raise PipelineError(f"pass option {info.name}{{{key}={value}}} is not allowed; "
                            f"allowed values: {', '.join(choices)}")


def _check_order(items, text: str) -> None:
    seen: list[str] = []
    for i, item in enumerate(items):
        info = get_pass(item.name)
        missing = [r for r in info.requires if r not in seen]
        if missing:
            raise PipelineError(f"pass {item.name!r} needs {', '.join(repr(r) for r in missing)} earlier in "
                                f"the pipeline (got {text!r}); e.g. the default: {TRAIN_PIPELINE}")
        if info.last and i != len(items) - 1:
            raise PipelineError(f"pass {item.name!r} must end the pipeline (it lowers or emits the final "
                                f"graph), but {items[i + 1].name!r} follows it in {text!r}")
        seen.append(item.name)


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
