"""Every zoo model x {parallel, factorized, doped, sparse} x s in {.5, .75, .9} (issue 2 acceptance).

Each cell: compiles on CPU, output shape unchanged, forward + backward run, iso-FLOP ratio within
0.5% of 1 (iso=exact; the 'sparse' baseline is not iso-FLOP by design, so for it the test checks
the FLOPs it should have instead), and the conv/linear FLOPs a forward-hook counter measures on
the real tensors equal the report's.
"""

import pytest
import torch

import models_zoo
import siftc
from conftest import hook_flops, small_model

MEMBERS = ["parallel", "factorized", "doped", "sparse"]
SPARSITIES = [0.5, 0.75, 0.9]


@pytest.mark.parametrize("name", models_zoo.list_models())
@pytest.mark.parametrize("member", MEMBERS)
@pytest.mark.parametrize("s", SPARSITIES)
def test_zoo_member_sparsity(name, member, s):
    model, inputs = small_model(name)
    with torch.no_grad():
        ref = model(*inputs)
    gm = siftc.compile(model, target="cpu", policy=f"{member}:{s}", example_inputs=inputs)
    out = gm(*inputs)
    assert out.shape == ref.shape
    out.float().pow(2).mean().backward()
    assert all(p.grad is not None for n, p in gm.named_parameters() if "branches" in n or n.endswith(".S.weight"))
    rep = siftc.report(gm)
    assert rep.layers, "every zoo model has sparsifiable layers"
    if member == "sparse":
        # the baseline: every rewritten layer keeps exactly round((1-s) numel) weights
        for layer in rep.layers:
            assert abs(layer["sparsity"] - s) < 1e-3
        assert rep.iso_flop_ratio < 1.0
    else:
        assert abs(rep.iso_flop_ratio - 1.0) <= 0.005, rep.iso_flop_ratio
    counted = rep.flops_by_category.get("conv", 0) + rep.flops_by_category.get("linear", 0)
    assert hook_flops(gm, inputs) == counted
