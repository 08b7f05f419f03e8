"""``siftc.save(gm, dir)`` / ``siftc.load(dir)``: a compiled model as data, reloadable without its source.

A directory holds two files:

- ``model.safetensors``: every parameter, buffer and tensor constant, and the example inputs.
  A masked weight is stored as its non-zero values (``<name>::values``) and its mask as a
  packed bitmask (``<mask name>::bits``, 8 positions per byte): at s = 0.9 a weight costs
  ~0.1 + 1/32 of its dense size, instead of 1 + 1/4 (float weight plus bool mask).
- ``siftc.json``: the graph as a list of nodes (op, target by qualified name, arguments), the
  module tree (each module's torch.nn class and constructor arguments), what each tensor is
  (parameter, buffer, constant; ties between parameters), the compile state (policy, budget,
  layer records, densities), the pass records and the versions that wrote it.

Loading reads JSON and safetensors only: no pickle, and nothing from the files is executed.
Call targets resolve against torch, operator, math and builtins only; module classes must be
torch.nn's own. What siftc cannot write that way it refuses at save time, naming the node or
module, rather than writing a checkpoint that would load as something else: a user-defined
module class kept as a black box, a lowered (CSR) inference model, an argument of an unknown
type. Every rebuilt module is checked against the saved one (its ``extra_repr`` and its tensors'
names and shapes).
"""
from __future__ import annotations

import builtins
import importlib
import inspect
import json
import math
import os
import warnings
from pathlib import Path

import torch
import torch.fx

from siftc.core import atomic
from siftc.core.mask_api import mask_name_of, masked_weights
from siftc.core.errors import CheckpointError
from siftc.core.masking import install as install_grad_masks
from siftc.core.policy import Policy
from siftc.core.state import CompileState, LayerRecord
from siftc.handle import SiftcHandle, attach, handle_of

FORMAT = 1
WEIGHTS = "model.safetensors"
META = "siftc.json"
PRETRAINED = "siftc"        # siftc's files inside a siftc.save_pretrained directory
# where call targets may come from: importing these runs no code from the checkpoint
_TARGET_ROOTS = ("torch", "operator", "math", "builtins", "_operator")
_SKIP_INIT_ARGS = {"self", "device", "dtype"}
# siftc's own modules a compiled graph may call besides torch.nn's (capture's train/eval-following
# wrappers of dropout and attention, the sparse training kernels' linear): plain data in, no code
# from the file
_SIFTC_MODULES = ("siftc.passes.mode_ops.FollowTraining", "siftc.passes.mode_ops.TrainingSDPA",
                  "siftc.core.train_kernels.SparseTrainLinear")


# ------------------------------------------------------------------------------------------- save
def save(gm, directory) -> str:
    """Write the compiled GraphModule ``gm`` to the folder ``directory``; returns it.

    The folder is written beside its place and swapped in whole (siftc.core.atomic.write_dir): a
    kill at any instant leaves the previous checkpoint or the new one, loadable. An existing
    folder is replaced only when it holds a siftc checkpoint's files and nothing else."""
    check_saveable(gm, "siftc.save")
    try:
        atomic.write_dir(directory, lambda tmp: write_checkpoint(gm, tmp), replaceable=_own_files)
    except FileExistsError as e:
        raise CheckpointError(f"siftc.save: {e}; give a new folder or a siftc checkpoint folder") from None
    return str(directory)


def _own_files(folder) -> str:
    """'' when ``folder`` holds only a checkpoint's files (or nothing), else what else it holds."""
    other = sorted(set(os.listdir(folder)) - {WEIGHTS, META})
    return f"it holds files that are not a siftc checkpoint's ({', '.join(other[:4])}), which would be lost" if other else ""


