"""``siftc.save_pretrained(gm, dir)``: a compiled Hugging Face model written back as its own class.

The directory is what transformers' ``save_pretrained`` writes (``config.json``,
``model.safetensors``), so ``AutoModel*.from_pretrained(dir)`` (or the original class) loads it
with no siftc installed: the widened sizes are in ``config.json`` and the sparse weights are dense
tensors with zeros. siftc's own files ride along in ``dir/siftc/`` (graph, masks as bitmasks,
policy, report, DST-ready state; the weights themselves are read from ``model.safetensors``, bound
by its SHA-256), so ``siftc.load(dir)`` returns the compiled model and ``siftc.DST`` resumes on it.

How the widened config is found (docs/api.md, "Hugging Face round trip"): the class is built on
the meta device (shapes only) once per size field of its config (``hidden_size``,
``intermediate_size``, ``head_dim``, ... whatever the config has) with that field doubled; the
tensor dims each field moves, and by how much, give one linear equation per dim, which the
compiled model's shapes solve. Head counts move no shape in most classes (BERT's and GPT-2's
head_dim is hidden_size / heads), so they are tried as kept and as widened with the width (Sparse
Wide keeps head_dim and adds heads when it widens an attention). Nothing is trusted blindly: the class is then built with the solved config, loaded with the compiled
weights (strict: every tensor placed, none left over except siftc's masks), and its logits must
equal the compiled model's on the compile's example inputs. Anything else is refused with the
reason: another member (its branches or factors are not the class's layers), a width the config
cannot state (BERT's one ``hidden_size`` for both the residual stream and the attention width, when
Sparse Wide widened them differently), a model that is not a Hugging Face one.
"""
from __future__ import annotations

import importlib
import os

import torch

from siftc.core import atomic
from siftc.core.mask_api import is_mask_buffer
from siftc.core.errors import CheckpointError
from siftc.handle import handle_of

# config fields that set a tensor width (names used across transformers' configs); head counts
# are not among them: siftc keeps them, and they alone move no shape in many classes
SIZE_FIELDS = ("hidden_size", "n_embd", "d_model", "embed_dim", "intermediate_size", "n_inner", "ffn_dim", "d_ff",
               "encoder_ffn_dim", "decoder_ffn_dim", "head_dim", "d_kv", "kv_channels", "moe_intermediate_size")
HEAD_FIELDS = ("num_attention_heads", "n_head", "num_heads", "num_key_value_heads", "encoder_attention_heads",
               "decoder_attention_heads", "multi_query_group_num")
# members whose result the original class can hold: Sparse Wide (same layers, wider) and sparse
# (same layers, masked). Parallel branches, factors and doping add layers the class does not have.
MEMBERS = ("wide", "sparse", "dense")
_PROBE = 64          # a size given to a field that is None in the config (a default derived in code)


