"""Sparse inference kernels for CPU and the measurements that decide where they are used.

(BSR: with ``pattern=block:B`` masks the same classes hold the weight as BSR with BxB blocks,
timed next to CSR; the faster one is used where it beats dense.)

``CSRLinear`` computes ``(W_csr @ x.T).T + b``: torch's CSR x dense matmul, the form that wins on
CPU (docs/measurements.md: ``F.linear`` with a CSR weight is 3-8x slower at batch >= 32). ``CSRConv2d`` does
a conv as im2col (``F.unfold``) + the same sparse matmul (a 1x1 stride-1 conv skips the unfold).
Whether a layer gets one is decided by ``choose``: a micro-benchmark of the dense op against the
sparse one at the layer's real weight, input shape and batch (from the example inputs): the
candidates are called in turn, round after round, and each keeps its fastest time (a busy spell
hits all of them, and the minimum is what the kernel can do); a sparse kernel must beat dense by
a margin, and a second, independent measurement must agree, so noise cannot flip a decision
(one layer once measured "161x faster" on a busy machine with a median of 5). Decisions are cached
in-process by (kind, shapes, density bucket, threads), so compiling the same model again (or one
with the same layer shapes) does not re-measure.

A lowered module keeps its weight's mask (so reports and FLOP counts work as before) and offers
``weight`` as a dense copy made on request.
"""
from __future__ import annotations

import math
import time

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from .mask_api import add_mask, is_masked, mask_of

MARGIN = 1.10             # the sparse kernel must be at least 10% faster to be chosen
_DECISIONS: dict = {}     # cache key -> (speedup, dense_ms, sparse_ms)


def _np_dtype(dtype: torch.dtype):
    import numpy as np
    return np.float64 if dtype == torch.float64 else np.float32


def _compress(w2d: torch.Tensor, blocksize):
    """CSR, or BSR with BxB blocks (for block-structured masks)."""
    with warnings.catch_warnings():       # torch's "Sparse CSR tensor support is in beta": not the user's concern
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return w2d.to_sparse_bsr((blocksize, blocksize)) if blocksize else w2d.to_sparse_csr()


def mkl_available() -> bool:
    """Whether MKL's sparse x dense product can run (``pip install sparse-dot-mkl mkl``). The
    pip ``mkl`` package puts ``libmkl_rt`` in the environment's lib folder, where the loader does
    not look: it is named to sparse_dot_mkl through ``MKL_RT``."""
    import glob
    import os
    import sys
    if "MKL_RT" not in os.environ:
        found = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
        if found:
            os.environ["MKL_RT"] = found[0]
    try:
        import sparse_dot_mkl  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


