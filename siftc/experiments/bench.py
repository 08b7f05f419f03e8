"""``siftc bench compile``: compile time next to one eager forward pass, measured in one run.

For each (model, policy) case at batch 1 (zoo default input size): the fastest of ``--repeat``
eager forward passes of the original model (no grad), then the time of the first
``siftc.compile`` of the model with the policy, its iso-FLOP ratio, and a second compile at
s=0.7 (what a sweep over sparsities pays once the analyses are cached). The process first
compiles a tiny model (parallel and wide) so one-time costs of the process (imports:
FakeTensorMode pulls in torch._dynamo, ~2 s; sympy's lazy modules on couple's first solve, ~0.3 s)
are not charged to the first model; that warm-up is printed too. Target: compile < 10 forward
passes. Default cases: resnet18, resnet50 and gpt3_small at parallel:0.75 and wide:0.75
(gpt3_small with iso=nominal, since its widened dense LM head alone exceeds the budget: the
ratio column shows the overshoot, docs/method.md's ~1.40x). ``--models`` takes zoo names and
``hf:FAMILY`` (a Hugging Face family at a small config: models_zoo/hf_families.py). A second table
splits each first compile by pass (the pass manager's timings).
"""
from __future__ import annotations

import statistics
import time
import warnings

import torch

from siftc.core.mask_api import is_masked, mask_of


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(args) -> int:
    if args.what == "dst":
        return dst_main(args)
    if args.what == "onnx":
        return onnx_main(args)
    if args.what == "lower":
        return lower_main(args)
    if args.what == "train":
        return train_main(args)
    import models_zoo
    import siftc
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    if args.models:
        cases = [(name, args.policy or "parallel:0.75") for name in args.models.split(",")]
    else:
        cases = DEFAULT_CASES
    # one-time costs of the process, not of a model: imports (FakeTensorMode pulls in
    # torch._dynamo), sympy's lazily imported modules and caches on couple's first solve (~0.3 s)
    warm = sum(_time(lambda: siftc.compile(models_zoo.create("mlp"), policy=p,
                                           example_inputs=models_zoo.example_inputs("mlp", 1)))
               for p in ("parallel:0.75", "wide:0.75,stem=sparse"))
    print(f"siftc bench compile  torch threads={torch.get_num_threads()}")
    print(f"one-time warm-up (imports; first compiles of mlp, parallel and wide): {warm:.2f} s")
    print("eager fwd: min of --repeat forwards of the original (batch 1); compile: the first compile of the "
          "model in this process; again: a second compile at s=0.7 (analyses reused)")
    print(f"{'model':12s} {'policy':26s} {'input':>16s} {'eager fwd (s)':>13s} {'compile (s)':>11s} "
          f"{'compile/fwd':>11s} {'again/fwd':>9s} {'iso ratio':>9s}  target < 10")
    per_pass = []
    for name, policy in cases:
        model, inputs = _bench_model(name)
        with torch.no_grad():
            fwd = min(_time(lambda: model(*inputs)) for _ in range(args.repeat))
        box = {}
        comp = _time(lambda: box.setdefault("gm", siftc.compile(model, policy=policy, example_inputs=inputs)))
        gm = box.pop("gm")
        iso = siftc.report(gm).iso_flop_ratio
        per_pass.append((name, policy, gm.siftc.timings, comp))
        del gm
        other = _other_sparsity(policy)
        again = _time(lambda: siftc.compile(model, policy=other, example_inputs=inputs))
        ratio = comp / fwd
        print(f"{name:12s} {policy:26s} {str(tuple(inputs[0].shape)):>16s} {fwd:13.3f} {comp:11.3f} {ratio:11.1f} "
              f"{again / fwd:9.1f} {iso:9.4f}  {'ok' if ratio < 10 else 'MISSED'}")
    # where the first compile's time went: each pass as the pass manager timed it (with the
    # analyses it re-ran and the verifier after it); "other" is the front door around them
    print("first compile by pass (s):")
    for name, policy, timings, total in per_pass:
        parts = " ".join(f"{p}={sec:.3f}" for p, sec in timings)
        print(f"  {name:12s} {policy:26s} {parts} other={max(0.0, total - sum(t for _, t in timings)):.3f}")
    return 0


