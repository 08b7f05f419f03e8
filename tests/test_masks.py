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


def test_exact_mask_takes_every_key_below_the_kth_and_breaks_ties_at_random():
    """Keys are 7 bits, so ~n/128 entries tie at the k-th key's level: all keys below it are
    taken, none above it, and the count is exact."""
    from siftc.core.masking import random_bytes
    for n, d in ((100_000, 0.25), (30_001, 0.9), (4097, 0.5)):
        k = round(d * n)
        keys = random_bytes(n, torch.Generator().manual_seed(0))       # the keys the mask will draw
        mask = exact_mask((n,), d, torch.Generator().manual_seed(0))
        assert int(mask.sum()) == k
        level = keys.sort().values[k - 1]
        assert bool(mask[keys < level].all()) and not bool(mask[keys > level].any())
        assert 0 < int(mask[keys == level].sum()) < int((keys == level).sum())   # some ties, not all
    assert int(random_bytes(1 << 16, torch.Generator().manual_seed(3)).max()) == 127


def _reference_exact_mask(shape, density, generator):
    """exact_mask as first written: the level from a full histogram of the keys (torch.bincount)."""
    from siftc.core.masking import exact_count, random_bytes
    n = math.prod(shape)
    k = exact_count(n, density)
    keys = random_bytes(n, generator)
    cum = torch.bincount(keys, minlength=128).cumsum(0)
    level = int(torch.searchsorted(cum, k))            # first level whose cumulative count reaches k
    below = int(cum[level - 1]) if level > 0 else 0
    mask = keys < level
    tied = (keys == level).nonzero().squeeze(1)
    mask[tied[torch.randperm(tied.numel(), generator=generator)[:k - below]]] = True
    return mask.view(shape), level, k