class _SparseKernel(nn.Module):
    """What the kernels keep of the masked layer: its weight as an (out x rest) CSR/BSR matrix,
    its mask, its bias (frozen), and the weight's shape for a dense copy on request. ``mkl``: the
    product runs in MKL's sparse BLAS (sparse_dot_mkl, on a scipy CSR copy of the weight) instead
    of torch's CSR matmul: 2.8x faster for one row on gpt3_small's MLP weight, about even from
    32 rows on (docs/results.md); ``choose`` times both."""

    def __init__(self, layer: nn.Module, blocksize=None, mkl: bool = False):
        super().__init__()
        w = layer.weight.detach()
        self.blocksize = blocksize
        self.mkl = mkl and not blocksize
        self._shape = tuple(w.shape)
        self.register_buffer("weight_csr", _compress(w.reshape(w.shape[0], -1), blocksize))
        add_mask(self, "weight", mask_of(layer).clone())
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
        self._scipy = None

    def _spmm(self, cols: torch.Tensor) -> torch.Tensor:
        """W (out x K) @ cols (K x N)."""
        # fake tensors (shape propagation), tracing and other devices take torch's kernel: MKL
        # runs on the numbers of a real CPU tensor only
        if not self.mkl or type(cols) is not torch.Tensor or cols.device.type != "cpu" \
                or cols.dtype not in (torch.float32, torch.float64) or torch.compiler.is_compiling() or torch.jit.is_tracing():
            return self.weight_csr @ cols
        import sparse_dot_mkl
        if self._scipy is None or self._scipy.dtype != _np_dtype(cols.dtype):
            import scipy.sparse
            c = self.weight_csr
            self._scipy = scipy.sparse.csr_matrix(
                (c.values().to(cols.dtype).numpy(), c.col_indices().numpy(), c.crow_indices().numpy()),
                shape=tuple(c.shape))
        sparse_dot_mkl.mkl_set_num_threads_local(torch.get_num_threads())
        return torch.from_numpy(sparse_dot_mkl.dot_product_mkl(self._scipy, cols.detach().contiguous().numpy()))

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_csr.to_dense().reshape(self._shape)

    @property
    def layout(self) -> str:
        return "bsr" if self.blocksize else "mkl" if self.mkl else "csr"

    def _format(self) -> str:
        b = self.blocksize
        return f"nnz={self.weight_csr.values().numel()}, " + (f"BSR {b}x{b}" if b else "CSR (MKL)" if self.mkl else "CSR")


class CSRLinear(_SparseKernel):
    """y = (W_csr @ x.T).T + b over the last dim of x; W stored as CSR (or BSR: ``blocksize``)."""

    def __init__(self, linear: nn.Linear, blocksize=None, mkl: bool = False):
        super().__init__(linear, blocksize, mkl)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x):
        rows = x.reshape(-1, self.in_features)
        y = self._spmm(rows.T).T
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, {self._format()}"


