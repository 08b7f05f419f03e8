"""capture: the model as a torch.fx GraphModule (module-level graph, leaf modules configurable).

Policy ``capture=auto`` (default) traces with torch.fx and falls back to torch.export
(passes/capture_export.py) when fx fails, saying so in the report's warnings; ``capture=fx``
never falls back; ``capture=export`` goes straight to torch.export. Either way Conv1D-style
linears are mapped to nn.Linear (passes/lift_modules.py).

The model is deep-copied first, so compiling never touches the user's weights. A GraphModule
(for instance one siftc compiled before) is copied as it is, not re-traced. When tracing fails,
the error names the line of the user's code that fx could not follow and says how to fix it.
"""
from __future__ import annotations

import copy
import os
import traceback

import torch
import torch.fx
from torch import nn

from siftc.core import errors as errors_module
from siftc.core.errors import CaptureError
from .capture_export import capture_with_export
from .decompose import TRACE_THROUGH, decompose_attention
from .lift_modules import lift_modules
from .mode_ops import follow_training_flag
from siftc.core.pass_registry import PassResult, register

# frames in torch, siftc and these passes are not the user's code (an error's "at file:line"
# names the user's line)
_NOT_USER_DIRS = (os.path.dirname(torch.__file__) + os.sep,
                  os.path.dirname(os.path.dirname(os.path.abspath(errors_module.__file__))) + os.sep,
                  os.path.dirname(os.path.abspath(__file__)) + os.sep)


class _Tracer(torch.fx.Tracer):
    def __init__(self, leaf_modules=()):
        super().__init__()
        self.leaf_types = tuple(m for m in leaf_modules if isinstance(m, type))
        self.leaf_names = {m for m in leaf_modules if isinstance(m, str)}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if self.leaf_types and isinstance(m, self.leaf_types):
            return True
        if qualname in self.leaf_names:
            return True
        if type(m) in TRACE_THROUGH:        # their attention is decomposed: trace to reach the linears
            return False
        return super().is_leaf_module(m, qualname)


def _user_frame(exc: BaseException):
    """The innermost traceback frame outside torch and siftc: the line fx could not follow
    (None when fx failed before running any of the user's code)."""
    found = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if not frame.f_code.co_filename.startswith(_NOT_USER_DIRS):
            found = (frame, lineno)
    return found


_EXPORT_FIX = "capture with torch.export (policy capture=export, the default capture=auto falls back to it)"
# what fx itself offers against code it cannot follow, then export
_FX_FIXES = ("make the module that holds it a leaf (siftc.compile(..., leaf_modules=[ThatModule])) so it is called "
             "as a black box and left dense, or fix the deciding value with siftc.compile(..., concrete_args={...}), "
             "or " + _EXPORT_FIX)


def _wrapped_forward(model: nn.Module):
    """The decorator around ``type(model).forward`` when torch.fx cannot trace through it, else
    None. fx reads the arguments from the wrapped function (functools.wraps) and, when that one
    takes ``*args``, ``**kwargs`` or keyword-only arguments, rebuilds the *wrapper's* code with
    their count, which fails on a wrapper with fewer locals (transformers 5 decorates its models'
    ``forward(self, ..., **kwargs)`` so: "co_varnames is too small")."""
    import inspect
    forward = type(model).forward
    inner = inspect.unwrap(forward)
    code = getattr(inner, "__code__", None)
    if inner is forward or code is None:
        return None
    varying = code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS) or code.co_kwonlyargcount
    return forward if varying else None


def _where_defined(fn) -> str:
    """``qualname at file:line`` of a function's own code (functools.wraps copies the wrapped
    function's name and module onto a wrapper, its code keeps the wrapper's)."""
    code = fn.__code__
    return f"{getattr(code, 'co_qualname', code.co_name)} at {code.co_filename}:{code.co_firstlineno}"