def check_saveable(gm, who: str):
    """The handle of ``gm``, or CheckpointError saying why it cannot be saved."""
    handle = handle_of(gm)
    if handle is None:
        raise CheckpointError(f"{who} expects a GraphModule returned by siftc.compile")
    if handle.mode != "train":
        raise CheckpointError(f"{who}: this model was compiled for {handle.mode} (lowered kernels); save the "
                              f"model compiled for training (target cpu/cuda) and lower it again after loading")
    return handle


def write_checkpoint(gm, directory, external: "dict | None" = None) -> str:
    """Write ``gm``'s checkpoint files into the existing folder ``directory`` (no swap: ``save``
    and ``siftc.save_pretrained`` call it on a folder of their own that they swap in).

    ``external`` (used by ``siftc.save_pretrained``): ``{"file": path relative to directory,
    "tensors": {gm tensor name: (key in that file, transposed)}}``: those tensors are not copied
    but read from that safetensors file at load time, which is bound by its SHA-256 as well."""
    from safetensors.torch import save_file
    from siftc import __version__
    handle = check_saveable(gm, "siftc.save")
    os.makedirs(directory, exist_ok=True)
    called = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    # a module the graph never calls (a member's container, a path prefix) is only a namespace
    # for its children and tensors: it is saved as a plain nn.Module
    modules = {name: _module_spec(name, mod) if name in called else _container_spec(mod)
               for name, mod in gm.named_modules() if name}
    tensors, index = {}, {}
    seen: dict = {}                     # id(tensor) -> first name: tied parameters stored once
    masked = {w.qualname: w for w in masked_weights(gm) if w.path}
    for owner, mod in gm.named_modules():
        kinds = [("param", mod._parameters), ("buffer", mod._buffers)]
        for kind, table in kinds:
            for name, t in table.items():
                if t is None:
                    continue
                full = f"{owner}.{name}" if owner else name
                entry = {"owner": owner, "name": name, "kind": kind}
                if kind == "param":
                    entry["requires_grad"] = bool(t.requires_grad)
                else:
                    entry["persistent"] = name not in mod._non_persistent_buffers_set
                if id(t) in seen:
                    index[full] = {**entry, "alias": seen[id(t)]}
                    continue
                seen[id(t)] = full
                if external and full in external["tensors"]:
                    key, transposed = external["tensors"][full]
                    index[full] = {**entry, "stored": "external", "key": key, "transposed": bool(transposed),
                                   "shape": list(t.shape)}
                    continue
                index[full] = {**entry, **_store(full, t.detach(), masked.get(full), tensors)}
    for node in gm.graph.nodes:         # tensor constants referenced by get_attr, not registered
        if node.op == "get_attr" and node.target not in index:
            t = _fetch(gm, node.target)
            if isinstance(t, torch.Tensor):
                owner, _, name = node.target.rpartition(".")
                index[node.target] = {"owner": owner, "name": name, "kind": "constant",
                                      **_store(node.target, t.detach(), None, tensors)}
    inputs = []
    for i, x in enumerate(handle.example_inputs):
        if not isinstance(x, torch.Tensor):
            raise CheckpointError(f"siftc.save: example input {i} is a {type(x).__name__}; only tensor inputs "
                                  f"are saved")
        tensors[f"__example_input__.{i}"] = x.detach().cpu().contiguous()
        inputs.append(f"__example_input__.{i}")
    meta = {
        "format": FORMAT, "siftc": __version__, "torch": torch.__version__,
        "class_name": type(gm).__name__, "training": gm.training,
        "graph": _graph_spec(gm), "modules": modules, "tensors": index, "example_inputs": inputs,
        "state": _state_spec(handle.state), "pipeline": handle.pipeline,
        "timings": [list(t) for t in handle.timings], "passes": handle.passes,
    }
    weights = os.path.join(directory, WEIGHTS)
    save_file({k: v.contiguous() for k, v in tensors.items()}, weights, metadata={"format": f"siftc-{FORMAT}"})
    meta["weights_sha256"] = _sha256(weights)     # binds the two files: a swapped one is refused
    if external:
        meta["external"] = {"file": external["file"],
                            "sha256": _sha256(os.path.join(directory, external["file"]))}
    with open(os.path.join(directory, META), "w") as f:
        json.dump(meta, f, indent=1, default=_json_default)
    return str(directory)


