"""siftc's passes: one module per pass, registered by name (see passes/README.md)."""
from siftc.core.pass_registry import PASSES, PassInfo, PassResult, get_pass, register
from siftc.core.pipeline import INFERENCE_PIPELINE, ONNX_PIPELINE, TRAIN_PIPELINE, PipelineItem, format_pipeline, parse_pipeline
from . import capture, shape_prop, flops, roles, couple, substitute, masks, verify, lower_train, lower_inference, export_onnx  # noqa: F401  (registration)

__all__ = ["PASSES", "PassInfo", "PassResult", "get_pass", "register", "PipelineItem",
           "parse_pipeline", "format_pipeline", "TRAIN_PIPELINE", "ONNX_PIPELINE", "INFERENCE_PIPELINE"]