def _fix_for(exc: BaseException, model: nn.Module) -> str:
    """What to do about fx's failure, by its cause (the hint names the cause it is sure of)."""
    wrapper = _wrapped_forward(model)
    if wrapper is not None and isinstance(exc, ValueError):
        return (f"{type(model).__name__}.forward is wrapped by a decorator taking *args/**kwargs "
                f"({_where_defined(wrapper)}; transformers 5 wraps its models' forwards so) around a forward with "
                f"**kwargs: torch.fx cannot trace through it. Instead, {_EXPORT_FIX}.")
    if isinstance(exc, torch.fx.proxy.TraceError):
        return ("data-dependent Python control flow (an `if`, loop or iteration on a tensor value) cannot be "
                f"traced. Either {_FX_FIXES}.")
    return f"torch.fx could not follow this code. Either {_FX_FIXES}."


def trace(model: nn.Module, leaf_modules=(), concrete_args=None) -> torch.fx.GraphModule:
    tracer = _Tracer(leaf_modules)
    try:
        graph = tracer.trace(model, concrete_args=concrete_args)
    except Exception as e:
        where = ""
        hit = _user_frame(e)
        module_hint = ""
        if hit is not None:
            frame, lineno = hit
            import linecache
            line = linecache.getline(frame.f_code.co_filename, lineno).strip()
            where = f" at {frame.f_code.co_filename}:{lineno} `{line}`"
            owner = frame.f_locals.get("self")
            if isinstance(owner, nn.Module):
                module_hint = f" (in {type(owner).__name__}.{frame.f_code.co_name})"
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CaptureError(f"torch.fx cannot trace {type(model).__name__}{where}{module_hint}: {first}.\n"
                           f"  How to fix: {_fix_for(e, model)}") from None
    name = type(model).__name__
    return torch.fx.GraphModule(tracer.root, graph, name)


