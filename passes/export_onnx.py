"""export-onnx: the compiled graph to an onnx.ModelProto with sparse initializers (target "onnx").

Options (pipeline syntax ``export-onnx{exporter=torchscript sparse=always}``, or siftc.compile's
``exporter=`` / ``path=``): exporter dynamo|torchscript, sparse auto|always|never (see
siftc/onnx_export.py). Writes ``ctx.onnx_model``; the graph is not changed. The model carries
``metadata_props`` siftc.policy and siftc.iso_flop_ratio.
"""
from __future__ import annotations

from siftc.onnx_export import export_onnx
from .registry import PassResult, register
from .verify import iso_flop_ratio


@register("export-onnx", "ONNX model, masked weights as sparse initializers (target onnx)")
def export_onnx_pass(gm, ctx) -> PassResult:
    opts = {**ctx.onnx_options, **ctx.pass_options}
    ratio = iso_flop_ratio(gm, ctx)
    proto = export_onnx(gm, ctx.example_inputs, path=opts.get("path"), exporter=opts.get("exporter", "dynamo"),
                        sparse=opts.get("sparse", "auto"),
                        metadata={"siftc.policy": str(ctx.policy), "siftc.iso_flop_ratio": f"{ratio:.6f}"})
    ctx.onnx_model = proto
    return PassResult(gm, False, {"initializers": len(proto.graph.initializer),
                                  "sparse_initializers": len(proto.graph.sparse_initializer)})