def _where(e) -> str:
    return f"line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else f"byte {e.start}"


def _sha256(path) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def _store(name: str, t: torch.Tensor, masked, tensors: dict) -> dict:
    """Put ``t`` into ``tensors``: as values + the mask's bits when it is a masked weight
    (``masked``: its MaskedWeight) that is zero wherever its mask is off (always, after compile and
    DST; checked, never assumed)."""
    t = t.cpu()
    if masked is not None and t.shape == masked.mask.shape:
        mask = masked.mask.detach().cpu()
        if not torch.any(t.masked_select(~mask) != 0):
            tensors[f"{name}::values"] = t.masked_select(mask)
            return {"stored": "masked", "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."),
                    "mask": mask_name_of(name)}
    if t.dtype == torch.bool:
        tensors[f"{name}::bits"] = pack_bits(t)
        return {"stored": "bits", "shape": list(t.shape)}
    tensors[name] = t
    return {"stored": "dense"}


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A bool tensor as uint8, 8 entries per byte, most significant bit first (numpy.packbits)."""
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)
    return (flat.view(-1, 8) * weights).sum(1, dtype=torch.uint8)


def unpack_bits(bits: torch.Tensor, shape) -> torch.Tensor:
    n = math.prod(shape)
    shifts = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0], dtype=torch.uint8)
    flat = ((bits.view(-1, 1) >> shifts) & 1).reshape(-1)
    if flat.numel() < n:
        raise CheckpointError(f"siftc.load: a bitmask holds {flat.numel()} bits, its tensor needs {n}")
    return flat[:n].to(torch.bool).view(*shape)


def _container_spec(mod) -> dict:
    return {"class": "torch.nn.Module", "config": {}, "training": mod.training}


def _module_spec(name: str, mod) -> dict:
    cls = type(mod)
    if cls is torch.nn.Module:
        return _container_spec(mod)
    path = f"{cls.__module__}.{cls.__qualname__}"
    if path not in _SIFTC_MODULES and (not cls.__module__.startswith("torch.nn.") or _resolve(path) is not cls):
        raise CheckpointError(f"siftc.save: module '{name}' is a {path}, not a torch.nn class; siftc saves "
                              f"models as data and cannot rebuild a user class without its source. Compile "
                              f"without keeping it as a leaf (leaf_modules), or save with torch.save")
    config = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name in _SKIP_INIT_ARGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name == "bias" and not isinstance(getattr(mod, "bias", True), bool):
            config["bias"] = getattr(mod, "bias", None) is not None
        elif p.name in ("elementwise_affine", "affine") and hasattr(mod, p.name):
            config[p.name] = bool(getattr(mod, p.name))
        elif hasattr(mod, p.name):
            config[p.name] = _plain_arg(getattr(mod, p.name), f"module '{name}' argument {p.name}")
        elif p.default is p.empty:
            raise CheckpointError(f"siftc.save: module '{name}' ({path}) does not keep its constructor argument "
                                  f"'{p.name}' as an attribute; siftc cannot rebuild it")
    return {"class": path, "config": config, "training": mod.training, "repr": mod.extra_repr()}


def _plain_arg(v, where: str):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (tuple, list)):
        return {"tuple" if isinstance(v, tuple) else "list": [_plain_arg(x, where) for x in v]}
    if callable(v) and not isinstance(v, torch.nn.Module):     # a torch function, by name
        return {"fn": _qualified(v, where)}
    raise CheckpointError(f"siftc.save: {where} is a {type(v).__name__}; siftc saves plain values only")


def _graph_spec(gm) -> list:
    nodes = []
    for n in gm.graph.nodes:
        if n.op == "call_function":
            target = {"fn": _qualified(n.target, n.name)}
        else:
            target = n.target
        meta = {k: _encode(n.meta[k], n.name) for k in _KEPT_META if k in n.meta}
        nodes.append({"name": n.name, "op": n.op, "target": target, "args": _encode(n.args, n.name),
                      "kwargs": _encode(n.kwargs, n.name), "meta": meta})
    return nodes


# node facts that no analysis recomputes (passes/README.md): which original layer a node came
# from (substitute), its role (roles), its channel group (couple). Shapes and FLOPs are recomputed.
_KEPT_META = ("siftc.origin", "siftc.role", "siftc.group")


def _qualified(fn, node: str) -> str:
    if isinstance(fn, torch._ops.OpOverload):
        return f"torch.ops.{fn.namespace}.{fn._opname}.{fn._overloadname}"
    if isinstance(fn, torch._ops.OpOverloadPacket):
        return f"torch.ops.{fn._qualified_op_name.replace('::', '.')}"
    try:
        name = torch.fx.node._get_qualified_name(fn)
    except Exception:   # noqa: BLE001 - any failure means: not nameable
        name = None
    if name is not None and "." not in name and getattr(builtins, name, None) is fn:
        name = f"builtins.{name}"         # fx names builtins bare (getattr)
    if name is None or not name.split(".")[0] in _TARGET_ROOTS or _resolve(name) is not fn:
        raise CheckpointError(f"siftc.save: node '{node}' calls {fn!r}, which is not a torch, operator, math or "
                              f"builtins function; siftc cannot save it as data")
    return name


def _encode(a, node: str):
    if isinstance(a, torch.fx.Node):
        return {"node": a.name}
    if a is None or isinstance(a, (bool, int, float, str)):
        if isinstance(a, float) and not math.isfinite(a):
            return {"float": repr(a)}
        return a
    if isinstance(a, tuple):
        return {"tuple": [_encode(x, node) for x in a]}
    if isinstance(a, list):
        return {"list": [_encode(x, node) for x in a]}
    if isinstance(a, dict):
        if not all(isinstance(k, str) for k in a):
            raise CheckpointError(f"siftc.save: node '{node}' has a dict argument with non-string keys")
        return {"dict": {k: _encode(v, node) for k, v in a.items()}}
    if isinstance(a, slice):
        return {"slice": [_encode(a.start, node), _encode(a.stop, node), _encode(a.step, node)]}
    if a is Ellipsis:
        return {"ellipsis": True}
    if isinstance(a, torch.dtype):
        return {"dtype": str(a).removeprefix("torch.")}
    if isinstance(a, torch.device):
        return {"device": str(a)}
    if isinstance(a, torch.memory_format):
        return {"memory_format": str(a).removeprefix("torch.")}
    if isinstance(a, torch.layout):
        return {"layout": str(a).removeprefix("torch.")}
    if isinstance(a, torch.Size):
        return {"size": list(a)}
    raise CheckpointError(f"siftc.save: node '{node}' has an argument of type {type(a).__name__} ({a!r:.60}); "
                          f"siftc saves plain values, tensors by reference and torch dtypes/devices only")


def _state_spec(state: CompileState) -> dict:
    kept = state.kept()
    out = {}
    for f in ("target", "mode", "model_name", "input_shapes", "budget_flops", "budget_by_category",
              "original_params", "original_flops_by_node", "left_dense", "densities", "planned_nonzeros",
              "iso_note", "groups", "warnings", "hf_source", "extended", "initialised"):
        out[f] = getattr(kept, f)
    out["output_shapes"] = _shapes_spec(kept.output_shapes)
    out["policy"] = str(kept.policy)
    # every key's value, not only those off today's defaults: the string above is read under the
    # loading siftc's defaults, which have changed (count, shortcut, parallel_form in 2026-12)
    out["policy_keys"] = kept.policy.key_values()
    out["preset"] = kept.policy.preset
    out["layers"] = {q: vars(r) for q, r in kept.layers.items()}
    return out


def _shapes_spec(s):
    """Output shapes as JSON keeps them apart: a shape (tuple) is {"t": [...]}, a list stays a
    list, a dict {"d": {...}} (verify compares them with the graph's, tuples and lists included)."""
    if isinstance(s, tuple):
        return {"t": [_shapes_spec(v) for v in s]}
    if isinstance(s, list):
        return [_shapes_spec(v) for v in s]
    if isinstance(s, dict):
        return {"d": {k: _shapes_spec(v) for k, v in s.items()}}
    return s


def _shapes_of(spec):
    if isinstance(spec, dict) and set(spec) == {"t"}:
        return tuple(_shapes_of(v) for v in spec["t"])
    if isinstance(spec, dict) and set(spec) == {"d"}:
        return {k: _shapes_of(v) for k, v in spec["d"].items()}
    if isinstance(spec, list):
        return [_shapes_of(v) for v in spec]
    return spec


def _json_default(o):
    if isinstance(o, tuple):
        return list(o)
    if isinstance(o, torch.Size):
        return list(o)
    if isinstance(o, (torch.dtype, torch.device)):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON")


def _fetch(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


# ------------------------------------------------------------------------------------------- load
def load(directory, device=None):
    """The compiled GraphModule saved in ``directory``: same graph, weights, masks (gradient
    hooks installed), policy, report and pass records; ``siftc.DST`` runs on it."""
    from safetensors.torch import load_file
    if not os.path.exists(directory):     # a swap interrupted where no atomic exchange exists: repair it
        atomic.remove_orphan_dirs(Path(os.path.abspath(directory)))
    if not os.path.isfile(os.path.join(directory, META)) and os.path.isfile(os.path.join(directory, PRETRAINED, META)):
        directory = os.path.join(directory, PRETRAINED)      # a siftc.save_pretrained directory
    meta_path, weights_path = os.path.join(directory, META), os.path.join(directory, WEIGHTS)
    for p in (meta_path, weights_path):
        if not os.path.isfile(p):
            raise CheckpointError(f"siftc.load: {p} is missing; point at a directory written by siftc.save")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"siftc.load: {meta_path} is not valid JSON ({e.__class__.__name__} at {_where(e)}): "
                              f"the file is damaged or cut short; save the model again") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"siftc.load: {meta_path} does not hold a siftc checkpoint (a JSON object)")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"siftc.load: {meta_path} has format {meta.get('format')!r}; this siftc reads format "
                              f"{FORMAT}")
    if meta.get("weights_sha256") != _sha256(weights_path):
        raise CheckpointError(f"siftc.load: {weights_path} is not the weights file {meta_path} was saved with "
                              f"(its SHA-256 differs): the files do not belong together")
    tensors = load_file(weights_path, device=str(device) if device is not None else "cpu")
    if "external" in meta:
        _add_external(tensors, meta, directory, device)
    root = torch.nn.Module()
    for name in sorted(meta["modules"], key=lambda q: q.count(".")):   # parents first
        spec = meta["modules"][name]
        parent, _, leaf = name.rpartition(".")
        owner = root.get_submodule(parent) if parent else root
        owner.add_module(leaf, _build_module(name, spec))
    _check_tensor_names(root, meta["tensors"])
    _load_tensors(root, meta["tensors"], tensors)
    for name, spec in meta["modules"].items():
        mod = root.get_submodule(name)
        if spec.get("repr") is not None and mod.extra_repr() != spec["repr"]:
            raise CheckpointError(f"siftc.load: module '{name}' rebuilt as {mod.extra_repr()!r}, saved as "
                                  f"{spec['repr']!r}; the checkpoint is inconsistent or from another torch")
    graph = _build_graph(meta["graph"])
    gm = torch.fx.GraphModule(root, graph, class_name=meta.get("class_name", "GraphModule"))
    # GraphModule() copies modules in the order the graph uses them; take the saved tree as is,
    # so gm.parameters() comes in the saved model's order (optimizer state dicts index by it)
    gm._modules, gm._parameters, gm._buffers = root._modules, root._parameters, root._buffers
    gm._non_persistent_buffers_set = root._non_persistent_buffers_set
    gm.train(meta.get("training", True))
    for name, spec in meta["modules"].items():        # then each module's own flag, as saved
        gm.get_submodule(name).train(spec["training"])
    inputs = tuple(tensors[k] for k in meta["example_inputs"])
    state = _build_state(meta["state"], inputs)
    handle = SiftcHandle(gm, state, meta.get("pipeline", ""), [tuple(t) for t in meta.get("timings", [])],
                         meta.get("passes", []))
    attach(gm, handle)
    install_grad_masks(gm)
    return gm