def defaults_for_missing(model: nn.Module, n_inputs: int, concrete_args) -> dict:
    """Forward parameters past the example inputs that have defaults, with those defaults.

    ``forward(x, attn_mask=None, is_causal=False)`` called with one example input runs with the
    defaults, so the trace fixes them (as torch.fx's ``concrete_args``) instead of turning them
    into graph inputs the example inputs do not cover (timm's VisionTransformer does this)."""
    import inspect
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return {}
    out = {}
    for p in params[n_inputs:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            break
        if p.default is not p.empty and p.name not in (concrete_args or {}):
            out[p.name] = p.default
    return out


def _decompose(ctx, model: nn.Module) -> int:
    """decompose_attention on capture's copy of the model; its notes become warnings."""
    decomposed, notes = decompose_attention(model, ctx.leaf_modules)
    for note in notes:
        ctx.warn(note)
    return decomposed


def _warn_mode_branches(ctx, model: nn.Module, traced: torch.fx.GraphModule, fixed) -> None:
    """Warn when the forward branches on ``self.training`` in Python (torchvision GoogLeNet's and
    Inception's auxiliary heads): tracing keeps the branch of the mode the model was compiled in,
    for both modes of the compiled model. Found by tracing once more in the other mode."""
    flags = {m: m.training for m in model.modules()}
    try:
        model.train(not model.training)
        other = trace(model, ctx.leaf_modules, fixed or None)
    except CaptureError:
        return
    finally:
        for m, flag in flags.items():
            m.training = flag
    def calls(gm):
        return [(n.op, str(n.target)) for n in gm.graph.nodes if n.op not in ("placeholder", "output")]
    if calls(traced) != calls(other):
        mode = "train" if model.training else "eval"
        ctx.warn(f"capture: {type(model).__name__}.forward branches on self.training in Python (its "
                 f"{'train' if mode == 'eval' else 'eval'}-mode graph differs); the compiled model follows the "
                 f"{mode}-mode branch in both modes. Compile the model in the mode you will run it in")


def hf_source(model: nn.Module) -> "dict | None":
    """Where the user's model holds a Hugging Face ``PreTrainedModel`` (the model itself or one
    wrapped inside it): its module path, class and config as a dict, so ``siftc.save_pretrained``
    can write the compiled model back as that class. None when there is no such module, or more
    than one outside each other (which one would be the checkpoint is then not clear)."""
    found = []
    for name, mod in model.named_modules():
        if any(f"{c.__module__}.{c.__name__}" == "transformers.modeling_utils.PreTrainedModel"
               for c in type(mod).__mro__) and not any(name.startswith(f"{f}.") or not f for f, _ in found):
            found.append((name, mod))
    if len(found) != 1:
        return None
    name, mod = found[0]
    cls = type(mod)
    import json         # the config as transformers writes config.json: plain JSON values only
    return {"path": name, "class": f"{cls.__module__}.{cls.__qualname__}",
            "config": json.loads(mod.config.to_json_string(use_diff=False))}


@register("capture", "trace the model into a torch.fx GraphModule (deep copy; user model untouched); "
                    "torch.export when fx cannot (policy capture=auto|fx|export)",
          kind="transform", policy_keys=("capture",))
def capture(gm, ctx) -> PassResult:
    model = ctx.model
    if not isinstance(model, nn.Module):
        raise CaptureError(f"siftc.compile expects a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.fx.GraphModule):
        # a compiled model going to ONNX: nothing in that pipeline writes a weight (no member
        # runs again, no lower-train moves devices), so the copy shares the tensors instead of
        # holding a second set of a possibly huge model's weights. A GraphModule the user traced
        # is compiled like any model: its members and masks write weights, so it is copied whole
        from siftc.core.masking import shared_copy
        out = shared_copy(model) if ctx.recompile and ctx.target == "onnx" else copy.deepcopy(model)
        # layers trained through sparse kernels (policy kernels=...) go back to masked dense
        # linears: export and the analyses see the layers the compile made; lower-train swaps again
        from siftc.core.train_kernels import to_dense_layers
        return PassResult(out, True, {"retraced": 0, "sparse_kernels_undone": to_dense_layers(out)})
    ctx.hf_source = hf_source(model)
    how = ctx.policy.capture
    if how in ("auto", "fx"):
        copied = copy.deepcopy(model)
        decomposed = _decompose(ctx, copied)       # nn.MultiheadAttention -> 4 linears + SDPA
        fixed = {**defaults_for_missing(model, len(ctx.example_inputs), ctx.concrete_args), **(ctx.concrete_args or {})}
        try:
            out = trace(copied, ctx.leaf_modules, fixed or None)
        except CaptureError as e:
            if how == "fx" or ctx.leaf_modules or ctx.concrete_args:   # the user chose fx's own fixes
                raise
            first = " ".join(str(e).splitlines()[0].split())      # one line, runs of spaces folded
            ctx.warn(f"capture: {first[:300]} -> captured with torch.export instead")
        else:
            _warn_mode_branches(ctx, copied, out, fixed)
            lifted, notes = lift_modules(out, copied)      # Conv1D-style linears -> nn.Linear
            for note in notes:
                ctx.warn(note)
            mode_ops = follow_training_flag(out.graph, copied)   # F.dropout(training=True) etc. read .training
            if lifted or mode_ops:
                out = torch.fx.GraphModule(copied, out.graph, type(model).__name__)
            return PassResult(out, True, {"retraced": 1, "via": "fx", "lifted_modules": lifted, "mode_ops": mode_ops,
                                          "decomposed_attention": decomposed})
    if ctx.leaf_modules or ctx.concrete_args:
        raise CaptureError("leaf_modules= and concrete_args= are torch.fx options; with capture=export "
                           "(or when fx fails) leave them out")
    source = copy.deepcopy(model)
    decomposed = _decompose(ctx, source)
    out, warnings, stats = capture_with_export(source, ctx.example_inputs)   # it works on deep copies
    stats["decomposed_attention"] = decomposed
    for w in warnings:
        ctx.warn(w)
    return PassResult(out, True, {"retraced": 1, "via": "export", **stats})
