"""export-onnx: the compiled graph to an onnx.ModelProto with sparse initializers (target "onnx").

Options (pipeline syntax ``export-onnx{exporter=torchscript sparse=always}``, or siftc.compile's
``exporter=`` / ``path=``): exporter dynamo|torchscript, sparse auto|always|never. Writes
``ctx.onnx_model``; the graph is not changed. The model carries ``metadata_props`` siftc.policy
and siftc.iso_flop_ratio.

The model is exported as it is (a trained compiled GraphModule is not transformed again): a
copy in eval mode, without the training hooks and without the mask buffers, whose
weights already hold zeros where masked, so no mask multiply can reach the graph. Exporters:
``dynamo`` (default; torch.export + onnxscript, which folds BatchNorm into convs and pre-transposes
MatMul weights) or ``torchscript`` (the legacy exporter, fast, names kept as they are).

Afterwards every masked weight's initializer is renamed back to its module path where the
exporter folded it into an anonymous constant (a pre-transposed Linear weight keeps the name and
says ``transposed`` in its doc_string), then moved to ``graph.sparse_initializer`` (values + one
linear int64 index per non-zero, the smaller of ONNX's two index layouts) when that is smaller
on disk than the dense tensor (``sparse="auto"``: density below 1/3 for float32), always
(``"always"``) or never (``"never"``: the dense-initializer model that `siftc bench onnx` compares
against). onnxruntime loads sparse initializers and densifies them at load (docs/measurements.md).
"""
from __future__ import annotations

import io
import logging
import os
import re
import tempfile
import warnings

import numpy as np
import torch
from torch import nn

from siftc.core import atomic
from siftc.core.mask_api import masked_weights
from siftc.core.errors import ExportError, UsageError
from siftc.core.masking import shared_copy, strip
from siftc.core.pass_registry import PassResult, register
from .verify import iso_flop_ratio

EXPORTERS = ("dynamo", "torchscript")
SPARSE_MODES = ("auto", "always", "never")
_EXTERNAL_DATA_BYTES = 1_800_000_000      # protobuf's hard limit is 2 GiB; leave room for the graph
# sparse initializers always stay inside the .onnx message (onnx writes only dense initializers
# and attribute tensors as external data): past this many bytes of them, further masked weights
# stay dense initializers, which can go to the .data file. efficientnet_v2_l wide:0.75 failed its
# export with EncodeError (its sparse weights alone were over 2 GiB with their int64 indices);
# with 1.5 GB inline, vgg11 wide:0.75 under the sweep's 16 GB cap failed in onnx's checker,
# whose parse of the large message ran out of memory and reported a field as missing
_SPARSE_INLINE_BYTES = 512_000_000


def _masked_weights(model: nn.Module) -> dict:
    return {w.qualname: w.mask for w in masked_weights(model)}


