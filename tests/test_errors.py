"""Bad input: one clear error (or warning), never a bare stack trace from inside torch.fx."""
import pytest
import torch
from torch import nn

import siftc


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(8, 8)
        self.c = nn.Linear(8, 2)

    def forward(self, x):
        x = self.a(x)
        if x.sum() > 0:          # data-dependent control flow: fx cannot follow it
            x = x * 2
        return self.c(self.b(x))


def test_untraceable_model_names_the_line_and_the_fix():
    with pytest.raises(siftc.CaptureError) as err:
        siftc.compile(DataDependent(), policy="parallel:0.5,capture=fx", example_inputs=(torch.randn(2, 4),))
    msg = str(err.value)
    assert "test_errors.py" in msg and "if x.sum() > 0" in msg
    assert "DataDependent.forward" in msg
    assert "leaf_modules" in msg and "concrete_args" in msg
    assert "pass 'capture' failed" in msg


def test_leaf_module_makes_it_traceable():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = DataDependent()
            self.head = nn.Linear(2, 2)

        def forward(self, x):
            return self.head(self.inner(x))

    gm = siftc.compile(Wrapper(), policy="dense", example_inputs=(torch.randn(2, 4),), leaf_modules=[DataDependent])
    assert any(n.target == "inner" for n in gm.graph.nodes)


def test_wrong_input_shape_names_the_node():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
    with pytest.raises(siftc.ShapeError) as err:
        siftc.compile(model, policy="parallel:0.5", example_inputs=(torch.randn(2, 1, 16, 16),))
    msg = str(err.value)
    assert "node '_0'" in msg and "(2, 1, 16, 16)" in msg and "example_inputs" in msg
    assert "While executing" not in msg


def test_wrong_number_of_inputs():
    with pytest.raises(siftc.ShapeError, match="takes 1 inputs"):
        siftc.compile(nn.Linear(3, 3), policy="dense", example_inputs=(torch.randn(1, 3), torch.randn(1, 3)))


def test_inputs_passed_where_target_goes_say_use_the_keyword():
    """compile(model, (x,)) put the inputs in ``target``: the error was the whole tensor's repr."""
    with pytest.raises(siftc.UsageError, match=r"got a tuple; pass example inputs by keyword") as err:
        siftc.compile(nn.Linear(3, 3), (torch.randn(100, 3),), policy="dense")
    assert len(str(err.value).splitlines()) == 1 and "tensor(" not in str(err.value)


def test_no_sparsifiable_layer_warns_and_returns_unchanged_model():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))   # only a stem and a head
    x = torch.randn(3, 4)
    with pytest.warns(UserWarning, match="no sparsifiable layer"):
        gm = siftc.compile(model, policy="parallel:0.75", example_inputs=(x,))
    assert torch.equal(gm(x), model(x))
    rep = siftc.report(gm)
    assert rep.layers == [] and {d["name"] for d in rep.left_dense} == {"0", "2"}


def test_not_a_module():
    with pytest.raises(siftc.CaptureError, match="expects a torch.nn.Module"):
        siftc.compile(lambda x: x, policy="dense", example_inputs=(torch.randn(1),))


def test_recompile_with_other_policy_is_refused():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    gm = siftc.compile(model, policy="parallel:0.5", example_inputs=(torch.randn(2, 4),))
    with pytest.raises(ValueError, match="compile the original model"):
        siftc.compile(gm, policy="doped:0.5")


def test_report_of_uncompiled_module():
    with pytest.raises(siftc.SiftcError, match="GraphModule returned by siftc.compile"):
        siftc.report(nn.Linear(2, 2))


def _passthrough(fn):
    """A decorator as transformers 5 puts around its models' forwards: *args/**kwargs, and the
    wrapped function's signature handed on by functools.wraps."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


class Decorated(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(8, 8)
        self.c = nn.Linear(8, 2)

    @_passthrough
    def forward(self, x, **kwargs):      # as transformers' forward(self, input_ids, ..., **kwargs)
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def test_decorated_forward_error_says_why_and_export_captures_it():
    """fx fails on such a wrapper before running any user code: the error names the wrapper and
    points to torch.export, not to data-dependent control flow, and no line of siftc's own."""
    x = (torch.randn(2, 4),)
    with pytest.raises(siftc.CaptureError) as err:
        siftc.compile(Decorated(), policy="wide:0.5,capture=fx", example_inputs=x)
    msg = str(err.value)
    assert "Decorated.forward is wrapped by a decorator taking *args/**kwargs" in msg and "capture=export" in msg
    assert "data-dependent" not in msg and "capture.py" not in msg
    # the default capture=auto falls back to torch.export, says so, and compiles it
    with pytest.warns(UserWarning, match="captured with torch.export instead"):
        gm = siftc.compile(Decorated(), policy="wide:0.5", example_inputs=x)
    assert gm.siftc.passes[0]["stats"]["via"] == "export"
    assert gm.siftc.report().to_dict()["layers"]       # its middle linear was rewritten
