"""``siftc.compile``: the front door. Parses the policy, runs the pass pipeline, returns a GraphModule."""
from __future__ import annotations

import os
from typing import Optional, Sequence

import torch
from torch import nn

from siftc.core import progress
from siftc.core.errors import CaptureError, PipelineError, SiftcError, UsageError
from siftc.core.pass_registry import get_pass
from siftc.core.pipeline import AGAIN_PIPELINES, INFERENCE_PIPELINE, ONNX_PIPELINE, TRAIN_PIPELINE
from siftc.core.policy import Policy
from siftc.core.state import CompileState
from siftc.dumps import DumpWriter, dump_dir_from_env
from siftc.handle import SiftcHandle, attach, handle_of
from siftc.pass_manager import PassManager
from siftc.recorder import PassRecorder

TARGETS = ("cpu", "cuda", "onnx")
MODES = ("train", "inference")


def _inputs_tuple(example_inputs, model) -> tuple:
    if example_inputs is None:
        prev = handle_of(model)
        if prev is not None:
            return prev.example_inputs
        raise UsageError("siftc.compile needs example_inputs: a tuple of tensors the model accepts, "
                         "e.g. example_inputs=(torch.randn(2, 3, 32, 32),); only their shapes and "
                         "dtypes are used (no real forward pass is run)")
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, list):
        return tuple(example_inputs)
    if not isinstance(example_inputs, tuple):
        raise UsageError(f"example_inputs must be a tensor or a tuple of tensors, got {type(example_inputs).__name__}")
    return example_inputs


def _check_arguments(model, inputs: tuple, target: str, mode: str, exporter: str) -> None:
    """Everything compile can refuse up front, before any pass runs or any file is written."""
    from siftc.passes.export_onnx import EXPORTERS
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}; allowed modes: {', '.join(MODES)}")
    if target == "onnx" and exporter not in EXPORTERS:
        raise UsageError(f"unknown ONNX exporter {exporter!r}; allowed: {', '.join(EXPORTERS)}")
    if not isinstance(model, nn.Module):
        raise CaptureError(f"siftc.compile expects a torch.nn.Module, got {type(model).__name__}")
    meta = [n for n, p in [*model.named_parameters(), *model.named_buffers()] if p.is_meta]
    if meta:
        raise UsageError(f"the model's tensors are on the meta device (not materialised: {', '.join(meta[:3])}"
                         f"{', ...' if len(meta) > 3 else ''}): load or initialise its weights first, e.g. "
                         f"model.to_empty(device='cpu') and a state_dict or init")
    for i, x in enumerate(inputs):
        if type(x).__module__.startswith("numpy"):
            raise UsageError(f"example_inputs[{i}] is a {type(x).__module__}.{type(x).__name__}: siftc traces "
                             f"torch tensors; pass torch.from_numpy(x) (or torch.as_tensor(x))")
    devices = {p.device.type for p in model.parameters()}
    inputs_on = {x.device.type for x in inputs if isinstance(x, torch.Tensor)}
    if len(devices) == 1 and inputs_on and inputs_on != devices:
        raise UsageError(f"the model's weights are on {devices.pop()} but example_inputs on {', '.join(sorted(inputs_on))}: "
                         f"put both on one device")


