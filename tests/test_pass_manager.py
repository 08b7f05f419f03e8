"""Pass registry, textual pipelines, verifier, timings and error reporting."""
import pytest
import torch
from torch import nn

from siftc import passes
import siftc
from siftc.passes import PassResult, format_pipeline, parse_pipeline, register
from siftc.core.state import CompileContext
from siftc.core.policy import Policy


def test_every_pass_registered_with_summary():
    for name in passes.TRAIN_PIPELINE.split(","):
        info = passes.get_pass(name)
        assert info.summary and info.name == name
    assert passes.get_pass("flops").analysis and not passes.get_pass("substitute").analysis


@pytest.mark.parametrize("text", [passes.TRAIN_PIPELINE, "capture,shape-prop{mode=fake},flops",
                                  "capture,flops{a=1 b=2}"])
def test_pipeline_round_trip(text):
    assert format_pipeline(parse_pipeline(text)) == text


def test_unknown_pass_lists_registered():
    with pytest.raises(ValueError, match="registered passes: .*capture"):
        parse_pipeline("capture,fold-everything")


def _ctx(model, x, policy="parallel:0.5"):
    return CompileContext(model=model, policy=Policy.parse(policy), target="cpu", example_inputs=(x,))


def _model():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))


def test_failure_names_pass_node_and_passes_before():
    @register("explode-test", "test pass that fails on a node")
    def explode(gm, ctx):
        node = next(n for n in gm.graph.nodes if n.op == "call_module")
        err = RuntimeError("boom")
        err.node = node
        raise err

    pm = siftc.PassManager("capture,shape-prop,explode-test")
    with pytest.raises(siftc.PassError) as err:
        pm.run(None, _ctx(_model(), torch.randn(2, 4)))
    msg = str(err.value)
    assert "pass 'explode-test' failed: RuntimeError: boom" in msg
    assert "call_module" in msg and "passes run before: capture, shape-prop" in msg


def test_verifier_catches_a_broken_transform():
    @register("break-shapes-test", "test pass that changes the output shape")
    def break_shapes(gm, ctx):
        out = next(n for n in gm.graph.nodes if n.op == "output")
        with gm.graph.inserting_before(out):
            new = gm.graph.call_method("sum", (out.args[0],))
        out.args = (new,)
        return PassResult(gm, True, {})

    pm = siftc.PassManager("capture,shape-prop,break-shapes-test")
    with pytest.raises(siftc.VerifyError, match="output shapes changed"):
        pm.run(None, _ctx(_model(), torch.randn(2, 4)))


def test_timings_and_stats_per_pass():
    gm = siftc.compile(_model(), policy="parallel:0.5", example_inputs=(torch.randn(2, 4),))
    names = [n for n, _ in gm.siftc.timings]
    assert names == passes.TRAIN_PIPELINE.split(",")
    assert all(t >= 0 for _, t in gm.siftc.timings)


def test_analyses_never_modify_the_graph():
    model, x = _model(), torch.randn(2, 4)
    ctx = _ctx(model, x)
    gm = passes.get_pass("capture").fn(None, ctx).gm
    for name in ("shape-prop", "flops", "roles"):
        before = gm.code
        result = passes.get_pass(name).fn(gm, ctx)
        assert not result.modified and result.gm.code == before
