"""siftc.save_pretrained: a compiled Hugging Face model written back as its own class.

Oracles: transformers' own from_pretrained (no siftc involved) must load the directory as the
original class with the widened sizes in config.json and give the compiled model's logits; the
masks ride along, so siftc.load on the same directory resumes DST exactly where it stopped.
Tiny GPT-2 / BERT / Llama configs, random init, offline.
"""
import json
import os

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import siftc  # noqa: E402
from conftest import resume_after_checkpoint  # noqa: E402
from models_zoo.conformance import build  # noqa: E402


def _compile(name: str, policy: str):
    model, make = build(name)
    x = make(2)
    return siftc.compile(model, policy=policy, example_inputs=x), x, type(model.model)


def _logits(model, x):
    model.eval()
    with torch.no_grad():
        out = model(*x)
    return getattr(out, "logits", out)


def _unique_nonzeros(named) -> int:
    seen, total = set(), 0
    for name, t in named:
        if name.endswith("weight_mask") or id(t) in seen:
            continue
        seen.add(id(t))
        total += int(torch.count_nonzero(t))
    return total


@pytest.mark.parametrize("name,policy,sizes", [
    # GPT-2's attention is not widened (its fused c_attn splits into heads by n_embd); the MLP is
    ("hf_gpt2", "wide:0.75", {"n_embd": 64, "n_inner": 512, "n_head": 4}),
    # Sparse Wide keeps BERT's head_dim (16) and doubles the heads with hidden_size
    ("hf_bert", "wide:0.75", {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 8}),
    # Llama states head_dim on its own: the residual stream widens, the attention width does not
    ("hf_llama", "wide:0.9", {"hidden_size": 200, "intermediate_size": 400, "head_dim": 16,
                              "num_attention_heads": 4, "num_key_value_heads": 2}),
    ("hf_llama", "sparse:0.9", {"hidden_size": 64, "intermediate_size": 128}),
    # layers trained through sparse kernels are written as the masked linears they stand for
    ("hf_llama", "wide:0.75,kernels=csr", {"hidden_size": 128, "intermediate_size": 256}),
])
def test_from_pretrained_loads_the_original_class_widened_with_the_same_logits(tmp_path, name, policy, sizes):
    gm, x, cls = _compile(name, policy)
    siftc.save_pretrained(gm, tmp_path)
    hf = cls.from_pretrained(tmp_path)            # transformers alone: the class, not siftc's graph
    assert type(hf) is cls
    assert {k: getattr(hf.config, k) for k in sizes} == sizes
    saved = json.loads((tmp_path / "config.json").read_text())
    assert all(saved[k] == v for k, v in sizes.items() if k in saved)
    # a sparse kernel sums in another order than the dense matmul: equal to rounding there
    same = torch.equal if "kernels" not in policy else lambda a, b: torch.allclose(a, b, atol=1e-5)
    assert same(_logits(hf, x), _logits(gm, x))
    # the sparse weights arrive as zeros: the class holds exactly the compiled model's non-zeros
    assert _unique_nonzeros(hf.state_dict(keep_vars=True).items()) == \
        _unique_nonzeros(gm.state_dict(keep_vars=True).items())
    # and siftc.load on the same directory gives back the compiled model, masks included
    back = siftc.load(tmp_path)
    assert torch.equal(_logits(back, x), _logits(gm, x))
    masks, loaded = gm.siftc.masks(), back.siftc.masks()
    assert masks and masks.keys() == loaded.keys() and all(torch.equal(masks[q], loaded[q]) for q in masks)
    # siftc's files hold masks and the graph, not a second copy of the weights (kernel layers'
    # kept values are named differently from the class's dense weights: stored once more, compact)
    siftc_bytes = sum(f.stat().st_size for f in (tmp_path / "siftc").iterdir() if f.suffix == ".safetensors")
    limit = 0.2 if "kernels" not in policy else 0.3
    assert siftc_bytes < limit * (tmp_path / "model.safetensors").stat().st_size


def test_dst_resumes_from_a_save_pretrained_directory_bit_identically(tmp_path):
    """RigL for 4 steps, save_pretrained + the optimizer and DST state, 4 more steps; the model
    loaded from the Hugging Face directory and resumed from the same point ends identical."""
    torch.manual_seed(0)
    model, make = build("hf_llama")
    x = make(4)
    y = torch.randint(0, 128, x[0].shape)
    gm = siftc.compile(model, policy="wide:0.9,dst=rigl,dT=2", example_inputs=x)
    dst, back, dst2 = resume_after_checkpoint(gm, lambda m: F.cross_entropy(m(*x).flatten(0, 1), y.flatten()),
                                              siftc.save_pretrained, siftc.load, tmp_path / "hf",
                                              total_steps=12, before=4)
    assert dst2.updates == dst.updates >= 3
    a, b = gm.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_what_a_config_cannot_state_is_refused_with_the_reason(tmp_path):
    gm, _, _ = _compile("hf_gpt2", "parallel:0.75")
    with pytest.raises(siftc.CheckpointError, match="member 'parallel' adds layers"):
        siftc.save_pretrained(gm, tmp_path / "a")
    # at s=0.9 Sparse Wide widens BERT's residual stream to 200 but its attention to 208 (13
    # heads of 16): BertConfig has one hidden_size for both
    gm, _, _ = _compile("hf_bert", "wide:0.9")
    with pytest.raises(siftc.CheckpointError, match=r"cannot be written in BertConfig.*query.weight dim 0: 208"):
        siftc.save_pretrained(gm, tmp_path / "b")
    assert not (tmp_path / "b").exists()           # nothing half-written
    import models_zoo
    gm = siftc.compile(models_zoo.create("mlp"), policy="sparse:0.5", example_inputs=models_zoo.example_inputs("mlp", 2))
    with pytest.raises(siftc.CheckpointError, match="holds no Hugging Face PreTrainedModel"):
        siftc.save_pretrained(gm, tmp_path / "c")


def test_weights_changed_outside_siftc_are_refused_by_load_but_still_load_in_transformers(tmp_path):
    gm, x, cls = _compile("hf_llama", "wide:0.75")
    siftc.save_pretrained(gm, tmp_path)
    hf = cls.from_pretrained(tmp_path)
    with torch.no_grad():                 # dense fine-tuning outside siftc fills masked positions
        hf.model.layers[0].mlp.up_proj.weight.add_(0.01)
    hf.save_pretrained(tmp_path)
    with pytest.raises(siftc.CheckpointError, match="changed outside siftc"):
        siftc.load(tmp_path)
    assert torch.allclose(_logits(cls.from_pretrained(tmp_path), x), _logits(hf, x))


def test_a_refusal_while_writing_leaves_no_half_written_directory(tmp_path, monkeypatch):
    gm, _, _ = _compile("hf_llama", "wide:0.75")
    from siftc.runtime import checkpoint

    def refuse(*a, **k):
        raise siftc.CheckpointError("siftc.save: refused for the test")
    monkeypatch.setattr(checkpoint, "write_checkpoint", refuse)
    with pytest.raises(siftc.CheckpointError, match="refused for the test"):
        siftc.save_pretrained(gm, tmp_path / "out")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
