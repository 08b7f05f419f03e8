"""shape-prop: shapes and dtypes on every node, computed with fake tensors.

The graph is interpreted under FakeTensorMode in eval mode, so compiling does not run the
model's real compute, copy its weights or mutate its buffers (BatchNorm's running statistics and
``num_batches_tracked`` stay as they were). One exception: a leaf module whose output depends on
tensor values (a data-dependent ``if`` kept as a black box with ``leaf_modules``) cannot run on
fake tensors; that one module is run for real on zero inputs of the right shapes.
Writes ``node.meta["val"]`` (a FakeTensor or a tuple of them) and ``node.meta["siftc.shape"]``.
"""
from __future__ import annotations

import logging

import torch
import torch.fx
from torch._subclasses.fake_tensor import (DataDependentOutputException, DynamicOutputShapeException, FakeTensor,
                                           FakeTensorMode, unset_fake_temporarily)

from siftc.core import ops
from siftc.core.errors import ShapeError
from siftc.core.pass_registry import PassResult, register


def _shape_of(val):
    if isinstance(val, torch.Tensor):
        return tuple(val.shape)
    if isinstance(val, (tuple, list)) and not isinstance(val, torch.Size):
        return tuple(_shape_of(v) for v in val)
    return None


class _FakeInterpreter(torch.fx.Interpreter):
    def __init__(self, gm, mode):
        super().__init__(gm)
        self.mode = mode
        self.extra_traceback = False     # our error already names the node

    def call_module(self, target, args, kwargs):
        mod = self.fetch_attr(target)
        rule = ops.rule_for(mod)
        weight = getattr(mod, "weight", None)
        x = args[0] if args else None
        if rule is not None and rule.weight in ("conv", "linear") and isinstance(weight, torch.Tensor) \
                and isinstance(x, torch.Tensor) and x.dtype != weight.dtype:
            # fake tensors do not check dtypes here; the real layer refuses (mat1 and mat2 dtypes)
            raise ShapeError(f"the example inputs do not fit the model at module '{target}': its input is "
                             f"{x.dtype} and its weight {weight.dtype}. Give example_inputs of the dtype the "
                             f"model runs in (x.to({weight.dtype})), or cast the model")
        if rule is not None and rule.shape is not None and len(args) == 1 and not kwargs:
            out = rule.shape(mod, args[0])       # the op registry knows this output's shape
            if out is not None:
                return out
        try:
            return super().call_module(target, args, kwargs)
        except (DataDependentOutputException, DynamicOutputShapeException):
            with unset_fake_temporarily():
                real = [torch.zeros(a.shape, dtype=a.dtype) if isinstance(a, torch.Tensor) else a for a in args]
                out = self.fetch_attr(target)(*real, **kwargs)
            return self.mode.from_tensor(out) if isinstance(out, torch.Tensor) else out

    def call_function(self, target, args, kwargs):
        out = _same_shape(target, args, kwargs)
        return out if out is not None else super().call_function(target, args, kwargs)

    def run_node(self, n):
        try:
            result = super().run_node(n)
        except ShapeError:
            raise
        except Exception as e:  # a torch error: say which node and which inputs did not fit
            args = ", ".join(str(_shape_of(a.meta.get("val"))) for a in n.all_input_nodes)
            err = ShapeError(f"the example inputs do not fit the model at node '{n.name}' "
                             f"({n.op} {n.target}) with input shapes [{args}]: "
                             f"{type(e).__name__}: {str(e).splitlines()[0].rstrip('.') if str(e) else ''}. "
                             "Check the shapes passed as example_inputs.")
            err.node = n
            raise err from None
        n.meta["val"] = result
        n.meta["siftc.shape"] = _shape_of(result)
        return result


# the commonest nodes of a CNN after substitute (Sparse Parallel's branch ReLUs and sums) and of
# its activations: outputs built without a fake dispatch (ops.empty_as) from the op registry's
# shape behaviour (ops.SAME_SHAPE_FUNCTIONS, ops.BROADCAST_FUNCTIONS), only in the forms that leave
# no doubt: one floating tensor argument (relu's inplace flag aside), or two operands of the same
# shape, strides, dtype and device (or a tensor and a Python number). Everything else is dispatched.


