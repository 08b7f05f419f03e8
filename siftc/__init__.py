"""siftc: a torch.fx compiler for Sparse Iso-FLOP Transformations (Sparse-IFT, arXiv 2303.11525).

    gm = siftc.compile(model, target="cpu", policy="parallel:0.75", example_inputs=(x,))
    print(siftc.report(gm))
    proto = siftc.compile(gm, target="onnx", path="model.onnx")    # sparse initializers
    siftc.onnx_check(proto, gm, (x,))                               # onnxruntime vs PyTorch
"""
from .errors import (CaptureError, ExportError, IsoFlopError, PassError, PolicyError, ShapeError, SiftcError,
                     VerifyError)
from .policy import MEMBERS, Policy
from .compiler import TARGETS, compile, report
from .pass_manager import PassManager
from .dst import DST
from .onnx_export import export_onnx, onnx_check
from .viewer import render_html
from passes.ops import ModuleRule, register_module as register_module_rule

__all__ = ["compile", "report", "DST", "Policy", "MEMBERS", "TARGETS", "PassManager", "SiftcError", "PolicyError",
           "CaptureError", "ShapeError", "IsoFlopError", "VerifyError", "PassError", "ExportError", "export_onnx",
           "onnx_check", "render_html", "ModuleRule", "register_module_rule"]
__version__ = "0.1.0"