class CSRConv2d(_SparseKernel):
    """A conv as im2col + W_csr (out x in*kh*kw) @ columns; NCHW in and out."""

    def __init__(self, conv: nn.Conv2d, blocksize=None, mkl: bool = False):
        super().__init__(conv, blocksize, mkl)
        self.out_channels, self.in_channels = conv.out_channels, conv.in_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation
        self.pointwise = self.kernel_size == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0)

    def forward(self, x):
        B, _, H, W = x.shape
        kh, kw = self.kernel_size
        Ho = (H + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        Wo = (W + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        if self.pointwise:
            cols = x.transpose(0, 1).reshape(self.in_channels, B * H * W)
        else:
            unf = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)   # B, C*kh*kw, L
            cols = unf.transpose(0, 1).reshape(unf.shape[1], B * unf.shape[2])
        y = self._spmm(cols).reshape(self.out_channels, B, Ho, Wo).transpose(0, 1)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y.contiguous()

    def extra_repr(self) -> str:
        return (f"{self.in_channels}->{self.out_channels}, kernel={self.kernel_size}, stride={self.stride}, "
                f"im2col + {self._format()}")


# Lowered kernels cost what the masked layers they replace cost (the op registry's linear/conv rules
# read the mask's shape); nothing rewrites them again.
ops.register_module(CSRLinear, ops.ModuleRule("csr-linear", "linear", ops.linear_cost, weight="linear"))
ops.register_module(CSRConv2d, ops.ModuleRule("csr-conv", "conv", ops.conv_cost, weight="conv"))


def lowerable(mod: nn.Module) -> bool:
    if not is_masked(mod):
        return False
    if type(mod) is nn.Linear:
        return True
    return type(mod) is nn.Conv2d and mod.groups == 1 and mod.padding_mode == "zeros" \
        and not isinstance(mod.padding, str)


def lower(mod: nn.Module, kernel: str = "csr", blocksize=None) -> nn.Module:
    """The kernel module for ``kernel``: "csr" (torch), "bsr" (torch, ``blocksize``), "mkl"."""
    b = blocksize if kernel == "bsr" else None
    cls = CSRLinear if isinstance(mod, nn.Linear) else CSRConv2d
    return cls(mod, b, mkl=kernel == "mkl")


def interleaved_min_ms(fns: dict, repeat: int, clock=time.perf_counter) -> dict:
    """{name: fastest wall time in ms} of each of ``fns`` over ``repeat`` rounds, each round
    calling every fn once in turn, after one warm-up call each."""
    for fn in fns.values():
        fn()                              # warm-up (allocations, CSR index setup)
    best = {k: math.inf for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            start = clock()
            fn()
            best[k] = min(best[k], clock() - start)
    return {k: 1000 * v for k, v in best.items()}


def race(fns: dict, repeat: int, recheck: bool = True) -> tuple:
    """(fastest non-dense candidate, its speedup over ``fns["dense"]``, {name: ms}): interleaved
    min-of-``repeat``; a win of at least ``MARGIN`` is measured again, dense against the winner
    alone, and the smaller of the two speedups is kept, so one lucky run cannot decide."""
    timed = interleaved_min_ms(fns, repeat)
    best = min((k for k in timed if k != "dense"), key=timed.get)
    speedup = timed["dense"] / timed[best] if timed[best] > 0 else math.inf
    if recheck and speedup >= MARGIN:
        again = interleaved_min_ms({"dense": fns["dense"], best: fns[best]}, repeat)
        second = again["dense"] / again[best] if again[best] > 0 else math.inf
        if second < speedup:
            speedup, timed = second, {**timed, **again}
    return best, speedup, timed


def input_shapes(model: nn.Module, example_inputs: tuple, wanted, autograd: bool = False) -> tuple:
    """({module path: (shape, dtype, needs_grad) of its first input}, the model's output) for
    every module ``wanted(module)`` accepts, from one run on ``example_inputs``: without autograd
    (inference), or with it (``autograd``; its graph dropped), where ``needs_grad`` says whether
    training computes that input's gradient (every layer but one reading the model's input). The
    run is a measurement: a train-mode norm's running statistics and the random stream (dropout)
    are left as they were."""
    shapes: dict = {}
    handles = []
    for name, mod in model.named_modules():
        if wanted(mod):
            def record(m, args, name=name):
                if name not in shapes and args and isinstance(args[0], torch.Tensor):
                    shapes[name] = (tuple(args[0].shape), args[0].dtype, bool(args[0].requires_grad))
            handles.append(mod.register_forward_pre_hook(record))
    kept = {n: b.clone() for n, b in model.named_buffers() if b.is_floating_point() or n.endswith("num_batches_tracked")}
    try:
        with torch.set_grad_enabled(autograd), torch.random.fork_rng(devices=[]):
            out = model(*example_inputs)
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for n, b in model.named_buffers():
                if n in kept:
                    b.copy_(kept[n])
    return shapes, out


def choose(mod: nn.Module, example_input: torch.Tensor, blocksize=None, repeat: int = 7) -> dict:
    """Measure ``mod`` (dense) against its CSR kernel (and BSR with ``blocksize``) on
    ``example_input``; cached. Returns {"kernel": "csr" | "bsr" | "mkl" | "dense", "speedup": dense_ms /
    best sparse ms, "dense_ms", "sparse_ms", "density"}; a kernel is chosen when it is at least
    ``MARGIN`` faster than dense in two independent interleaved min-of-``repeat`` measurements
    (the reported speedup is the smaller of the two).
    """
    mask = mask_of(mod)
    density = float(torch.count_nonzero(mask)) / mask.numel()
    rows = mod.weight.shape[0]
    cols = mod.weight.numel() // rows
    if blocksize and (rows % blocksize or cols % blocksize):
        blocksize = None
    key = (type(mod).__name__, tuple(mod.weight.shape), tuple(example_input.shape), blocksize,
           getattr(mod, "stride", None), getattr(mod, "padding", None), round(density, 2), torch.get_num_threads(),
           mkl_available())
    if key not in _DECISIONS:
        x = example_input.detach()
        with torch.no_grad():
            fns = {"dense": lambda: mod(x)}
            kernels = ["csr", "bsr"] if blocksize else ["csr"]
            if mkl_available() and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
                kernels.append("mkl")
            for kernel in kernels:
                fns[kernel] = (lambda sparse: lambda: sparse(x))(lower(mod, kernel, blocksize))
            best, speedup, timed = race(fns, repeat)
        _DECISIONS[key] = (best, speedup, timed["dense"], timed[best])
    best, speedup, dense_ms, sparse_ms = _DECISIONS[key]
    return {"kernel": best if speedup >= MARGIN else "dense", "speedup": round(speedup, 3),
            "dense_ms": round(dense_ms, 4), "sparse_ms": round(sparse_ms, 4), "density": round(density, 4),
            "blocksize": blocksize if best == "bsr" else None}


def lower_tree(model: nn.Module, example_inputs: tuple, blocksize=None, seed: int = 0) -> tuple:
    """Measure every lowerable module of ``model`` at the input shape it sees on ``example_inputs``
    and swap in its sparse kernel where that is faster. Returns ({module path: decision}, the
    unlowered model's output on ``example_inputs``, from the run that recorded the shapes)."""
    shapes, reference = input_shapes(model, example_inputs, lowerable)
    g = torch.Generator().manual_seed(seed)
    decisions = {}
    for name, (shape, dtype, _) in shapes.items():
        mod = model.get_submodule(name)
        decisions[name] = d = choose(mod, torch.randn(shape, generator=g, dtype=dtype), blocksize)
        if d["kernel"] != "dense":
            model.set_submodule(name, lower(mod, d["kernel"], d["blocksize"]))
    return decisions, reference


# ----------------------------------------------------------------------------- CUDA 2:4
# torch's semi-structured (2:4) sparse tensors run on CUDA only (docs/measurements.md), in float16/bfloat16,
# for weight matrices whose rows are a multiple of 32 and columns a multiple of 64.
SEMI_STRUCTURED_DTYPES = (torch.float16, torch.bfloat16)


def semi_structured_plan(model: nn.Module) -> dict:
    """{module path: "2:4" or the reason it stays dense} for every masked nn.Linear of ``model``."""
    from siftc.core.patterns import is_nm
    plan = {}
    for name, mod in model.named_modules():
        mask = mask_of(mod)
        if mask is None or type(mod) is not nn.Linear:
            continue
        rows, cols = mod.weight.shape
        if not is_nm(mask, 2, 4):
            plan[name] = "mask is not 2:4 (compile with pattern=2:4)"
        elif rows % 32 or cols % 64:
            plan[name] = f"weight {rows}x{cols}: 2:4 kernels need rows % 32 == 0 and columns % 64 == 0"
        elif mod.weight.dtype not in SEMI_STRUCTURED_DTYPES:
            plan[name] = f"dtype {mod.weight.dtype}: 2:4 kernels run in float16/bfloat16 (model.half() first)"
        else:
            plan[name] = "2:4"
    return plan


def lower_semi_structured(model: nn.Module) -> dict:
    """Swap the weights the plan allows for torch's semi-structured sparse tensors (CUDA only).

    Unverified on a GPU in this project so far (none was available); tests/test_patterns.py has
    the CUDA test, skipped without one.
    """
    from torch.sparse import to_sparse_semi_structured
    plan = semi_structured_plan(model)
    for name, verdict in plan.items():
        if verdict != "2:4":
            continue
        mod = model.get_submodule(name)
        if not mod.weight.is_cuda:
            raise RuntimeError(f"lower_semi_structured: '{name}' is on {mod.weight.device}; 2:4 kernels are CUDA-only")
        mod.weight = nn.Parameter(to_sparse_semi_structured(mod.weight.detach()), requires_grad=False)
    return plan