def _bench_model(name: str):
    """(model in eval mode, batch-1 inputs): a models_zoo name, or ``hf:FAMILY`` for a Hugging Face
    family at its small config (models_zoo/hf_families.py: hidden 256, 4 layers, 32 tokens)."""
    import models_zoo
    if name.startswith("hf:"):
        from models_zoo import hf_families
        torch.manual_seed(0)
        return hf_families.create(name[3:], "small"), hf_families.example_inputs(name[3:], 1, 32)
    return models_zoo.create(name).eval(), models_zoo.example_inputs(name, 1)


def _other_sparsity(policy: str) -> str:
    """The same policy at s=0.7 (the second compile of a sweep over sparsities, of about the same size)."""
    member, _, rest = policy.partition(",")
    name, _, _ = member.partition(":")
    return f"{name}:0.7" + (f",{rest}" if rest else "")


DEFAULT_CASES = [("resnet18", "parallel:0.75"), ("resnet18", "wide:0.75"),
                 ("resnet50", "parallel:0.75"), ("resnet50", "wide:0.75"),
                 ("gpt3_small", "parallel:0.75"), ("gpt3_small", "wide:0.75,iso=nominal")]


DST_CASES = [   # (zoo model, create kwargs, policy, batch): the two cases the DST target is set on
    ("mlp", {"hidden": (1024, 1024, 1024)}, "wide:0.9,stem=sparse", 64),
    ("resnet18_cifar", {"width": 16}, "wide:0.9", 32),
]


def _cases(args, default: list):
    """The cases to time, built: (name, policy, batch, model, x, y), from --model/--policy/--width/
    --batch as one case, else ``default``; each model made from seed 0, with its input batch and
    10-class targets."""
    import models_zoo
    if args.model:
        kw = {"width": args.width} if "resnet" in args.model else {}
        default = [(args.model, kw, args.policy or "wide:0.9", args.batch or 32)]
    for name, kw, policy, batch in default:
        torch.manual_seed(0)
        model = models_zoo.create(name, **kw)
        x = models_zoo.example_inputs(name, batch)[0]
        yield name, policy, batch, model, x, torch.randint(0, 10, (batch,))


