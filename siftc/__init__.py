"""siftc: a torch.fx compiler for Sparse Iso-FLOP Transformations (Sparse-IFT, arXiv 2303.11525).

    gm = siftc.compile(model, target="cpu", policy="parallel:0.75", example_inputs=(x,))
    print(siftc.report(gm))
    proto = siftc.compile(gm, target="onnx", path="model.onnx")    # sparse initializers
    siftc.onnx_check(proto, gm, (x,))                               # onnxruntime vs PyTorch

The package is layered (docs/architecture.md); each layer imports only the ones below it:

    siftc.core         errors, policy, compile state, op and pass registries, members, kernels
    siftc.passes       the passes (source folder passes/)
    siftc.compiler, .handle, .reporting, .pass_manager, .recorder, .viewer    the front door
    siftc.runtime      DST, onnxruntime check
    siftc.experiments  training loop, experiment grids, benchmarks (extra: siftc[experiments])
    siftc.cli          the command line

Names below are loaded on first use, so ``import siftc`` (or importing one pass) does not load
the DST runtime, the ONNX exporter or the viewer.
"""
from .core.errors import (CaptureError, CheckpointError, ExportError, IsoFlopError, PassError, PipelineError, PolicyError, ShapeError,
                          SiftcError, UsageError, VerifyError)
from .core.policy import MEMBERS, Policy

# public name -> (module, attribute)
_LAZY = {
    "compile": ("siftc.compiler", "compile"),
    "report": ("siftc.compiler", "report"),
    "TARGETS": ("siftc.compiler", "TARGETS"),
    "PassManager": ("siftc.pass_manager", "PassManager"),
    "DST": ("siftc.runtime.dst", "DST"),
    "export_onnx": ("siftc.passes.export_onnx", "export_onnx"),
    "onnx_check": ("siftc.runtime.onnx_check", "onnx_check"),
    "save": ("siftc.runtime.checkpoint", "save"),
    "load": ("siftc.runtime.checkpoint", "load"),
    "save_pretrained": ("siftc.runtime.hf_pretrained", "save_pretrained"),
    "render_html": ("siftc.viewer", "render_html"),
    "ModuleRule": ("siftc.core.ops", "ModuleRule"),
    "register_module_rule": ("siftc.core.ops", "register_module"),
    "masked_weights": ("siftc.core.mask_api", "masked_weights"),
    "MaskedWeight": ("siftc.core.mask_api", "MaskedWeight"),
}

__all__ = ["compile", "report", "DST", "Policy", "MEMBERS", "TARGETS", "PassManager", "SiftcError", "PolicyError",
           "PipelineError", "CaptureError", "ShapeError", "IsoFlopError", "VerifyError", "PassError", "ExportError", "UsageError", "CheckpointError", "save", "load",
           "save_pretrained",
           "export_onnx", "onnx_check", "render_html", "ModuleRule", "register_module_rule", "masked_weights",
           "MaskedWeight"]
__version__ = "0.1.0"


def __getattr__(name):
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'siftc' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