def _add_external(tensors: dict, meta: dict, directory, device) -> None:
    """The tensors stored in the Hugging Face weights file beside a save_pretrained directory,
    under ``::external::<key>``; refused when that file is not the one saved with it."""
    from safetensors.torch import load_file
    path = os.path.normpath(os.path.join(directory, meta["external"]["file"]))
    if not os.path.isfile(path):
        raise CheckpointError(f"siftc.load: {path} is missing; siftc's files in {directory} read the model's weights "
                              f"from it")
    if _sha256(path) != meta["external"]["sha256"]:
        raise CheckpointError(f"siftc.load: {path} is not the weights file siftc.save_pretrained wrote (its SHA-256 "
                              f"differs): the weights were changed outside siftc, so the masks saved beside them no "
                              f"longer describe them. Load the directory with transformers' from_pretrained, or "
                              f"compile and save it again")
    for key, t in load_file(path, device=str(device) if device is not None else "cpu").items():
        tensors[f"::external::{key}"] = t


def _check_tensor_names(root, index: dict) -> None:
    """Each rebuilt torch.nn module must have exactly the parameters and buffers saved for it:
    a constructor argument siftc could not read back would show here."""
    saved: dict = {}
    for e in index.values():
        if e["kind"] in ("param", "buffer"):
            saved.setdefault(e["owner"], set()).add(e["name"])
    for name, mod in root.named_modules():
        if not name or type(mod) is torch.nn.Module:
            continue
        own = {k for k, v in (*mod._parameters.items(), *mod._buffers.items()) if v is not None}
        extra = own - saved.get(name, set())
        if extra:
            raise CheckpointError(f"siftc.load: module '{name}' rebuilt from its saved arguments has "
                                  f"{', '.join(sorted(extra))}, which the checkpoint lacks")


