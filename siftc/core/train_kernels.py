"""Sparse kernels for training (policy ``kernels=auto|csr|sparseprop``): masked linears whose masks
do not move train through a sparse matmul instead of a dense one with zeros.

A masked ``nn.Linear`` becomes a ``SparseTrainLinear``: its parameter is the kept values only
(``values``, in the mask's row-major order, in the place ``weight`` had among the parameters),
its mask stays as its mask buffer (siftc/core/mask_api.py), and ``weight`` is a dense copy made on request (for
reports, export, checks). Forward and backward cost what the kept weights cost:

- forward ``y = x W^T``: ``W_csr @ x^T`` (torch's CSR x dense matmul, MKL on CPU);
- gradient of the input ``g W``: the same with the transposed structure (built once, the
  values gathered by a fixed permutation);
- gradient of the values: ``(g^T x)`` at the kept positions only, a sampled dense-dense matmul
  (``torch.sparse.sampled_addmm``), never the dense weight gradient;
- the optimizer steps over nnz values, not over the widened dense weight.

``sparseprop`` (Nikdan et al., ICML 2023; ``pip install sparseprop``, a C++ extension) is a second
backend for float32 on CPU when it is installed. Which one runs is decided per layer by
``choose``: forward + backward + an update of the layer at the input shape it sees on the example
inputs (so give example inputs at the training batch size), dense-with-zeros (plus the gradient
mask) against each kernel, interleaved min-of-N with a re-check as for the inference kernels
(siftc/core/kernels.py); a kernel must win by 10%.

Only masks that do not move: the dense gradient SET/RigL rank by does not exist here. With
``dst=static`` the lower-train pass swaps at compile; with SET/RigL ``siftc.DST`` swaps at the end
fraction, when masks stop moving. docs/api.md, "Sparse kernels in training", has the measurements.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from . import ops
from .mask_api import add_mask, is_masked, mask_of
from .kernels import MARGIN, input_shapes, race

BACKENDS = ("csr", "sparseprop")


def sparseprop_available() -> bool:
    try:
        import sparseprop.modules.functions  # noqa: F401
    except ImportError:
        return False
    return True


class _Layout:
    """The mask's CSR structure and that of its transpose, made once per mask."""

    def __init__(self, mask: torch.Tensor):
        rows, cols = mask.shape
        idx = mask.nonzero()                                   # row-major: the order of ``values``
        self.shape = (rows, cols)
        self.crow = torch.zeros(rows + 1, dtype=torch.int64, device=mask.device)
        self.crow[1:] = torch.cumsum(mask.sum(1), 0)
        self.col = idx[:, 1].contiguous()
        self.tperm = torch.argsort(idx[:, 1] * rows + idx[:, 0])   # values -> column-major order
        self.tcrow = torch.zeros(cols + 1, dtype=torch.int64, device=mask.device)
        self.tcrow[1:] = torch.cumsum(mask.sum(0), 0)
        self.tcol = idx[self.tperm, 0].contiguous()
        self.nnz = idx.shape[0]
        self._spp = None

    def sparseprop_index(self):
        if self._spp is None:
            self._spp = (self.crow.to(torch.int32), self.col.to(torch.int32))
        return self._spp


def _csr(crow, col, values, shape):
    with warnings.catch_warnings():       # "Sparse CSR tensor support is in beta": not the user's concern
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


class _CSRLinearFn(torch.autograd.Function):
    """rows (N x in) -> rows @ W^T with W = CSR(layout, values); gradients for rows and values."""

    @staticmethod
    def forward(ctx, rows, values, layout):
        ctx.layout = layout
        ctx.save_for_backward(rows, values)
        return (_csr(layout.crow, layout.col, values, layout.shape) @ rows.t()).t()

    @staticmethod
    def backward(ctx, grad):
        rows, values = ctx.saved_tensors
        L = ctx.layout
        grad_rows = grad_values = None
        if ctx.needs_input_grad[0]:
            wt = _csr(L.tcrow, L.tcol, values.index_select(0, L.tperm), (L.shape[1], L.shape[0]))
            grad_rows = (wt @ grad.t()).t()
        if ctx.needs_input_grad[1]:
            # zeros, not empty: sampled_addmm computes beta * input even for beta=0, and
            # uninitialised memory holding a NaN made 0 * NaN = NaN gradients now and then
            pattern = _csr(L.crow, L.col, torch.zeros_like(values), L.shape)
            grad_values = torch.sparse.sampled_addmm(pattern, grad.t().contiguous(), rows, beta=0.0).values()
        return grad_rows, grad_values, None