def save_pretrained(gm, directory, atol: float = 1e-4) -> str:
    """Write the compiled Hugging Face model ``gm`` to ``directory`` as its original class with the
    widened sizes; returns the directory. Raises ``CheckpointError`` saying why when it cannot."""
    handle = handle_of(gm)
    if handle is None:
        raise CheckpointError("siftc.save_pretrained expects a GraphModule returned by siftc.compile")
    member = handle.policy.member
    if member not in MEMBERS:
        raise CheckpointError(f"siftc.save_pretrained: member '{member}' adds layers (branches, factors or a "
                              f"low-rank path) that a Hugging Face class does not have, so no config.json can "
                              f"describe the model. Use members wide or sparse for a from_pretrained checkpoint, "
                              f"or siftc.save(gm, dir) for this one")
    source = handle.state.hf_source
    if not source:
        raise CheckpointError("siftc.save_pretrained: the compiled model holds no Hugging Face PreTrainedModel (or "
                              "more than one); use siftc.save(gm, dir)")
    if handle.mode != "train":
        raise CheckpointError("siftc.save_pretrained: this model was compiled for inference (lowered kernels); "
                              "save the model compiled for training")
    cls = _hf_class(source["class"])
    prefix = f"{source['path']}." if source["path"] else ""
    full = gm
    gm = _with_dense_layers(gm)     # layers trained through sparse kernels: as the masked linears they are
    # the sparse member keeps a layer's shape but moves it one level down (q_proj -> q_proj.W)
    renames = {r.new_modules[0]: r.name for r in handle.state.layers.values()
               if len(r.new_modules) == 1 and r.new_modules[0] != r.name}
    gm_tensors = _gm_tensors(gm, prefix, renames)
    flips = _lifted_weights(cls, source["config"], gm, prefix, {v: k for k, v in renames.items()})
    widened = _widened_config(cls, source["config"], gm_tensors, flips)
    failures = []
    for config in _head_candidates(source["config"], widened):
        try:
            hf, placed = _build(cls, config, gm_tensors, flips, prefix, gm.training)
            _check_logits(hf, gm, handle.example_inputs, atol)
            break
        except CheckpointError as e:
            failures.append(e)
    else:
        raise failures[0]
    # everything is written into a folder beside the target and swapped in whole at the end
    # (siftc.core.atomic.write_dir), so a refusal on the way (siftc.save refusing a module) or a
    # kill at any instant leaves the previous folder or the new one
    try:
        atomic.write_dir(directory, lambda tmp: _write(hf, full, placed, str(tmp)), replaceable=_own_files)
    except FileExistsError as e:
        raise CheckpointError(f"siftc.save_pretrained: {e}; give a new folder or one save_pretrained wrote") from None
    return str(directory)


# what transformers' save_pretrained and siftc write into such a folder (anything else is the user's)
_PRETRAINED_FILES = {"config.json", "generation_config.json", "model.safetensors", "siftc"}


def _own_files(folder) -> str:
    other = sorted(set(os.listdir(folder)) - _PRETRAINED_FILES)
    return f"it holds files save_pretrained did not write ({', '.join(other[:4])}), which would be lost" if other else ""


def _write(hf, full, placed, tmp) -> None:
    """The Hugging Face files and siftc's into the folder ``tmp``."""
    hf.save_pretrained(tmp, max_shard_size="1000GB", safe_serialization=True)
    weights = os.path.join(tmp, "model.safetensors")
    if not os.path.isfile(weights):
        raise CheckpointError("siftc.save_pretrained: transformers did not write model.safetensors (a sharded "
                              "or non-safetensors checkpoint); siftc reads its weights from that one file")
    from safetensors import safe_open
    with safe_open(weights, "pt") as f:
        in_file = set(f.keys())
    external = {}
    tied = _tied_names(hf)
    for name, (key, flip) in placed.items():
        # transformers writes one name per tied tensor: take whichever of the tie the file holds
        found = key if key in in_file else next((k for k in tied.get(key, ()) if k in in_file), None)
        if found is not None:
            external[name] = (found, flip)
    from siftc.runtime.checkpoint import PRETRAINED, write_checkpoint
    write_checkpoint(full, os.path.join(tmp, PRETRAINED),
                     external={"file": os.path.join("..", "model.safetensors"), "tensors": external})


def _with_dense_layers(gm):
    """``gm``, or a copy of its module tree (sharing its tensors: the checkpoint only reads them)
    whose SparseTrainLinear layers (policy kernels=...) are the masked nn.Linear they stand for:
    the class has a dense weight there. Their values are then saved by siftc's files too (the
    names differ), which is correct, only not deduplicated."""
    from siftc.core.masking import shared_copy
    from siftc.core.train_kernels import SparseTrainLinear, to_dense_layers
    if not any(isinstance(m, SparseTrainLinear) for m in gm.modules()):
        return gm
    out = shared_copy(gm)
    to_dense_layers(out)      # new linears in the copy; the compiled model keeps its kernels
    return out


