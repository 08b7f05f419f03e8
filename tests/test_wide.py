"""Sparse Wide: channel groups (couple), whole-graph widening, reference widths, iso-FLOP, errors.

The zoo x sparsity matrix for ``wide`` lives in tests/test_zoo_matrix.py.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn

import models_zoo
from siftc import passes
import siftc
from conftest import coupling_groups, hook_flops, small_model
from siftc.core.state import CompileState
from siftc.core.errors import IsoFlopError, ShapeError
from siftc.core.policy import Policy

# docs/method.md, "Sparse Wide is a whole-graph rewrite": ResNet-18 (ImageNet) base widths and the
# reference's dense-equivalent parameter counts at s = .5 / .75 / .9.
REFERENCE = {0.5: (90, 22.81e6), 0.75: (128, 45.69e6), 0.9: (202, 112.83e6)}


@pytest.mark.parametrize("s", sorted(REFERENCE))
def test_resnet18_reference_widths_and_params(s):
    base, params = REFERENCE[s]
    model = models_zoo.create("resnet18")
    inputs = models_zoo.example_inputs("resnet18", 1, 64)
    gm = siftc.compile(model, policy=f"wide:{s},width=reference,round=1", example_inputs=inputs)
    assert gm.conv1.weight.shape[0] == base
    for stage, mult in (("layer1.1.conv2", 1), ("layer2.1.conv2", 2), ("layer3.1.conv2", 4), ("layer4.1.conv2", 8)):
        assert tuple(gm.get_submodule(stage).weight.shape[:2]) == (mult * base, mult * base)
    assert tuple(gm.fc.weight.shape) == (1000, 8 * base)        # the head widens its input only
    assert tuple(gm.conv1.weight.shape[1:]) == (3, 7, 7)        # the stem widens its output only
    rep = siftc.report(gm)
    assert abs(rep.dense_params - params) / params < 0.01, rep.dense_params
    assert abs(rep.iso_flop_ratio - 1) <= 0.005
    assert gm(*inputs).shape == (1, 1000)


@pytest.mark.parametrize("s,d_model", [(0.5, 1092), (0.75, 1536)])
def test_gpt3_small_widths_heads_ffn_tie(s, d_model):
    model = models_zoo.create("gpt3_small", n_layer=2)
    inputs = models_zoo.example_inputs("gpt3_small", 1, 64)
    # the dense LM head alone exceeds the budget when widened (see test below): iso=nominal keeps
    # the nominal sparsity and reports the overshoot, like the reference's GPT configs
    gm = siftc.compile(model, policy=f"wide:{s},iso=nominal", example_inputs=inputs)
    block = gm.get_submodule("h.1")
    assert tuple(gm.wte.weight.shape) == (50257, d_model)
    assert tuple(gm.wpe.weight.shape) == (2048, d_model)
    assert gm.lm_head.weight is gm.wte.weight                    # still tied: one parameter
    assert tuple(block.attn.c_attn.weight.shape) == (3 * d_model, d_model)
    assert tuple(block.mlp.c_fc.weight.shape) == (4 * d_model, d_model)
    assert tuple(block.mlp.c_proj.weight.shape) == (d_model, 4 * d_model)
    assert block.ln_1.normalized_shape == (d_model,) and tuple(block.ln_2.weight.shape) == (d_model,)
    heads = {n.meta["siftc.shape"] for n in gm.graph.nodes
             if n.op == "call_method" and n.target == "view" and len(n.meta["siftc.shape"]) == 4}
    assert heads == {(1, 64, 12, d_model // 12)}                  # 12 heads kept, head size grows
    assert gm(*inputs).shape == (1, 64, 50257)
    rep = siftc.report(gm)
    assert rep.iso_flop_ratio > 1.05 and "iso=nominal" in rep.iso_note
    assert all(abs(layer["sparsity"] - s) < 1e-3 for layer in rep.layers)


@pytest.mark.parametrize("name,kw,culprit", [("mlp", {}, "net.1"), ("gpt3_small", {"n_layer": 2}, "lm_head")])
def test_dense_ends_over_budget_raise_clearly(name, kw, culprit):
    model = models_zoo.create(name, **kw)
    inputs = models_zoo.example_inputs(name, 1, 64 if name == "gpt3_small" else None)
    with pytest.raises(IsoFlopError) as err:
        siftc.compile(model, policy="wide:0.75", example_inputs=inputs)
    msg = str(err.value)
    assert "unreachable" in msg and culprit in msg and "stem=sparse / head=sparse" in msg and "iso=nominal" in msg


class LiteralView(nn.Module):
    """A flatten written with a literal size: conv3's channels cannot grow (512 = 32 x 4 x 4)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1, stride=2)
        self.fc = nn.Linear(512, 64)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.conv3(F.relu(self.conv2(F.relu(self.conv1(x))))))
        x = x.view(x.size(0), 512)
        return self.head(F.relu(self.fc(x)))