def _build_module(name: str, spec: dict):
    if spec["class"] in _SIFTC_MODULES:
        module, _, attr = spec["class"].rpartition(".")
        cls = getattr(importlib.import_module(module), attr)
    else:
        cls = _resolve(spec["class"])
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)) or \
            not (cls is torch.nn.Module or cls.__module__.startswith("torch.nn.") or spec["class"] in _SIFTC_MODULES):
        raise CheckpointError(f"siftc.load: module '{name}' names class {spec['class']!r}, not a torch.nn module")
    config = {k: _plain_value(v) for k, v in spec["config"].items()}
    with torch.device("meta"):      # shapes only: the tensors come from the file
        return cls(**config)


def _plain_value(v):
    if isinstance(v, dict) and "fn" in v:
        fn = _resolve(v["fn"])
        if fn is None or not callable(fn):
            raise CheckpointError(f"siftc.load: {v['fn']!r} is not a function under {', '.join(_TARGET_ROOTS)}")
        return fn
    if isinstance(v, dict):
        if "tuple" in v:
            return tuple(_plain_value(x) for x in v["tuple"])
        if "list" in v:
            return [_plain_value(x) for x in v["list"]]
    return v


def _load_tensors(root, index: dict, tensors: dict) -> None:
    values: dict = {}
    masks: dict = {}
    for full, e in index.items():       # masks and plain tensors first: masked weights need them
        if "alias" in e or e.get("stored") == "masked":
            continue
        values[full] = _tensor(full, e, tensors)
        if e.get("stored") == "bits":
            masks[full] = values[full]
    for full, e in index.items():
        if e.get("stored") == "masked":
            mask = masks.get(e["mask"])
            if mask is None:
                raise CheckpointError(f"siftc.load: {full} is stored by its mask {e['mask']}, which is missing")
            vals = tensors.get(f"{full}::values")
            if vals is None or vals.numel() != int(mask.sum()):
                raise CheckpointError(f"siftc.load: {full} has {None if vals is None else vals.numel()} stored "
                                      f"values, its mask {int(mask.sum())} non-zeros: the files do not belong together")
            w = torch.zeros(e["shape"], dtype=getattr(torch, e["dtype"]), device=vals.device)
            w[mask] = vals
            values[full] = w
    for full, e in index.items():
        t = values[e["alias"]] if "alias" in e else values[full]
        owner = root.get_submodule(e["owner"]) if e["owner"] else root
        if e["kind"] == "param":
            key = ("param", e.get("alias", full))     # one Parameter per tie
            if key not in values:
                values[key] = torch.nn.Parameter(t, requires_grad=e.get("requires_grad", True))
            p = values[key]
            _check_shape(owner, e["name"], full, p)
            owner._parameters[e["name"]] = p
        elif e["kind"] == "buffer":
            _check_shape(owner, e["name"], full, t)
            owner._buffers[e["name"]] = t
            if not e.get("persistent", True):
                owner._non_persistent_buffers_set.add(e["name"])
        else:
            setattr(owner, e["name"], t)