def _export_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy without training hooks or mask buffers (nothing of them may be exported).

    Only the module tree is copied: parameters and buffers are shared with ``model`` (the export
    reads them and writes nothing), so a large model is not held twice more during its export
    (the peak was ~6x the weights: this copy, the ONNX exporter's and the serialized proto).
    The shared weights keep their own gradient-mask hooks (the model still trains); the copy gets
    none and loses its mask buffers."""
    m = shared_copy(model).eval()
    strip(m, tensor_hooks=False)
    if hasattr(m, "siftc"):
        del m.siftc
    return m


def _run_exporter(model, inputs: tuple, exporter: str):
    import onnx
    # the exporter logs one line per op library it does not find (torchvision): not the user's concern
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                try:       # batch (and sequence) axes left to torch.export to keep dynamic where it can
                    return torch.onnx.export(model, inputs, dynamo=True, external_data=False, verbose=False,
                                             dynamic_shapes=_dynamic_shapes(inputs)).model_proto
                except Exception:   # noqa: BLE001 - a model that pins its sizes: export it at them
                    return torch.onnx.export(model, inputs, dynamo=True, external_data=False,
                                             verbose=False).model_proto
            buf = io.BytesIO()
            names = [f"input_{i}" for i in range(len(inputs))]
            axes = {n: ({0: "batch", 1: "sequence"} if _is_tokens(x) else {0: "batch"})
                    for n, x in zip(names, inputs) if isinstance(x, torch.Tensor) and x.dim() > 0}
            try:
                torch.onnx.export(model, inputs, buf, dynamo=False, do_constant_folding=False,
                                  input_names=names, dynamic_axes=axes)
            except Exception:   # noqa: BLE001 - the legacy exporter cannot make these axes dynamic
                buf = io.BytesIO()
                torch.onnx.export(model, inputs, buf, dynamo=False, do_constant_folding=False)
            return onnx.load_from_string(buf.getvalue())
    except Exception as e:    # name the op and the node the exporter could not translate
        raise ExportError(_explain(model, e, exporter)) from e


def _is_tokens(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dim() >= 2 and not x.is_floating_point()


def _dynamic_shapes(inputs: tuple):
    """Dim.AUTO on the batch axis of every tensor input (and the sequence axis of token ids):
    torch.export keeps them symbolic unless the model pins them."""
    from torch.export import Dim
    return tuple(({0: Dim.AUTO, 1: Dim.AUTO} if _is_tokens(x) else {0: Dim.AUTO})
                 if isinstance(x, torch.Tensor) and x.dim() > 0 else None for x in inputs)


def _explain(model, e: Exception, exporter: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", f"{type(e).__name__}: {e}")      # the exporter colours its text
    ops = sorted(set(re.findall(r"([A-Za-z_][\w]*(?:::|\.)[\w.]+?)(?:\.default)?(?=[\s'\",)\]]|$)", text)))
    ops = [o for o in ops if o.split("::")[0].split(".")[0] not in ("torch", "onnx", "onnxscript")][:3] or ops[:3]
    nodes = []
    graph = getattr(model, "graph", None)
    if graph is not None and ops:
        for n in graph.nodes:
            target = str(getattr(n.target, "_name", n.target))
            if any(o.replace("::", ".").split(".")[-1] in target for o in ops):
                nodes.append(f"'{n.name}' ({n.format_node()})")
    where = f" at node {nodes[0]}" if nodes else ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = next((ln for ln in lines if ops and ops[0].split(".")[-1] in ln), lines[0] if lines else "")[:400]
    return (f"the {exporter} ONNX exporter rejected op {', '.join(ops) or '(unknown)'}{where}: {first}. "
            f"Replace the op, make its module a leaf with an ONNX translation, or try exporter="
            f"{'torchscript' if exporter == 'dynamo' else 'dynamo'}")


def _restore_names(proto, model: nn.Module) -> None:
    """Give a Linear weight the exporter folded into an anonymous transposed constant its module path."""
    from onnx import numpy_helper
    graph = proto.graph
    names = {i.name for i in graph.initializer}
    own = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    by_shape: dict = {}
    for init in graph.initializer:
        if len(init.dims) == 2 and init.name not in own:     # anonymous constants only
            by_shape.setdefault(tuple(init.dims), []).append(init)
    for mname, mod in model.named_modules():
        if not isinstance(mod, nn.Linear):
            continue
        pname = f"{mname}.weight" if mname else "weight"
        if pname in names:
            continue
        w = mod.weight.detach().cpu().numpy()
        for init in by_shape.get((w.shape[1], w.shape[0]), []):
            if init.name in own:      # renamed for an earlier (tied or equal) weight
                continue
            if np.array_equal(numpy_helper.to_array(init), w.T):
                _rename(graph, init.name, pname)
                own.add(pname)
                init.doc_string = f"{pname} transposed (in x out) for MatMul"
                break


def _rename(graph, old: str, new: str) -> None:
    for init in graph.initializer:
        if init.name == old:
            init.name = new
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
    for vi in graph.value_info:
        if vi.name == old:
            vi.name = new


def _sparsify(proto, masked: dict, mode: str) -> dict:
    """Move masked weights to graph.sparse_initializer where ``mode`` says; returns counts. A
    weight whose sparse form protobuf cannot hold stays dense (counted in ``kept_dense_too_large``)."""
    from google.protobuf.message import EncodeError
    from onnx import helper, numpy_helper
    graph = proto.graph
    stats = {"sparse_initializers": 0, "dense_bytes_saved": 0}
    if mode == "never":
        return stats
    keep = []
    inline = 0
    for init in list(graph.initializer):
        if init.name not in masked:
            keep.append(init)
            continue
        arr = numpy_helper.to_array(init)
        flat = arr.reshape(-1)
        idx = np.flatnonzero(flat)
        sparse_bytes = idx.size * (flat.itemsize + 8)
        if mode == "auto" and sparse_bytes >= flat.nbytes:
            keep.append(init)
            continue
        if inline + sparse_bytes > _SPARSE_INLINE_BYTES:
            keep.append(init)
            stats["kept_dense_inline_limit"] = stats.get("kept_dense_inline_limit", 0) + 1
            continue
        values = numpy_helper.from_array(flat[idx], name=init.name)
        values.doc_string = init.doc_string
        indices = numpy_helper.from_array(idx.astype(np.int64), name=f"{init.name}.indices")
        try:
            graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, list(arr.shape)))
        except EncodeError:     # protobuf cannot copy a message this large (vgg11 parallel:0.75's fc)
            keep.append(init)
            stats["kept_dense_too_large"] = stats.get("kept_dense_too_large", 0) + 1
            continue
        stats["sparse_initializers"] += 1
        stats["dense_bytes_saved"] += flat.nbytes - sparse_bytes
        inline += sparse_bytes
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return stats


def _check_target(path) -> str:
    """The directory ``path`` would be written to; ExportError when it cannot be a file there."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ExportError(f"cannot write ONNX model to {path!r}: directory {directory!r} does not exist "
                          f"(create it first)")
    if os.path.isdir(path):
        raise ExportError(f"cannot write ONNX model to {path!r}: it is a directory; give a file name like model.onnx")
    return directory