def test_exact_mask_level_search_equals_the_full_histogram():
    """exact_mask guesses the level from k/n and steps from there; the mask must be the one the
    full histogram gives, including where the guess is off by one either way (densities at a
    multiple of 1/128 put the k-th key on a level boundary about half the time)."""
    steps = {"down": 0, "up": 0}
    for seed in range(30):
        for n, d in ((1000, 0.25), (4096, 0.5), (100_003, 37 / 128), (20_000, 0.9), (3, 0.5), (130, 1 / 128)):
            want, level, k = _reference_exact_mask((n,), d, torch.Generator().manual_seed(seed))
            got = exact_mask((n,), d, torch.Generator().manual_seed(seed))
            assert torch.equal(got, want), (seed, n, d)
            guess = min(127, 128 * k // n)
            steps["down"] += level < guess
            steps["up"] += level > guess
    assert steps["down"] > 0 and steps["up"] > 0, steps


def test_exact_mask_positions_are_uniform():
    """Every position is kept with probability k/n (the procedure treats positions alike; a
    biased key byte would show here as one position in 8 kept more or less often)."""
    g = torch.Generator().manual_seed(5)
    n, d, trials = 16, 0.25, 20_000
    counts = sum(exact_mask((n,), d, g).double() for _ in range(trials))
    p = 4 / 16
    z = (counts / trials - p) / (p * (1 - p) / trials) ** 0.5
    assert float(z.abs().max()) < 4.5, z


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


@pytest.mark.parametrize("policy", ["sparse:0.8", "wide:0.75", "wide:0.75,stem=sparse", "parallel:0.75",
                                    "factorized:0.9", "doped:0.5", "wide:0.75,pattern=block:4"])
def test_kept_weights_are_kaiming_normal_at_the_full_shape(policy):
    """The masks pass draws a fresh sparse weight at its kept entries only (docs/method.md, "Mask
    init"): every kept weight is non-zero and their spread is Kaiming's sqrt(2 / fan_in) of the
    full (widened) shape, for every member, through either route a weight is built by."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    gm = siftc.compile(model, policy=policy, example_inputs=(torch.randn(4, 64),))
    assert gm.siftc.densities
    for q in gm.siftc.densities:
        mod = gm.get_submodule(q)
        kept = mod.weight.detach()[mod.weight_mask]
        assert kept.numel() > 0 and int(torch.count_nonzero(kept)) >= kept.numel() - 1, q   # randn's rare exact 0
        std = math.sqrt(2.0 / math.prod(mod.weight.shape[1:]))
        assert float(kept.std()) == pytest.approx(std, rel=0.25), q
        assert abs(float(kept.mean())) < 0.25 * std, q


def test_verify_catches_kept_weights_whose_init_was_lost(monkeypatch):
    """A fresh sparse weight left zero at its kept entries (an init that never ran) is a verify
    error, not a model that silently cannot train."""
    from siftc.core.members import base
    from siftc.passes import masks
    monkeypatch.setattr(masks, "take_pending_std", lambda module: module.__dict__.pop(base.PENDING_STD, None) and None)
    with pytest.raises(siftc.VerifyError, match="kept weights are zero right after the masks pass"):
        siftc.compile(_mlp(), policy="parallel:0.75", example_inputs=(torch.randn(4, 16),))


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


def test_a_pipeline_without_masks_still_draws_every_weight():
    """substitute defers fresh sparse weights to the masks pass; a pipeline that stops before it
    gets them drawn in full (Kaiming std of the shape), never left zero."""
    gm = siftc.compile(_mlp(), policy="parallel:0.75", pipeline="capture,shape-prop,flops,roles,couple,substitute",
                       example_inputs=(torch.randn(4, 16),))
    from siftc.core.members.base import PENDING_STD
    layers = [m for m in gm.modules() if isinstance(getattr(m, "weight_mask", None), torch.Tensor)]
    assert layers
    for mod in layers:
        assert PENDING_STD not in mod.__dict__
        assert bool(mod.weight_mask.all())                 # no mask drawn: dense
        w = mod.weight.detach()
        assert int(torch.count_nonzero(w)) == w.numel()
        assert float(w.std()) == pytest.approx(math.sqrt(2.0 / math.prod(w.shape[1:])), rel=0.3)


def test_verify_catches_a_weight_non_zero_where_masked():
    gm = siftc.compile(_mlp(), policy="parallel:0.75", example_inputs=(torch.randn(4, 16),))
    q = next(iter(gm.siftc.densities))
    mod = gm.get_submodule(q)
    with torch.no_grad():
        mod.weight.view(-1)[(~mod.weight_mask).flatten().nonzero()[0]] = 0.5
    with pytest.raises(siftc.VerifyError, match=f"module '{q}': weights are non-zero where the mask is False"):
        siftc.compile(gm)


def test_exact_mask_into_a_buffer_is_the_same_mask_and_moves_its_version():
    """Drawn into ``out`` (the masks pass passes the layer's mask buffer): the same mask as a fresh
    one from the same generator state, and the version counter moves (count_mask keys on it)."""
    from siftc.core.masking import count_mask
    buf = torch.ones(37, 29, dtype=torch.bool)
    assert count_mask(buf) == 37 * 29
    before = buf._version
    got = exact_mask((37, 29), 0.3, torch.Generator().manual_seed(5), out=buf)
    assert got is buf and buf._version > before
    assert torch.equal(buf, exact_mask((37, 29), 0.3, torch.Generator().manual_seed(5)))
    assert count_mask(buf) == round(0.3 * 37 * 29)
    with pytest.raises(ValueError, match="contiguous CPU bool tensor of shape"):
        exact_mask((37, 29), 0.3, torch.Generator(), out=torch.ones(29, 37, dtype=torch.bool).t())


@pytest.mark.parametrize("dtype,contiguous", [(torch.float32, True), (torch.float64, True), (torch.bfloat16, True),
                                              (torch.float32, False)])
def test_fill_kept_equals_masked_scatter(dtype, contiguous):
    from siftc.core.masking import fill_kept_
    g = torch.Generator().manual_seed(1)
    mask = exact_mask((40, 30), 0.25, g)
    values = torch.randn(int(mask.sum()), generator=g).to(dtype)
    want = torch.zeros(40, 30, dtype=dtype).masked_scatter_(mask, values)
    weight = torch.zeros(40, 30, dtype=dtype) if contiguous else torch.zeros(30, 40, dtype=dtype).t()
    mask_in = mask if contiguous else mask.t().contiguous().t()
    fill_kept_(weight, mask_in, values)
    assert torch.equal(weight, want)