def _hf_class(path: str):
    module, _, name = path.rpartition(".")
    if not module.startswith("transformers."):
        raise CheckpointError(f"siftc.save_pretrained: {path} is not a transformers class")
    return getattr(importlib.import_module(module), name)


def _gm_tensors(gm, prefix: str, renames: dict) -> dict:
    """The compiled model's parameters and buffers under the HF model's path: HF name -> (name in
    the compiled model, tensor); siftc's masks left out. A tensor outside that path would not
    reach the checkpoint: refused."""
    out = {}
    for name, t in gm.state_dict(keep_vars=True).items():
        if is_mask_buffer(name):
            continue
        if not name.startswith(prefix):
            raise CheckpointError(f"siftc.save_pretrained: {name} is outside the Hugging Face model "
                                  f"'{prefix[:-1]}', so its checkpoint would lose it")
        owner, _, leaf = name.rpartition(".")
        original = f"{renames.get(owner, owner)}.{leaf}"
        out[original[len(prefix):]] = (name, t)
    return out


def _instantiate(cls, config_dict: dict, device: str = "meta"):
    """``cls`` built from ``config_dict``; on the meta device it costs shapes only. transformers'
    warnings about the probe configs (token ids outside a tiny vocabulary) are held back."""
    import logging
    quiet = logging.getLogger("transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with torch.device(device):
            return cls(cls.config_class.from_dict(config_dict))
    finally:
        quiet.setLevel(level)


def _shapes(cls, config_dict: dict) -> "dict | None":
    """Tensor shapes of ``cls`` built with ``config_dict``; None when the class refuses the config."""
    try:
        model = _instantiate(cls, config_dict)
    except Exception:   # noqa: BLE001 - any refusal means: this size is not one the class takes
        return None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _lifted_weights(cls, config: dict, gm, prefix: str, moved: dict) -> set:
    """Names (in the class) of the weights capture transposed: a Conv1D-style module (weight in x
    out, GPT-2's) became an nn.Linear (out x in) in the compiled model."""
    model = _instantiate(cls, config)
    out = set()
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) or getattr(mod, "weight", None) is None or mod.weight.dim() != 2:
            continue
        try:
            compiled = gm.get_submodule(moved.get(f"{prefix}{name}", f"{prefix}{name}"))
        except AttributeError:
            continue
        if isinstance(compiled, torch.nn.Linear):
            out.add(f"{name}.weight" if name else "weight")
    return out


def _widened_config(cls, config: dict, gm_tensors: dict, flips: set) -> dict:
    """The config whose class has the compiled model's shapes (module docstring: one linear
    equation per tensor dim, solved field by field)."""
    config = dict(config)
    base = _shapes(cls, config)
    if base is None:
        raise CheckpointError(f"siftc.save_pretrained: {cls.__name__} cannot be built from the saved config")
    fields = [f for f in SIZE_FIELDS if f in config and (config[f] is None or isinstance(config[f], int))]
    # a None field (GPT-2's n_inner: 4 * n_embd in code) is made explicit first, so that doubling
    # n_embd below does not move the MLP width through the default
    for f in [f for f in fields if config[f] is None]:
        value = _explicit_value(cls, config, f, base)
        if value is None:
            fields.remove(f)
        else:
            config[f] = value
    slopes = {}
    for f in fields:
        probe = _shapes(cls, {**config, f: 2 * config[f]}) if config[f] else None
        if probe is None or probe.keys() != base.keys():
            continue
        moved = {(k, d): (probe[k][d] - base[k][d]) / config[f] for k in base for d in range(len(base[k]))
                 if probe[k][d] != base[k][d]}
        if moved:
            slopes[f] = moved
    target = {}
    for k, (_, t) in gm_tensors.items():
        if k not in base:
            continue           # checked when the weights are placed
        target[k] = tuple(t.shape)[::-1] if k in flips else tuple(t.shape)
        if len(target[k]) != len(base[k]):
            raise CheckpointError(f"siftc.save_pretrained: {k} has {len(target[k])} dims in the compiled model, "
                                  f"{len(base[k])} in {cls.__name__}")
    delta = _solve(slopes, base, target, cls)
    return {**config, **{f: config[f] + d for f, d in delta.items()}}


