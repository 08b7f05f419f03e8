"""Shared test helpers: small zoo configurations and an independent FLOP counter (forward hooks)."""
from __future__ import annotations

import gc
import warnings

import pytest
import torch
from torch import nn

import models_zoo


def pytest_addoption(parser):
    parser.addoption("--regen-golden", action="store_true", help="rewrite tests/golden/ from the current code")


@pytest.fixture
def regen_golden(request):
    return request.config.getoption("--regen-golden")


# Small but faithful configurations for the model x member x sparsity matrix: same widths and
# structure as the zoo default, smaller inputs (and 2 of gpt3_small's 12 identical blocks) so the
# 120-cell matrix fits the CI budget on 2 cores.
SMALL = {
    "mlp": ({}, None),
    "mnist_cnn": ({}, None),
    "resnet18_cifar": ({}, 32),
    "resnet18": ({}, 64),
    "resnet34": ({}, 64),
    "resnet50": ({}, 64),
    "mobilenet_v2": ({}, 64),
    "gpt_tiny": ({}, 32),
    "gpt3_small": ({"n_layer": 2}, 64),
    "vit_tiny": ({}, 32),
    "bert_tiny": ({}, 32),
    "gpt2_tiny": ({}, 16),
    "bert_hf_tiny": ({}, 16),
    "inception_tiny": ({}, 16),
    "resnext_tiny": ({}, 16),
    "gated_mlp": ({}, None),
}


def small_model(name, batch_size=2):
    kw, size = SMALL[name]
    torch.manual_seed(0)
    return models_zoo.create(name, **kw), models_zoo.example_inputs(name, batch_size, size)


def coupling_groups(run) -> tuple:
    """What Sparse Wide's coupling solves from a symbolic run (ShapeEnv's or the size rules'):
    (groups as sorted (members, shared dims, width, unit), fixed dims with size and reason)."""
    from siftc.core.symdims import solve
    from siftc.passes.couple import build_groups
    found, fixed = build_groups(run, solve(run))
    return sorted((sorted(g.members), sorted(g.shared), g.width, g.unit) for g in found), sorted(fixed.items())


def resume_after_checkpoint(gm, loss, save, load, directory, total_steps: int, before: int, after: int = 4):
    """The DST resume scenario: train ``gm`` under siftc.DST (momentum SGD) for ``before`` steps,
    checkpoint it (``save(gm, directory)``, and the optimizer's and DST's state with torch.save),
    train ``after`` steps more; then ``load(directory)``, restore both states (weights_only) and
    train the loaded model ``after`` steps. ``loss(model)`` is one step's loss. Returns (gm's DST,
    the resumed model, its DST) for the caller to compare."""
    import siftc

    def run(model, opt, dst, n):
        model.train()
        for _ in range(n):
            loss(model).backward()
            opt.step()
            dst.step()
            opt.zero_grad()
    opt = torch.optim.SGD(gm.parameters(), lr=0.05, momentum=0.9)
    dst = siftc.DST(gm, opt, total_steps=total_steps)
    run(gm, opt, dst, before)
    save(gm, directory)
    state_file = directory.parent / f"{directory.name}.run.pt"
    torch.save({"opt": opt.state_dict(), "dst": dst.state_dict()}, state_file)
    run(gm, opt, dst, after)
    back = load(directory)
    state = torch.load(state_file, weights_only=True)
    opt2 = torch.optim.SGD(back.parameters(), lr=0.05, momentum=0.9)
    opt2.load_state_dict(state["opt"])
    dst2 = siftc.DST(back, opt2, total_steps=total_steps)
    dst2.load_state_dict(state["dst"])
    run(back, opt2, dst2, after)
    return dst, back, dst2


def hook_flops(model, inputs) -> int:
    """Conv/linear FLOPs counted by running the model: 2 x non-zero weights x output positions.

    Independent of siftc's flops pass: it reads the real output tensors at run time and counts
    the mask's True entries (a dense weight counts all entries; the weight itself may hold a few
    exact zeros drawn by the normal init, which are not structural sparsity).
    """
    total = 0

    def hook(mod, args, out):
        nonlocal total
        mask = getattr(mod, "weight_mask", None)
        nnz = int(mask.sum()) if mask is not None else mod.weight.numel()
        positions = out.numel() // out.shape[-1] if isinstance(mod, nn.Linear) else out.numel() // out.shape[1]
        total += 2 * nnz * positions

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total


@pytest.fixture(autouse=True)
def _quiet_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield
    # fx GraphModules always sit in a reference cycle (gm.graph.owning_module is gm), so only the
    # cyclic collector frees them; without this a worker piles up GBs of widened zoo models
    gc.collect()
