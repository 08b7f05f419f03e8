"""siftc: a torch.fx compiler for Sparse Iso-FLOP Transformations (Sparse-IFT, arXiv 2303.11525).

    gm = siftc.compile(model, target="cpu", policy="parallel:0.75", example_inputs=(x,))
    print(siftc.report(gm))
"""
from .errors import (CaptureError, IsoFlopError, PassError, PolicyError, ShapeError, SiftcError,
                     VerifyError)
from .policy import MEMBERS, Policy
from .compiler import TARGETS, compile, report
from .pass_manager import PassManager
from .dst import DST

__all__ = ["compile", "report", "DST", "Policy", "MEMBERS", "TARGETS", "PassManager", "SiftcError", "PolicyError",
           "CaptureError", "ShapeError", "IsoFlopError", "VerifyError", "PassError"]
__version__ = "0.1.0"