class SparseTrainLinear(nn.Module):
    """A masked linear trained through a sparse kernel: ``values`` (the kept weights), ``bias``,
    the weight's mask (its index structure); ``weight`` is a dense copy on request."""

    def __init__(self, in_features: int, out_features: int, nnz: int, bias: bool = True, backend: str = "csr"):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"SparseTrainLinear backend {backend!r}; allowed: {', '.join(BACKENDS)}")
        self.in_features, self.out_features, self.nnz, self.backend = in_features, out_features, nnz, backend
        self.values = nn.Parameter(torch.empty(nnz))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        add_mask(self, "weight", torch.zeros(out_features, in_features, dtype=torch.bool))
        self._layout, self._layout_key = None, None

    @classmethod
    def from_linear(cls, linear: nn.Linear, backend: str = "csr") -> "SparseTrainLinear":
        mask = mask_of(linear)
        w = linear.weight.detach()
        with torch.device(w.device):
            new = cls(linear.in_features, linear.out_features, int(mask.sum()), linear.bias is not None, backend)
        new.to(w.dtype)
        new.values = nn.Parameter(w[mask].clone(), requires_grad=linear.weight.requires_grad)   # row-major
        if linear.bias is not None:
            new.bias = linear.bias          # the same Parameter: nothing about the bias changes
        add_mask(new, "weight", mask.clone())
        new.train(linear.training)
        return new

    def layout(self) -> _Layout:
        mask = mask_of(self)
        key = (mask.data_ptr(), mask._version, mask.device)
        if key != self._layout_key:          # a new or loaded mask
            layout = _Layout(mask)
            if layout.nnz != self.values.numel():
                raise RuntimeError(f"SparseTrainLinear: the mask keeps {layout.nnz} weights but values holds "
                                   f"{self.values.numel()}; load a state_dict saved from the same model")
            self._layout, self._layout_key = layout, key
        return self._layout

    @property
    def weight(self) -> torch.Tensor:
        mask = mask_of(self)
        w = torch.zeros(mask.shape, dtype=self.values.dtype, device=self.values.device)
        w[mask] = self.values.detach()
        return w

    def to_linear(self) -> nn.Linear:
        """The masked dense nn.Linear of the same weights (zeros off the mask), with its mask."""
        with torch.device(self.values.device):
            lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, dtype=self.values.dtype)
        lin.weight = nn.Parameter(self.weight, requires_grad=self.values.requires_grad)
        if self.bias is not None:
            lin.bias = self.bias
        add_mask(lin, "weight", mask_of(self).clone())
        lin.train(self.training)
        return lin

    def forward(self, x):
        rows = x.reshape(-1, self.in_features)
        layout = self.layout()
        if self.backend == "sparseprop":
            from sparseprop.modules.functions import SparseLinearFunction
            y = SparseLinearFunction.apply(rows.contiguous(), self.values, layout.sparseprop_index(), None,
                                           self.out_features)
        else:
            y = _CSRLinearFn.apply(rows, self.values, layout)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, nnz={self.nnz} "
                f"({self.nnz / max(1, self.in_features * self.out_features):.3f}), {self.backend}")


# a SparseTrainLinear costs what the masked linear it replaces costs (the registry's linear rule
# reads the mask); nothing rewrites it again
ops.register_module(SparseTrainLinear, ops.ModuleRule("sparse-train-linear", "linear", ops.linear_cost,
                                                      weight="linear"))


