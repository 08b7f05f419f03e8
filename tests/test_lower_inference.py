"""mode="inference": CSR kernels where measured faster; outputs equal the unlowered model's.

Timing decides which layers are lowered, so these tests check what must hold whatever the
machine measures: the kernels compute the same thing as the dense layers, the lowered model
equals the unlowered one within 1e-5 relative on every zoo model, and the report says per
layer which kernel was chosen with its measured speedup.
"""
import pytest
import torch
from torch import nn

import models_zoo
import siftc
from conftest import small_model
from siftc.core import kernels
from siftc.core.members import mark_sparse
from siftc.core.masking import exact_mask


def _masked(layer, density, seed=0):
    mark_sparse(layer)
    with torch.no_grad():
        layer.weight_mask.copy_(exact_mask(tuple(layer.weight.shape), density, torch.Generator().manual_seed(seed)))
        layer.weight.mul_(layer.weight_mask)
    return layer


@pytest.mark.parametrize("layer,shape", [
    (nn.Linear(48, 32), (5, 48)), (nn.Linear(48, 32, bias=False), (2, 7, 48)),
    (nn.Conv2d(8, 16, 3, padding=1), (2, 8, 9, 9)), (nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), (2, 8, 9, 9)),
    (nn.Conv2d(8, 16, 1), (2, 8, 5, 5)), (nn.Conv2d(8, 16, (3, 1), stride=(1, 2), padding=(1, 0), dilation=(2, 1)), (1, 8, 9, 8)),
])
@pytest.mark.parametrize("kernel", ["csr", pytest.param("mkl", marks=pytest.mark.skipif(
    not kernels.mkl_available(), reason="MKL sparse BLAS not installed (pip install sparse-dot-mkl mkl)"))])
def test_kernels_equal_dense_layers(layer, shape, kernel):
    layer = _masked(layer, 0.2)
    x = torch.randn(*shape)
    sparse = kernels.lower(layer, kernel)
    assert sparse.layout == kernel
    with torch.no_grad():
        ref, got = layer(x), sparse(x)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert torch.equal(sparse.weight, layer.weight.detach())


def test_choose_reports_a_decision_and_caches_it():
    layer = _masked(nn.Linear(512, 512), 0.02)
    x = torch.randn(32, 512)
    first = kernels.choose(layer, x)
    assert first["kernel"] in ("csr", "mkl", "dense") and first["speedup"] > 0 and abs(first["density"] - 0.02) < 1e-3
    assert (first["kernel"] != "dense") == (first["speedup"] >= kernels.MARGIN)
    assert kernels.choose(layer, x) == first          # cached: not measured again


@pytest.mark.parametrize("name", models_zoo.list_models())
def test_lowered_equals_unlowered_on_every_zoo_model(name, monkeypatch):
    # force every lowerable layer onto its kernel, so equality is checked where it matters
    monkeypatch.setattr(kernels, "MARGIN", 0.0)
    model, inputs = small_model(name)
    # wide where the model is small; the per-layer kernels are the same for any member
    policy = "wide:0.9" + (",stem=sparse" if name == "mlp" else "") if name in (
        "mlp", "mnist_cnn", "gpt_tiny", "vit_tiny", "bert_tiny") else "sparse:0.9"
    gm = siftc.compile(model, policy=policy, example_inputs=inputs)
    low = siftc.compile(gm, mode="inference")
    gm.eval()
    with torch.no_grad():
        ref, got = gm(*inputs), low(*inputs)
    assert float((got - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
    lowered = [m for m in low.modules() if isinstance(m, (kernels.CSRLinear, kernels.CSRConv2d))]
    assert lowered and len(lowered) == sum(1 for k in low.siftc.kernels.values() if k["kernel"] != "dense")
    rep = siftc.report(low)
    assert rep.kernels and "inference kernel" in str(rep)
    assert abs(rep.iso_flop_ratio - siftc.report(gm).iso_flop_ratio) < 1e-9   # FLOPs counted the same
    assert not low.training and not any(p.requires_grad for p in low.parameters())


def test_inference_mode_errors():
    model, inputs = small_model("mlp")
    with pytest.raises(ValueError, match="allowed modes: train, inference"):
        siftc.compile(model, policy="sparse:0.9", example_inputs=inputs, mode="serve")
    with pytest.raises(ValueError, match="target='cpu'"):
        siftc.compile(model, target="cuda", policy="sparse:0.9", example_inputs=inputs, mode="inference")


def test_kernel_timing_is_interleaved_min_and_a_win_is_rechecked(monkeypatch):
    """A busy spell during one dense call cannot make sparse look faster (each candidate keeps its
    fastest of interleaved rounds), and a sparse win must be confirmed by a second measurement."""
    from siftc.core import kernels
    clock = {"t": 0.0, "calls": 0}
    costs = {"dense": 1.0, "sparse": 1.5}

    def make(kind):
        def fn():
            clock["calls"] += 1
            clock["t"] += costs[kind] * (50 if kind == "dense" and clock["calls"] == 4 else 1)   # one spike
        return fn
    times = kernels.interleaved_min_ms({"dense": make("dense"), "sparse": make("sparse")}, 5,
                                       clock=lambda: clock["t"])
    assert times == {"dense": 1000.0, "sparse": 1500.0}
    # a first measurement says csr is 2x faster, the re-check says it is not: dense is kept
    answers = iter([{"dense": 2.0, "csr": 1.0}, {"dense": 1.0, "csr": 1.2}])
    monkeypatch.setattr(kernels, "interleaved_min_ms", lambda fns, repeat: next(answers))
    monkeypatch.setattr(kernels, "_DECISIONS", {})
    layer = nn.Linear(64, 64)
    layer.register_buffer("weight_mask", torch.rand(64, 64) < 0.1)
    d = kernels.choose(layer, torch.randn(4, 64))
    assert d["kernel"] == "dense" and d["speedup"] < 1
