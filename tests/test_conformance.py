"""Real torchvision and Hugging Face models through the whole pipeline (models_zoo/conformance.py).

The default suite runs a representative subset of the model x member matrix: squeeze-excite
blocks (mobilenet_v3_small), a residual CNN (resnet18), windowed attention behind a
``torch.fx.wrap``-ped function (swin_t), and GPT-2 / BERT / Llama from small configs through
torch.export. Each cell compiles, keeps its output shape, trains a step at batch 1 and 2, matches
FlopCounterMode's matmul-class FLOPs (original and compiled), is iso-FLOP and matches onnxruntime.
The full matrix (every torchvision classification model) is ``-m slow``; its table is
regenerated with ``siftc conformance --out models_zoo/results/conformance.jsonl --page docs/compatibility.md``.
"""
from __future__ import annotations

import json

import pytest

import siftc

pytest.importorskip("torchvision")
pytest.importorskip("transformers")

from models_zoo import conformance  # noqa: E402

SUBSET = [
    ("mobilenet_v3_small", "parallel"),
    ("mobilenet_v3_small", "factorized"),
    ("resnet18", "wide"),
    ("resnet18", "doped"),
    ("resnet18", "sparse"),
    ("hf_gpt2", "wide"),
    ("hf_bert", "parallel"),
    ("hf_llama", "factorized"),
]


@pytest.mark.parametrize("model,member", SUBSET)
def test_conformance_cell(model, member):
    row = conformance.run_cell(model, member)
    assert row["status"] == "ok", row["reason"] + "\n" + row.get("trace", "")
    assert row["siftc_matmul_budget"] == pytest.approx(row["fc_budget"], rel=conformance.TOLERANCE)
    if member != "sparse":
        assert abs(row["iso_ratio"] - 1) <= conformance.TOLERANCE
    assert row["onnx_rel_err"] <= 1e-3


def test_swin_wrapped_attention_is_counted_and_listed():
    """torchvision's swin_t runs its attention projections inside the torch.fx.wrap-ped
    shifted_window_attention: their FLOPs (about a third of the matmuls) were neither counted nor
    listed, and Sparse Wide widened them dense. Now FlopCounterMode costs the call, its weights
    are listed as left dense and the groups they touch keep their width."""
    import siftc
    model, make = conformance.build("swin_t")
    gm = siftc.compile(model, policy="wide:0.75", example_inputs=make(2))
    rep = gm.siftc.report()
    wrapped = [m for m in rep.measured if "shifted_window_attention" in m["reason"]]
    assert wrapped and sum(m["flops"] for m in wrapped) > 0.2 * rep.matmul_budget_flops
    listed = {d["name"] for d in rep.left_dense}
    assert "features.1.0.attn.qkv.weight" in listed
    orig = dict(model.named_parameters())
    assert gm.get_parameter("features.1.0.attn.qkv.weight").shape == orig["features.1.0.attn.qkv.weight"].shape


def test_table_renders_ok_and_reasons(tmp_path):
    rows = [{"model": "a", "member": "wide", "status": "ok", "iso_ratio": 1.0, "matmul_ratio": 0.98, "reason": ""},
            {"model": "a", "member": "parallel", "status": "fail", "reason": "compile: X | Y"},
            {"model": "c", "member": "wide", "status": "ok", "iso_ratio": 1.0, "all_ratio": 1.02, "matmul_ratio": 1.0,
             "count": "matmul", "reason": ""}]
    out = tmp_path / "c.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = conformance.table(conformance.load(out), members=("wide", "parallel", "sparse"))
    assert "2 of 3 cells ok" in text and "; 3 cells not run." in text
    # a row from before count=matmul was the default: its iso_ratio is the all-FLOP one, starred
    assert "| a | ok 1.000/0.980* | compile: X / Y | not run |" in text and "1 cells)" in text
    assert "| c | ok 1.020/1.000 | not run | not run |" in text
    with_b = conformance.table(conformance.load(out), members=("wide", "parallel", "sparse"), models=["a", "b"])
    assert "| b | not run | not run | not run |" in with_b and "; 6 cells not run." in with_b
    page = tmp_path / "compat.md"
    page.write_text(f"intro\n{conformance.PAGE_START}\nold matrix\n{conformance.PAGE_END}\noutro\n")
    conformance.write_page(page, with_b)
    assert page.read_text() == f"intro\n{conformance.PAGE_START}\n{with_b}\n{conformance.PAGE_END}\noutro\n"
    page.write_text("no markers\n")
    with pytest.raises(siftc.UsageError, match="markers"):
        conformance.write_page(page, with_b)


@pytest.mark.slow
def test_full_conformance_sweep(tmp_path):
    """Every torchvision classification model and the three HF families x every member (hours on
    2 cores): each cell is ok or names its reason (docs/compatibility.md shows this table)."""
    rows = conformance.sweep(conformance.all_models(), conformance.MEMBERS, tmp_path / "c.jsonl", progress=False)
    assert len(rows) == len(conformance.all_models()) * len(conformance.MEMBERS)
    assert all(r["status"] == "ok" or r["reason"] for r in rows)


def test_timm_vit_with_optional_forward_arguments_compiles_with_fx():
    """timm's VisionTransformer.forward(x, attn_mask=None, is_causal=False) failed in capture
    ('the model takes 3 inputs ... but 1 example inputs were given'); the defaults are now fixed at
    capture, so torch.fx captures it and every member applies."""
    timm = pytest.importorskip("timm")
    import torch

    import siftc
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                              num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    gm = siftc.compile(model, policy="parallel:0.75", example_inputs=(x,))
    rep = gm.siftc.report()
    assert gm.siftc.passes[0]["stats"]["via"] == "fx"
    assert len(rep.layers) >= 8 and abs(rep.iso_flop_ratio - 1) <= 0.005
    assert gm(x).shape == (2, 10)
