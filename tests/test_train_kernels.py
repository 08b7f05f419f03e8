"""Sparse kernels in training (policy kernels=auto|csr|sparseprop): exact against masked dense.

Oracle: the masked dense nn.Linear with its gradient mask. A SparseTrainLinear must give the same
output, the same input gradient and, at the kept positions, the same weight gradient (float64:
to rounding); a model compiled with kernels=csr must train to the same weights as one compiled
with kernels=dense. Timing lives in ``siftc bench train``, not here.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models_zoo
import siftc
from conftest import resume_after_checkpoint
from siftc.core import train_kernels as tk

BACKENDS = ["csr"] + (["sparseprop"] if tk.sparseprop_available() else [])


def _masked_linear(n_in, n_out, density, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(n_in, n_out, dtype=dtype)
    mask = torch.rand(n_out, n_in, generator=g) < density
    mask[3] = False                                   # an empty row
    mask[:, 5] = False                                # an empty column
    with torch.no_grad():
        lin.weight.mul_(mask)
    lin.register_buffer("weight_mask", mask)
    return lin


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(2, 40), (3, 7, 40)])     # rows, and a (batch, seq, features) input
def test_sparse_linear_equals_masked_dense_forward_and_backward(backend, shape):
    dtype = torch.float32 if backend == "sparseprop" else torch.float64     # sparseprop is float32 only
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    dense = _masked_linear(40, 24, 0.15, dtype)
    sparse = tk.SparseTrainLinear.from_linear(copy.deepcopy(dense), backend)
    x = torch.randn(shape, dtype=dtype)
    xd, xs = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(*shape[:-1], 24, dtype=dtype)
    yd, ys = dense(xd), sparse(xs)
    assert ys.shape == yd.shape and torch.allclose(ys, yd, atol=tol, rtol=0)
    yd.backward(g)
    ys.backward(g)
    assert torch.allclose(xs.grad, xd.grad, atol=tol, rtol=0)
    mask = dense.weight_mask
    assert torch.allclose(sparse.values.grad, dense.weight.grad[mask], atol=tol, rtol=0)
    assert torch.allclose(sparse.bias.grad, dense.bias.grad, atol=tol, rtol=0)
    assert torch.equal(sparse.weight, dense.weight) and torch.equal(sparse.to_linear().weight, dense.weight)


def test_kernels_csr_trains_to_the_same_weights_as_masked_dense():
    """Same model, policy and seed, kernels=csr vs kernels=dense: 6 momentum-SGD steps end with the
    same weights (to float32 rounding), zeros where masked, and the same masks."""
    x = models_zoo.example_inputs("mlp", 16)
    y = torch.randint(0, 10, (16,))
    models = {}
    for kernels in ("dense", "csr"):
        gm = siftc.compile(models_zoo.create("mlp"), policy=f"wide:0.9,stem=sparse,kernels={kernels}",
                           example_inputs=x)
        opt = torch.optim.SGD(gm.parameters(), lr=0.05, momentum=0.9)
        for _ in range(6):
            F.cross_entropy(gm(*x), y).backward()
            opt.step()
            opt.zero_grad()
        models[kernels] = gm
    dense, csr = models["dense"], models["csr"]
    swapped = [q for q, m in csr.named_modules() if isinstance(m, tk.SparseTrainLinear)]
    assert swapped == list(dense.siftc.masks())           # every masked linear, forced
    for q in swapped:
        a, b = dense.get_submodule(q), csr.get_submodule(q)
        assert torch.equal(a.weight_mask, b.weight_mask)
        assert torch.allclose(a.weight, b.weight, atol=1e-5) and not torch.any(b.weight[~b.weight_mask] != 0)
    # the kept values are the parameters: the optimizer steps over no masked position
    masked_out = sum(int((~m).sum()) for m in dense.siftc.masks().values())
    assert sum(p.numel() for p in csr.parameters()) == sum(p.numel() for p in dense.parameters()) - masked_out


def test_kernels_auto_records_measured_decisions_in_the_report():
    x = models_zoo.example_inputs("mlp", 32)
    gm = siftc.compile(models_zoo.create("mlp"), policy="wide:0.9,stem=sparse,kernels=auto", example_inputs=x)
    decisions = gm.siftc.state.kernels
    assert set(decisions) == set(gm.siftc.masks())
    for q, d in decisions.items():
        assert d["use"] == "training" and d["dense_ms"] > 0 and d["sparse_ms"] > 0
        assert isinstance(gm.get_submodule(q), tk.SparseTrainLinear) == (d["kernel"] != "dense")
    assert "training kernel | layer" in str(siftc.report(gm))


def test_a_kernels_model_exports_to_onnx_saves_and_loads(tmp_path):
    x = models_zoo.example_inputs("mlp", 4)
    gm = siftc.compile(models_zoo.create("mlp"), policy="wide:0.9,stem=sparse,kernels=csr", example_inputs=x)
    proto = siftc.compile(gm, target="onnx", path=str(tmp_path / "m.onnx"))     # layers back to masked dense
    assert siftc.onnx_check(proto, gm, x).max_rel_err < 1e-4      # raises past rtol too
    assert any(isinstance(m, tk.SparseTrainLinear) for m in gm.modules())    # the user's model untouched
    siftc.save(gm, tmp_path / "ckpt")
    back = siftc.load(tmp_path / "ckpt")
    assert [type(m).__name__ for m in back.modules()] == [type(m).__name__ for m in gm.modules()]
    gm.eval()
    back.eval()
    with torch.no_grad():
        assert torch.equal(back(*x), gm(*x))
    back.train()
    F.cross_entropy(back(*x), torch.zeros(4, dtype=torch.long)).backward()
    assert all(m.values.grad is not None for m in back.modules() if isinstance(m, tk.SparseTrainLinear))


def test_rigl_swaps_in_kernels_at_its_end_fraction_with_the_optimizer_state():
    """dst=rigl,kernels=csr: masks move until the end fraction, then DST swaps the masked linears
    for sparse kernels and moves their momentum to the kept values. Against the same run with
    kernels=dense: the same mask updates, the same masks, the same weights at the end."""
    x = models_zoo.example_inputs("mlp", 16)
    y = torch.randint(0, 10, (16,))
    runs = {}
    for kernels in ("dense", "csr"):
        gm = siftc.compile(models_zoo.create("mlp"), example_inputs=x,
                           policy=f"wide:0.9,stem=sparse,dst=rigl,dT=2,end=0.5,kernels={kernels}")
        assert not any(isinstance(m, tk.SparseTrainLinear) for m in gm.modules())   # masks still move
        opt = torch.optim.SGD(gm.parameters(), lr=0.05, momentum=0.9)
        dst = siftc.DST(gm, opt, total_steps=16)
        kinds = []
        for _ in range(16):
            F.cross_entropy(gm(*x), y).backward()
            opt.step()
            dst.step()
            opt.zero_grad()
            kinds.append(sum(isinstance(m, tk.SparseTrainLinear) for m in gm.modules()))
        runs[kernels] = (gm, dst, kinds)
    (dense, dst_d, _), (csr, dst_c, kinds) = runs["dense"], runs["csr"]
    assert dst_c.updates == dst_d.updates >= 3
    assert kinds[:7] == [0] * 7 and kinds[8:] == [len(dense.siftc.masks())] * 8     # swapped at step 8 = end
    for q in dense.siftc.masks():
        a, b = dense.get_submodule(q), csr.get_submodule(q)
        assert torch.equal(a.weight_mask, b.weight_mask)
        assert torch.allclose(a.weight, b.weight, atol=1e-5), q      # momentum carried over, not reset


def test_what_kernels_cannot_do_is_refused(monkeypatch):
    x = models_zoo.example_inputs("mlp", 2)
    gm = siftc.compile(models_zoo.create("mlp"), policy="sparse:0.9,kernels=csr", example_inputs=x)
    opt = torch.optim.SGD(gm.parameters(), lr=0.1)
    dst = siftc.DST(gm, opt, total_steps=10, method="set", dT=2)     # static kernels, then asked to move them
    dst.step()
    with pytest.raises(siftc.SiftcError, match="mask update is due, but .* train through sparse kernels"):
        dst.step()
    monkeypatch.setattr(tk, "sparseprop_available", lambda: False)
    with pytest.raises(siftc.UsageError, match="needs the sparseprop package"):
        siftc.compile(models_zoo.create("mlp"), policy="sparse:0.9,kernels=sparseprop", example_inputs=x)


def test_a_run_resumes_after_dst_swapped_in_the_kernels(tmp_path):
    """RigL with kernels=csr swaps at its end fraction; saved after that (siftc.save, with the
    optimizer and DST state) and resumed on the loaded model, the run ends where the original does."""
    x = models_zoo.example_inputs("mlp", 16)
    y = torch.randint(0, 10, (16,))
    gm = siftc.compile(models_zoo.create("mlp"), example_inputs=x,
                       policy="wide:0.9,stem=sparse,dst=rigl,dT=2,end=0.5,kernels=csr")
    _, back, _ = resume_after_checkpoint(gm, lambda m: F.cross_entropy(m(*x), y), siftc.save, siftc.load,
                                         tmp_path / "m", total_steps=16, before=10)
    # saved after step 10: DST had swapped the kernels in at step 8
    assert any(isinstance(m, tk.SparseTrainLinear) for m in back.modules())
    a, b = gm.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_target_cuda_keeps_dense_layers_and_says_so():
    """The kernel choice is timed on the CPU: for target cuda the layers stay dense-with-zeros,
    with a warning (on a machine without CUDA the compiled graph stays on the CPU as well)."""
    x = models_zoo.example_inputs("mlp", 2)
    with pytest.warns(UserWarning, match="sparse training kernels are measured and run on the CPU only"):
        gm = siftc.compile(models_zoo.create("mlp"), target="cuda", policy="sparse:0.9,kernels=csr", example_inputs=x)
    assert not any(isinstance(m, tk.SparseTrainLinear) for m in gm.modules())


def test_kernel_measurement_times_the_input_gradient_and_leaves_the_model_as_it_was():
    """lower-train's measuring forward: a layer reading the model's input is timed without an
    input gradient, the others with one (training computes it); the forward moves neither a
    train-mode BatchNorm's running statistics nor the random stream (dropout)."""
    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(16, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 64),
                             nn.ReLU(), nn.Linear(64, 4)).train()
    x = (torch.randn(32, 16),)
    gm = siftc.compile(make(), policy="sparse:0.9,stem=sparse,head=sparse", example_inputs=x)
    needs = {q: grad for q, (_, _, grad) in tk.input_shapes(gm, x, tk.eligible, autograd=True)[0].items()}
    assert needs == {"0.W": False, "4.W": True, "6.W": True}      # (member sparse: layer.W is the masked linear)
    stats = {k: v.clone() for k, v in gm.state_dict().items() if "running" in k or "num_batches" in k}
    rng = torch.get_rng_state()
    tk.lower_for_training(gm, x, "csr")
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(gm.state_dict()[k], v) for k, v in stats.items())


