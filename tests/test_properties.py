import operator

import pytest
"""Hypothesis properties over generated small MLPs and CNNs (with residuals and BatchNorm)."""
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
import torch.nn.functional as F
from torch import nn

from siftc import passes
import siftc
from siftc.core.state import CompileState
from siftc.core.policy import Policy


class GenMLP(nn.Module):
    def __init__(self, widths, residual):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        # skip connections decided at build time (fx cannot branch on traced shapes)
        self.skip = [residual and a == b for a, b in zip(widths[:-1], widths[1:])]

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            y = layer(x)
            if i < len(self.layers) - 1:
                y = torch.relu(y)
            x = x + y if self.skip[i] else y
        return x


class GenCNN(nn.Module):
    def __init__(self, channels, bn, residual, classes):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1, bias=not bn) for a, b in zip(channels[:-1], channels[1:]))
        self.norms = nn.ModuleList((nn.BatchNorm2d(c) if bn else nn.Identity()) for c in channels[1:])
        self.skip = [residual and a == b for a, b in zip(channels[:-1], channels[1:])]
        self.head = nn.Linear(channels[-1], classes)

    def forward(self, x):
        for conv, norm, skip in zip(self.convs, self.norms, self.skip):
            y = torch.relu(norm(conv(x)))
            x = x + y if skip else y
        return self.head(x.mean(dim=(2, 3)))


mlps = st.builds(lambda w, r: (GenMLP(w, r), (torch.randn(3, w[0]),)),
                 st.lists(st.sampled_from([16, 32, 64]), min_size=3, max_size=6), st.booleans())
cnns = st.builds(lambda c, bn, r, k: (GenCNN([3] + c, bn, r, k), (torch.randn(2, 3, 8, 8),)),
                 st.lists(st.sampled_from([8, 16]), min_size=2, max_size=4), st.booleans(), st.booleans(),
                 st.integers(2, 5))
models = st.one_of(mlps, cnns)
policies = st.builds(lambda m, s, d: f"{m}:{s},dist={d}", st.sampled_from(["parallel", "factorized", "doped"]),
                     st.sampled_from([0.5, 0.6, 0.75, 0.9]), st.sampled_from(["uniform", "erk"]))

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(case=models, policy=policies)
def test_compile_verifies_keeps_shapes_and_iso_flop(case, policy):
    model, inputs = case
    try:
        gm = siftc.compile(model, policy=policy, example_inputs=inputs)    # verifier runs after each pass
    except siftc.IsoFlopError as e:
        # a legitimate outcome on the tiniest models: a stem and head kept dense plus k=10 parallel
        # branches' norms cost more than the whole dense budget; the error must say so and name them
        assert "iso-FLOP is unreachable" in str(e) and "Largest dense parts" in str(e)
        return
    assert gm(*inputs).shape == model(*inputs).shape
    rep = siftc.report(gm)
    if rep.layers:
        assert abs(rep.iso_flop_ratio - 1) <= 0.005
    again = siftc.compile(gm)
    assert again.code == gm.code and siftc.report(again).to_dict() == rep.to_dict()


@SETTINGS
@given(case=models, policy=policies)
def test_analyses_never_modify(case, policy):
    model, inputs = case
    ctx = CompileState(model=model, policy=Policy.parse(policy), target="cpu", example_inputs=inputs)
    gm = passes.get_pass("capture").fn(None, ctx).gm
    for name in ("shape-prop", "flops", "roles"):
        code, nodes = gm.code, len(gm.graph.nodes)
        result = passes.get_pass(name).fn(gm, ctx)
        assert not result.modified and result.gm.code == code and len(result.gm.graph.nodes) == nodes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dims=st.integers(1, 3), cin=st.integers(1, 6), cout=st.integers(1, 6), k=st.integers(1, 4),
       stride=st.integers(1, 3), pad=st.integers(0, 2), dil=st.integers(1, 2), size=st.integers(1, 9),
       batch=st.integers(1, 2), group=st.booleans())