def _explicit_value(cls, config: dict, field: str, base: dict) -> "int | None":
    a, b = _shapes(cls, {**config, field: _PROBE}), _shapes(cls, {**config, field: 2 * _PROBE})
    if a is None or b is None or a.keys() != base.keys():
        return None
    values = set()
    for k in base:
        for d in range(len(base[k])):
            slope = (b[k][d] - a[k][d]) / _PROBE
            if slope:
                values.add((base[k][d] - (a[k][d] - slope * _PROBE)) / slope)
    if len(values) != 1 or not float(next(iter(values))).is_integer():
        return None
    return int(next(iter(values)))


def _solve(slopes: dict, base: dict, target: dict, cls) -> dict:
    """Field changes that make every dim match: dims moved by one still-unknown field fix it,
    then every dim is checked; a dim no field moves must be unchanged."""
    delta: dict = {}
    eqs = [(k, d) for k in target for d in range(len(base[k]))]
    progress = True
    while progress:
        progress = False
        for k, d in eqs:
            unknown = [f for f in slopes if (k, d) in slopes[f] and f not in delta]
            if len(unknown) != 1:
                continue
            f = unknown[0]
            rest = sum(slopes[g][(k, d)] * delta[g] for g in delta if (k, d) in slopes[g])
            change = (target[k][d] - base[k][d] - rest) / slopes[f][(k, d)]
            if not float(change).is_integer():
                raise CheckpointError(f"siftc.save_pretrained: {k} dim {d} is {target[k][d]} in the compiled model; "
                                      f"{cls.config_class.__name__}.{f} cannot give that size (it moves that dim in "
                                      f"steps of {slopes[f][(k, d)]:g})")
            delta[f] = int(change)
            progress = True
    bad = []
    for k, d in eqs:
        expect = base[k][d] + sum(slopes[f][(k, d)] * delta.get(f, 0) for f in slopes if (k, d) in slopes[f])
        if expect != target[k][d]:
            movers = [f for f in slopes if (k, d) in slopes[f]]
            bad.append(f"{k} dim {d}: {target[k][d]} in the compiled model, {int(expect)} from the config"
                       + (f" (set by {', '.join(movers)}, which other tensors fix)" if movers
                          else " (no config field sets it)"))
    if bad:
        raise CheckpointError(f"siftc.save_pretrained: the widened sizes cannot be written in {cls.config_class.__name__}"
                              f" (one config field sets several widths that Sparse Wide widened differently, or a "
                              f"width no field sets): {'; '.join(bad[:4])}{' ...' if len(bad) > 4 else ''}. "
                              f"Save with siftc.save(gm, dir) instead")
    return {f: d for f, d in delta.items() if d}


def _head_candidates(original: dict, widened: dict) -> list:
    """Configs to try, in order: head counts kept, then head counts scaled with each widening
    ratio (a class that derives head_dim = hidden_size / heads keeps head_dim only that way, and
    Sparse Wide keeps head_dim when it widens an attention). The logits check picks."""
    from fractions import Fraction
    heads = [f for f in HEAD_FIELDS if isinstance(original.get(f), int) and original[f] > 0]
    ratios = sorted({Fraction(widened[f], original[f]) for f in widened
                     if f in SIZE_FIELDS and isinstance(original.get(f), int) and original[f]
                     and widened[f] != original[f]})
    out = [widened]
    for r in ratios:
        scaled = {h: original[h] * r for h in heads}
        if heads and all(v.denominator == 1 for v in scaled.values()):
            out.append({**widened, **{h: int(v) for h, v in scaled.items()}})
    return out


