"""Dynamic sparse training on a compiled GraphModule: static, SET and RigL (docs/method.md, "Sparse training").

The user's loop stays theirs::

    dst = siftc.DST(gm, opt, total_steps)        # algorithm and drop schedule from the compiled policy
    for x, y in loader:
        loss_fn(gm(x), y).backward(); opt.step(); dst.step(); opt.zero_grad()

After every ``dst.step()`` masked weights and the masked entries of the optimizer state are
zero. Upkeep is paid only where masks change: gradients are masked in place once per backward
(lower-train's hook), so SGD, Adam and AdamW leave masked weights and state at zero by
themselves; DST zeroes what a mask update changed, and checks the invariant on the first step and
after every 10th mask update (the first included), falling back (with a warning) to re-masking
every step for an optimizer that moves zero-gradient weights. Mask updates happen at step t when begin < t < end*total_steps and t % dT == 0 (docs/method.md):
drop the ``f(t) * nnz`` active weights of smallest magnitude, then grow as many among the
positions inactive after the drop: RigL by largest dense-gradient magnitude, SET uniformly at
random (seeded generator). Grown weights start at zero with zero optimizer state; each layer's
non-zero count never changes. The dense gradient RigL needs is read by a tensor hook that DST
registers only for the step before an update (it runs before the gradient is masked), summed
over ``accum`` micro-batches and divided by ``accum``.

Distributed: when torch.distributed is initialised, the captured dense gradients are averaged
with all_reduce (so every rank ranks the same global gradient, as a single process on the global
batch would), every rank computes the update, and rank 0's masks are broadcast so masks are
identical on every rank by construction.
"""
from __future__ import annotations

import math
import warnings
import weakref

import torch
import torch.distributed as dist

from siftc.passes import flops as flops_pass
from siftc.core.mask_api import mask_of, masked_modules
from siftc.core.masking import grad_mask_of, has_grad_mask, install as install_grad_masks
from siftc.passes.shape_prop import ensure_shapes

from siftc.core import patterns
from siftc.core.errors import SiftcError
from siftc.handle import handle_of

# the Policy keys siftc.DST owns (its defaults when a DST is made without arguments)
POLICY_KEYS = ("dst", "dT", "drop", "end", "drop_schedule", "drop_round")

