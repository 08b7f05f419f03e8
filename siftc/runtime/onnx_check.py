"""``siftc.onnx_check``: run an exported ONNX model in onnxruntime and compare it with PyTorch."""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from siftc.core.errors import VerifyError
from siftc.passes.export_onnx import is_large, write_external


@dataclass
class OnnxCheck:
    max_abs_err: float
    max_rel_err: float      # max |onnx - torch| / max |torch|, over all outputs (nan when skipped)
    outputs: int
    skipped: str = ""       # why the model was not run (max_gb), else empty

    def __str__(self) -> str:
        if self.skipped:
            return f"onnxruntime check skipped: {self.skipped}"
        return f"onnxruntime vs PyTorch: max relative error {self.max_rel_err:.2e} over {self.outputs} outputs"


def weight_bytes(model_proto) -> int:
    """Bytes of the model's weights as onnxruntime holds them: it densifies sparse initializers at
    load, so each counts at its dense size."""
    from onnx import helper
    graph = model_proto.graph
    dense = [(t.dims, t.data_type) for t in graph.initializer] + \
        [(t.dims, t.values.data_type) for t in getattr(graph, "sparse_initializer", ())]
    return sum(math.prod(dims) * helper.tensor_dtype_to_np_dtype(dtype).itemsize for dims, dtype in dense)


def onnx_check(model_proto, gm: nn.Module, example_inputs: tuple, rtol: float = 1e-4,
               max_gb: float | None = None) -> OnnxCheck:
    """Run ``model_proto`` in onnxruntime on ``example_inputs`` and compare with ``gm``'s outputs.

    Raises VerifyError when the relative error (max abs difference / max abs reference) exceeds
    ``rtol``; returns the errors otherwise. ``max_gb``: past this many GB of weights as
    onnxruntime holds them (sparse initializers densified), the model is not run and the result
    says so in ``skipped`` (its errors are nan): onnxruntime needs about twice the weights while it
    loads, which a large Sparse Wide model may not have beside the PyTorch copy.
    """
    import onnxruntime as ort
    if max_gb is not None:
        need = weight_bytes(model_proto)
        if need > max_gb * 1e9:
            return OnnxCheck(float("nan"), float("nan"), 0,
                             skipped=f"the model's weights are {need / 1e9:.3g} GB in onnxruntime (sparse "
                                     f"initializers densified at load), over max_gb={max_gb:g}; raise max_gb "
                                     f"to run it")
    tensors = [x for x in example_inputs if isinstance(x, torch.Tensor)]
    with tempfile.TemporaryDirectory() as d:
        if is_large(model_proto):   # over protobuf's 2 GiB: onnxruntime loads it from a file + .data
            source = os.path.join(d, "model.onnx")
            write_external(model_proto, source)
        else:
            source = model_proto.SerializeToString()
        sess = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
        got = sess.run(None, {i.name: x.detach().cpu().numpy() for i, x in zip(sess.get_inputs(), tensors)})
    was_training = gm.training
    gm.eval()
    try:
        with torch.no_grad():
            ref = [t for t in torch.utils._pytree.tree_leaves(gm(*example_inputs)) if isinstance(t, torch.Tensor)]
    finally:
        gm.train(was_training)
    if len(ref) != len(got):
        raise VerifyError(f"onnx_check: the ONNX model has {len(got)} outputs, the GraphModule {len(ref)}")
    max_abs = max_rel = 0.0
    for a, b in zip(got, ref):
        b = b.detach().cpu().float()
        diff = float((torch.from_numpy(np.asarray(a)).float() - b).abs().max()) if b.numel() else 0.0
        scale = float(b.abs().max()) if b.numel() else 0.0
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / scale if scale > 0 else diff)
    if max_rel > rtol:
        raise VerifyError(f"onnx_check: onnxruntime output differs from PyTorch by {max_rel:.3g} relative "
                          f"(max abs {max_abs:.3g}), over rtol={rtol}")
    return OnnxCheck(max_abs_err=max_abs, max_rel_err=max_rel, outputs=len(ref))