def dst_main(args) -> int:
    """``siftc bench dst``: step time of (a) the compiled model under DST (RigL, dT=100, so mask
    updates and their dense-gradient capture fall inside the run) and (b) a plain model of the
    same (wide) shape without masks or hooks, both with momentum SGD, measured alternately in one
    run: the ratio of medians (the steady step, robust to a busy machine) and the amortized
    ratio, which adds what the dense-gradient capture and mask-update steps cost above the
    median, spread over all steps. Default cases: the MLP 784-1024x3-10 at
    ``wide:0.9,stem=sparse`` batch 64 and resnet18_cifar (width 16) at ``wide:0.9`` batch 32.
    Target: (a)/(b) <= 1.05.
    """
    import copy

    import torch.nn.functional as F

    import siftc
    from siftc.core.masking import strip
    warnings.simplefilter("ignore")
    print(f"siftc bench dst  torch threads={torch.get_num_threads()}  steps={args.steps} per model "
          f"(median ms/step, interleaved)")
    print(f"{'model':16s} {'policy':22s} {'batch':>5s} {'(a) DST rigl':>12s} {'(b) plain':>10s} "
          f"{'updates':>7s} {'median':>8s} {'amortized':>9s}  (a)/(b) target <= 1.05")
    for name, policy, batch, model, x, y in _cases(args, DST_CASES):
        gm = siftc.compile(model, policy=f"{policy},dst=rigl,dT=100", example_inputs=(x,))
        plain = copy.deepcopy(gm)               # same graph and shapes; strip masks and hooks
        strip(plain)
        opt_a = torch.optim.SGD(gm.parameters(), lr=0.01, momentum=0.9)
        opt_b = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
        dst = siftc.DST(gm, opt_a, total_steps=(args.steps + 3) * 2)   # updates at t = 100, 200, ...

        def step_a():
            F.cross_entropy(gm(x), y).backward(); opt_a.step(); dst.step(); opt_a.zero_grad()

        def step_b():
            F.cross_entropy(plain(x), y).backward(); opt_b.step(); opt_b.zero_grad()

        for _ in range(3):
            step_a(); step_b()
        ta, tb, special = [], [], set()
        for i in range(args.steps):             # alternate so both see the same machine state
            before = dst.updates
            ta.append(_time(step_a))
            tb.append(_time(step_b))
            if dst.updates != before:           # this step updated masks, the one before captured
                special |= {i - 1, i}           # the dense gradient (RigL)
        # median: the steady step, robust to a busy machine. amortized: the median plus what the
        # capture and update steps cost above it, spread over all steps (the mean, without
        # charging noise on other steps to either side)
        a, b = statistics.median(ta), statistics.median(tb)
        amortized = (a * len(ta) + sum(ta[i] - a for i in special if 0 <= i < len(ta))) / (b * len(tb))
        print(f"{name:16s} {policy:22s} {batch:5d} {a * 1e3:12.2f} {b * 1e3:10.2f} {dst.updates:7d} "
              f"{a / b:8.3f} {amortized:9.3f}  {'ok' if max(a / b, amortized) <= 1.05 else 'MISSED'}")
    return 0


TRAIN_CASES = [   # (zoo model, create kwargs, policy, batch): the cases the training-kernel target is set on
    ("mlp", {"hidden": (1024, 1024, 1024)}, "wide:0.9,stem=sparse", 64),
    ("resnet18_cifar", {"width": 16}, "wide:0.9", 32),
]


def train_main(args) -> int:
    """``siftc bench train``: one training step (forward, backward, momentum SGD) of (a) the dense
    original, (b) the Sparse Wide model as compiled (masked dense: zeros multiplied), (c) the
    same model compiled with ``kernels=auto`` (masked linears through sparse kernels where measured
    faster, siftc/core/train_kernels.py), (d) a second copy of (c) stepped under ``siftc.DST``
    (static masks: DST must cost nothing there), timed round-robin in one run, min of ``--steps``.
    Prints (b)/(a), (c)/(a) and (d)/(c). Targets (c)/(a): <= 4 on the MLP at batch 64, <= 5 on
    resnet18_cifar (stretch 2); (d)/(c) <= 1.05; iso-FLOP is 1.0. Sparse kernels cover nn.Linear
    only: convs stay masked dense, which the layer counts column shows.
    """
    import torch.nn.functional as F

    import siftc
    warnings.simplefilter("ignore")
    print(f"siftc bench train  torch threads={torch.get_num_threads()}  min of {args.steps} interleaved steps "
          f"(ms/step)")
    print(f"{'model':16s} {'policy':22s} {'batch':>5s} {'(a) dense':>9s} {'(b) masked':>10s} {'(c) auto':>9s} "
          f"{'(d) +DST':>9s} {'sparse layers':>13s} {'(b)/(a)':>8s} {'(c)/(a)':>8s} {'(d)/(c)':>8s}")
    for name, policy, batch, model, x, y in _cases(args, TRAIN_CASES):
        masked = siftc.compile(model, policy=policy, example_inputs=(x,))
        auto = siftc.compile(model, policy=f"{policy},kernels=auto", example_inputs=(x,))
        under_dst = siftc.compile(model, policy=f"{policy},kernels=auto", example_inputs=(x,))
        lowered = sum(d["kernel"] != "dense" for d in auto.siftc.state.kernels.values())
        layers = len(auto.siftc.masks())
        models = {"dense": model, "masked": masked, "auto": auto, "dst": under_dst}
        opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}
        dst = siftc.DST(under_dst, opts["dst"], total_steps=10 ** 6, method="static")

        def step(k):
            F.cross_entropy(models[k](x), y).backward()
            opts[k].step()
            if k == "dst":
                dst.step()
            opts[k].zero_grad()
        for k in models:
            models[k].train()
            step(k)
        from siftc.core.kernels import interleaved_min_ms
        t = interleaved_min_ms({k: (lambda k=k: step(k)) for k in models}, args.steps)
        print(f"{name:16s} {policy:22s} {batch:5d} {t['dense']:9.2f} {t['masked']:10.2f} {t['auto']:9.2f} "
              f"{t['dst']:9.2f} {f'{lowered} of {layers}':>13s} {t['masked'] / t['dense']:8.2f} "
              f"{t['auto'] / t['dense']:8.2f} {t['dst'] / t['auto']:8.2f}")
        if args.convs:
            conv_table(masked, x, args.steps)
    return 0