def test_registry_conv_shape_is_the_real_conv_shape(dims, cin, cout, k, stride, pad, dil, size, batch, group):
    """shape-prop takes conv and linear output shapes from the op registry (siftc/core/ops.py):
    they must be the shapes the real op gives, and the rule must step aside (None) where the
    real op refuses the input, so its own error is raised."""
    from siftc.core.ops import conv_shape, linear_shape
    groups = cin if group and cout % cin == 0 else 1
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims](cin, cout, k, stride, pad, dil, groups=groups)
    x = torch.randn(batch, cin, *[size] * dims)
    got = conv_shape(conv, x)
    try:
        want = tuple(conv(x).shape)
    except RuntimeError:
        assert got is None
    else:
        assert got is not None and tuple(got.shape) == want and got.dtype == x.dtype
    assert conv_shape(conv, torch.randn(batch, cin + 1, *[size] * dims)) is None      # wrong channels
    lin = nn.Linear(cin, cout)
    y = torch.randn(batch, size, cin)
    assert tuple(linear_shape(lin, y).shape) == tuple(lin(y).shape)
    assert linear_shape(lin, torch.randn(batch, cin + 1)) is None


@pytest.mark.parametrize("name,policy", [("resnet18", "parallel:0.75"), ("mobilenet_v2", "wide:0.75"),
                                         ("gpt_tiny", "parallel:0.75"), ("vit_tiny", "factorized:0.75"),
                                         ("resnext_tiny", "doped:0.75"), ("mlp", "parallel:0.75,combine=mean"),
                                         ("functional", "parallel:0.75"), ("functional", "wide:0.75")])
def test_shape_prop_shortcuts_give_what_fake_dispatch_gives(name, policy, monkeypatch):
    """shape-prop builds the outputs of registry-known modules (conv, linear, norms, activations)
    and of same-shape and broadcasting functions (ops.SAME_SHAPE_FUNCTIONS, BROADCAST_FUNCTIONS)
    without a fake dispatch (ops.empty_as). Every node's shape, strides and dtype must equal those
    of running every node on fake tensors. "functional": every function of those tables, on
    contiguous, channels-last and strided (gapped) inputs and with Python numbers."""
    from conftest import small_model
    from siftc.core import ops
    from siftc.passes import shape_prop
    if name == "functional":
        model, inputs = _FunctionalNet(), (torch.randn(2, 3, 8, 8),)
    else:
        model, inputs = small_model(name)
    gm = siftc.compile(model, policy=policy, pipeline="capture,shape-prop,flops,roles,couple,substitute",
                       example_inputs=inputs)

    def metas():
        shape_prop.propagate_shapes(gm, inputs)
        return {n.name: torch.utils._pytree.tree_map(
            lambda v: (tuple(v.shape), v.stride(), v.dtype) if isinstance(v, torch.Tensor) else v, n.meta.get("val"))
            for n in gm.graph.nodes}
    fast = metas()
    monkeypatch.setattr(ops, "rule_for", lambda mod: None)
    monkeypatch.setattr(shape_prop, "_same_shape", lambda *a: None)
    slow = metas()
    assert fast == slow and len(fast) > 10
    if name == "functional":     # the tables' every function was met, none of them skipped
        called = {n.target for n in gm.graph.nodes if n.op == "call_function"}
        # (capture rewrites F.dropout to follow the module's training flag, passes/mode_ops.py;
        # fx records operator.iadd/imul on a tensor as add/mul: torch.export keeps them)
        assert ops.SAME_SHAPE_FUNCTIONS - {F.dropout} <= called
        assert ops.BROADCAST_FUNCTIONS - {operator.iadd, operator.imul} <= called


class _FunctionalNet(nn.Module):
    """Every same-shape and broadcasting function of the op registry, in functional form."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        y = self.conv(x)
        y = torch.relu_(F.relu(y) + torch.relu(y))
        y = F.gelu(F.silu(y)) * torch.sigmoid(y) - torch.tanh(y) / 2
        z = F.hardswish(y).contiguous(memory_format=torch.channels_last)
        z = F.hardsigmoid(z) + F.relu6(z)              # channels-last operands
        w = F.leaky_relu(F.relu(z[:, :, ::2]) * 2)     # a strided view: dispatched
        y = F.elu(F.mish(self.conv2(F.dropout(y)))) + z
        y = torch.add(y, torch.mul(y, 0.5))
        y = torch.sub(y, y) + operator.truediv(y, 3.0)
        y = F.log_softmax(F.softmax(y, dim=1), dim=1) + torch.softmax(y, 1)
        y = y + w.sum() + w.mean()
        return self.head(y.mean((2, 3)))