def _tensor(full: str, e: dict, tensors: dict) -> torch.Tensor:
    if e.get("stored") == "external":
        t = tensors.get(f"::external::{e['key']}")
        if t is None:
            raise CheckpointError(f"siftc.load: {full} is stored as {e['key']!r} in the model's weights file, which "
                                  f"lacks it")
        t = t.t().contiguous() if e.get("transposed") else t
        if list(t.shape) != e["shape"]:
            raise CheckpointError(f"siftc.load: {full} has shape {list(t.shape)} in the model's weights file, "
                                  f"{e['shape']} when saved")
        return t
    if e.get("stored") == "bits":
        bits = tensors.get(f"{full}::bits")
        if bits is None:
            raise CheckpointError(f"siftc.load: {full}::bits is missing from {WEIGHTS}")
        return unpack_bits(bits, e["shape"])
    t = tensors.get(full)
    if t is None:
        raise CheckpointError(f"siftc.load: {full} is missing from {WEIGHTS}")
    return t


def _check_shape(owner, name: str, full: str, t) -> None:
    cur = getattr(owner, name, None)
    if isinstance(cur, torch.Tensor) and tuple(cur.shape) != tuple(t.shape):
        raise CheckpointError(f"siftc.load: {full} has shape {tuple(t.shape)} in the file, {tuple(cur.shape)} in "
                              f"the module rebuilt from its saved arguments")


