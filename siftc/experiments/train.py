"""``siftc train RECIPE``: compile a recipe's model with a policy, train it under DST, append a JSON line.

Works single-process and under ``torchrun --nproc_per_node N`` (gloo on CPU, nccl on CUDA): each
rank takes its slice of the same seeded global batch, the model is wrapped in DDP, DST keeps masks
identical on every rank, and rank 0 alone shows the progress bar and writes the result.
"""
from __future__ import annotations

import math
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from siftc.compiler import compile as siftc_compile
from siftc.runtime.dst import DST
from siftc.core import atomic
from siftc.core.errors import SiftcError, UsageError


def _setup_distributed():
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _batch(recipe, train, idx_gen, batch_size):
    if recipe.task == "classify":
        x, y = train
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=idx_gen)
        return x[idx], y[idx]
    ids = train
    start = torch.randint(0, ids.numel() - recipe.block - 1, (batch_size,), generator=idx_gen)
    x = torch.stack([ids[s:s + recipe.block] for s in start.tolist()])
    y = torch.stack([ids[s + 1:s + 1 + recipe.block] for s in start.tolist()])
    return x, y


def _loss(recipe, out, y):
    if recipe.task == "lm":
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    return F.cross_entropy(out, y)


@torch.no_grad()
def recalibrate_bn(model, batches) -> int:
    """Re-estimate every BatchNorm's running statistics as the plain average over ``batches``
    (forward passes in train mode; no weight changes). Returns how many norms were reset.

    Why: after a few hundred steps at a high learning rate the running averages (momentum 0.1) lag
    behind the weights. Measured on the MNIST CNN at 300 steps: dense 82.4% -> 91.0% test accuracy,
    Sparse Doped s=0.5 39.1% -> 83.3%, with the same weights (models_zoo/RESULTS.md)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
             and m.track_running_stats]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None                      # cumulative average over the batches
    model.train()
    try:
        for x in batches:
            model(x)
    finally:
        for m, mom in zip(norms, momenta):
            m.momentum = mom
        model.train(was_training)
    return len(norms)


@torch.no_grad()
def evaluate(recipe, model, test, eval_batches=50, batch_size=256):
    model.eval()
    try:
        if recipe.task == "classify":
            x, y = test
            correct = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                          for i in range(0, x.shape[0], batch_size))
            return {"metric": "test_accuracy", "value": correct / x.shape[0]}
        g = torch.Generator().manual_seed(1234)
        losses = [float(_loss(recipe, model(xb), yb)) for xb, yb in
                  (_batch(recipe, test, g, 32) for _ in range(eval_batches))]
        loss = sum(losses) / len(losses)
        return {"metric": "val_perplexity", "value": math.exp(loss), "val_loss": loss}
    finally:
        model.train()


from siftc.experiments.schedules import SCHEDULES  # noqa: E402,F401  (where the command line reads them)


def machine() -> dict:
    """What a result's last digits depend on besides the code and seed: on CPU a run is bit-identical
    on the same kind of machine, but MKL and oneDNN pick kernels (and so float summation orders) by
    CPU and instruction set, and JPEG decoding follows Pillow's libjpeg; another CPU drifts in the
    last digits (models_zoo/RESULTS.md, "Reproducing a cell")."""
    import platform
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        import PIL
        pillow = PIL.__version__
    except ImportError:
        pillow = None
    return {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "pillow": pillow}


def check_appendable(path) -> None:
    """Raise SiftcError unless a line can be appended to ``path`` (its folder exists and is
    writable, and the file, if there, is a writable file)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SiftcError(f"cannot append results to {path}: folder {folder} does not exist (create it first)")
    if os.path.isdir(path):
        raise SiftcError(f"cannot append results to {path}: it is a folder; give a .jsonl file path")
    target = path if os.path.exists(path) else folder
    if not os.access(target, os.W_OK):
        raise SiftcError(f"cannot append results to {path}: {target} is not writable")


