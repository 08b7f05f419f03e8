"""Functional calls whose train/eval behaviour tracing froze, turned back into modules that read
``.training``.

Both captures run the model's Python once: ``F.dropout(x, p, training=self.training)``,
torchvision's ``stochastic_depth(x, p, mode, self.training)`` or an attention written as
``F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0)`` reach the
graph with the *value* the flag had at capture. A model compiled in train mode would then keep
dropping activations after ``gm.eval()`` (and onnxruntime, which runs it in eval, disagrees); one
compiled in eval mode would never drop them in training. ``follow_training_flag`` replaces each
such call by a call to a small module that passes its own ``.training`` (the GraphModule's
``.train()`` / ``.eval()`` reach it), so the compiled model behaves as the model did in both modes.
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from siftc.core import ops

_FLAG_NAMES = ("training", "train")


class FollowTraining(nn.Module):
    """Calls ``fn`` with its train flag (argument ``position`` or keyword ``name``) set to
    ``self.training``."""

    def __init__(self, fn, name: str, position: int | None):
        super().__init__()
        self.fn, self.name, self.position = fn, name, position

    def forward(self, *args, **kwargs):
        if self.position is not None and self.position < len(args):
            args = (*args[:self.position], self.training, *args[self.position + 1:])
        else:
            kwargs[self.name] = self.training
        return self.fn(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"{getattr(self.fn, '__name__', self.fn)}({self.name}=self.training)"


class TrainingSDPA(nn.Module):
    """scaled_dot_product_attention whose dropout follows ``self.training``."""

    def __init__(self, dropout_p: float):
        super().__init__()
        self.dropout_p = dropout_p

    def forward(self, *args, **kwargs):
        kwargs.pop("dropout_p", None)
        if len(args) > 4:
            args = args[:4] + args[5:]
        return torch.nn.functional.scaled_dot_product_attention(
            *args, dropout_p=self.dropout_p if self.training else 0.0, **kwargs)

    def extra_repr(self) -> str:
        return f"dropout_p={self.dropout_p} while training"


ops.register_transparent(FollowTraining, TrainingSDPA)


def _keeps_shape(mod: FollowTraining) -> bool:
    """A dropout or torchvision's stochastic depth: the output has the input's shape."""
    fn = mod.fn
    return fn in ops.SAME_SHAPE_FUNCTIONS or fn in _DROPOUTS or (
        getattr(fn, "__name__", "") == "stochastic_depth" and getattr(fn, "__module__", "").startswith("torchvision."))


# (F.dropout itself is one of ops.SAME_SHAPE_FUNCTIONS)
_DROPOUTS = {torch.nn.functional.dropout1d, torch.nn.functional.dropout2d, torch.nn.functional.dropout3d,
             torch.nn.functional.alpha_dropout, torch.nn.functional.feature_alpha_dropout,
             torch.ops.aten.dropout.default}
ops.SAME_SHAPE_MODULES[FollowTraining] = _keeps_shape

_SDPA = (torch.ops.aten.scaled_dot_product_attention.default, torch.nn.functional.scaled_dot_product_attention)


def _flag_parameter(fn):
    """(name, position) of ``fn``'s train flag parameter, or None."""
    schema = getattr(fn, "_schema", None)            # an ATen overload: aten.dropout(input, p, train)
    if schema is not None:
        names = [a.name for a in schema.arguments]
    else:
        try:
            names = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            return None
    for i, name in enumerate(names):
        if name in _FLAG_NAMES:
            return name, i
    return None


def follow_training_flag(graph: torch.fx.Graph, root: nn.Module) -> int:
    """Rewrite the graph's mode-frozen calls into calls to modules added to ``root``; returns how
    many were rewritten."""
    rewritten = 0
    for n in list(graph.nodes):
        if n.op != "call_function":
            continue
        module = None
        if n.target in _SDPA:
            p = n.kwargs.get("dropout_p", n.args[4] if len(n.args) > 4 else 0.0)
            if isinstance(p, (int, float)) and p > 0:
                module = TrainingSDPA(float(p))
                module.training = True       # it dropped at capture
        else:
            flag = _flag_parameter(n.target)
            if flag is not None:
                name, pos = flag
                value = n.args[pos] if pos < len(n.args) else n.kwargs.get(name)
                if isinstance(value, bool):
                    module = FollowTraining(n.target, name, pos if pos < len(n.args) else None)
                    # in the mode it was captured in (a new module starts in train mode: an eval
                    # model's dropout would drop until the user's next .eval())
                    module.training = value
        if module is None:
            continue
        target = f"siftc_mode_{rewritten}"
        while hasattr(root, target):
            target += "_"
        root.add_module(target, module)
        n.op, n.target = "call_module", target
        rewritten += 1
    return rewritten
