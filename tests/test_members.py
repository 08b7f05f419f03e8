"""Member sizes against docs/method.md: factorized inner dims, parallel branches, doped rank."""
import pytest
import torch
from torch import nn

import models_zoo
import siftc
from siftc.core.members import doped_rank, factorized_inner_dim, parallel_branches

SPEC_FACTORIZED = {   # docs/method.md, "The family": ResNet-18 3x3 convs (f_in, f_out)
    0.5: [116, 210, 231, 419, 461, 838, 922],
    0.75: [231, 419, 461, 838, 922, 1676, 1844],
    0.9: [577, 1048, 1153, 2095, 2305, 4190, 4609],
}
PAIRS = [(64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512)]


@pytest.mark.parametrize("s", [0.5, 0.75, 0.9])
def test_resnet18_factorized_inner_dims_match_spec(s):
    model = models_zoo.create("resnet18")
    gm = siftc.compile(model, policy=f"factorized:{s}", example_inputs=models_zoo.example_inputs("resnet18", 1, 32))
    dims = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d) and mod.kernel_size == (3, 3) and name != "conv1":
            layer = gm.get_submodule(name)
            dims[(mod.in_channels, mod.out_channels)] = layer.U.out_channels
            assert layer.V.kernel_size == (1, 1) and layer.U.stride == mod.stride
    assert [dims[p] for p in PAIRS] == SPEC_FACTORIZED[s]
    assert [factorized_inner_dim(9 * a, b, s) for a, b in PAIRS] == SPEC_FACTORIZED[s]


def test_parallel_branch_counts():
    assert [parallel_branches(s) for s in (0.5, 0.6, 0.75, 0.9)] == [2, 3, 4, 10]


def test_doped_rank_formula_and_structure():
    assert doped_rank(9 * 64, 64, 0.9) == int(0.9 * 9 * 64 * 64 / (9 * 64 + 64))
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    gm = siftc.compile(model, policy="doped:0.75", example_inputs=(torch.randn(3, 8),))
    layer = gm.get_submodule("2")
    assert layer.rank == doped_rank(32, 32, 0.75) == 12
    assert not hasattr(layer.U, "weight_mask") and not hasattr(layer.V, "weight_mask")   # U, V dense
    assert hasattr(layer.S, "weight_mask")


@pytest.mark.parametrize("form, relus", [("cifar", 0), ("imagenet", 4)])
def test_parallel_structure_has_a_norm_per_branch_and_a_relu_per_branch_in_the_imagenet_form(form, relus):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    x = torch.randn(2, 3, 12, 12)
    model(x)
    policy = "parallel:0.75" if form == "cifar" else f"parallel:0.75,parallel_form={form}"   # cifar: the default
    gm = siftc.compile(model, policy=policy, example_inputs=(x,))
    calls = [n for n in gm.graph.nodes if n.meta.get("siftc.origin") == "2"]
    mods = [str(n.target) for n in calls if n.op == "call_module"]
    assert sorted(mods) == sorted([f"2.branches.{i}" for i in range(4)] + [f"2.norms.{i}" for i in range(4)])
    assert sum(n.op == "call_function" and n.target is torch.nn.functional.relu for n in calls) == relus
    assert sum(n.op == "call_function" and "add" in str(n.target) for n in calls) == 3
    assert isinstance(gm.get_submodule("2.norms.0"), nn.BatchNorm2d)
    assert gm.siftc.policy.parallel_form == form