def is_large(proto) -> bool:
    """Over what protobuf serialises in one piece (2 GiB, less room for the graph): such a model is
    written, checked and run from a file with its weights in a ``.data`` file beside it.

    The initializers' bytes are summed first: past 4 GiB protobuf cannot even size the message
    (ByteSize raises EncodeError, seen on vgg11 ``parallel:0.75``)."""
    from google.protobuf.message import EncodeError
    data = sum(len(t.raw_data) for t in proto.graph.initializer) + \
        sum(len(t.values.raw_data) + len(t.indices.raw_data) for t in getattr(proto.graph, "sparse_initializer", ()))
    if data > _EXTERNAL_DATA_BYTES:
        return True
    try:
        return proto.ByteSize() > _EXTERNAL_DATA_BYTES
    except EncodeError:
        return True


def write_external(proto, path, data_name=None) -> None:
    """Write ``proto`` to ``path`` with its initializers in ``data_name`` (default ``<file>.data``)
    beside it, and leave ``proto`` as it was: onnx's writer moves the weights out of the message,
    so they are read back."""
    import onnx
    onnx.save_model(proto, path, format="protobuf", save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data_name or os.path.basename(path) + ".data", size_threshold=1024)
    onnx.load_external_data_for_model(proto, os.path.dirname(os.path.abspath(path)))


def check_proto(proto) -> None:
    """onnx's checker, through a temporary file for a model over the 2 GiB limit."""
    import onnx
    if not is_large(proto):
        onnx.checker.check_model(proto)
        return
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.onnx")
        write_external(proto, path)
        onnx.checker.check_model(path)


