"""shape-prop: shapes and dtypes on every node, computed with fake tensors.

Parameters and buffers are swapped for fake tensors while the graph is interpreted, so
compiling never runs the model's real compute, never copies its weights and never mutates
its buffers (BatchNorm's ``num_batches_tracked`` stays as it was).
Writes ``node.meta["val"]`` (a FakeTensor or a tuple of them) and ``node.meta["siftc.shape"]``.
"""
from __future__ import annotations

import torch
import torch.fx
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.utils import stateless

from siftc.errors import ShapeError
from .registry import PassResult, register


def _shape_of(val):
    if isinstance(val, torch.Tensor):
        return tuple(val.shape)
    if isinstance(val, (tuple, list)) and not isinstance(val, torch.Size):
        return tuple(_shape_of(v) for v in val)
    return None


class _FakeInterpreter(torch.fx.Interpreter):
    def run_node(self, n):
        try:
            result = super().run_node(n)
        except ShapeError:
            raise
        except Exception as e:  # a torch error: say which node and which inputs did not fit
            args = ", ".join(str(_shape_of(a.meta.get("val"))) for a in n.all_input_nodes)
            err = ShapeError(f"the example inputs do not fit the model at node '{n.name}' "
                             f"({n.op} {n.target}) with input shapes [{args}]: "
                             f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
                             "Check the shapes passed as example_inputs.")
            err.node = n
            raise err from None
        n.meta["val"] = result
        n.meta["siftc.shape"] = _shape_of(result)
        return result


def propagate_shapes(gm: torch.fx.GraphModule, inputs) -> object:
    """Interpret ``gm`` on fake copies of ``inputs``; return the fake output."""
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    fake_inputs = [mode.from_tensor(x) if isinstance(x, torch.Tensor) else x for x in inputs]
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(fake_inputs):
        names = ", ".join(p.target for p in placeholders)
        raise ShapeError(f"the model takes {len(placeholders)} inputs ({names}) but "
                         f"{len(fake_inputs)} example inputs were given")
    with mode:
        state = {k: mode.from_tensor(v) for k, v in
                 list(gm.named_parameters(remove_duplicate=False)) + list(gm.named_buffers(remove_duplicate=False))}
    with stateless._reparametrize_module(gm, state, tie_weights=True), mode:
        return _FakeInterpreter(gm).run(*fake_inputs)


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


@register("shape-prop", "shapes and dtypes on every node, with fake tensors (no real compute)", analysis=True)
def shape_prop(gm, ctx) -> PassResult:
    propagate_shapes(gm, ctx.example_inputs)
    if ctx.output_shapes is None:            # first run: remember the original model's outputs
        ctx.output_shapes = output_shapes(gm)
        ctx.input_shapes = [_shape_of(x) for x in ctx.example_inputs]
    return PassResult(gm, False, {"nodes": len(gm.graph.nodes)})