def conv_table(gm, x, steps: int) -> None:
    """``siftc bench train --convs``: why the convolutions stay masked dense. Each masked
    ``nn.Conv2d`` of the compiled model, at the input shape it sees in the model, forward +
    backward (input and weight gradients): the dense conv of the widened layer with its zeros
    against sparseprop's sparse convolution (kept weights only, both of its loop orders), timed
    interleaved, min of ``steps``. Each sparse output is checked against the dense one first
    (max relative error printed). Needs the sparseprop package (``pip install pybind11 &&
    pip install --no-build-isolation sparseprop``) and a batch that is a multiple of 8: its
    batch-vectorised forward is wrong on other batches (docs/api.md, "Sparse kernels in training",
    lists what was found wrong in it and why no training path uses it)."""
    import torch.nn.functional as F

    from siftc.core.kernels import interleaved_min_ms
    from siftc.core.train_kernels import sparseprop_available
    if not sparseprop_available():
        print("  --convs: sparseprop is not installed (pip install pybind11 && pip install --no-build-isolation "
              "sparseprop): no sparse convolution to time")
        return
    if x.shape[0] % 8:
        print(f"  --convs: batch {x.shape[0]} is not a multiple of 8, on which sparseprop's batch-vectorised "
              f"convolution forward is wrong: use --batch 8, 16, 32, ...")
        return
    from sparseprop.modules.functions import SparseConvFunction
    from sparseprop.modules.utils import to_sparse_format_conv2d
    seen, hooks = {}, []

    def record(q):
        def hook(m, inputs, output):      # (returns None: the output stays the layer's)
            seen.setdefault(q, (m, tuple(inputs[0].shape)))
        return hook
    for q, m in gm.named_modules():
        if isinstance(m, torch.nn.Conv2d) and is_masked(m):
            hooks.append(m.register_forward_hook(record(q)))
    with torch.no_grad():
        gm(x)
    for h in hooks:
        h.remove()
    if not seen:
        print(f"  --convs: {type(gm).__name__} has no masked nn.Conv2d")
        return
    print(f"  masked convs of {type(gm).__name__} at batch {x.shape[0]}: forward + backward, ms (min of {steps} "
          f"interleaved); sparseprop = the faster of its two loop orders")
    print(f"  {'layer':26s} {'weight':>20s} {'input':>20s} {'density':>7s} {'dense':>8s} {'sparseprop':>10s} "
          f"{'dense/sparse':>12s} {'max rel err':>11s}")
    total = {"dense": 0.0, "sparse": 0.0}
    for q, (m, shape) in seen.items():
        w = m.weight.detach().float()
        square = m.kernel_size[0] == m.kernel_size[1] and len(set(m.padding)) == 1 and len(set(m.stride)) == 1
        # what sparseprop's convolution computes; it crashed on a padding wider than half the kernel
        # and on a layer with no kept weight
        fits = (square and m.groups == 1 and m.dilation == (1, 1) and m.stride[0] in (1, 2)
                and m.padding_mode == "zeros" and m.padding[0] <= m.kernel_size[0] // 2 and bool(mask_of(m).any()))
        density = float(mask_of(m).float().mean())
        inp = torch.randn(shape, requires_grad=True)
        weight = w.clone().requires_grad_(True)
        out_shape = F.conv2d(inp.detach(), w, None, m.stride, m.padding).shape
        grad = torch.randn(out_shape)

        def dense():
            inp.grad = weight.grad = None
            F.conv2d(inp, weight, None, m.stride, m.padding).backward(grad)
        fns = {"dense": dense}
        err = float("nan")
        if fits:
            values, index = to_sparse_format_conv2d(w)
            values.requires_grad_(True)
            for order in (False, True):
                fwd_on = order and m.stride[0] == 1       # sparseprop's over-width order: stride 1 only

                def sparse(fwd_on=fwd_on, order=order):
                    inp.grad = values.grad = None
                    SparseConvFunction.apply(inp, values, index, None, w.shape[0], w.shape[2], m.padding[0],
                                             m.stride[0], fwd_on, order).backward(grad)
                fns[f"sparse{int(order)}"] = sparse
            with torch.no_grad():        # each timed forward's output against the dense one
                ref = F.conv2d(inp, w, None, m.stride, m.padding)
                err = max(float((SparseConvFunction.apply(inp.detach(), values.detach(), index, None, w.shape[0],
                                                          w.shape[2], m.padding[0], m.stride[0], fwd_on, False)
                                 - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
                          for fwd_on in {False, m.stride[0] == 1})
        t = interleaved_min_ms(fns, steps)
        sparse_ms = min((v for k, v in t.items() if k != "dense"), default=float("nan"))
        total["dense"] += t["dense"]
        total["sparse"] += min(t["dense"], sparse_ms) if fits else t["dense"]
        print(f"  {q:26s} {str(tuple(w.shape)):>20s} {str(shape):>20s} {density:7.3f} {t['dense']:8.2f} "
              f"{sparse_ms:10.2f} {t['dense'] / sparse_ms:12.2f} {err:11.1e}")
    print(f"  all masked convs: dense {total['dense']:.1f} ms; each layer through the faster of the two "
          f"{total['sparse']:.1f} ms ({total['dense'] / max(total['sparse'], 1e-9):.2f}x)")


def onnx_main(args) -> int:
    """``siftc bench onnx``: ONNX file size with sparse initializers vs the same compiled model
    exported with dense initializers (zeros stored), both written in one run. Target:
    gpt_tiny and resnet18_cifar at wide:0.9, sparse file <= 40% of the dense one.
    """
    import os
    import tempfile

    import models_zoo
    import siftc
    from siftc.core.pipeline import AGAIN_PIPELINES
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    policy = args.policy or "wide:0.9"
    names = (args.models or "gpt_tiny,resnet18_cifar").split(",")
    print(f"siftc bench onnx  policy={policy}  exporter=dynamo  torch threads={torch.get_num_threads()}")
    print(f"{'model':16s} {'dense init (MB)':>16s} {'sparse init (MB)':>17s} {'sparse/dense':>13s} "
          f"{'ORT rel err':>12s}  target <= 0.40")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            model = models_zoo.create(name)
            inputs = models_zoo.example_inputs(name, 1)
            gm = siftc.compile(model, policy=policy, example_inputs=inputs)
            sizes, check = {}, None
            for mode in ("never", "auto"):
                path = os.path.join(tmp, f"{name}-{mode}.onnx")
                proto = siftc.compile(gm, target="onnx", path=path,
                                      pipeline=AGAIN_PIPELINES["onnx"].replace("export-onnx", f"export-onnx{{sparse={mode}}}"))
                sizes[mode] = os.path.getsize(path)
                if mode == "auto":
                    check = siftc.onnx_check(proto, gm, inputs, rtol=1e-3)
            ratio = sizes["auto"] / sizes["never"]
            print(f"{name:16s} {sizes['never'] / 1e6:16.2f} {sizes['auto'] / 1e6:17.2f} {ratio:13.3f} "
                  f"{check.max_rel_err:12.2e}  {'ok' if ratio <= 0.40 else 'MISSED'}")
    return 0


def lower_main(args) -> int:
    """``siftc bench lower``: inference latency, measured side by side in one run, of
    (a) the dense original, (b) its Sparse Wide version with masked dense weights, (c) the same
    lowered (siftc.kernels: torch CSR, BSR for block masks, or MKL, where measured faster at that
    batch), (d) the Sparse Wide model exported to ONNX (sparse initializers) in onnxruntime and
    (e) the same model in OpenVINO (f32, from the dense-initializer export: OpenVINO's ONNX reader
    takes no sparse initializers; when ``openvino`` is installed), at batch 1, 32 and 256,
    with unstructured masks and with ``pattern=block:16``, for gpt3_small's MLP block as it is
    inside the widened model (taken from a compiled 1-block gpt3_small with iso=nominal, so its
    layers have density 1-s exactly; with iso=exact a 1-block model's density is set by its huge LM
    head), resnet18_cifar (width 16, batch 1 and 32; unstructured only) and the MNIST mlp (stem=sparse). Every runtime
    gets the same threads. Targets (s=0.9): unstructured (b)/(c) >= 3 at batch 1 and 32, (c)/(a)
    <= 2.5; block:16 (c)/(a) <= 1.5.
    """
    import copy
    import os
    import tempfile

    import numpy as np
    import onnxruntime as ort

    import models_zoo
    import siftc
    from siftc.core import kernels
    from models_zoo.gpt import GPTConfig, MLPBlock
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    s = args.sparsity
    threads = torch.get_num_threads()
    try:
        import openvino
    except ImportError:
        openvino = None
    print(f"siftc bench lower  s={s}  threads={threads} (torch, onnxruntime, OpenVINO)  (ms per forward, fastest "
          f"of interleaved runs)" + ("" if openvino else "  [OpenVINO column: pip install openvino]"))
    print(f"{'model':15s} {'pattern':9s} {'batch':>5s} {'(a) dense':>10s} {'(b) wide masked':>16s} "
          f"{'(c) lowered':>12s} {'(d) ORT':>8s} {'(e) OV':>8s} {'kernels':>9s} {'(b)/(c)':>8s} {'(c)/(a)':>8s} "
          f"{'(d)/(a)':>8s} {'(e)/(a)':>8s}  targets")
    for pattern in ("none", "block:16"):
        extra = "" if pattern == "none" else f",pattern={pattern}"
        gpt = siftc.compile(models_zoo.create("gpt3_small", n_layer=1), policy=f"wide:{s},iso=nominal{extra}",
                            example_inputs=models_zoo.example_inputs("gpt3_small", 1, 16))
        # fx keeps the module tree but not MLPBlock's forward: rebuild c_proj(gelu(c_fc(x)))
        block = torch.nn.Sequential(*(gpt.get_submodule(f"h.0.mlp.{n}") for n in ("c_fc", "gelu", "c_proj"))).eval()
        mlp = siftc.compile(models_zoo.create("mlp"), policy=f"wide:{s},stem=sparse{extra}",
                            example_inputs=models_zoo.example_inputs("mlp", 2)).eval()
        d_wide = block[0].weight.shape[1]
        cases = [("gpt3_small.mlp", MLPBlock(GPTConfig()).eval(), block, lambda b: (torch.randn(b, 768),),
                  lambda b, d=d_wide: (torch.randn(b, d),), (1, 32, 256))]
        if pattern == "none":     # (block:16 on its 16-wide convs misses the iso tolerance; the block
            resnet = models_zoo.create("resnet18_cifar", width=16).eval()      # target is set on the MLP block)
            resnet_wide = siftc.compile(resnet, policy=f"wide:{s}",
                                        example_inputs=models_zoo.example_inputs("resnet18_cifar", 2)).eval()
            cases.append(("resnet18_cifar", resnet, resnet_wide, lambda b: (torch.randn(b, 3, 32, 32),), None, (1, 32)))
        cases.append(("mlp", models_zoo.create("mlp").eval(), mlp, lambda b: (torch.rand(b, 1, 28, 28),), None,
                      (1, 32, 256)))
        blocksize = 16 if pattern != "none" else None
        for name, dense, wide, inputs_a, inputs_b, batches in cases:
            runtimes = _exported_runtimes(wide, (inputs_b or inputs_a)(2), threads, ort, openvino, tempfile, os)
            for batch in batches:
                xa = inputs_a(batch)
                xb = inputs_b(batch) if inputs_b else xa
                low = copy.deepcopy(wide)
                decisions, _ = kernels.lower_tree(low, xb, blocksize=blocksize)
                feed = [np.ascontiguousarray(x.numpy()) for x in xb]
                fns = {"a": lambda: dense(*xa), "b": lambda: wide(*xb), "c": lambda: low(*xb)}
                fns.update({k: (lambda run=run: run(feed)) for k, run in runtimes.items()})
                repeat = 20 if batch < 256 else 8
                with torch.no_grad():       # interleaved, fastest of each: side by side in one run
                    t = kernels.interleaved_min_ms(fns, repeat)
                ta, tb, tc = t["a"], t["b"], t["c"]
                used = "/".join(sorted({k["kernel"] for k in decisions.values()}))
                bc, ca = tb / tc, tc / ta
                if pattern == "none":
                    verdict = ("" if batch == 256 else f"(b)/(c)>=3 {'ok' if bc >= 3 else 'MISSED'}; ") + \
                        f"(c)/(a)<=2.5 {'ok' if ca <= 2.5 else 'MISSED'}"
                else:
                    verdict = f"(c)/(a)<=1.5 {'ok' if ca <= 1.5 else 'MISSED'}"
                cols = [f"{t[k]:8.3f}" if k in t else f"{'n/a':>8s}" for k in ("d", "e")]
                ratios = [f"{t[k] / ta:8.2f}" if k in t else f"{'n/a':>8s}" for k in ("d", "e")]
                print(f"{name:15s} {pattern:9s} {batch:5d} {ta:10.3f} {tb:16.3f} {tc:12.3f} {cols[0]} {cols[1]} "
                      f"{used:>9s} {bc:8.2f} {ca:8.2f} {ratios[0]} {ratios[1]}  {verdict}")
    return 0


def _exported_runtimes(wide, example: tuple, threads: int, ort, openvino, tempfile, os) -> dict:
    """{"d": onnxruntime run, "e": OpenVINO run (when installed)} of ``wide`` exported to ONNX
    with sparse initializers (dynamic batch), each taking a list of numpy inputs."""
    import siftc
    proto = siftc.export_onnx(wide, example)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out = {"d": lambda feed: sess.run(None, dict(zip(names, feed)))}
    if openvino is not None:      # its ONNX reader takes no sparse initializers: the dense-initializer export
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "model.onnx")
            with open(path, "wb") as f:
                f.write(siftc.export_onnx(wide, example, sparse="never").SerializeToString())
            core = openvino.Core()
            compiled = core.compile_model(core.read_model(path), "CPU",
                                          {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
        out["e"] = lambda feed: compiled(feed)
    return out
