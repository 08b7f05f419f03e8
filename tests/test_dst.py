"""DST runtime: mask updates against brute force, masked optimizer state, accumulation, AMP, ledger."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import siftc
from siftc.runtime.dst import drop_fraction, update_mask


def _compiled(policy="parallel:0.75,dst=rigl,dT=2", seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 48), nn.ReLU(), nn.Linear(48, 48), nn.ReLU(), nn.Linear(48, 48),
                          nn.ReLU(), nn.Linear(48, 5))
    return siftc.compile(model, policy=policy, example_inputs=(torch.randn(16, 12),))


def _batches(n, seed=0, batch=16):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 12, generator=g), torch.randint(0, 5, (batch,), generator=g)) for _ in range(n)]


# ---------------------------------------------------------------- update rule vs brute force
@pytest.mark.parametrize("seed", range(5))
def test_rigl_update_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(7, 9, generator=g)
    mask = torch.rand(7, 9, generator=g) < 0.4
    w = w * mask
    grad = torch.randn(7, 9, generator=g)
    k = 5
    new = update_mask(w, mask, k, grow_score=grad)
    # brute force: sort active by |w| ascending, drop k; sort inactive-after-drop by |grad| descending, grow k
    active = [i for i in range(63) if mask.view(-1)[i]]
    drop = set(sorted(active, key=lambda i: abs(w.view(-1)[i].item()))[:k])
    after = [i for i in range(63) if not (bool(mask.view(-1)[i]) and i not in drop)]
    grow = set(sorted(after, key=lambda i: -abs(grad.view(-1)[i].item()))[:k])
    want = torch.zeros(63, dtype=torch.bool)
    for i in range(63):
        want[i] = (bool(mask.view(-1)[i]) and i not in drop) or i in grow
    assert torch.equal(new.view(-1), want)
    assert int(new.sum()) == int(mask.sum())


def test_set_drop_is_magnitude_and_growth_is_uniform_among_inactive():
    w = torch.arange(1, 21, dtype=torch.float32)                 # |w| increasing
    mask = torch.zeros(20, dtype=torch.bool)
    mask[10:] = True
    counts = torch.zeros(20)
    g = torch.Generator().manual_seed(0)
    trials = 3000
    for _ in range(trials):
        new = update_mask(w * mask, mask, 3, grow_score=None, generator=g)
        assert int(new.sum()) == 10
        assert bool(new[13:].all())                              # the 3 smallest active (10,11,12) were dropped...
        counts += new.float()
    grown = counts[:13] / trials                                 # ... and 3 regrown among the 13 inactive-after-drop
    assert torch.allclose(grown, torch.full((13,), 3 / 13), atol=0.04)


def test_drop_fraction_schedule():
    assert drop_fraction(0, 0, 100, 0.3, "cosine") == pytest.approx(0.3)
    assert drop_fraction(50, 0, 100, 0.3, "cosine") == pytest.approx(0.15)
    assert drop_fraction(100, 0, 100, 0.3, "cosine") == pytest.approx(0.0)
    assert drop_fraction(70, 0, 100, 0.3, "constant") == 0.3


# ---------------------------------------------------------------- the runtime on a compiled model
def _check_zero(gm, dst, counts):
    for q, m in dst.modules.items():
        off = ~m.weight_mask
        assert torch.all(m.weight[off] == 0)
        assert int(m.weight_mask.sum()) == counts[q]
        for key, value in dst.optimizer.state.get(m.weight, {}).items():
            if isinstance(value, torch.Tensor) and value.shape == m.weight.shape:
                assert torch.all(value[off] == 0), key


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "sgd-nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-3, amsgrad=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.1),
}


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("method", ["static", "set", "rigl"])
@pytest.mark.parametrize("accum", [1, 3])
def test_masked_weights_and_state_zero_after_every_step(opt_name, method, accum):
    gm = _compiled(f"parallel:0.75,dst={method},dT=2")
    opt = OPTIMIZERS[opt_name](gm.parameters())
    dst = siftc.DST(gm, opt, total_steps=12, accum=accum)
    counts = {q: int(m.weight_mask.sum()) for q, m in dst.modules.items()}
    start = {q: m.weight_mask.clone() for q, m in dst.modules.items()}
    data = iter(_batches(12 * accum))
    for _ in range(12):
        for _ in range(accum):
            x, y = next(data)
            (F.cross_entropy(gm(x), y) / accum).backward()
        opt.step()
        dst.step()
        opt.zero_grad()
        _check_zero(gm, dst, counts)
    moved = any(not torch.equal(start[q], m.weight_mask) for q, m in dst.modules.items())
    assert moved == (method != "static")
    assert dst.updates == (0 if method == "static" else 4)       # t = 2, 4, 6, 8 < 0.75 * 12


def test_amp_with_grad_scaler():
    gm = _compiled("parallel:0.75,dst=rigl,dT=2")
    opt = torch.optim.SGD(gm.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu")
    dst = siftc.DST(gm, opt, total_steps=8)
    counts = {q: int(m.weight_mask.sum()) for q, m in dst.modules.items()}
    for x, y in _batches(8):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(gm(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        dst.step()
        opt.zero_grad()
        _check_zero(gm, dst, counts)
    assert dst.updates == 2


def test_rigl_grows_where_the_dense_gradient_is_largest():
    gm = _compiled("sparse:0.9,dst=rigl,dT=1,drop=0.2,drop_schedule=constant")
    opt = torch.optim.SGD(gm.parameters(), lr=0.0)       # lr 0: weights do not move, only masks
    dst = siftc.DST(gm, opt, total_steps=4)
    q, m = next(iter(dst.modules.items()))
    captured = {}
    m.weight.register_hook(lambda grad: captured.setdefault("g", grad.clone()))
    before = m.weight_mask.clone()
    x, y = _batches(1)[0]
    F.cross_entropy(gm(x), y).backward()
    assert torch.any(captured["g"][~before] != 0)          # DST's capture sees the dense gradient
    assert torch.equal(dst._dense_grads[q], captured["g"])
    assert not torch.any(m.weight.grad[~before] != 0)     # while .grad is masked
    opt.step()
    assert dst.step()
    grown = m.weight_mask & ~before
    k = int(grown.sum())
    # 20% dropped and as many grown; a dropped weight whose gradient ranks high may grow back,
    # so the visible change can be a few fewer
    assert int(m.weight_mask.sum()) == int(before.sum())
    assert round(0.2 * int(before.sum())) - 3 <= k <= round(0.2 * int(before.sum()))
    # every grown position beats every position left inactive that was inactive before
    left = ~m.weight_mask & ~before
    assert captured["g"].abs()[grown].min() >= captured["g"].abs()[left].max()


def test_unknown_optimizer_state_is_a_clear_error():
    gm = _compiled("parallel:0.75,dst=set,dT=2")
    opt = torch.optim.Adagrad(gm.parameters(), lr=0.01)     # its state exists from construction on
    with pytest.raises(siftc.SiftcError, match="Adagrad keeps per-weight state 'sum'"):
        siftc.DST(gm, opt, total_steps=4)


def test_ledger_counts_three_forward_and_rigl_update_cost():
    gm = _compiled("parallel:0.75,dst=rigl,dT=2")
    opt = torch.optim.SGD(gm.parameters(), lr=0.01)
    dst = siftc.DST(gm, opt, total_steps=8)
    rep = siftc.report(gm)
    fs, fd = rep.sparse_flops / 16, rep.budget_flops / 16
    for x, y in _batches(8):
        F.cross_entropy(gm(x), y).backward()
        opt.step()
        dst.step()
        opt.zero_grad()
    f = dst.flops()
    updates = dst.updates
    assert updates == 2                                    # t = 2, 4: begin < t < end = 0.75 * 8 = 6
    want = 16 * ((8 - updates) * 3 * fs + updates * (2 * fs + dst.full_forward))
    assert f["train_flops"] == pytest.approx(want, rel=1e-6)
    assert f["dense_train_flops"] == pytest.approx(16 * 8 * 3 * fd, rel=1e-6)
    assert f["samples"] == 128 and f["steps"] == 8


def test_dst_state_dict_loads_with_weights_only(tmp_path):
    gm = _compiled("parallel:0.75,dst=set,dT=2")
    dst = siftc.DST(gm, torch.optim.SGD(gm.parameters(), lr=0.1), total_steps=4)
    torch.save({"dst": dst.state_dict(), "model": gm.state_dict()}, tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    dst.load_state_dict(state["dst"])
    assert dst.step_count == 0


class _Drift(torch.optim.SGD):
    """An optimizer that moves every weight, zero gradient or not (as a noisy optimizer would)."""

    def step(self, closure=None):
        super().step(closure)
        with torch.no_grad():
            for g in self.param_groups:
                for p in g["params"]:
                    p.add_(1e-3)


def test_dst_notices_an_optimizer_that_moves_masked_weights_and_remasks_every_step():
    """DST no longer re-masks every weight after every step (gradients are masked in place, which
    keeps SGD/Adam/AdamW at zero by themselves); the invariant is checked on the first step and
    every dT steps, and an optimizer that breaks it switches DST to re-masking every step."""
    gm = _compiled("parallel:0.75,dst=set,dT=5")
    opt = _Drift(gm.parameters(), lr=0.01)
    dst = siftc.DST(gm, opt, total_steps=20)
    counts = {q: int(m.weight_mask.sum()) for q, m in dst.modules.items()}
    for i, (x, y) in enumerate(_batches(8)):
        F.cross_entropy(gm(x), y).backward()
        opt.step()
        if i == 0:
            with pytest.warns(UserWarning, match="_Drift changed .* masked weight"):
                dst.step()
        else:
            dst.step()
        opt.zero_grad()
        _check_zero(gm, dst, counts)
    assert dst.remask_every_step


def test_well_behaved_optimizers_keep_masked_weights_zero_without_remasking():
    for make in (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
                 lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1)):
        gm = _compiled("parallel:0.75,dst=rigl,dT=3")
        opt = make(gm.parameters())
        dst = siftc.DST(gm, opt, total_steps=12)
        counts = {q: int(m.weight_mask.sum()) for q, m in dst.modules.items()}
        for x, y in _batches(10):
            F.cross_entropy(gm(x), y).backward()
            opt.step()
            _check_zero(gm, dst, counts)       # before dst.step: the optimizer alone kept them zero
            dst.step()
            opt.zero_grad()
            _check_zero(gm, dst, counts)
        assert dst.updates >= 2 and not dst.remask_every_step


def test_strip_removes_the_gradient_hooks_of_a_deepcopy():
    """strip() of a deepcopy used to leave the copy's gradient hooks on its weights, whose next
    backward then failed looking up the stripped mask."""
    import copy
    from siftc.core.masking import strip
    gm = _compiled()
    plain = copy.deepcopy(gm)
    strip(plain)
    x, y = _batches(1)[0]
    F.cross_entropy(plain(x), y).backward()
    assert all(not getattr(p, "_post_accumulate_grad_hooks", None) for p in plain.parameters())


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("q", [0.001, 0.03, 0.2])
def test_fast_top_k_selects_what_topk_selects(monkeypatch, largest, q):
    """The sampled-threshold top-k of large weights (mask updates) picks the same entries as
    torch.topk: the same set without ties, the same values with many ties (RigL scores of dead
    units are exactly zero)."""
    from siftc.runtime import dst as dst_mod
    monkeypatch.setattr(dst_mod, "FAST_TOPK_MIN", 1000)
    g = torch.Generator().manual_seed(int(q * 1000) + largest)
    x = torch.randn(200_000, generator=g)
    k = round(q * x.numel())
    got = dst_mod.top_k(x, k, largest)
    want = torch.topk(x, k, largest=largest).indices
    assert got.numel() == k and torch.equal(got.sort().values, want.sort().values)
    x[torch.rand(x.numel(), generator=g) < 0.5] = 0.0              # half the entries tie at zero
    got = dst_mod.top_k(x, k, largest)
    assert got.unique().numel() == k
    assert torch.equal(x[got].sort().values, torch.topk(x, k, largest=largest).values.sort().values)


def test_a_compiled_model_trained_under_dst_is_freed():
    """The gradient hook lives on the weight; holding its module strongly made a cycle through
    torch's post-accumulate-grad hooks that the garbage collector cannot see: every compiled
    model stayed alive (+420 MB per compile + DST cycle on resnet18_cifar, and an OOM-killed
    test worker)."""
    import gc
    import weakref
    gm = _compiled()
    opt = torch.optim.SGD(gm.parameters(), lr=0.1, momentum=0.9)
    dst = siftc.DST(gm, opt, total_steps=4)
    for x, y in _batches(3):
        F.cross_entropy(gm(x), y).backward()
        opt.step(); dst.step(); opt.zero_grad()
    ref = weakref.ref(gm)
    weight = weakref.ref(next(iter(dst.modules.values())).weight)
    del gm, opt, dst
    gc.collect()
    assert ref() is None and weight() is None
