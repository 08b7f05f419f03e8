"""The compile state: policy, inputs, budget and the per-layer record, shared by the passes of one compile.

Analyses put per-node facts in node.meta (passes/README.md lists the keys); facts about the
whole compile (dense budget, original output shapes, which layers were substituted and which
were left dense, and why) live here and end up in the report.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from siftc.core.policy import Policy


@dataclass
class LayerRecord:
    """One original weight op and what substitute made of it."""
    name: str                         # module path in the original model, e.g. "layer1.0.conv1"
    kind: str                         # "Conv2d" | "Linear"
    member: str                       # member applied ("parallel", ...)
    orig_shape: tuple                 # original weight shape
    flops_before: int                 # dense FLOPs of the original op at the example inputs
    new_modules: list = field(default_factory=list)     # qualnames of the modules that replace it
    sparse_modules: list = field(default_factory=list)  # those of them whose weight is masked
    detail: str = ""                  # e.g. "k=4 branches", "inner d=231", "rank r=28"
    absorbed: list = field(default_factory=list)        # the model's norms the member replaced (parallel)


# fields that matter only while a compile runs: dropped when the state is attached to gm.siftc
# (they hold the user's model, the exported proto, unpicklable solver objects)
TRANSIENT = {"model": None, "leaf_modules": (), "concrete_args": None, "pass_options": {}, "ran": [],
             "onnx_options": {}, "onnx_model": None, "coupling": None}


@dataclass
class CompileState:
    """Everything one compile knows beyond node.meta. The passes read and write it as ``ctx``;
    the handle ``gm.siftc`` keeps it (less the transient fields) after the compile."""
    model: Any
    policy: Policy
    target: str
    example_inputs: tuple
    mode: str = "train"                                # train | inference
    model_name: str = ""                               # class name of the user's model
    leaf_modules: tuple = ()
    concrete_args: Optional[dict] = None
    recompile: bool = False                            # the input is a compiled GraphModule (nothing is
                                                       # transformed twice; its facts below are kept)
    pass_options: dict = field(default_factory=dict)   # options of the pass now running
    ran: list = field(default_factory=list)            # names of the passes run so far
    input_shapes: Optional[list] = None
    output_shapes: Optional[Any] = None                # of the original model (set by shape-prop)
    budget_flops: Optional[int] = None                 # dense forward FLOPs of the original model
    budget_by_category: dict = field(default_factory=dict)
    original_params: Optional[int] = None
    original_flops_by_node: dict = field(default_factory=dict)   # node name -> (target, category, flops)
    layers: dict = field(default_factory=dict)         # original module path -> LayerRecord
    left_dense: dict = field(default_factory=dict)     # module path -> reason it stays dense
    densities: dict = field(default_factory=dict)      # masked module qualname -> realised density
    planned_nonzeros: dict = field(default_factory=dict)  # masked module qualname -> non-zeros the masks
                                                       # pass drew (None: a block pattern's, not planned)
    iso_note: str = ""                                 # how densities were solved
    kernels: dict = field(default_factory=dict)        # mode inference: module -> kernel decision
    onnx_options: dict = field(default_factory=dict)   # target onnx: path, exporter, sparse
    onnx_model: Any = None                             # target onnx: the exported ModelProto
    coupling: Any = None                               # couple's channel groups (Sparse Wide)
    groups: list = field(default_factory=list)         # report rows: group, widths, members
    extended: dict = field(default_factory=dict)       # wide: tensor outside a layer on a widened group ->
                                                       # {"from", "to", "rule"} (values kept in place)
    hf_source: Optional[dict] = None                   # the Hugging Face model inside the user's model
                                                       # (path, class, config; capture): save_pretrained
    residual_norms: list = field(default_factory=list)  # roles: (norm ending a residual main branch,
                                                       # [its layers]) (init=reference zero-inits it)
    initialised: dict = field(default_factory=dict)    # tensor name -> the policy rule that set it (init=)
    warnings: list = field(default_factory=list)

    def kept(self) -> "CompileState":
        """A copy without the transient fields: what gm.siftc holds."""
        return dataclasses.replace(self, **copy.deepcopy(TRANSIENT))

    def again(self, model, target: str, example_inputs: tuple, mode: str, leaf_modules=(),
              concrete_args=None) -> "CompileState":
        """The state of compiling this compile's GraphModule again (another target, a trained
        model to ONNX): budget, layer records and densities are those of the first compile."""
        return dataclasses.replace(copy.deepcopy(self.kept()), model=model, target=target,
                                   example_inputs=example_inputs, mode=mode, leaf_modules=tuple(leaf_modules),
                                   concrete_args=concrete_args, recompile=True, input_shapes=None)

    def warn(self, message: str) -> None:
        import warnings
        if message not in self.warnings:     # a recompile keeps the first compile's warnings
            self.warnings.append(message)
        warnings.warn(message, stacklevel=_user_stacklevel())


def _user_stacklevel() -> int:
    """The stacklevel of the first frame outside siftc, passes and torch (the user's call of
    siftc.compile), so a warning points at the user's line, not at siftc's internals."""
    import os
    import sys
    import torch
    skip = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep
                 for m in (sys.modules["siftc"], sys.modules["siftc.passes"], torch))
    frame, level = sys._getframe(2), 2          # 1: ctx.warn itself
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(skip):
        frame, level = frame.f_back, level + 1
    return level