def _build_graph(spec: list) -> torch.fx.Graph:
    graph = torch.fx.Graph()
    env: dict = {}
    for n in spec:
        args, kwargs = _decode(n["args"], env), _decode(n["kwargs"], env)
        target = _resolve(n["target"]["fn"]) if n["op"] == "call_function" else n["target"]
        if target is None or (n["op"] == "call_function" and not callable(target)):
            raise CheckpointError(f"siftc.load: node '{n['name']}' calls {n['target']['fn']!r}, which is not a "
                                  f"function under {', '.join(_TARGET_ROOTS)}: refused (nothing was imported)")
        if n["op"] == "output":
            node = graph.output(args[0])
        else:
            node = graph.create_node(n["op"], target, tuple(args), dict(kwargs), name=n["name"])
        for k, v in n.get("meta", {}).items():
            if k in _KEPT_META:
                node.meta[k] = _decode(v, env)
        env[n["name"]] = node
    graph.lint()
    return graph


def _decode(a, env):
    if isinstance(a, dict):
        if "node" in a:
            return env[a["node"]]
        if "tuple" in a:
            return tuple(_decode(x, env) for x in a["tuple"])
        if "list" in a:
            return [_decode(x, env) for x in a["list"]]
        if "dict" in a:
            return {k: _decode(v, env) for k, v in a["dict"].items()}
        if "slice" in a:
            return slice(*(_decode(x, env) for x in a["slice"]))
        if "ellipsis" in a:
            return Ellipsis
        if "float" in a:
            return float(a["float"])
        if "size" in a:
            return torch.Size(a["size"])
        for key, kind in (("dtype", torch.dtype), ("memory_format", torch.memory_format), ("layout", torch.layout)):
            if key in a:
                value = getattr(torch, a[key], None)
                if not isinstance(value, kind):
                    raise CheckpointError(f"siftc.load: {a[key]!r} is not a torch {key}")
                return value
        if "device" in a:
            return torch.device(a["device"])
        raise CheckpointError(f"siftc.load: unknown argument encoding {sorted(a)}")
    return a


