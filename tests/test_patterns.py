"""Structured masks: pattern=block:B (whole tiles, moved whole by DST, BSR kernels) and N:M."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import siftc
from conftest import small_model
from siftc import Policy
from siftc.core import kernels, patterns
from siftc.core.errors import SiftcError
from siftc.core.members import mark_sparse


def _is_blocky(mask, b):
    return torch.equal(patterns.expand_blocks(patterns.blocks_of(mask, b), b, mask.shape), mask)


@pytest.mark.parametrize("text,needle", [("wide:0.5,pattern=block:1", "block:B (B >= 2"),
                                         ("wide:0.5,pattern=4:2", "N:M (0 < N < M"),
                                         ("wide:0.5,pattern=tiles", "allowed: none, block:B")])
def test_bad_patterns(text, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        Policy.parse(text)


def test_block_masks_are_whole_tiles_and_iso_flop():
    model, inputs = small_model("resnet18_cifar")
    gm = siftc.compile(model, policy="wide:0.75,pattern=block:16", example_inputs=inputs)
    masks = gm.siftc.masks()
    assert masks and all(_is_blocky(m, 16) for m in masks.values())
    rep = siftc.report(gm)
    assert abs(rep.iso_flop_ratio - 1) <= 0.005
    assert all(g["new_width"] % 16 == 0 for g in rep.groups if g["new_width"])   # widths fit whole tiles


def test_dst_moves_whole_blocks():
    model, inputs = small_model("mnist_cnn", batch_size=8)
    gm = siftc.compile(model, policy="wide:0.75,pattern=block:16,dst=rigl,dT=2,drop=0.5", example_inputs=inputs)
    before = {q: m.clone() for q, m in gm.siftc.masks().items()}
    opt = torch.optim.SGD(gm.parameters(), lr=0.05, momentum=0.9)
    dst = siftc.DST(gm, opt, total_steps=8)
    y = torch.randint(0, 10, (8,))
    for _ in range(5):
        F.cross_entropy(gm(*inputs), y).backward()
        opt.step()
        dst.step()
        opt.zero_grad()
    assert dst.updates >= 1
    moved = 0
    for q, m in gm.siftc.masks().items():
        assert _is_blocky(m, 16) and int(m.sum()) == int(before[q].sum())
        assert not bool((gm.get_submodule(q).weight.detach() != 0)[~m].any())
        moved += int((m != before[q]).sum())
    assert moved > 0


def test_layers_that_do_not_fit_fall_back_with_a_warning():
    model = nn.Sequential(nn.Linear(20, 24), nn.ReLU(), nn.Linear(24, 40), nn.ReLU(), nn.Linear(40, 5))
    with pytest.warns(UserWarning, match="does not fit pattern=block:16"):
        gm = siftc.compile(model, policy="sparse:0.75,pattern=block:16", example_inputs=(torch.randn(2, 20),))
    assert any("does not fit" in w for w in gm.siftc.warnings)


def test_n_of_m_masks_static_only():
    model, inputs = small_model("mlp")
    gm = siftc.compile(model, policy="parallel:0.5,pattern=2:4", example_inputs=inputs)
    masks = gm.siftc.masks()
    assert masks and all(patterns.is_nm(m, 2, 4) for m in masks.values())
    rep = siftc.report(gm)
    assert "pattern=2:4" in rep.iso_note and all(abs(layer["sparsity"] - 0.5) < 1e-9 for layer in rep.layers)
    opt = torch.optim.SGD(gm.parameters(), lr=0.1)
    with pytest.raises(SiftcError, match="do not move under rigl"):
        siftc.DST(gm, opt, total_steps=10, method="rigl")
    dst = siftc.DST(gm, opt, total_steps=10)          # static keeps the pattern
    gm(*inputs).sum().backward()
    opt.step()
    dst.step()
    assert all(patterns.is_nm(m, 2, 4) for m in gm.siftc.masks().values())


def test_bsr_kernel_equals_dense_and_lowering_uses_block_layouts(monkeypatch):
    layer = mark_sparse(nn.Linear(64, 48))
    mask = patterns.block_mask((48, 64), 0.25, 16, torch.Generator().manual_seed(1),
                               __import__("siftc.core.masking", fromlist=["exact_mask"]).exact_mask)
    with torch.no_grad():
        layer.weight_mask.copy_(mask)
        layer.weight.mul_(mask)
    x = torch.randn(5, 64)
    bsr = kernels.lower(layer, "bsr", 16)
    assert bsr.weight_csr.layout == torch.sparse_bsr
    with torch.no_grad():
        assert torch.allclose(bsr(x), layer(x), rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(kernels, "MARGIN", 0.0)
    model, inputs = small_model("mnist_cnn")
    gm = siftc.compile(model, policy="wide:0.9,pattern=block:16", example_inputs=inputs)
    low = siftc.compile(gm, mode="inference")
    gm.eval()
    with torch.no_grad():
        ref, got = gm(*inputs), low(*inputs)
    assert float((got - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
    # with no margin every layer takes its fastest kernel: torch's CSR or BSR, or MKL when installed
    assert {k["kernel"] for k in low.siftc.kernels.values()} <= {"csr", "bsr", "mkl"}


class TwoFour(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(64, 128)
        self.mid = nn.Linear(128, 128)
        self.odd = nn.Linear(128, 40)
        self.head = nn.Linear(40, 10)

    def forward(self, x):
        return self.head(torch.relu(self.odd(torch.relu(self.mid(torch.relu(self.stem(x)))))))


def test_semi_structured_plan_on_cpu():
    x = (torch.randn(4, 64),)
    gm = siftc.compile(TwoFour(), policy="sparse:0.5,pattern=2:4", example_inputs=x)
    assert all(patterns.is_nm(m, 2, 4) for m in gm.siftc.masks().values())
    plan = kernels.semi_structured_plan(gm)
    assert "dtype torch.float32" in plan["mid.W"]                        # fp16/bf16 only
    assert "columns % 64" in plan["odd.W"] or "rows % 32" in plan["odd.W"]   # 40 x 128 does not tile
    assert kernels.semi_structured_plan(gm.half())["mid.W"] == "2:4"
    with pytest.raises(ValueError, match="pattern=2:4"):
        siftc.compile(TwoFour(), target="cuda", policy="sparse:0.5", example_inputs=x, mode="inference")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="2:4 semi-structured kernels are CUDA-only")
def test_cuda_2_4_lowering_matches():
    x = (torch.randn(64, 64, dtype=torch.float16),)
    model = TwoFour().half()
    low = siftc.compile(model, target="cuda", policy="sparse:0.5,pattern=2:4", example_inputs=x, mode="inference")
    assert low.siftc.kernels["mid.W"]["kernel"] == "2:4"
    assert type(low.get_submodule("mid.W").weight).__name__.startswith("SparseSemiStructured")