def train(recipe_name: str, policy: str, steps: int, data_dir=None, seed: int = 0, batch_size=None, lr=None,
          out="results.jsonl", progress: bool = True, equal_flops: bool = False, bn_recalibrate: int = 0,
          schedule: str = "constant") -> dict:
    """Train ``recipe_name`` under ``policy`` for ``steps`` steps. ``equal_flops``: ``steps`` are
    the dense run's; train floor(steps / iso_flop_ratio) so this run gets the dense FLOPs.
    ``schedule``: ``constant`` (the recipe's lr throughout) or ``cosine`` (annealed from it to 0
    over the steps this run trains, as long schedules do; the final weights are then not a noisy
    constant-lr iterate).
    ``bn_recalibrate``: before evaluating, re-estimate BatchNorm statistics on this many training
    batches (forward only: not in the training FLOPs; 0 = off, the statistics as trained)."""
    from models_zoo import recipes
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise SiftcError(f"steps={steps!r}: train at least 1 step")
    if out:
        check_appendable(out)        # before any training: a result that cannot be written is lost
    try:
        recipe = recipes.get(recipe_name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if schedule not in SCHEDULES:
        raise SiftcError(f"schedule {schedule!r}: use one of {', '.join(SCHEDULES)}")
    rank, world = _setup_distributed()
    batch_size = batch_size or recipe.batch_size
    if batch_size % world:
        raise SiftcError(f"batch size {batch_size} must be divisible by the number of processes ({world})")
    train_set, test_set = recipe.load(data_dir)
    torch.manual_seed(seed)
    model = recipe.model()
    idx_gen = torch.Generator().manual_seed(seed)
    example = _batch(recipe, train_set, torch.Generator().manual_seed(seed + 1), batch_size)[0]
    gm = siftc_compile(model, policy=policy, example_inputs=(example,))
    opt = recipes.make_optimizer(recipe, gm.parameters(), lr)
    rep = gm.siftc.report(refresh=False)
    if equal_flops:
        steps = max(1, math.floor(steps / rep.iso_flop_ratio + 1e-9))
    base_lr = opt.param_groups[0]["lr"]
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if schedule == "cosine" else None
    has_masks = bool(gm.siftc.densities)
    dst = DST(gm, opt, total_steps=steps, samples_per_step=batch_size) if has_masks else None
    net = torch.nn.parallel.DistributedDataParallel(gm) if world > 1 else gm
    bar = tqdm(range(steps), desc=f"{recipe_name} {policy}", disable=not progress or rank != 0)
    start, loss_avg = time.perf_counter(), None
    local = batch_size // world
    for step in bar:
        t0 = time.perf_counter()
        x, y = _batch(recipe, train_set, idx_gen, batch_size)
        x, y = x[rank * local:(rank + 1) * local], y[rank * local:(rank + 1) * local]
        logits = net(x)
        loss = _loss(recipe, logits, y)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if dst is not None:
            dst.step()
        opt.zero_grad(set_to_none=True)
        value = float(loss.detach())
        loss_avg = value if loss_avg is None else 0.95 * loss_avg + 0.05 * value
        if step % 10 == 0 or step == steps - 1:
            fields = {"loss": f"{loss_avg:.3f}", "step_s": f"{time.perf_counter() - t0:.3f}"}
            if recipe.task == "lm":
                fields["ppl"] = f"{math.exp(loss_avg):.1f}"
            else:   # accuracy on the current training batch
                fields["acc"] = f"{float((logits.argmax(1) == y).float().mean()):.2f}"
            bar.set_postfix(fields)
    seconds = time.perf_counter() - start
    if bn_recalibrate:
        g = torch.Generator().manual_seed(seed + 2)
        recalibrate_bn(gm, (_batch(recipe, train_set, g, batch_size)[0] for _ in range(bn_recalibrate)))
    result = evaluate(recipe, gm, test_set)
    # without masks (dense policy) the model is the original: 3 x its forward per step
    ledger = dst.flops() if dst else {"train_flops": 3 * rep.budget_flops * steps,
                                      "dense_train_flops": 3 * rep.budget_flops * steps}
    line = {"recipe": recipe_name, "policy": policy, "seed": seed, "steps": steps, "batch_size": batch_size,
            "lr": base_lr, "world_size": world, "train_flops": ledger["train_flops"],
            "dense_train_flops": ledger["dense_train_flops"], "iso_flop_ratio": rep.iso_flop_ratio,
            "train_loss": loss_avg, **result, "seconds": round(seconds, 2), **machine()}
    if bn_recalibrate:
        line["bn_recalibrate"] = bn_recalibrate
    if schedule != "constant":
        line["schedule"], line["lr_end"] = schedule, opt.param_groups[0]["lr"]
    if rank == 0 and out:
        atomic.append_json_line(out, line)
    return line