def _resolve(path: str):
    """The object at a dotted path under torch / operator / math / builtins (importing modules
    only below those roots), or None."""
    parts = path.split(".")
    if parts[0] not in _TARGET_ROOTS:
        return None
    obj = None
    for i in range(len(parts), 0, -1):       # the longest importable module prefix
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        rest = parts[i:]
        break
    else:
        return None
    for part in rest:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _tagged(spec) -> bool:
    if isinstance(spec, dict):
        return set(spec) in ({"t"}, {"d"})
    return isinstance(spec, list) and any(_tagged(v) for v in spec)


def _old_shapes(spec):
    if isinstance(spec, list) and all(isinstance(v, int) for v in spec):
        return tuple(spec)
    if isinstance(spec, list):
        return tuple(_old_shapes(v) for v in spec)
    return spec


def _saved_policy(spec: dict) -> Policy:
    """The policy the checkpoint was compiled with: every key as saved where the checkpoint lists
    them; an older checkpoint's string is read under today's defaults, with a warning."""
    text = spec["policy"]
    keys = spec.get("policy_keys")
    if keys is None:
        warnings.warn(f"siftc.load: this checkpoint predates siftc's record of every policy key; its policy "
                      f"'{text}' is read under today's defaults, which changed on 2026-12-07/08 (count, "
                      f"shortcut, parallel_form). The graph and weights load as saved; only the policy the "
                      f"report names may differ. Save it again to record every key", stacklevel=3)
        return Policy.parse(text)
    return Policy.from_keys(text.split(",")[0], keys)


def _build_state(spec: dict, inputs: tuple) -> CompileState:
    state = CompileState(model=None, policy=_saved_policy(spec), target=spec["target"],
                         example_inputs=inputs, mode=spec["mode"], model_name=spec["model_name"])
    for f in ("input_shapes", "budget_flops", "budget_by_category", "original_params",
              "left_dense", "densities", "planned_nonzeros", "iso_note", "groups", "warnings"):
        setattr(state, f, spec[f])
    shapes = spec["output_shapes"]
    # checkpoints before 2026-12-07 wrote shapes as plain lists: a shape is a list of ints there
    state.output_shapes = _shapes_of(shapes) if _tagged(shapes) else _old_shapes(shapes)
    state.extended, state.initialised = spec.get("extended", {}), spec.get("initialised", {})
    object.__setattr__(state.policy, "preset", spec.get("preset", "none"))
    state.hf_source = spec.get("hf_source")
    state.original_flops_by_node = {k: tuple(v) for k, v in spec["original_flops_by_node"].items()}
    state.layers = {q: LayerRecord(**{**r, "orig_shape": tuple(r["orig_shape"])}) for q, r in spec["layers"].items()}
    return state