def test_dst_does_no_work_on_layers_running_through_sparse_kernels():
    """Under siftc.DST a kernels=auto step did a dense rebuild of every swapped layer before each
    optimizer step (its ``weight`` property): 3.2x the step of the MLP without DST. Counted, not
    timed: the tensor operations of an optimizer step plus DST.step() equal those of the same
    optimizer step without DST (static masks; every masked layer on a kernel)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops += 1
            return func(*args, **(kwargs or {}))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    x, y = torch.randn(16, 64), torch.randint(0, 10, (16,))
    runs = {}
    for with_dst in (False, True):
        gm = siftc.compile(copy.deepcopy(model), policy="wide:0.9,stem=sparse,head=sparse,kernels=csr",
                           example_inputs=(x,))
        assert all(isinstance(gm.get_submodule(q), tk.SparseTrainLinear) for q in gm.siftc.masks())
        opt = torch.optim.SGD(gm.parameters(), lr=0.01, momentum=0.9)
        dst = siftc.DST(gm, opt, total_steps=100, method="static") if with_dst else None
        counts = []
        for _ in range(3):
            F.cross_entropy(gm(x), y).backward()
            with Count() as c:
                opt.step()
                if dst is not None:
                    dst.step()
            opt.zero_grad()
            counts.append(c.ops)
        runs[with_dst] = counts
    assert runs[True][1:] == runs[False][1:], runs       # after step 1 (its one-time check of dense layers)