def eligible(mod: nn.Module) -> bool:
    return type(mod) is nn.Linear and is_masked(mod) \
        and mod.weight.dtype in (torch.float32, torch.float64) and mod.weight.device.type != "meta"


def _candidates(mod: nn.Module, kernels: str) -> list:
    if kernels != "auto":
        return [kernels]
    out = ["csr"]
    if sparseprop_available() and mod.weight.device.type == "cpu" and mod.weight.dtype == torch.float32:
        out.append("sparseprop")
    return out


def _step_fn(mod: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    """One forward + backward + SGD-like update of ``mod`` (a private copy): what a training step
    spends on this layer (the input's gradient too when ``x`` requires one)."""
    params = [p for p in mod.parameters() if p.requires_grad]
    mask = mask_of(mod)
    maskf = mask.to(mod.weight.dtype) if type(mod) is nn.Linear and mask is not None else None

    def step():
        x.grad = None
        mod(x).backward(grad)
        if maskf is not None:
            mod.weight.grad.mul_(maskf)          # what the gradient-mask hook does
        with torch.no_grad():
            for p in params:
                p.add_(p.grad, alpha=-1e-9)
                p.grad = None
    return step


def choose(mod: nn.Module, input_shape: tuple, kernels: str = "auto", repeat: int = 5, seed: int = 0,
           input_grad: bool = True) -> dict:
    """{"kernel": "dense" | backend, "speedup", "dense_ms", "sparse_ms", "density"} for training
    ``mod`` at ``input_shape``, the gradient of its input computed when ``input_grad`` (as training
    does for every layer but one reading the model's input); ``kernels`` other than auto forces
    that backend (still timed)."""
    import copy
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(input_shape, generator=g, dtype=mod.weight.dtype).to(mod.weight.device)
    x.requires_grad_(input_grad)
    grad = torch.randn((*input_shape[:-1], mod.out_features), generator=g, dtype=mod.weight.dtype).to(x.device)
    density = float(mask_of(mod).float().mean())
    dense = copy.deepcopy(mod)
    for h in list(dense._forward_pre_hooks):          # the copy runs bare: its step masks by hand
        del dense._forward_pre_hooks[h]
    fns = {"dense": _step_fn(dense, x, grad)}
    for backend in _candidates(mod, kernels):
        fns[backend] = _step_fn(SparseTrainLinear.from_linear(copy.deepcopy(dense), backend), x, grad)
    best, speedup, timed = race(fns, repeat, recheck=kernels == "auto")
    chosen = best if kernels != "auto" or speedup >= MARGIN else "dense"
    return {"kernel": chosen, "speedup": round(speedup, 3), "dense_ms": round(timed["dense"], 4),
            "sparse_ms": round(timed[best], 4), "density": round(density, 4), "use": "training"}


def lower_for_training(model: nn.Module, example_inputs: tuple, kernels: str = "auto") -> dict:
    """Swap every eligible masked linear of ``model`` for a SparseTrainLinear where ``choose``
    says so (every one for a forced backend). Returns {module path: decision}."""
    shapes, _ = input_shapes(model, example_inputs, eligible, autograd=True)
    decisions = {}
    for name, (shape, _, input_grad) in shapes.items():
        mod = model.get_submodule(name)
        decisions[name] = d = choose(mod, shape, kernels, input_grad=input_grad)
        if d["kernel"] != "dense":
            model.set_submodule(name, SparseTrainLinear.from_linear(mod, d["kernel"]))
    return decisions


def to_dense_layers(model: nn.Module) -> int:
    """Swap every SparseTrainLinear of ``model`` back to its masked dense nn.Linear, in place
    (ONNX export and anything else that wants plain layers). Returns how many."""
    names = [n for n, m in model.named_modules() if isinstance(m, SparseTrainLinear)]
    for n in names:
        model.set_submodule(n, model.get_submodule(n).to_linear())
    return len(names)