# optimizer state entries that live per weight element and must be masked (SGD, Adam, AdamW)
KNOWN_STATE = {"momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
SCALAR_STATE = {"step"}


def drop_fraction(t: int, begin: int, end: int, drop: float, schedule: str) -> float:
    """docs/method.md: f(t) = drop * (1 + cos(pi (t - begin) / (end - begin))) / 2, or constant."""
    if schedule == "constant":
        return drop
    return drop * (1 + math.cos(math.pi * (t - begin) / max(1, end - begin))) / 2


# below this many entries a plain torch.topk is fast enough (and is the reference the fast path is
# tested against)
FAST_TOPK_MIN = 1 << 20


def top_k(x: torch.Tensor, k: int, largest: bool) -> torch.Tensor:
    """Indices of the k largest (or smallest) entries of the 1-D ``x``, in no particular order.

    torch.topk over a whole weight is the slow part of a mask update (measured ~100 ms for
    10M entries, 1 thread). For large ``x``: take the threshold that leaves ~k entries from the
    order statistics of a fixed-seed sample of 64K entries, widened by 6 binomial standard
    deviations, and run topk on the entries past it only; if the sample misjudged (never in
    practice) fall back to the full topk. Ties are broken arbitrarily either way.
    """
    n = x.numel()
    q = k / max(n, 1)
    if n < FAST_TOPK_MIN or k <= 0 or q > 0.25:
        return torch.topk(x, k, largest=largest, sorted=False).indices
    m = 1 << 16
    sample = x[torch.randint(n, (m,), generator=torch.Generator().manual_seed(n))]
    wide = min(1.0, q + 6.0 * math.sqrt(q * (1 - q) / m) + 2.0 / m)
    rank = max(1, min(m, math.ceil(wide * m)))
    if largest:
        thr = sample.kthvalue(m - rank + 1).values
        idx = (x >= thr).nonzero().squeeze(1)
    else:
        thr = sample.kthvalue(rank).values
        idx = (x <= thr).nonzero().squeeze(1)
    if idx.numel() < k:
        return torch.topk(x, k, largest=largest, sorted=False).indices
    return idx[torch.topk(x[idx], k, largest=largest, sorted=False).indices]


def update_mask(weight: torch.Tensor, mask: torch.Tensor, k: int, grow_score=None, generator=None,
                own_score: bool = False) -> torch.Tensor:
    """New mask: drop the k active entries of smallest |w|, grow k inactive-after-drop entries.

    Growth by largest ``grow_score`` (RigL: |dense grad|) or, with ``grow_score=None``, uniformly
    at random from ``generator`` (SET: the k smallest of uniform keys drawn for every entry).
    Pure function of its inputs (tests compare it to brute force), except that with
    ``own_score=True`` the caller hands over ``grow_score`` as scratch space (saves a copy).
    """
    flat_mask = mask.reshape(-1)
    if k <= 0:
        return mask.clone()
    active = flat_mask.nonzero().squeeze(1)
    k = min(k, active.numel())
    mag = weight.detach().reshape(-1)[active].abs().float()
    dropped = active[top_k(mag, k, largest=False)]
    new = flat_mask.clone()
    new[dropped] = False
    # rank every entry, with the entries active after the drop pushed past all others (k never
    # exceeds the inactive count, so they are never chosen): no index list of the inactive ones
    if grow_score is not None:
        score = grow_score.detach().reshape(-1).float()
        score = (score.abs_() if own_score else score.abs()).masked_fill_(new, -1.0)
        grown = top_k(score, k, largest=True)
    else:
        keys = torch.rand(new.numel(), generator=generator).masked_fill_(new, 2.0)
        grown = top_k(keys, k, largest=False)
    new[grown] = True
    return new.view_as(mask)


def _sharded(t) -> bool:
    """A DTensor (a weight, gradient or optimizer state sharded by FSDP2's fully_shard)."""
    return type(t).__name__ == "DTensor" and hasattr(t, "to_local")


def _local(t):
    """The rank's own shard of a DTensor (same storage: in-place ops write the DTensor), else t."""
    return t.to_local() if _sharded(t) else t


def _zero_at(x, positions: torch.Tensor) -> None:
    """Zero ``x`` in place at ``positions``: a bool mask of its (local shard's) shape, or flat
    indices. ``x`` may be None (a weight without a gradient yet) or a DTensor (its own shard)."""
    if x is None:
        return
    x = _local(x)
    if positions.dtype == torch.bool:
        x.masked_fill_(positions, 0)
        return
    index = positions
    if x.is_contiguous():
        x.view(-1).index_fill_(0, index, 0)
    else:
        flat = x.reshape(-1).index_fill(0, index, 0)
        x.copy_(flat.view_as(x))


def _move_param(optimizer, old, new, mask) -> None:
    """Put ``new`` (the kept values of ``old`` under ``mask``) where ``old`` was in the optimizer,
    with ``old``'s per-weight state cut to the kept positions (scalars such as Adam's step kept)."""
    for group in optimizer.param_groups:
        group["params"] = [new if p is old else p for p in group["params"]]
    state = optimizer.state.pop(old, None)
    if state:
        optimizer.state[new] = {k: v[mask].clone() if isinstance(v, torch.Tensor) and v.shape == mask.shape else v
                                for k, v in state.items()}


class DST:
    def __init__(self, gm, optimizer, total_steps: int, method: str | None = None, dT: int | None = None,
                 drop: float | None = None, end: float | None = None, begin: int = 0,
                 drop_schedule: str | None = None, accum: int = 1, seed: int | None = None,
                 samples_per_step: int | None = None):
        handle = handle_of(gm)
        if handle is None:
            raise SiftcError("siftc.DST expects a GraphModule returned by siftc.compile")
        p = handle.policy
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise SiftcError(f"siftc.DST: total_steps={total_steps!r} must be an integer >= 1 (the optimizer "
                             f"steps of the whole run: it places the end of mask updates)")
        other = getattr(gm, "_siftc_dst", None)
        if other is not None and other() is not None and not other().closed:
            raise SiftcError("siftc.DST: this model already has a DST object; two would both move its masks. "
                             "Call .close() on the old one (or keep using it)")
        self.closed = False
        # wrappers (accelerate's AcceleratedOptimizer, which the HF Trainer hands out) step the
        # torch optimizer they hold: hooks and state live on that one
        # (AcceleratedOptimizer subclasses Optimizer without being one: unwrap by the attribute)
        while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
            optimizer = optimizer.optimizer
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise SiftcError(f"siftc.DST expects a torch.optim.Optimizer (or a wrapper holding one as .optimizer), "
                             f"got {type(optimizer).__name__}")
        self.gm, self.optimizer, self.total_steps = gm, optimizer, int(total_steps)
        self.method = method or p.dst
        if self.method not in ("static", "set", "rigl"):
            raise SiftcError(f"DST method {self.method!r} unknown; allowed: static, set, rigl")
        self.dT = dT or p.dT
        self.drop = p.drop if drop is None else drop
        self.end_step = int((p.end if end is None else end) * self.total_steps)
        self.begin = begin
        self.drop_schedule = drop_schedule or p.drop_schedule
        # the drop count k = frac x kept, rounded (siftc) or floored (the authors' code)
        self._count = math.floor if p.drop_round == "floor" else round
        if accum < 1:
            raise SiftcError(f"DST accum={accum} must be >= 1 (micro-batches per optimizer step)")
        self.accum = accum
        self.pattern = p.mask_pattern
        if self.pattern.kind == "nm" and self.method != "static":
            raise SiftcError(f"siftc.DST: pattern={p.pattern} masks keep {self.pattern.n} of every "
                             f"{self.pattern.m} weights and do not move under {self.method}; use method "
                             f"'static' (or dst=static in the policy), or pattern=block:B for moving structured masks")
        self.generator = torch.Generator().manual_seed(p.seed if seed is None else seed)
        self.modules = masked_modules(gm)
        # policy kernels=...: with SET/RigL, masked linears move to sparse kernels once masks stop
        # moving (the end fraction); a model saved after that has them already (SparseTrainLinear:
        # kept values only, no dense gradient, so no update may reach them)
        self.kernels = p.kernels
        self._kernels_done = False
        if not self.modules:
            raise SiftcError("siftc.DST: the compiled model has no masked weights (policy dense?)")
        self.step_count = 0
        self.updates = 0
        self._dense_grads: dict = {}
        self._capture_hooks: list = []
        self._capturing = False
        self._local_masks: dict = {}
        self.fsdp = any(_sharded(m.weight) for m in self._dense_modules().values())
        self.remask_every_step = False     # set when an optimizer moves zero-gradient weights
        ex = handle.example_inputs[0]
        self.example_batch = int(ex.shape[0]) if isinstance(ex, torch.Tensor) and ex.dim() > 0 else 1
        self.samples_per_step = samples_per_step or self.example_batch
        # forward FLOPs per sample: compiled with masks, compiled with masks full, original dense
        ensure_shapes(gm, handle.example_inputs)
        flops_pass.annotate(gm)
        totals = flops_pass.totals(gm)
        self.sparse_forward = totals["total"] / self.example_batch
        self.full_forward = totals["dense_total"] / self.example_batch
        self.dense_forward = handle.budget_flops / self.example_batch
        self.ledger = {"sparse": 0, "dense_model": 0, "samples": 0}
        self._check_optimizer()
        self._apply_masks()
        self._arm_capture()
        # Before every optimizer step: a masked weight whose gradient hook is missing (a model
        # loaded with torch.load and run only through torch.compile) gets its gradient masked
        # here and its hook back, so masks hold whatever ran the forward.
        self._guard = optimizer.register_step_pre_hook(self._mask_unhooked_grads)
        gm._siftc_dst = weakref.ref(self)
        self._warned_past_end = False

    def _dense_modules(self) -> dict:
        """The masked modules that keep a dense weight parameter (not a sparse training kernel).
        Read from the module's parameter table: a sparse kernel's ``weight`` is a property that
        builds the dense matrix (a full layer's worth of work at every optimizer step, measured
        3.2x the step of a kernels=auto MLP)."""
        return {q: m for q, m in self.modules.items() if isinstance(m._parameters.get("weight"), torch.nn.Parameter)}

    def _refuse_kernel_layers(self, t: int) -> None:
        kernel = [q for q in self.modules if q not in self._dense_modules()]
        if kernel:
            raise SiftcError(f"siftc.DST step {t}: a mask update is due, but {', '.join(kernel[:3])}"
                             f"{' ...' if len(kernel) > 3 else ''} train through sparse kernels (kept values only: "
                             f"no dense gradient to rank by, no positions to grow into). Sparse kernels are for masks "
                             f"that no longer move: dst=static, or SET/RigL past their end fraction, where DST swaps "
                             f"them in itself; compile with kernels=dense to move these masks")

    def close(self) -> None:
        """Detach from the model and optimizer (hooks and gradient sinks removed); a new DST may
        then be made on the same model."""
        self._guard.remove()
        self._disarm_capture()
        self.closed = True

    # ------------------------------------------------------------------ schedule
    def is_update_step(self, t: int) -> bool:
        return self.method != "static" and self.begin < t < self.end_step and t % self.dT == 0

    # ------------------------------------------------------------------ dense gradient capture
    def _arm_capture(self) -> None:
        """Hand the dense gradient of the coming step to us if that step updates masks (RigL)."""
        self._disarm_capture()
        if self.method == "rigl" and self.is_update_step(self.step_count + 1):
            self._refuse_kernel_layers(self.step_count + 1)
            if self.fsdp:
                # FSDP2 computes gradients on unsharded copies of the weights and reduce-scatters
                # them: the gradient hook leaves this step's unmasked, and the optimizer pre-step
                # hook reads the (globally averaged) dense gradient shard before masking it
                for m in self.modules.values():
                    m._siftc_capture = True
                self._capturing = True
                return
            # a pre-accumulate tensor hook sees each backward's gradient before it is masked
            self._capture_hooks = [m.weight.register_hook(self._sink(q)) for q, m in self.modules.items()]

    def _disarm_capture(self) -> None:
        for h in self._capture_hooks:
            h.remove()
        if self._capturing:               # (set only by an FSDP2 capture: not every step)
            for m in self.modules.values():
                m._siftc_capture = False
        self._capture_hooks = []
        self._capturing = False
        self._dense_grads = {}

    def _sink(self, q):
        def sink(grad):
            g = grad.detach().float()
            if q in self._dense_grads:
                self._dense_grads[q] += g
            else:    # a copy: the same tensor becomes .grad and is then masked in place
                self._dense_grads[q] = g.clone()
            return None
        return sink

    # ------------------------------------------------------------------ the step
    def step(self, samples: int | None = None) -> bool:
        """Call after optimizer.step(). Returns True when masks were updated at this step."""
        if self.closed:
            raise SiftcError("siftc.DST.step: this DST object was closed")
        self.step_count += 1
        if self.step_count > self.total_steps and not self._warned_past_end:
            warnings.warn(f"siftc.DST: step {self.step_count} is past total_steps={self.total_steps} (masks stopped "
                          f"moving at step {self.end_step}); if the run is longer, pass its real step count "
                          f"(optimizer steps, not micro-batches)", stacklevel=2)
            self._warned_past_end = True
        t = self.step_count
        updated = False
        n = samples or self.samples_per_step
        if self.is_update_step(t):
            self._refuse_kernel_layers(t)
            self._update(t)
            updated = True
        elif self.kernels != "dense" and self.method != "static" and t >= self.end_step and not self._kernels_done:
            self._to_kernels(t)
        if self.remask_every_step:
            self._apply_masks()
        elif t == 1 or (updated and self.updates % 10 == 1):
            # step 1 and every 10th update (the first included): a check reads every masked
            # weight and its state (~0.7% of the MLP bench's steps if run at every update)
            self._check_masked_zero(t)
        # training-FLOP ledger (docs/method.md): 3 x sparse forward per sample; an RigL update step
        # needs the dense gradient: 2 x sparse + 1 x full-shape forward instead
        per_sample = (2 * self.sparse_forward + self.full_forward) if (updated and self.method == "rigl") \
            else 3 * self.sparse_forward
        self.ledger["sparse"] += int(per_sample * n)
        self.ledger["dense_model"] += int(3 * self.dense_forward * n)
        self.ledger["samples"] += n
        self._arm_capture()
        return updated

    def _update(self, t: int) -> None:
        frac = drop_fraction(t, self.begin, self.end_step, self.drop, self.drop_schedule)
        distributed = dist.is_available() and dist.is_initialized()
        if self.method == "rigl":
            missing = [q for q in self.modules if q not in self._dense_grads]
            if missing:
                raise SiftcError(f"DST (rigl) step {t}: no dense gradient was captured for {missing[0]}; "
                                 "call loss.backward() through the compiled model before optimizer.step() "
                                 "and dst.step()")
            if distributed and not self.fsdp:      # (FSDP2 has already averaged them)
                for g in self._dense_grads.values():
                    dist.all_reduce(g)
                    g /= dist.get_world_size()
        with torch.no_grad():
            for q, m in self.modules.items():
                mask = mask_of(m)
                score = self._dense_grads[q] if self.method == "rigl" else None
                weight = m.weight.full_tensor() if _sharded(m.weight) else m.weight    # rank globally
                if score is not None and _sharded(m.weight):
                    from torch.distributed.tensor import DTensor
                    score = DTensor.from_local(score, m.weight.device_mesh, m.weight.placements,
                                               shape=m.weight.shape, stride=m.weight.stride()).full_tensor()
                if score is not None and self.accum > 1:   # the mean gradient (the ranking is the same)
                    score = score / self.accum
                if self.pattern.kind == "block" and patterns.supports(mask.shape, self.pattern):
                    new = self._update_blocks(weight, mask, frac, score)
                else:
                    k = self._count(frac * int(torch.count_nonzero(mask)))
                    new = update_mask(weight, mask.cpu(), k, None if score is None else score.cpu(), self.generator,
                                      own_score=True)     # the captured gradients are dropped after
                new = new.to(mask.device)
                if distributed:
                    dist.broadcast(new, src=0)
                # grown weights start at zero, dropped ones become zero; the rest already is (the
                # invariant): touch the changed positions only, by flat index
                if self.fsdp:           # a bool mask of this rank's shard
                    self._zero_where(m, self._local_of(new != mask, m.weight))
                    mask.copy_(new)
                    continue
                changed = (new != mask).reshape(-1).nonzero().squeeze(1)
                hook = grad_mask_of(m)
                current = hook is not None and hook.current()
                self._zero_where(m, changed)
                mask.copy_(new)
                if current:
                    hook.patch(changed)
        self.updates += 1

    def _update_blocks(self, weight, mask, frac: float, score) -> torch.Tensor:
        """Drop/grow whole BxB tiles: |w| and |dense grad| summed per tile (pattern=block:B)."""
        b = self.pattern.block
        tiles = patterns.blocks_of(mask.cpu(), b)
        k = self._count(frac * int(torch.count_nonzero(tiles)))
        grow = None if score is None else patterns.block_scores(score.cpu(), b)
        new_tiles = update_mask(patterns.block_scores(weight.cpu(), b), tiles, k, grow, self.generator)
        return patterns.expand_blocks(new_tiles, b, mask.shape)

    # ------------------------------------------------------------------ masking
    def _check_optimizer(self) -> None:
        def param(m):
            w = m._parameters.get("weight")
            return w if isinstance(w, torch.nn.Parameter) else m.values
        params = {id(param(m)) for m in self.modules.values()}
        in_opt = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        if not params & in_opt:
            raise SiftcError("siftc.DST: the optimizer holds none of the compiled model's masked weights; "
                             "build it from gm.parameters()")
        missing = [q for q, m in self.modules.items() if id(param(m)) not in in_opt]
        if missing:   # RigL/SET would grow weights that nothing trains
            shown = ", ".join(f"{q}.weight" for q in missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
            raise SiftcError(f"siftc.DST: the optimizer lacks {len(missing)} of the {len(self.modules)} masked "
                             f"weights ({shown}); mask updates would grow weights nothing trains. Build the "
                             f"optimizer from gm.parameters() (or param groups covering every masked weight)")

    def _mask_unhooked_grads(self, optimizer, args, kwargs) -> None:
        if self.fsdp:
            self._mask_sharded_grads()
            return
        for m in self._dense_modules().values():
            if m.weight.grad is None or has_grad_mask(m):
                continue
            with torch.no_grad():
                m.weight.grad.masked_fill_(~mask_of(m), 0.0)
            install_grad_masks(m)

    def _mask_sharded_grads(self) -> None:
        """FSDP2: each rank masks its gradient shards (and, on a capture step, first keeps them as
        the dense gradient, summed over the accumulated micro-batches by FSDP2 itself)."""
        with torch.no_grad():
            for q, m in self._dense_modules().items():
                g = m.weight.grad
                if g is None:
                    continue
                if self._capturing:
                    self._dense_grads[q] = _local(g).detach().float().clone()
                _local(g).mul_(self._local_of(mask_of(m), m.weight, cache=True).to(_local(g).dtype))

    def _local_of(self, full: torch.Tensor, like, cache: bool = False) -> torch.Tensor:
        """This rank's shard of the full tensor ``full``, sharded as ``like`` is (no communication:
        every rank holds the same masks); ``full`` itself for a plain ``like``. With ``cache``
        (masks, which live as long as their module) the shard is kept until the mask changes."""
        if not _sharded(like):
            return full
        key = (full._version, tuple(like.placements), tuple(like.shape))
        hit = self._local_masks.get(id(full)) if cache else None
        if hit is not None and hit[0] is full and hit[1] == key:
            return hit[2]
        from torch.distributed.tensor import distribute_tensor
        local = distribute_tensor(full, like.device_mesh, like.placements, src_data_rank=None).to_local()
        if cache:
            self._local_masks[id(full)] = (full, key, local)
        return local

    def _zero_where(self, m, positions: torch.Tensor) -> None:
        """Zero ``m``'s weight, its gradient and their optimizer state at ``positions``."""
        _zero_at(m.weight, positions)
        _zero_at(m.weight.grad, positions)
        self._zero_state(m.weight, positions)

    def _zero_state(self, weight, positions: torch.Tensor) -> None:
        """Zero the optimizer state of ``weight`` at ``positions`` (as ``_zero_at`` takes them)."""
        state = self.optimizer.state.get(weight)
        if not state:
            return
        for key, value in state.items():
            if key in KNOWN_STATE:
                _zero_at(value, positions)
            elif key in SCALAR_STATE or not (isinstance(value, torch.Tensor) and value.shape == weight.shape):
                continue
            else:
                raise SiftcError(f"siftc.DST: optimizer {type(self.optimizer).__name__} keeps per-weight state "
                                 f"'{key}' that DST does not know how to mask (known: {', '.join(sorted(KNOWN_STATE))}); "
                                 "use SGD, Adam or AdamW, or extend siftc.dst.KNOWN_STATE")

    def _check_masked_zero(self, t: int) -> None:
        """The invariant, checked: no masked weight (or its optimizer state) moved. An optimizer that moves weights whose
        gradient is zero (e.g. one adding noise, or with non-zero initial state) would break it;
        DST then re-masks weights and state after every step from here on, and says so."""
        def nonzero_off(m) -> bool:
            state = self.optimizer.state.get(m.weight) or {}
            tensors = [m.weight] + [v for k, v in state.items() if k in KNOWN_STATE]
            if self.fsdp:          # each rank checks its own shards
                off = ~self._local_of(mask_of(m), m.weight, cache=True)
                return any(bool(torch.any(_local(x).masked_select(off) != 0)) for x in tensors)
            # x == x * mask everywhere, with the mask as 0/1 floats (the gradient hook's copy when
            # it has one): ~8x faster than selecting through a bool mask
            hook = grad_mask_of(m)
            mask = mask_of(m)
            scale = hook.scale(m.weight) if hook is not None else mask.to(m.weight.dtype)
            return not all(torch.equal(x, x * scale.to(x.dtype)) or not torch.any(x.masked_select(~mask) != 0)
                           for x in tensors)    # (the exact test runs only when the fast one fails: NaNs)
        with torch.no_grad():
            moved = [q for q, m in self._dense_modules().items() if nonzero_off(m)]
        if moved:
            warnings.warn(f"siftc.DST step {t}: {type(self.optimizer).__name__} changed {len(moved)} masked "
                          f"weight tensor(s) or their state (e.g. {moved[0]}.weight) although their gradients are masked; "
                          f"DST re-masks weights and optimizer state after every step from now on (slower)",
                          stacklevel=3)
            self.remask_every_step = True
            self._apply_masks()

    def _apply_masks(self) -> None:
        with torch.no_grad():
            for m in self._dense_modules().values():
                self._zero_where(m, ~self._local_of(mask_of(m), m.weight, cache=True))

    def _to_kernels(self, t: int) -> None:
        """Masks stopped moving: swap masked linears for sparse training kernels where measured
        faster (policy kernels=..., siftc/core/train_kernels.py), moving each one's optimizer
        state to its kept values (the mask's row-major order, the order of ``values``)."""
        self._kernels_done = True
        if any(m.weight.device.type != "cpu" for m in self._dense_modules().values()):
            warnings.warn(f"siftc.DST step {t}: policy kernels={self.kernels} measures and runs sparse training "
                          f"kernels on the CPU only; the layers (on {next(iter(self.modules.values())).weight.device}) "
                          f"stay masked dense", stacklevel=3)
            return
        if dist.is_available() and dist.is_initialized():
            warnings.warn(f"siftc.DST step {t}: policy kernels={self.kernels} is not applied under torch.distributed "
                          f"(DDP/FSDP hold the dense weights); the layers stay masked dense", stacklevel=3)
            return
        from siftc.core.train_kernels import lower_for_training
        handle = handle_of(self.gm)
        before = self._dense_modules()
        decisions = lower_for_training(self.gm, handle.example_inputs, self.kernels)
        for q, d in decisions.items():
            if d["kernel"] == "dense":
                continue
            old, new = before[q], self.gm.get_submodule(q)
            _move_param(self.optimizer, old.weight, new.values, mask_of(new))
            self.modules[q] = new
        handle.state.kernels = {**handle.state.kernels, **decisions}

    # ------------------------------------------------------------------ ledger and checkpoints
    def flops(self) -> dict:
        """Training FLOPs so far of the compiled model under DST vs the dense original (3x forward)."""
        return {"train_flops": self.ledger["sparse"], "dense_train_flops": self.ledger["dense_model"],
                "ratio": self.ledger["sparse"] / self.ledger["dense_model"] if self.ledger["dense_model"] else 1.0,
                "samples": self.ledger["samples"], "steps": self.step_count, "mask_updates": self.updates}

    def state_dict(self) -> dict:
        """Plain ints/floats/strings/tensors: readable by torch.load(..., weights_only=True)."""
        return {"step_count": self.step_count, "updates": self.updates, "generator": self.generator.get_state(),
                "ledger": dict(self.ledger), "method": self.method, "dT": self.dT, "drop": self.drop,
                "end_step": self.end_step, "begin": self.begin, "drop_schedule": self.drop_schedule, "accum": self.accum,
                "total_steps": self.total_steps,
                "layers": {q: list(mask_of(m).shape) for q, m in self.modules.items()}}

    _STATE_KEYS = ("step_count", "updates", "generator", "ledger", "method", "dT", "drop", "end_step", "begin",
                   "drop_schedule", "accum")

    def load_state_dict(self, state: dict) -> None:
        """Resume from ``state_dict()``; refuses (SiftcError naming the mismatch) the state of
        another model, method or schedule instead of silently adopting it."""
        if not isinstance(state, dict):
            raise SiftcError(f"siftc.DST.load_state_dict expects the dict DST.state_dict() returned, got "
                             f"{type(state).__name__}")
        if "schedule" in state and "drop_schedule" not in state:     # checkpoints before the key's rename
            state = {**state, "drop_schedule": state["schedule"]}
        missing = [k for k in self._STATE_KEYS if k not in state]
        if missing:
            raise SiftcError(f"siftc.DST.load_state_dict: not a DST state (missing {', '.join(missing)}); pass "
                             f"what DST.state_dict() returned (was the model's or optimizer's state passed?)")
        for key in ("method", "dT", "drop", "drop_schedule", "accum", "begin", "end_step", "total_steps"):
            if key in state and state[key] != getattr(self, key):
                raise SiftcError(f"siftc.DST.load_state_dict: the checkpoint has {key}={state[key]!r}, this DST "
                                 f"{key}={getattr(self, key)!r}; make the DST with the run's own settings "
                                 f"(same policy and total_steps) to resume it")
        if "layers" in state:
            mine = {q: list(mask_of(m).shape) for q, m in self.modules.items()}
            if state["layers"] != mine:
                diff = sorted(set(state["layers"]) ^ set(mine)) or \
                    [q for q in mine if state["layers"][q] != mine[q]]
                raise SiftcError(f"siftc.DST.load_state_dict: the checkpoint's masked layers differ from this "
                                 f"model's (e.g. {', '.join(diff[:3])}): it is the state of another model or policy")
        if not isinstance(state["step_count"], int) or state["step_count"] < 0:
            raise SiftcError(f"siftc.DST.load_state_dict: step_count={state['step_count']!r} is not a step count")
        for key in self._STATE_KEYS:
            if key not in ("generator", "ledger"):
                setattr(self, key, state[key])
        self.ledger = dict(state["ledger"])
        self.generator.set_state(state["generator"])
        self._apply_masks()
        self._arm_capture()