def compile(model: nn.Module, target: str = "cpu", policy: "Policy | str | None" = None,
            example_inputs: Optional[Sequence] = None, dump_dir: Optional[str] = None,
            leaf_modules: Sequence = (), concrete_args: Optional[dict] = None,
            pipeline: Optional[str] = None, path=None, exporter: str = "dynamo", mode: str = "train"):
    """Compile ``model`` with a Sparse-IFT ``policy`` for ``target`` ("cpu", "cuda" or "onnx").

    cpu/cuda: returns a torch.fx.GraphModule with a ``.siftc`` handle (report, masks, policy).
    onnx: returns an onnx.ModelProto (masked weights as sparse initializers; written to ``path``
    when given), exported with ``exporter`` ("dynamo" or "torchscript"). ``mode="inference"`` (target
    cpu) swaps sparse layers for CSR kernels where a measurement at the example inputs' shapes says
    they are faster, and returns an eval-mode model without gradients. The user's model is not
    modified. Compiling a compiled GraphModule again transforms nothing (its policy is kept; a
    different policy is an error): that is how a trained model goes to ONNX.
    """
    from siftc import passes  # noqa: F401  (registers every pass; imported here to keep imports acyclic)

    if not isinstance(target, str):   # compile(model, (x,)): example inputs passed where target goes
        raise UsageError(f"target must be one of {', '.join(TARGETS)}, got a {type(target).__name__}; "
                         f"pass example inputs by keyword: siftc.compile(model, example_inputs=(x,))")
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; allowed targets: {', '.join(TARGETS)}")
    prev = handle_of(model)
    if policy is None:
        policy = prev.policy if prev is not None else Policy()
    policy = Policy.parse(policy)
    if prev is not None and policy != prev.policy:
        raise UsageError(f"this GraphModule was compiled with policy '{prev.policy}'; compile the original "
                         f"model to apply '{policy}' (layers cannot be transformed twice)")
    inputs = _inputs_tuple(example_inputs, model)
    _check_arguments(model, inputs, target, mode, exporter)
    if prev is not None:   # the budget, layer records and densities are those of the first compile
        ctx = prev.state.again(model, target, inputs, mode, leaf_modules, concrete_args)
    else:
        ctx = CompileState(model=model, policy=policy, target=target, example_inputs=inputs, mode=mode,
                           model_name=type(model).__name__, leaf_modules=tuple(leaf_modules),
                           concrete_args=concrete_args)
    if mode == "inference" and not (target == "cpu" or (target == "cuda" and policy.pattern == "2:4")):
        raise UsageError(f"mode='inference' lowers to CPU sparse kernels (target='cpu'), or on CUDA to 2:4 "
                         f"semi-structured kernels (target='cuda' with pattern=2:4); got target={target!r} and "
                         f"pattern={policy.pattern}. CUDA training graphs stay dense-with-zeros: DST needs the "
                         f"dense gradient")
    if target == "onnx":
        ctx.onnx_options = {"path": path, "exporter": exporter}
    elif path is not None:
        raise UsageError(f"path= is for target='onnx' (got target={target!r})")
    kind = "onnx" if target == "onnx" else mode
    if prev is not None:       # a compiled GraphModule: its layers are not rewritten again
        default = AGAIN_PIPELINES[kind]
    else:
        default = {"onnx": ONNX_PIPELINE, "inference": INFERENCE_PIPELINE, "train": TRAIN_PIPELINE}[kind]
    if path is not None:       # an ONNX path that cannot be written fails before any work
        from siftc.passes.export_onnx import _check_target
        _check_target(os.fspath(path))
    pm = PassManager(pipeline or default)      # a bad pipeline is refused here, before any file is touched
    again = [i.name for i in pm.items if get_pass(i.name).once] if prev is not None else []
    if again:
        raise PipelineError(f"this GraphModule is already compiled: its layers are not rewritten again, so "
                            f"{', '.join(again)} cannot run on it; compiling it again runs '{default}'")
    # the dump folder is cleared of old pass files only now, once every argument is known good
    directory = dump_dir_from_env(dump_dir)
    writer = DumpWriter(directory, policy, target) if directory else None
    if writer:
        writer.write_input(model, inputs)
    # one recorder; the dump files and the HTML page are renderings of its records
    recorder = PassRecorder(listeners=[writer] if writer else [])
    pm.instruments.append(recorder)
    if progress.wanted():
        pm.instruments.append(progress.PassProgress(len(pm.items)))
    try:
        gm = pm.run(None, ctx)
    except SiftcError as e:
        if writer:
            writer.failed(e, ctx.ran, pm.pipeline)
        raise
    except BaseException:
        if writer:
            writer.abandon()
        raise
    ctx.example_inputs = tuple(x.detach().clone() if isinstance(x, torch.Tensor) else x for x in inputs)
    handle = SiftcHandle(gm=gm, state=ctx.kept(), pipeline=pm.pipeline, timings=pm.timings, passes=recorder.records)
    attach(gm, handle)
    if writer:
        writer.finish(pm.pipeline, handle)
    if target == "onnx":
        if ctx.onnx_model is None:
            raise SiftcError(f"target 'onnx' needs the export-onnx pass at the end of the pipeline (got '{pm.pipeline}')")
        return ctx.onnx_model
    return gm


def report(gm):
    """The report of a compiled GraphModule (see siftc.reporting.Report)."""
    h = handle_of(gm)
    if h is None:
        raise SiftcError("siftc.report expects a GraphModule returned by siftc.compile "
                         f"(got {type(gm).__name__} without a .siftc handle)")
    return h.report()