def save_onnx(proto, path) -> str:
    """Write ``proto`` to ``path`` atomically (no partial file on failure); external data over ~1.8 GB.

    The pair of a large model (``model.onnx`` and its weights) is replaced as one: the weights go
    to a file of a new name (``model.onnx.<token>.data``), then the model file that names it is
    renamed over the old one, then the old weights file goes. A kill at any instant leaves the old
    pair or the new one; a weights file no model names (a killed writer's) goes at the next write."""
    import onnx
    path = os.fspath(path)
    _check_target(path)
    data_name = None
    if is_large(proto):
        data_name = f"{os.path.basename(path)}.{os.getpid()}-{os.urandom(4).hex()}.data"
        write = lambda tmp: write_external(proto, tmp, data_name)          # noqa: E731
    else:                           # the temp file's suffix says nothing about the format
        write = lambda tmp: onnx.save_model(proto, tmp, format="protobuf")                 # noqa: E731
    try:
        atomic.write_with(path, write)
    except OSError as e:
        raise ExportError(f"cannot write ONNX model to {path!r}: {e.strerror or e} "
                          f"(check that the directory is writable)") from e
    finally:
        _remove_stale_data(path)
    return path


def _remove_stale_data(path: str) -> None:
    """Weights files of ``path`` that its model file does not name (an earlier export's, a killed
    writer's, or this write's own when it failed)."""
    import glob
    import onnx
    try:
        named = {e.value for t in onnx.load(path, load_external_data=False).graph.initializer
                 for e in t.external_data if e.key == "location"} if os.path.exists(path) else set()
    except Exception:          # not a model onnx can read: leave its neighbours alone
        return
    base = glob.escape(path)
    for f in glob.glob(base + ".*.data") + glob.glob(base + ".data"):
        if os.path.basename(f) not in named:
            os.remove(f)


def export_onnx(model: nn.Module, example_inputs: tuple, path=None, exporter: str = "dynamo",
                sparse: str = "auto", metadata: dict | None = None):
    """Export ``model`` (a compiled GraphModule or any nn.Module) to an onnx.ModelProto."""
    if exporter not in EXPORTERS:
        raise UsageError(f"unknown ONNX exporter {exporter!r}; allowed: {', '.join(EXPORTERS)}")
    if sparse not in SPARSE_MODES:
        raise UsageError(f"unknown sparse initializer mode {sparse!r}; allowed: {', '.join(SPARSE_MODES)}")
    if path is not None:        # fail before the (slow) export when the file cannot be written
        _check_target(os.fspath(path))
    masked = _masked_weights(model)
    clean = _export_copy(model)
    proto = _run_exporter(clean, tuple(example_inputs), exporter)
    _restore_names(proto, clean)
    stats = _sparsify(proto, masked, sparse)
    for k, v in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, str(v)
    check_proto(proto)
    dense_why = {"kept_dense_too_large": "too large for protobuf as sparse",
                 "kept_dense_inline_limit": f"kept dense past {_SPARSE_INLINE_BYTES / 1e6:.0f} MB of inline sparse data"}
    extra = "".join(f"; {stats[k]} {why}" for k, why in dense_why.items() if stats.get(k))
    proto.doc_string = (f"siftc export ({exporter}); {stats['sparse_initializers']} sparse initializers "
                        f"of {len(masked)} masked weights{extra}")
    if path is not None:
        save_onnx(proto, path)
    return proto


@register("export-onnx", "ONNX model, masked weights as sparse initializers (target onnx)",
          kind="emit", requires=("capture",), last=True,
          options={"exporter": ("dynamo", "torchscript"), "sparse": ("auto", "always", "never"), "path": None})
def export_onnx_pass(gm, ctx) -> PassResult:
    opts = {**ctx.onnx_options, **ctx.pass_options}
    ratio = iso_flop_ratio(gm, ctx)
    proto = export_onnx(gm, ctx.example_inputs, path=opts.get("path"), exporter=opts.get("exporter", "dynamo"),
                        sparse=opts.get("sparse", "auto"),
                        metadata={"siftc.policy": str(ctx.policy), "siftc.iso_flop_ratio": f"{ratio:.6f}"})
    ctx.onnx_model = proto
    return PassResult(gm, False, {"initializers": len(proto.graph.initializer),
                                  "sparse_initializers": len(proto.graph.sparse_initializer)})
