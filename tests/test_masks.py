"""Masks: exact non-zero counts, ERK densities (hand-computed), zeros where masked, seeding."""
import math

import pytest
import torch
from torch import nn

import siftc
from siftc.core import densities
from siftc.core.masking import exact_mask


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 32),
                         nn.ReLU(), nn.Linear(32, 3))


@pytest.mark.parametrize("policy", ["sparse:0.8", "parallel:0.75", "factorized:0.9,dist=erk", "doped:0.5"])
def test_exact_nonzero_counts_and_zeros(policy):
    gm = siftc.compile(_mlp(), policy=policy, example_inputs=(torch.randn(4, 16),))
    assert gm.siftc.densities
    for q in gm.siftc.densities:
        mod = gm.get_submodule(q)
        count = int(mod.weight_mask.sum())
        assert count == gm.siftc.planned_nonzeros[q]
        if policy == "sparse:0.8":          # nominal: the count follows from the policy alone
            assert count == round(0.2 * mod.weight_mask.numel())
        assert torch.all(mod.weight[~mod.weight_mask] == 0)
        assert mod.weight_mask.dtype == torch.bool
        assert f"{q}.weight_mask" in gm.state_dict()
    if policy in ("parallel:0.75", "doped:0.5"):   # iso=exact, uniform: one solved density for all
        dens = [int(gm.get_submodule(q).weight_mask.sum()) / gm.get_submodule(q).weight_mask.numel()
                for q in gm.siftc.densities]
        assert max(dens) - min(dens) <= max(1 / gm.get_submodule(q).weight_mask.numel() for q in gm.siftc.densities)


def test_verify_catches_a_mask_with_a_count_nobody_planned():
    gm = siftc.compile(_mlp(), policy="parallel:0.75", example_inputs=(torch.randn(4, 16),))
    q = next(iter(gm.siftc.densities))
    mod = gm.get_submodule(q)
    with torch.no_grad():
        first = mod.weight_mask.flatten().nonzero()[0]
        mod.weight_mask.view(-1)[first] = False          # one weight fewer, still zero where masked
        mod.weight.view(-1)[first] = 0.0
    with pytest.raises(siftc.VerifyError, match=f"module '{q}': mask has .* non-zeros, planned"):
        siftc.compile(gm)          # compiling again runs verify on the trained/tampered model


def test_exact_mask_counts_property():
    g = torch.Generator().manual_seed(1)
    for n in (1, 2, 7, 100, 4097):
        for d in (0.01, 0.25, 0.5, 0.9, 1.0):
            m = exact_mask((n,), d, g)
            assert int(m.sum()) == min(n, max(1, round(d * n)))


def test_exact_mask_is_exact_when_keys_tie(monkeypatch):
    """Mask keys are float32 (cheaper to draw); tied keys at the k-th value are taken in index
    order. Forced here: keys quantized to 1/64, so thousands tie at the k-th value."""
    from siftc.core import masking
    real = torch.rand

    def coarse(*a, **kw):
        return torch.floor(real(*a, **kw) * 64) / 64
    monkeypatch.setattr(masking.torch, "rand", coarse)
    g = torch.Generator().manual_seed(2)
    for n, d in ((100_000, 0.25), (30_001, 0.9), (4097, 0.5)):
        m = exact_mask((n,), d, g)
        assert int(m.sum()) == round(d * n)
        keys = coarse(n, generator=torch.Generator().manual_seed(0))   # the rule itself, on known keys
        mk = exact_mask((n,), d, torch.Generator().manual_seed(0))
        kth = keys.sort().values[round(d * n) - 1]
        assert bool(mk[keys < kth].all()) and not bool(mk[keys > kth].any())


def test_erk_hand_computed():
    # two layers: A (10x20) raw=(10+20)/200=0.15, B (30x40) raw=70/1200=0.058333...
    # total 1400 params, s=0.5 -> 700 non-zeros: eps*(0.15*200 + 0.0583333*1200) = eps*100 = 700 -> eps=7
    # A would be 1.05 > 1 -> dense (200); B gets 500/1200 = 0.416666...
    d = densities.nominal({"A": (10, 20), "B": (30, 40)}, 0.5, "erk")
    assert d["A"] == 1.0
    assert d["B"] == pytest.approx(500 / 1200)
    u = densities.nominal({"A": (10, 20), "B": (30, 40)}, 0.5, "uniform")
    assert u == {"A": 0.5, "B": 0.5}


def test_erk_total_nonzeros_is_one_minus_s_of_sparsifiable():
    gm = siftc.compile(_mlp(), policy="sparse:0.75,dist=erk", example_inputs=(torch.randn(4, 16),))
    masks = gm.siftc.masks()
    total = sum(m.numel() for m in masks.values())
    nnz = sum(int(m.sum()) for m in masks.values())
    assert abs(nnz - 0.25 * total) <= len(masks)          # per-layer rounding only
    dens = {q: int(m.sum()) / m.numel() for q, m in masks.items()}
    assert len(set(round(v, 3) for v in dens.values())) > 1   # ERK: not uniform


def test_masks_are_seeded_and_policy_seed_changes_them():
    a = siftc.compile(_mlp(), policy="sparse:0.5", example_inputs=(torch.randn(4, 16),)).siftc.masks()
    b = siftc.compile(_mlp(), policy="sparse:0.5", example_inputs=(torch.randn(4, 16),)).siftc.masks()
    c = siftc.compile(_mlp(), policy="sparse:0.5,seed=1", example_inputs=(torch.randn(4, 16),)).siftc.masks()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_scaled_init_rescales_kept_weights():
    torch.manual_seed(0)
    plain = siftc.compile(_mlp(), policy="sparse:0.75", example_inputs=(torch.randn(4, 16),))
    scaled = siftc.compile(_mlp(), policy="sparse:0.75,init=scaled", example_inputs=(torch.randn(4, 16),))
    q = next(iter(plain.siftc.densities))
    wp, ws = plain.get_submodule(q).weight, scaled.get_submodule(q).weight
    assert torch.equal(plain.get_submodule(q).weight_mask, scaled.get_submodule(q).weight_mask)
    ratio = ws.abs().sum() / wp.abs().sum()
    assert ratio.item() == pytest.approx(1 / math.sqrt(plain.siftc.densities[q]), rel=0.3)


def test_iso_unreachable_is_a_clear_error():
    with pytest.raises(siftc.IsoFlopError, match="iso=nominal"):
        densities.iso_exact({"A": (4, 4)}, {"A": 100}, dense_flops=1000, budget=900, dist="uniform", sparsity=0.5)


def test_iso_exact_non_integer_branches():
    # s=0.6: 1/(1-s) = 2.5 -> 3 branches; iso=exact re-solves the density to stay on budget
    model = _mlp()
    gm = siftc.compile(model, policy="parallel:0.6", example_inputs=(torch.randn(4, 16),))
    rep = siftc.report(gm)
    assert abs(rep.iso_flop_ratio - 1) <= 0.005
    assert all(d < 0.4 for d in gm.siftc.densities.values())      # 3 branches at < 1/3 each
    nominal = siftc.report(siftc.compile(model, policy="parallel:0.6,iso=nominal", example_inputs=(torch.randn(4, 16),)))
    assert nominal.iso_flop_ratio > 1.1                              # 3 x 0.4 = 1.2x, reported