class BatchMix(nn.Module):
    """A reshape that folds the batch into the channels with a literal row count."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(16, 8)

    def forward(self, x):
        y = F.relu(self.conv3(F.relu(self.conv2(F.relu(self.conv1(x))))))
        return self.fc(y.reshape(64, -1)).reshape(2, -1)


@pytest.mark.parametrize("model,shape,node", [(LiteralView(), (2, 3, 8, 8), "view"),
                                              (BatchMix(), (2, 3, 4, 4), "reshape")])
def test_unresolvable_region_is_kept_and_reported(model, shape, node):
    inputs = (torch.randn(*shape),)
    gm = siftc.compile(model, policy="wide:0.75", example_inputs=inputs)
    assert gm(*inputs).shape == model(*inputs).shape
    assert gm.conv3.weight.shape[0] == 32                         # the region tied to the literal size
    assert gm.conv2.weight.shape[1] == 2 * model.conv2.weight.shape[1]   # the rest widened (x2 at s=.75)
    rep = siftc.report(gm)
    kept = [g for g in rep.groups if g["group"] == "fixed" and f"node '{node}'" in g["fixed"]]
    assert kept and "conv3.weight:0=32" in kept[0]["members"]
    assert f"node '{node}'" in str(rep)
    assert abs(rep.iso_flop_ratio - 1) <= 0.005


class ItemSlice(nn.Module):
    """A leaf whose output size depends on a tensor value: no symbolic size can follow it."""

    def forward(self, x):
        n = int(x.abs().sum().item()) % 2 + 1
        return x[:, :n].sum(dim=1, keepdim=True).expand(-1, x.shape[1])


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.pick = ItemSlice()
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(self.pick(self.fc1(x)))


def test_opaque_leaf_keeps_its_sizes_and_a_symbolic_failure_names_the_node():
    """A leaf without a siftc rule (ItemSlice reads .item()) is a black box to couple: wide compiles
    and every group reaching it keeps its width. Before, the error suggested leaf_modules, which
    gave the identical error. A kind with a rule that cannot run symbolically still fails, naming
    the node."""
    model = DataDependent()
    x = torch.randn(2, 8)
    gm = siftc.compile(model, policy="wide:0.5,stem=sparse", example_inputs=(x,), leaf_modules=[ItemSlice])
    assert gm.get_submodule("fc1").weight.shape == model.fc1.weight.shape      # tied to 'pick': kept
    assert gm(x).shape == model(x).shape

    class RuledSlice(ItemSlice):
        pass

    class RuledModel(DataDependent):
        def __init__(self):
            super().__init__()
            self.pick = RuledSlice()

    siftc.register_module_rule(RuledSlice, siftc.ModuleRule("ruled-slice", "none", lambda *a: (0, 0), widen=True))
    with pytest.raises(ShapeError) as err:
        siftc.compile(RuledModel(), policy="wide:0.5,stem=sparse", example_inputs=(x,), leaf_modules=[RuledSlice])
    msg = str(err.value)
    assert "pass 'couple'" in msg and "node 'pick'" in msg and "without a siftc rule" in msg
    # the per-layer members do not need symbolic sizes and still compile this model
    siftc.compile(RuledModel(), policy="parallel:0.5,stem=sparse", example_inputs=(x,), leaf_modules=[RuledSlice])


def test_report_lists_groups_and_recompile_is_a_no_op(tmp_path):
    model, inputs = small_model("resnet18_cifar")
    gm = siftc.compile(model, policy="wide:0.75", example_inputs=inputs, dump_dir=tmp_path)
    rep = siftc.report(gm)
    free = [g for g in rep.groups if g["group"] != "fixed"]
    assert [g["width"] for g in free][:2] == [64, 64] and {g["new_width"] for g in free} >= {128, 256, 512, 1024}
    stem_group = free[0]
    assert {"conv1.weight:0", "bn1.weight:0", "layer1.0.conv1.weight:1"} <= set(stem_group["members"])
    text = str(rep)
    assert "channel group" in text and "64 -> 128" in text
    assert "| channel group |" in (tmp_path / "flops.md").read_text()
    again = siftc.compile(gm)
    assert again.code == gm.code and siftc.report(again).to_dict() == rep.to_dict()
    assert hook_flops(gm, inputs) == rep.flops_by_category["conv"] + rep.flops_by_category["linear"]


def test_couple_is_an_analysis_with_group_meta():
    model, inputs = small_model("gpt_tiny")
    ctx = CompileState(model=model, policy=Policy.parse("wide:0.5"), target="cpu", example_inputs=inputs)
    gm = passes.get_pass("capture").fn(None, ctx).gm
    for name in ("shape-prop", "flops", "roles"):
        passes.get_pass(name).fn(gm, ctx)
    code = gm.code
    result = passes.get_pass("couple").fn(gm, ctx)
    assert not result.modified and gm.code == code
    meta = {n.target: n.meta["siftc.group"] for n in gm.graph.nodes if "siftc.group" in n.meta}
    resid = meta["h.0.ln_1"]["weight"][0]
    assert meta["h.0.attn.c_attn"]["weight"] == (resid, resid)     # out is 3 x d_model: same group
    assert meta["h.1.mlp.c_proj"]["weight"][0] == resid
    assert meta["lm_head"]["weight"] == (None, resid)              # vocabulary fixed, input residual
    group = next(g for g in ctx.coupling.groups if g.name == resid)
    assert group.unit == 4 and group.width == 128                  # 4 heads: widths stay multiples of 4


# ----------------------------------------------------------------------------- properties
class GenNet(nn.Module):
    """Residual / concat blocks on a CNN or MLP trunk, then flatten and a linear head."""

    def __init__(self, kind, widths, blocks, classes):
        super().__init__()
        self.kind = kind
        layer = (lambda a, b: nn.Conv2d(a, b, 3, padding=1)) if kind == "cnn" else nn.Linear
        self.stem = layer(3 if kind == "cnn" else 12, widths[0])
        self.blocks = blocks
        self.a, self.b, self.norm = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        width = widths[0]
        for w, block in zip(widths[1:] + widths[:1], blocks):
            if block == "residual":
                self.a.append(layer(width, width))
                self.b.append(nn.Identity())
            elif block == "concat":            # two branches, concatenated: width = w + w/2
                self.a.append(layer(width, w))
                self.b.append(layer(width, w // 2))
                width = w + w // 2
            else:                              # plain
                self.a.append(layer(width, w))
                self.b.append(nn.Identity())
                width = w
            self.norm.append(nn.BatchNorm2d(width) if kind == "cnn" else nn.LayerNorm(width))
        self.head = nn.Linear(width * (4 if kind == "cnn" else 1), classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        for block, a, b, norm in zip(self.blocks, self.a, self.b, self.norm):
            if block == "residual":
                x = x + F.relu(a(x))
            elif block == "concat":
                x = torch.cat([F.relu(a(x)), F.relu(b(x))], dim=1)
            else:
                x = F.relu(a(x))
            x = norm(x)
        if self.kind == "cnn":
            x = torch.flatten(F.adaptive_avg_pool2d(x, 2), 1)   # flatten carries the 2x2 factor
        return self.head(x)


nets = st.builds(lambda kind, widths, blocks, classes: GenNet(kind, widths, blocks[:len(widths)], classes),
                 st.sampled_from(["cnn", "mlp"]), st.lists(st.sampled_from([8, 16, 24]), min_size=1, max_size=4),
                 st.lists(st.sampled_from(["residual", "concat", "plain"]), min_size=4, max_size=4),
                 st.integers(2, 6))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=nets, s=st.sampled_from([0.5, 0.75, 0.9]))
def test_generated_nets_widen_and_keep_shapes(net, s):
    x = torch.randn(2, 3, 8, 8) if net.kind == "cnn" else torch.randn(2, 12)
    # tiny nets: the widened dense ends would exceed the budget, so everything is sparse
    gm = siftc.compile(net, policy=f"wide:{s},stem=sparse,head=sparse", example_inputs=(x,))
    assert gm(x).shape == net(x).shape
    rep = siftc.report(gm)
    assert abs(rep.iso_flop_ratio - 1) <= 0.005
    assert gm.stem.weight.shape[0] > net.stem.weight.shape[0]           # the trunk widened
    assert gm.head.weight.shape[0] == net.head.weight.shape[0]          # classes kept
    if "concat" in net.blocks:
        assert any("(sum with other groups)" in m for g in rep.groups for m in g["members"])


def test_concat_branch_derived_from_rounded_groups_keeps_its_share():
    # Found by the property above: the 4-wide branch b.1 of a 12-wide concat is solved as 12 - 8.
    # Rounding the 12 group to 16 and the 8 group to 16 independently left b.1 at 16 - 16 = 0
    # ("widened size of b.1.weight:0 is 0"); the concat total now grows until b.1 gets its share.
    net = GenNet("cnn", [8, 8, 8], ["residual", "concat", "residual"], 2)
    x = torch.randn(2, 3, 8, 8)
    gm = siftc.compile(net, policy="wide:0.5,stem=sparse,head=sparse", example_inputs=(x,))
    assert gm(x).shape == (2, 2)
    a1, b1 = gm.get_submodule("a.1").out_channels, gm.get_submodule("b.1").out_channels
    assert b1 >= math.floor(4 * a1 / 8)                  # widened by the same factor as its sibling
    assert gm.get_submodule("a.2").in_channels == a1 + b1 and gm.get_submodule("norm.1").num_features == a1 + b1
    assert abs(siftc.report(gm).iso_flop_ratio - 1) <= 0.005


def test_widened_modules_keep_their_own_weights():
    """widen() matched tied parameters by id(); a freed old parameter's id could be reused by a
    new one, which was then swapped for an unrelated tensor (resnet50 wide:0.75: a 1x1 conv got a
    BatchNorm's 1-D weight, and the compile failed, or worse). Every conv/linear/norm must hold a
    weight of its own size fields after widening."""
    gm = siftc.compile(models_zoo.create("resnet50").eval(), policy="wide:0.75",
                       example_inputs=(torch.randn(1, 3, 64, 64),))
    for name, mod in gm.named_modules():
        if isinstance(mod, nn.Conv2d):
            assert tuple(mod.weight.shape[:2]) == (mod.out_channels, mod.in_channels // mod.groups), name
        elif isinstance(mod, nn.BatchNorm2d):
            assert mod.weight.shape == mod.running_mean.shape == (mod.num_features,), name
        elif isinstance(mod, nn.Linear):
            assert tuple(mod.weight.shape) == (mod.out_features, mod.in_features), name


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "gpt_tiny", "vit_tiny", "resnext_tiny", "inception_tiny"])
def test_registry_couple_rules_give_the_groups_the_symbolic_run_gives(name):
    """couple takes conv and linear channel equations from the op registry (ops.ModuleRule.couple)
    instead of running them on symbolic sizes: the channel groups, their members and the fixed
    dims must be exactly those of the full symbolic run."""
    from siftc.core import ops
    from siftc.core.symdims import solve, symbolic_run
    from siftc.passes.couple import build_groups
    model, inputs = small_model(name)
    gm = siftc.compile(model, policy="wide:0.75", pipeline="capture,shape-prop", example_inputs=inputs)

    def groups(rule):
        run = symbolic_run(gm, inputs, opaque=ops.opaque, couple_rule=rule)
        found, fixed = build_groups(run, solve(run))
        return (sorted((sorted(g.members), sorted(g.shared), g.width, g.unit) for g in found),
                sorted((k, v[0]) for k, v in fixed.items()))
    with_rules, without = groups(ops.rule_for), groups(None)
    assert with_rules == without and with_rules[0]


class _Grouped(nn.Module):
    """Depthwise convs (multiplier 1 and 2, with and without bias) and a 2-group conv."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.dw2 = nn.Conv2d(8, 16, 3, padding=1, groups=8)
        self.b = nn.Conv2d(16, 8, 1)
        self.g = nn.Conv2d(8, 12, 3, padding=1, groups=2)
        self.bn = nn.BatchNorm2d(12)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(12, 4)

    def forward(self, x):
        y = self.bn(self.g(self.b(self.dw2(F.relu(self.dw(self.a(x)))))))
        return self.head(torch.flatten(self.pool(y), 1))


class _Reductions(nn.Module):
    """Means over spatial dims (list, tuple, negative dims, keepdim) and train-flag dropouts and
    stochastic depth (capture turns them into modules that follow .training, passes/mode_ops.py)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 1)
        from torchvision.ops import StochasticDepth
        self.drop_path = StochasticDepth(0.2, "row")     # traced as a stochastic_depth call
        self.fc = nn.Linear(8, 6)
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        y = F.dropout2d(F.relu(self.conv(x)), 0.1, self.training)
        y = y + self.drop_path(self.conv2(y))
        s = y.mean((-2, -1), keepdim=True) * y            # squeeze-excite style scale
        h = self.fc(torch.mean(s, [2, 3]))
        return self.head(F.dropout(h, 0.1, self.training) + h.sum(dim=-1, keepdim=True))


class _Functional(nn.Module):
    """Linear layers joined by functional ops and a broadcast per-feature scale (a get_attr)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 4 * 4, 32)
        self.gamma = nn.Parameter(torch.ones(32))
        self.fc2 = nn.Linear(32, 32)
        self.head = nn.Linear(32, 5)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(torch.relu(self.bn(self.conv(x))), 4)
        x = torch.flatten(x, 1)
        h = F.gelu(self.fc1(x)) * self.gamma
        return self.head(h + self.fc2(h))