def _same_shape(target, args, kwargs):
    if target in ops.SAME_SHAPE_FUNCTIONS and len(args) == 1 and set(kwargs) <= {"inplace"}:
        x = args[0]
        return ops.empty_as(x) if _plain(x) else None
    if target in ops.BROADCAST_FUNCTIONS and len(args) == 2 and not kwargs:
        a, b = args
        if not _plain(a):
            return None
        if isinstance(b, (int, float)) and not isinstance(b, bool):
            return ops.empty_as(a)
        if (isinstance(b, FakeTensor) and b.fake_mode is a.fake_mode and a.shape == b.shape
                and a.stride() == b.stride() and a.dtype == b.dtype and a.device == b.device):
            return ops.empty_as(a)
    return None


def _plain(x) -> bool:
    """A floating fake tensor laid out densely (contiguous or channels-last): an elementwise op's
    output then has its strides. A view with gaps (``x[:, ::2]``) gets a contiguous output, and
    is dispatched."""
    return (isinstance(x, FakeTensor) and x.is_floating_point()
            and (x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))))


def propagate_shapes(gm: torch.fx.GraphModule, inputs) -> object:
    """Interpret ``gm`` on fake copies of ``inputs``; return the fake output."""
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    fake_inputs = [mode.from_tensor(x) if isinstance(x, torch.Tensor) else x for x in inputs]
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    # inputs fixed at capture (forward arguments left at their defaults) keep a placeholder with
    # that default: the graph runs with it, as the model did
    for p in placeholders[len(fake_inputs):]:
        if not p.args:
            break
        fake_inputs.append(p.args[0])
    if len(placeholders) != len(fake_inputs):
        names = ", ".join(p.target for p in placeholders)
        raise ShapeError(f"the model takes {len(placeholders)} inputs ({names}) but "
                         f"{len(fake_inputs)} example inputs were given")
    # eval mode while propagating: shapes do not depend on it, and train-mode BatchNorm would
    # reject a batch of 1 at 1x1 spatial size that inference compiles legitimately use
    training = {m: m.training for m in gm.modules()}
    gm.eval()
    # fake_tensor logs a full traceback at ERROR level for every op whose meta kernel refuses
    # its inputs; siftc's ShapeError says the same in one line (node and shapes)
    log = logging.getLogger("torch._subclasses.fake_tensor")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with mode:
            return _FakeInterpreter(gm, mode).run(*fake_inputs)
    finally:
        log.setLevel(level)
        for m, flag in training.items():
            m.training = flag


def _shapes_key(gm, inputs):
    """What shapes depend on: the graph code, the inputs' shapes and dtypes, and every parameter's
    and buffer's shape (Sparse Wide changes those without changing the code)."""
    tensors = tuple((n, tuple(t.shape)) for n, t in (*gm.named_parameters(), *gm.named_buffers()))
    return (gm.code, tuple((tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else repr(x) for x in inputs),
            tensors)


def shapes_are_current(gm, inputs) -> bool:
    """True when every node carries shape meta computed for this graph code and these inputs.

    Fake propagation is the costliest analysis (FakeTensor dispatch per node), so the pass, the
    verifier and the report skip it when nothing it depends on changed.
    """
    return _current(gm, _shapes_key(gm, inputs))


def _current(gm, key) -> bool:
    return gm.meta.get("siftc.shapes_key") == key and all("siftc.shape" in n.meta for n in gm.graph.nodes)


def ensure_shapes(gm, inputs) -> None:
    key = _shapes_key(gm, inputs)          # propagation changes neither code nor weights: one key
    if not _current(gm, key):
        propagate_shapes(gm, inputs)
        gm.meta["siftc.shapes_key"] = key


def output_shapes(gm: torch.fx.GraphModule):
    out = next(n for n in reversed(gm.graph.nodes) if n.op == "output")
    return _shape_of_arg(out.args[0])


def _shape_of_arg(arg):
    if isinstance(arg, torch.fx.Node):
        return arg.meta.get("siftc.shape")
    if isinstance(arg, (tuple, list)):
        return type(arg)(_shape_of_arg(a) for a in arg)
    if isinstance(arg, dict):
        return {k: _shape_of_arg(v) for k, v in arg.items()}
    return None


@register("shape-prop", "shapes and dtypes on every node, with fake tensors (no real compute)",
          kind="analysis", requires=("capture",))
def shape_prop(gm, ctx) -> PassResult:
    ensure_shapes(gm, ctx.example_inputs)
    if ctx.output_shapes is None:            # first run: remember the original model's outputs
        ctx.output_shapes = output_shapes(gm)
        ctx.input_shapes = [_shape_of(x) for x in ctx.example_inputs]
    return PassResult(gm, False, {"nodes": len(gm.graph.nodes)})
