"""``siftc selftest``: the acceptance check of an install, on any device, in one command.

On resnet18_cifar and gpt_tiny, with every member, it compiles, checks the outputs against eager
PyTorch where a member allows it (``dense``; ``sparse`` with the original weights and all-ones
masks), trains 20 RigL steps (masked weights and optimizer state must stay zero), runs 3 steps
under ``torch.compile`` (masks must still hold), round-trips ``siftc.save`` / ``siftc.load`` and
exports ONNX checked in onnxruntime. With ``--device cuda`` it adds bf16 autocast training under
DST, the 2:4 semi-structured inference lowering (checked and timed beside dense) and DDP on nccl
in one process; on the CPU their twins run (bf16 autocast on the CPU, DDP on gloo) and 2:4 is
listed as skipped. One table, one row per check with its figure; the exit status is 1 if any row
failed. It is the acceptance check on a GPU (docs/api.md, "Self-test"); CI runs it on the CPU.

Sizes: on the CPU the ResNet is 16 channels wide at 16x16 inputs (same structure) and
``torch.compile`` uses the ``aot_eager`` backend (dynamo and AOT autograd, the parts that decide
whether masks hold; inductor's C++ build costs tens of seconds a model there); on CUDA the
models run at their zoo sizes and ``torch.compile`` uses inductor.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MEMBERS = ("wide", "parallel", "factorized", "doped", "sparse")


@dataclass
class Row:
    check: str
    case: str
    ok: "bool | None"        # None: skipped (the note says why)
    figure: str = ""
    note: str = ""


def _models(device: str, quick: bool) -> dict:
    """{name: (factory, inputs, loss)} at the device's sizes."""
    import models_zoo
    big = device == "cuda"
    width, side, batch = (64, 32, 16) if big else (16, 16, 4)

    def resnet():
        return models_zoo.create("resnet18_cifar", width=width)

    def gpt():
        return models_zoo.create("gpt_tiny", block_size=64 if big else 32)
    images = models_zoo.example_inputs("resnet18_cifar", batch, side)
    labels = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(0))
    tokens = models_zoo.example_inputs("gpt_tiny", 2 if not big else 8, 64 if big else 32)
    targets = torch.randint(0, 65, tokens[0].shape, generator=torch.Generator().manual_seed(1))
    return {"resnet18_cifar": (resnet, images, lambda out: F.cross_entropy(out, labels.to(out.device))),
            "gpt_tiny": (gpt, tokens, lambda out: F.cross_entropy(out.flatten(0, 1), targets.flatten().to(out.device)))}


def _to(xs, device):
    return tuple(x.to(device) for x in xs)


def _compile(model, policy, inputs, device):
    import siftc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return siftc.compile(model, target=device, policy=policy, example_inputs=inputs)