def test_parallel_combine_mean_is_the_sum_over_k_and_a_following_norm_cancels_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 8 * 8, 2))
    x = torch.randn(4, 3, 12, 12)
    # parallel_form=siftc keeps the model's BatchNorm after the sum (the other forms replace it)
    summed = siftc.compile(model, policy="parallel:0.75,parallel_form=siftc", example_inputs=(x,))
    mean = siftc.compile(model, policy="parallel:0.75,combine=mean,parallel_form=siftc", example_inputs=(x,))
    assert str(siftc.Policy.parse("parallel:0.9,combine=mean")) == "parallel:0.9,combine=mean"
    mean.load_state_dict(summed.state_dict())           # same weights and masks; only the combine differs
    feats = {}                                          # the input of the model's BatchNorm "3"
    for gm, key in ((summed, "sum"), (mean, "mean")):
        h = gm.get_submodule("3").register_forward_pre_hook(lambda m, a, key=key: feats.setdefault(key, a[0]))
        gm(x)
        h.remove()
    assert torch.allclose(feats["mean"], feats["sum"] / 4, atol=1e-6)
    assert feats["sum"].abs().max() > 1                 # the sum of 4 branches is not already tiny
    # the model's own BatchNorm follows: the two compiles compute the same function (up to its eps)
    assert torch.allclose(summed(x), mean(x), atol=1e-3)
    with pytest.raises(siftc.PolicyError, match="combine"):
        siftc.Policy.parse("parallel:0.9,combine=max")


def test_factorized_linear_gets_layernorm_and_relu():
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    gm = siftc.compile(model, policy="factorized:0.5", example_inputs=(torch.randn(3, 8),))
    layer = gm.get_submodule("2")
    assert isinstance(layer.norm, nn.LayerNorm)
    assert layer.U.out_features == factorized_inner_dim(64, 64, 0.5) == 64


def test_stem_and_head_sparse_on_request():
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    x = (torch.randn(3, 8),)
    default = siftc.report(siftc.compile(model, policy="sparse:0.5", example_inputs=x))
    assert [layer["name"] for layer in default.layers] == ["2"]
    both = siftc.report(siftc.compile(model, policy="sparse:0.5,stem=sparse,head=sparse", example_inputs=x))
    assert [layer["name"] for layer in both.layers] == ["0", "2", "4"] and both.left_dense == []


def test_grouped_conv_left_dense_with_reason():
    model = models_zoo.create("mobilenet_v2")
    rep = siftc.report(siftc.compile(model, policy="parallel:0.5",
                                     example_inputs=models_zoo.example_inputs("mobilenet_v2", 2, 32)))
    grouped = [d for d in rep.left_dense if d["reason"].startswith("grouped/depthwise")]
    assert len(grouped) == 17 and all(d["flops"] > 0 for d in grouped)   # one depthwise conv per block


def test_the_papers_parallel_form_makes_residual_updates_non_negative_and_k_times_larger():
    """Why parallel_form=imagenet is not the default (docs/results.md, "Sparse Parallel's form"):
    with a ReLU per branch, the branch sum feeding a ResNet block's residual add is >= 0 and the
    features reaching the classifier grow about k-fold at initialisation; the CIFAR form's sum
    has both signs and keeps them near the dense model's scale."""
    from models_zoo.resnet import resnet18_cifar
    torch.manual_seed(0)
    x = torch.randn(16, 3, 32, 32)
    fc_in = {}

    def features(model, key):
        fc = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        h = fc.register_forward_pre_hook(lambda m, a: fc_in.__setitem__(key, a[0].mean().item()))
        with torch.no_grad():
            model(x)
        h.remove()

    dense = resnet18_cifar(width=16)
    features(dense, "dense")
    sums = {}
    for form in ("imagenet", "cifar"):
        gm = siftc.compile(resnet18_cifar(width=16), policy=f"parallel:0.75,parallel_form={form}",
                           example_inputs=(x[:2],))
        block = gm.get_submodule("layer1.0.conv2")            # its output goes to the residual add
        seen = {}                                              # (the graph inlines the member's forward)
        h = block.branches[0].register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0]))
        features(gm, form)
        h.remove()
        with torch.no_grad():
            sums[form] = block(seen["x"])
    assert sums["imagenet"].min() >= 0 and sums["cifar"].min() < 0
    assert fc_in["imagenet"] > 3 * fc_in["dense"] and fc_in["cifar"] < 2 * fc_in["dense"]
