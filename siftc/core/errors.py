"""Exceptions siftc raises: each says which pass, which node and what the user can do."""
from __future__ import annotations


class SiftcError(Exception):
    """Base class of every error siftc raises on purpose."""


class PolicyError(SiftcError, ValueError):
    """A policy string or field is malformed; the message lists what is allowed."""


class UsageError(SiftcError, ValueError):
    """An argument names something that does not exist (a zoo model, a recipe) or is out of range."""


class PipelineError(SiftcError, ValueError):
    """A textual pipeline names an unknown pass or option, or puts passes out of order."""


class CaptureError(SiftcError):
    """The model could not be captured as a graph (torch.fx tracing failed)."""


class ShapeError(SiftcError):
    """The example inputs do not fit the model."""


class IsoFlopError(SiftcError):
    """The iso-FLOP budget cannot be met by any choice of layer sparsities."""


class VerifyError(SiftcError):
    """The graph after a pass breaks an invariant (lint, output shapes, iso-FLOP)."""


class PassError(SiftcError):
    """A pass failed. Carries the pass name, the node (if known) and the passes that ran before."""

    def __init__(self, pass_name: str, message: str, node=None, ran_before=()):
        self.pass_name = pass_name
        self.node = node
        self.ran_before = tuple(ran_before)
        where = f"\n  node: {node.format_node()}" if node is not None else ""
        before = ", ".join(self.ran_before) or "(none)"
        super().__init__(f"pass '{pass_name}' failed: {message}{where}\n  passes run before: {before}")


class ExportError(SiftcError):
    """The ONNX exporter rejected the model, or the ONNX file could not be written."""


class CheckpointError(SiftcError):
    """siftc.save refused a model it cannot write as data, or siftc.load a directory that is not a
    consistent siftc checkpoint (the message names the module, node or file)."""