def _mask_leaks(gm, optimizer) -> int:
    """Non-zero masked weights, gradients and optimizer state entries."""
    bad = 0
    for q, mask in gm.siftc.masks().items():
        w = gm.get_submodule(q).weight
        off = ~mask
        bad += int(w.detach()[off].ne(0).sum())
        if w.grad is not None:
            bad += int(w.grad[off].ne(0).sum())
        for value in optimizer.state.get(w, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == w.shape:
                bad += int(value[off].ne(0).sum())
    return bad


def _train(gm, inputs, loss, steps, method="rigl", autocast=None):
    import siftc
    opt = torch.optim.SGD(gm.parameters(), lr=0.01, momentum=0.9)
    dst = siftc.DST(gm, opt, total_steps=steps, method=method, dT=max(1, steps // 4))
    gm.train()
    for _ in range(steps):
        with autocast() if autocast else _nothing():
            value = loss(gm(*inputs))
        value.backward()
        opt.step()
        dst.step()
        opt.zero_grad()
    return opt, dst, float(value.detach())


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _close(a, b) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12))


def _eager_checks(name, factory, inputs, device) -> list:
    """dense compile == eager; sparse with the original weights and all-ones masks == eager."""
    rows = []
    torch.manual_seed(0)
    model = factory().to(device).eval()
    inputs = _to(inputs, device)
    with torch.no_grad():
        want = model(*inputs)
        dense = _compile(model, "dense", inputs, device).eval()
        err = _close(dense(*inputs), want)
        rows.append(Row("eager equal (dense)", name, err < 1e-5, f"max rel err {err:.1e}"))
        gm = _compile(model, "sparse:0.5", inputs, device).eval()
        original = dict(model.named_modules())
        for q, mask in gm.siftc.masks().items():
            mask.fill_(True)
            layer = gm.get_submodule(q)
            src = original[q.rpartition(".")[0]]
            layer.weight.copy_(src.weight)
            if layer.bias is not None:
                layer.bias.copy_(src.bias)
        err = _close(gm(*inputs), want)
        rows.append(Row("eager equal (sparse, all-ones masks)", name, err < 1e-5, f"max rel err {err:.1e}"))
    return rows


def _member_checks(name, factory, inputs, loss, member, device, steps, compile_backend) -> list:
    import siftc
    case = f"{name} {member}:0.75"
    rows = []
    torch.manual_seed(0)
    t = time.perf_counter()
    try:
        gm = _compile(factory().to(device), f"{member}:0.75", _to(inputs, device), device)
    except Exception as e:       # one failed row, the other checks of the case cannot run
        return [Row("compile", case, False, note=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")]
    rep = gm.siftc.report()
    iso_ok = member == "sparse" or abs(rep.iso_flop_ratio - 1) <= gm.siftc.policy.tol
    rows.append(Row("compile", case, iso_ok, f"{time.perf_counter() - t:.1f} s, iso {rep.iso_flop_ratio:.4f}"))
    x = _to(inputs, device)
    opt, dst, last = _train(gm, x, loss, steps)
    leaks = _mask_leaks(gm, opt)
    rows.append(Row(f"RigL {steps} steps", case, leaks == 0 and math.isfinite(last),
                    f"{dst.updates} mask updates, {leaks} masked non-zeros, loss {last:.3f}"))
    compiled = torch.compile(gm, backend=compile_backend)
    opt2 = torch.optim.SGD(gm.parameters(), lr=0.01, momentum=0.9)
    try:
        for _ in range(3):
            loss(compiled(*x)).backward()
            opt2.step()
            opt2.zero_grad()
        leaks = _mask_leaks(gm, opt2)
        rows.append(Row(f"torch.compile ({compile_backend}) 3 steps", case, leaks == 0, f"{leaks} masked non-zeros"))
    except Exception as e:
        rows.append(Row(f"torch.compile ({compile_backend}) 3 steps", case, False,
                        note=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"))
    gm.eval()
    with tempfile.TemporaryDirectory() as d, torch.no_grad():
        siftc.save(gm, os.path.join(d, "ckpt"))
        back = siftc.load(os.path.join(d, "ckpt"), device=device).eval()
        err = _close(back(*x), gm(*x))
        same = all(torch.equal(back.siftc.masks()[q], m) for q, m in gm.siftc.masks().items())
        rows.append(Row("save / load", case, err == 0.0 and same, f"max rel err {err:.1e}, masks equal {same}"))
        try:
            cpu = back.to("cpu")
            proto = siftc.compile(cpu, target="onnx", path=os.path.join(d, "m.onnx"), example_inputs=inputs)
            check = siftc.onnx_check(proto, cpu, inputs, rtol=1e-3)
            rows.append(Row("ONNX in onnxruntime", case, True,
                            f"max rel err {check.max_rel_err:.1e}, {len(proto.graph.sparse_initializer)} sparse init"))
        except Exception as e:
            rows.append(Row("ONNX in onnxruntime", case, False, note=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"))
    return rows


def _device_checks(device, models) -> list:
    """bf16 autocast under DST, 2:4 inference, DDP in one process (nccl on CUDA, gloo on the CPU)."""
    rows = []
    factory, inputs, loss = models["resnet18_cifar"]
    torch.manual_seed(0)
    gm = _compile(factory().to(device), "wide:0.75", _to(inputs, device), device)
    x = _to(inputs, device)
    opt, dst, last = _train(gm, x, loss, 5, autocast=lambda: torch.autocast(device, dtype=torch.bfloat16))
    leaks = _mask_leaks(gm, opt)
    rows.append(Row(f"bf16 autocast + DST ({device})", "resnet18_cifar wide:0.75", leaks == 0 and math.isfinite(last),
                    f"{leaks} masked non-zeros, loss {last:.3f}"))
    rows.append(_two_four(device))
    rows.append(_ddp(device, models))
    return rows


def _two_four(device) -> Row:
    import siftc
    case = "mlp wide:0.5,pattern=2:4 inference"
    if device != "cuda":
        return Row("2:4 semi-structured inference", case, None, note="CUDA only (torch's 2:4 kernels)")
    import models_zoo
    torch.manual_seed(0)
    model = models_zoo.create("mlp").to(device).half().eval()
    x = (torch.randn(256, 1, 28, 28, device=device, dtype=torch.half),)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            masked = siftc.compile(model, target=device, policy="wide:0.5,pattern=2:4", example_inputs=x).eval()
            lowered = siftc.compile(model, target=device, policy="wide:0.5,pattern=2:4", example_inputs=x,
                                    mode="inference")
        with torch.no_grad():
            err = _close(lowered(*x), masked(*x))
            times = _cuda_ms({"dense": lambda: model(*x), "masked": lambda: masked(*x), "2:4": lambda: lowered(*x)})
        n = sum(1 for k in lowered.siftc.kernels.values() if k.get("kernel") == "2:4")
        return Row("2:4 semi-structured inference", case, err < 1e-2 and n > 0,
                   f"{n} layers 2:4, max rel err {err:.1e}, 2:4 {times['2:4'] / times['dense']:.2f}x dense, "
                   f"masked {times['masked'] / times['dense']:.2f}x dense")
    except Exception as e:
        return Row("2:4 semi-structured inference", case, False, note=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")


def _cuda_ms(fns: dict, repeat: int = 20) -> dict:
    """Min-of-``repeat`` milliseconds of each function, interleaved, synchronised."""
    best = {k: float("inf") for k in fns}
    for _ in range(3):
        for f in fns.values():
            f()
    for _ in range(repeat):
        for k, f in fns.items():
            torch.cuda.synchronize()
            t = time.perf_counter()
            f()
            torch.cuda.synchronize()
            best[k] = min(best[k], (time.perf_counter() - t) * 1e3)
    return best


def _ddp(device, models) -> Row:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    backend = "nccl" if device == "cuda" else "gloo"
    case = "gpt_tiny wide:0.75"
    if dist.is_initialized():
        return Row(f"DDP ({backend}, 1 process)", case, None, note="a process group is already initialised")
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", world_size=1, rank=0)
    try:
        factory, inputs, loss = models["gpt_tiny"]
        torch.manual_seed(0)
        gm = _compile(factory().to(device), "wide:0.75", _to(inputs, device), device)
        ddp = DistributedDataParallel(gm, device_ids=[0] if device == "cuda" else None)
        import siftc
        opt = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
        dst = siftc.DST(gm, opt, total_steps=8, method="rigl", dT=2)
        x = _to(inputs, device)
        for _ in range(8):
            loss(ddp(*x)).backward()
            opt.step()
            dst.step()
            opt.zero_grad()
        leaks = _mask_leaks(gm, opt)
        return Row(f"DDP ({backend}, 1 process)", case, leaks == 0, f"{dst.updates} mask updates, {leaks} masked non-zeros")
    except Exception as e:
        return Row(f"DDP ({backend}, 1 process)", case, False, note=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")
    finally:
        dist.destroy_process_group()


def run(device: str = "cpu", quick: bool = False, progress=None) -> list:
    """Every check's row; ``progress(text)`` is called before each case."""
    if device == "cuda" and not torch.cuda.is_available():
        from siftc.core.errors import UsageError
        raise UsageError("siftc selftest --device cuda: torch sees no CUDA device (torch.cuda.is_available() is False)")
    models = _models(device, quick)
    steps = 8 if quick else 20
    backend = "inductor" if device == "cuda" else "aot_eager"
    members = ("wide", "parallel", "sparse") if quick else MEMBERS
    rows = []
    for name, (factory, inputs, loss) in models.items():
        if progress:
            progress(f"{name}: eager")
        rows += _eager_checks(name, factory, inputs, device)
        for member in members:
            if progress:
                progress(f"{name}: {member}")
            rows += _member_checks(name, factory, inputs, loss, member, device, steps, backend)
    if progress:
        progress("device checks")
    rows += _device_checks(device, models)
    return rows


def table(rows, device: str) -> str:
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    lines = [f"siftc selftest on {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads", "",
             "| check | case | result | figure |", "|---|---|---|---|"]
    for r in rows:
        result = "skipped" if r.ok is None else "pass" if r.ok else "FAIL"
        lines.append(f"| {r.check} | {r.case} | {result} | {r.figure or r.note} |")
    failed = sum(1 for r in rows if r.ok is False)
    lines += ["", f"{len(rows)} checks: {sum(1 for r in rows if r.ok)} passed, {failed} failed, "
                  f"{sum(1 for r in rows if r.ok is None)} skipped"]
    return "\n".join(lines)


def main(args) -> int:
    from tqdm import tqdm
    bar = None if args.no_progress else tqdm(total=None, desc="selftest", bar_format="{desc}: {elapsed} {postfix}")

    def progress(text):
        if bar is not None:
            bar.set_postfix_str(text)
    t = time.perf_counter()
    rows = run(args.device, args.quick, progress)
    if bar is not None:
        bar.close()
    print(table(rows, args.device))
    print(f"{time.perf_counter() - t:.0f} s")
    return 1 if any(r.ok is False for r in rows) else 0