class _ManualAttention(nn.Module):
    """A pre-norm attention block written out: tokens embedded, q/k/v split by a list of sizes,
    heads by reshape(-1) and by a floor division, permute, transpose, two matmuls, softmax, an
    MLP, and a head on the first token (x[:, 0])."""

    def __init__(self, vocab=50, d=16, heads=4, ff=24):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.up = nn.Linear(d, ff)
        self.down = nn.Linear(ff, d)
        self.head = nn.Linear(d, 5)
        self.heads = heads

    def forward(self, idx):
        x = self.emb(idx)
        B, T, C = x.shape
        q, k, v = self.qkv(self.norm(x)).split([C, C, C], dim=-1)
        q = q.reshape(B, T, self.heads, -1).permute(0, 2, 1, 3)
        k = k.reshape(B, T, self.heads, -1).permute(0, 2, 3, 1)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        att = torch.softmax(q @ k * 0.25, dim=-1)
        y = torch.matmul(att, v).transpose(1, 2).reshape(B, T, -1)
        x = x + self.proj(y)
        x = x + self.down(F.gelu(self.up(x)))
        return self.head(x[:, 0])


class _LiteralViews(nn.Module):
    """Sizes read with size(d), a split by one size, SDPA, and a view to literal sizes, which
    fixes the layer before it (its outputs keep 8); two outputs, one flattened by reshape(-1)."""

    def __init__(self, vocab=50, d=12, heads=3, ff=20):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.qkv = nn.Linear(d, 3 * d)
        self.mix = nn.Linear(d, 8)
        self.up = nn.Linear(d, ff)
        self.head = nn.Linear(ff, 5)
        self.heads = heads

    def forward(self, idx):
        x = self.emb(idx)
        B, T, C = x.size(0), x.size(1), x.size(-1)
        parts = self.qkv(x).split(C, dim=2)
        q, k, v = [parts[i].view(B, T, self.heads, C // self.heads).transpose(1, 2) for i in range(3)]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).contiguous().view(B, T, C)
        z = self.mix(y).view(B, T, 2, 4).sum(2)
        return self.head(self.up(x + y)).reshape(-1), z


class _ValueHeads(nn.Module):
    """Attention whose value heads are wider than its query heads: no size rule covers it (torch's
    CPU kernel then takes another path), so couple must leave it to the symbolic run."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 12)
        self.head = nn.Linear(12, 3)

    def forward(self, idx):
        x = self.emb(idx)
        B, T, _ = x.shape
        q, k, v = (m(x).view(B, T, 2, -1).transpose(1, 2) for m in (self.q, self.k, self.v))
        return self.head(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, 12))


class _Shuffle(nn.Module):
    """ShuffleNet's unit: chunk the channels in two (a ceil split), convolve one half, concat,
    shuffle with view / transpose / view(-1)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(4, 4, 1)
        self.b = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x1, x2 = self.stem(x).chunk(2, dim=1)
        x = torch.cat((x1, self.a(x2)), dim=1)
        b, c, h, w = x.size()
        x = x.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, -1, h, w)
        return self.head(self.b(x).mean((2, 3)))


class _Narrowed(nn.Module):
    """A slice that narrows a channel dim (x[..., :4]): its size does not follow the weights."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.fc(x)[..., :4])


class _ConvNeXtBlock(nn.Module):
    """ConvNeXt's block as torchvision writes it: a depthwise conv, permute to channels-last, a
    functional layer_norm with a literal normalized_shape (it fixes the stem's channels, as in the
    symbolic run), an MLP of linears, a per-channel layer scale, permute back, a residual."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.norm_w, self.norm_b = nn.Parameter(torch.ones(c)), nn.Parameter(torch.zeros(c))
        self.up, self.down = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.scale = nn.Parameter(torch.full((c, 1, 1), 1e-2))
        self.head = nn.Linear(c, 3)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = F.layer_norm(y, (8,), self.norm_w, self.norm_b, 1e-6)
        y = self.down(F.gelu(self.up(y))).permute(0, 3, 1, 2)
        return self.head((x + self.scale * y).mean((2, 3)))


class _Padded(nn.Module):
    """Constant pads: of the channel dim, and of another dim of the same tensor (that one through
    torch.constant_pad_nd, whose third argument is the value). torch's pad specializes every size
    of its input, so both fix the first linear's width."""

    def __init__(self, channels: bool):
        super().__init__()
        self.channels = channels
        self.a, self.b = nn.Linear(8, 16), nn.Linear(18 if channels else 16, 4)

    def forward(self, x):
        h = self.a(x)
        return self.b(F.pad(h, (1, 1)) if self.channels else torch.constant_pad_nd(h, (0, 0, 1, 0), 0.5))


_TOKENS = (torch.arange(12).reshape(2, 6),)
_HANDMADE = {"functional": (_Functional, (torch.randn(2, 3, 8, 8),)),
             "grouped": (_Grouped, (torch.randn(2, 3, 8, 8),)),
             "reductions": (_Reductions, (torch.randn(2, 3, 8, 8),)),
             "manual_attention": (_ManualAttention, _TOKENS), "literal_views": (_LiteralViews, _TOKENS),
             "value_heads": (_ValueHeads, _TOKENS), "narrowed": (_Narrowed, (torch.randn(2, 6),)),
             "convnext_block": (_ConvNeXtBlock, (torch.randn(2, 3, 8, 8),)),
             "shuffle": (_Shuffle, (torch.randn(2, 3, 8, 8),)),
             "pad_channels": (lambda: _Padded(True), (torch.randn(2, 5, 8),)),
             "pad_rows": (lambda: _Padded(False), (torch.randn(2, 5, 8),)),
             "concat_net": (lambda: GenNet("cnn", [8, 8, 8], ["residual", "concat", "residual"], 2),
                            (torch.randn(2, 3, 8, 8),))}


def _t5_tiny():
    """Hugging Face's T5 encoder at a small config, captured with torch.export: aten views,
    unsqueeze/expand/slice, the relative-position bias (int arithmetic, where, an embedding
    whose rows are the heads), RMS norms written out, SDPA with a mask."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.T5Config(d_model=32, d_ff=48, d_kv=8, num_layers=2, num_heads=4, vocab_size=64)
    return transformers.T5EncoderModel(cfg).eval()


def _model(name):
    if name == "t5_tiny":
        torch.manual_seed(0)
        return _t5_tiny(), (torch.arange(10).reshape(1, 10),)
    if name in _HANDMADE:
        make, inputs = _HANDMADE[name]
        torch.manual_seed(0)
        return make(), inputs
    return small_model(name)


@pytest.mark.parametrize("name", ["mlp", "mnist_cnn", "resnet18_cifar", "resnet18", "gated_mlp", "functional",
                                  "mobilenet_v2", "resnext_tiny", "grouped", "reductions", "gpt_tiny", "bert_tiny",
                                  "manual_attention", "literal_views", "convnext_block", "gpt2_tiny",
                                  "bert_hf_tiny", "t5_tiny", "inception_tiny", "vit_tiny", "shuffle", "concat_net",
                                  "pad_channels", "pad_rows"])
def test_size_rules_give_the_groups_and_fixed_dims_of_the_symbolic_run(name):
    """siftc.size_algebra's rule-based run must raise the equations torch's ShapeEnv run raises:
    the same groups, members and widths, and the same fixed dims with the same reasons (nodes)."""
    from siftc.core import ops
    from siftc.core.size_algebra import direct_run
    from siftc.core.symdims import symbolic_run
    model, inputs = _model(name)
    gm = siftc.compile(model, policy="wide:0.75", pipeline="capture,shape-prop", example_inputs=inputs)
    direct = direct_run(gm, opaque=ops.opaque, couple_rule=ops.rule_for)
    assert direct is not None, "every node of this model has a size rule"
    reference = coupling_groups(symbolic_run(gm, inputs, opaque=ops.opaque, couple_rule=ops.rule_for))
    assert coupling_groups(direct) == reference and (reference[0] or name.startswith("pad_"))


def test_solution_does_not_depend_on_symbol_names():
    """The solver picks pivots by creation order, not by name: torch's ShapeEnv names a symbol by
    a hash of its source, so name order is arbitrary. Renaming every symbol of a run (here in
    reverse) must give the same groups; with concats, which dims come out derived depends on it."""
    import sympy
    from siftc.core import ops
    from siftc.core.size_algebra import direct_run
    from siftc.core.symdims import SymbolicRun
    model, inputs = _model("inception_tiny")
    gm = siftc.compile(model, policy="wide:0.75", pipeline="capture,shape-prop", example_inputs=inputs)
    run = direct_run(gm, opaque=ops.opaque, couple_rule=ops.rule_for)
    syms = list(dict.fromkeys(run.symbols.values()))
    rename = {s: sympy.Symbol(f"s{len(syms) - i}", positive=True, integer=True) for i, s in enumerate(syms)}
    renamed = SymbolicRun(dims=run.dims, symbols={k: rename[s] for k, s in run.symbols.items()},
                          equations=[type(e)(e.expr.xreplace(rename), e.node, e.target) for e in run.equations],
                          outputs=[e.xreplace(rename) for e in run.outputs],
                          hints={rename.get(s, s): h for s, h in run.hints.items()})
    original = coupling_groups(run)
    assert any(g[1] for g in original[0])         # concat sums: a choice of derived dims exists
    assert coupling_groups(renamed) == original


@pytest.mark.parametrize("name,engine", [("resnet18", "rules"), ("mobilenet_v2", "rules"), ("gpt_tiny", "rules"),
                                         ("inception_tiny", "rules"), ("value_heads", "symbolic"),
                                         ("narrowed", "symbolic")])
def test_couple_leaves_graphs_with_an_op_without_a_size_rule_to_the_symbolic_run(name, engine):
    """Attention with wider value heads or a slice that narrows a channel dim have no size rule:
    the whole graph goes to torch's symbolic run (never a guess), and the pass's stats say which
    run it was. Views, heads, concats and grouped convs have one."""
    from siftc.core import ops
    from siftc.core.size_algebra import direct_run
    model, inputs = _model(name)
    gm = siftc.compile(model, policy="wide:0.75", pipeline="capture,shape-prop", example_inputs=inputs)
    assert (direct_run(gm, opaque=ops.opaque, couple_rule=ops.rule_for) is None) == (engine == "symbolic")
    passes.couple._CACHE.clear()
    out = siftc.compile(model, policy="wide:0.75", pipeline="capture,shape-prop,flops,roles,couple",
                        example_inputs=inputs)
    assert out.siftc.passes[-1]["name"] == "couple" and out.siftc.passes[-1]["stats"]["run"] == engine


_S = [__import__("sympy").Symbol(f"s{i}", positive=True, integer=True) for i in range(3)]


@st.composite
def _size_expressions(draw):
    """Sums of terms c * monomial, now and then with a FloorDiv or Mod term (what size
    expressions of a symbolic run look like)."""
    import sympy
    from torch.utils._sympy.functions import FloorDiv, Mod
    expr = sympy.Integer(draw(st.integers(-12, 12)))
    for _ in range(draw(st.integers(0, 4))):
        coeff = sympy.Rational(draw(st.integers(-24, 24)), draw(st.sampled_from([1, 1, 1, 2, 3])))
        term = sympy.Integer(1)
        for s in draw(st.lists(st.sampled_from(_S), max_size=3)):
            term *= s
        kind = draw(st.sampled_from(["plain"] * 6 + ["floordiv", "mod"]))
        if kind == "floordiv":
            term = FloorDiv(draw(st.sampled_from(_S)), draw(st.integers(2, 8)))
        elif kind == "mod":
            term = Mod(draw(st.sampled_from(_S)), draw(st.integers(2, 8)))
        expr += coeff * term
    return expr


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_size_expressions(), st.sampled_from([1, 2, 3, 4, 6, 8, 12, -2]))
def test_divisibility_by_an_integer_agrees_with_the_general_route(expr, divisor):
    """couple's solver asks "does k divide this size expression as a polynomial" on every pass;
    the integer fast path must answer what sympy.cancel + Poly answer."""
    import sympy
    from siftc.core import symdims
    k = sympy.Integer(divisor)
    assert symdims._divides(expr, k) == symdims._divides_general(expr, k), (expr, divisor)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_size_expressions())
def test_linear_form_agrees_with_the_polynomial_route(expr):
    """The solver reads every equation's linear form from its expanded terms; it must answer
    what sympy.Poly answers (None for products, powers, floor divisions, non-integer coefficients)."""
    from siftc.core import symdims
    fast, general = symdims.linear_form(expr), symdims._linear_form_general(expr)
    assert fast == general, (expr, fast, general)
    if fast is not None:
        assert list(fast[0]) == sorted(fast[0], key=lambda s: s.name)
