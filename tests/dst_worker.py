"""Helpers for the DST resume and DDP tests: run in fresh processes (subprocess / spawn)."""
from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

import siftc

POLICY = "parallel:0.75,dst=rigl,dT=2"
TOTAL = 12


def build():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 48), nn.ReLU(), nn.Linear(48, 48), nn.ReLU(), nn.Linear(48, 5))
    gm = siftc.compile(model, policy=POLICY, example_inputs=(torch.randn(16, 12),))
    opt = torch.optim.SGD(gm.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    return gm, opt


def batch(i, size=16):
    g = torch.Generator().manual_seed(1000 + i)
    return torch.randn(size, 12, generator=g), torch.randint(0, 5, (size,), generator=g)


def run(model, opt, dst, start, stop, part=None):
    for i in range(start, stop):
        x, y = batch(i)
        if part is not None:                      # (rank, world): this rank's slice of the global batch
            rank, world = part
            n = x.shape[0] // world
            x, y = x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]
        F.cross_entropy(model(x), y).backward()
        opt.step()
        dst.step()
        opt.zero_grad()


def snapshot(gm):
    return {k: v.detach().clone() for k, v in gm.state_dict().items()}


def resume_main(ckpt, out, stop):
    """Fresh process: rebuild, load the checkpoint, run to ``stop``, save the state."""
    gm, opt = build()
    state = torch.load(ckpt, weights_only=True)
    gm.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    dst = siftc.DST(gm, opt, total_steps=TOTAL)
    dst.load_state_dict(state["dst"])
    run(gm, opt, dst, dst.step_count, stop)
    torch.save(snapshot(gm), out)


def ddp_main(rank, world, init_file, out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        gm, opt = build()
        model = DDP(gm)
        dst = siftc.DST(gm, opt, total_steps=TOTAL)
        masks = []
        for i in range(TOTAL):
            run(model, opt, dst, i, i + 1, part=(rank, world))
            masks.append({q: m.weight_mask.clone() for q, m in dst.modules.items()})
        torch.save({"state": snapshot(gm), "masks": masks, "updates": dst.updates},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def fsdp_main(rank, world, init_file, out_dir, per_module=False):
    """FSDP2 (fully_shard) on gloo: weights, gradients and optimizer state are sharded DTensors;
    ``per_module``: every weight layer is its own FSDP unit too (then the root)."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        gm, _ = build()
        if per_module:
            for mod in [m for m in gm.modules() if isinstance(m, nn.Linear)]:
                fully_shard(mod)
        fully_shard(gm)
        opt = torch.optim.SGD(gm.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
        dst = siftc.DST(gm, opt, total_steps=TOTAL)
        masks = []
        for i in range(TOTAL):
            run(gm, opt, dst, i, i + 1, part=(rank, world))
            masks.append({q: m.weight_mask.clone() for q, m in dst.modules.items()})
        state = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone()
                 for k, v in gm.state_dict().items()}
        momentum = {q: opt.state[m.weight]["momentum_buffer"].full_tensor() for q, m in dst.modules.items()}
        torch.save({"state": state, "masks": masks, "updates": dst.updates, "momentum": momentum,
                    "sharded": type(next(iter(dst.modules.values())).weight).__name__},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    resume_main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
