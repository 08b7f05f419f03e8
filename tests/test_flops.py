"""Our FLOPs against torch.utils.flop_counter.FlopCounterMode, and SDPA which it counts as 0 on CPU."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import models_zoo
import siftc
from conftest import small_model
from siftc.passes.flops import sdpa_flops


@pytest.mark.parametrize("name", models_zoo.list_models())
def test_dense_matmul_flops_equal_flop_counter(name):
    model, inputs = small_model(name)
    gm = siftc.compile(model, policy="dense", example_inputs=inputs)
    rep = siftc.report(gm)
    ours = sum(rep.budget_by_category.get(c, 0) for c in ("conv", "linear", "matmul"))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*inputs)
    assert ours == counter.get_total_flops()
    assert rep.budget_flops == rep.sparse_flops   # dense policy: nothing changes


def test_sdpa_counted_by_us_not_by_flop_counter_on_cpu():
    q = torch.randn(2, 3, 16, 8)
    k = torch.randn(2, 3, 16, 8)
    v = torch.randn(2, 3, 16, 8)
    with FlopCounterMode(display=False) as counter:
        F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert counter.get_total_flops() == 0          # the gap siftc fills (docs/measurements.md)
    assert sdpa_flops((2, 3, 16, 8), (2, 3, 16, 8), (2, 3, 16, 8)) == 2 * 2 * 3 * 16 * 16 * (8 + 8)
    model, inputs = small_model("gpt_tiny")
    rep = siftc.report(siftc.compile(model, policy="dense", example_inputs=inputs))
    cfg = model.config
    B, T = inputs[0].shape
    hd = cfg.n_embd // cfg.n_head
    assert rep.budget_by_category["attention"] == cfg.n_layer * 2 * B * cfg.n_head * T * T * 2 * hd


def test_cifar_resnet18_budget_close_to_reference():
    # docs/method.md: the reference counter gives 1,115,226,800 FLOPs at batch 1 (it also counts BN/bias
    # adds a little differently); our conv+linear total must be within 0.5% of it.
    model = models_zoo.create("resnet18_cifar")
    rep = siftc.report(siftc.compile(model, policy="dense", example_inputs=models_zoo.example_inputs("resnet18_cifar", 1)))
    conv_linear = rep.budget_by_category["conv"] + rep.budget_by_category["linear"]
    assert abs(conv_linear / 1_115_226_800 - 1) < 0.005


def test_zoo_param_counts_match_torchvision():
    assert sum(p.numel() for p in models_zoo.create("resnet18").parameters()) == 11_689_512
    assert sum(p.numel() for p in models_zoo.create("mobilenet_v2").parameters()) == 3_504_872


@pytest.mark.parametrize("name", models_zoo.list_models())
def test_matmul_flops_equal_flop_counter_dense_and_density_scaled(name):
    """The report's matmul-class FLOPs against FlopCounterMode (math SDPA, so attention counts):
    the budget equals its count on the original model, and the compiled count equals its count on
    the compiled model with each masked module's FLOPs scaled by that module's mask density."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    model, inputs = small_model(name)
    gm = siftc.compile(model, policy="sparse:0.75", example_inputs=inputs)
    rep = siftc.report(gm)

    def count(m):
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
            m(*inputs)
        return counter

    assert rep.matmul_budget_flops == pytest.approx(count(model).get_total_flops(), rel=0.005)
    counter = count(gm.eval())
    per_module = counter.get_flop_counts()
    scaled = counter.get_total_flops()
    for q, mask in gm.siftc.masks().items():
        dense_q = sum(per_module.get(f"{type(gm).__name__}.{q}", {}).values())     # keys: root class + path
        scaled -= dense_q * (1 - int(mask.sum()) / mask.numel())
    assert rep.matmul_flops == pytest.approx(scaled, rel=0.005)