def _tied_names(model) -> dict:
    """state_dict name -> the other names of the same tensor (tied weights)."""
    by_id: dict = {}
    for k, v in model.state_dict(keep_vars=True).items():
        by_id.setdefault(id(v), []).append(k)
    return {k: [o for o in names if o != k] for names in by_id.values() for k in names}


def _build(cls, config: dict, gm_tensors: dict, flips: set, prefix: str, training: bool):
    """The class built with ``config`` and loaded with the compiled weights; also, per compiled
    tensor name, (its name in the class, transposed?)."""
    with torch.random.fork_rng():     # its init draws are all overwritten: keep the user's RNG where it was
        hf = _instantiate(cls, config, "cpu")
    hf.train(training)
    own = hf.state_dict(keep_vars=True)
    tied = _tied_names(hf)
    placed, where = set(), {}
    gm_ids = {}
    for k, (_, t) in gm_tensors.items():
        gm_ids.setdefault(id(t), []).append(k)
    for k, (gm_name, t) in gm_tensors.items():
        if k not in own:
            if all(o in own for o in gm_ids[id(t)] if o != k) and len(gm_ids[id(t)]) > 1:
                continue       # a tie in the compiled model that the class keeps under another name
            raise CheckpointError(f"siftc.save_pretrained: the compiled model has {gm_name}, which "
                                  f"{cls.__name__} with the widened config does not have")
        dst = own[k]
        value = t.detach()
        flip = k in flips
        if flip:
            value = value.t()
        if tuple(value.shape) != tuple(dst.shape):
            raise CheckpointError(f"siftc.save_pretrained: {k} is {tuple(t.shape)} in the compiled model, "
                                  f"{tuple(dst.shape)} in {cls.__name__} with the widened config")
        with torch.no_grad():
            dst.copy_(value)
        placed.add(k)
        where[gm_name] = (k, flip)
    # every tensor the class has must have been placed (directly or through a tie)
    missing = [k for k in own if k not in placed and not any(o in placed for o in tied.get(k, ()))]
    if missing:
        raise CheckpointError(f"siftc.save_pretrained: {cls.__name__} has {', '.join(missing[:4])}"
                              f"{' ...' if len(missing) > 4 else ''}, which the compiled model does not have")
    return hf, where


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _check_logits(hf, gm, inputs: tuple, atol: float) -> None:
    """The rebuilt class must give the compiled model's output on the compile's example inputs,
    and, for token ids, on ids drawn over the whole vocabulary (example ids are often 0/1). Both
    models run in eval mode, so dropout draws nothing."""
    runs = [inputs]
    vocab = getattr(hf.config, "vocab_size", None)
    if inputs and isinstance(inputs[0], torch.Tensor) and not inputs[0].is_floating_point() and isinstance(vocab, int):
        g = torch.Generator().manual_seed(0)
        runs.append((torch.randint(0, vocab, inputs[0].shape, generator=g).to(inputs[0].device), *inputs[1:]))
    was = gm.training
    gm.eval()
    hf.eval()
    try:
        for args in runs:
            with torch.no_grad():
                want = _first_tensor(gm(*args))
                got = _first_tensor(hf(*args))
            _compare(hf, want, got, atol)
    finally:
        gm.train(was)
        hf.train(was)


def _compare(hf, want, got, atol: float) -> None:
    if want is None or got is None or want.shape != got.shape:
        raise CheckpointError(f"siftc.save_pretrained: cannot check the rebuilt {type(hf).__name__} against the "
                              f"compiled model: outputs {None if got is None else tuple(got.shape)} and "
                              f"{None if want is None else tuple(want.shape)} (the model around the Hugging Face "
                              f"one changes its output?)")
    err = (want - got).abs().max().item()
    scale = max(want.abs().max().item(), 1.0)
    if err > atol * scale:
        raise CheckpointError(f"siftc.save_pretrained: the rebuilt {type(hf).__name__} differs from the compiled "
                              f"model by {err:.3g} (max abs, outputs up to {scale:.3g}); the widened config does not "
                              f"describe the compiled model. Save with siftc.save(gm, dir) instead")
