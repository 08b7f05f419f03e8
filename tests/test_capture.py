"""capture: what torch.fx and torch.export give the passes, on models these tests build themselves.

Library families (Hugging Face, timm) are exercised in tests/test_hf_families.py and the
conformance sweep; here each case is a few lines of nn.Module, so a library release cannot change
what is tested.
"""
import warnings

import torch
from torch import nn

import siftc


class _ConstantsInForward(nn.Module):
    """An attention-like block whose forward makes tensors (``torch.tensor(...)``, as Hugging Face
    BART and DeBERTa attention do for a dtype's minimum): torch.export lifts them out of the forward
    as ``lifted_tensor_N`` attributes of its own module, not of the user's."""

    def __init__(self):
        super().__init__()
        self.q = nn.Linear(8, 8)
        self.out = nn.Linear(8, 8)

    def forward(self, x):
        floor = torch.tensor(torch.finfo(x.dtype).min)
        scale = torch.tensor([0.5, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0])
        return self.out(torch.maximum(self.q(x) * scale, floor))


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(8, 8)
        self.block = _ConstantsInForward()
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(torch.relu(self.block(self.inp(x))))


def test_tensor_constants_export_lifts_become_non_persistent_buffers_of_their_module():
    """Rooting the exported graph at the user's model lost the lifted constants (capture failed
    with AttributeError on BART, DeBERTa and Falcon of some transformers releases). They are now
    non-persistent buffers of the module that made them: they move with .to(), stay out of the
    state dict as they were, and the compiled model computes what the user's did."""
    torch.manual_seed(0)
    model, x = _Net(), torch.randn(3, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = siftc.compile(model, policy="dense,capture=export", example_inputs=(x,))
    assert gm.siftc.passes[0]["stats"]["via"] == "export"
    lifted = sorted(q for q, _ in gm.named_buffers() if q.rpartition(".")[2].startswith("lifted_tensor"))
    assert len(lifted) == 2 and all(q.startswith("block.") for q in lifted), lifted
    assert not set(lifted) & set(gm.state_dict())
    torch.testing.assert_close(gm(x), model(x))
    gm64 = gm.to(torch.float64)      # the constants move with the model (the scale table is one)
    assert {gm64.get_buffer(q).dtype for q in lifted} == {torch.float64}
    torch.testing.assert_close(gm64(x.double()), model.double()(x.double()))


class _DataDependent(nn.Module):
    """A forward whose branch depends on the data: torch.export refuses it and siftc captures it
    through draft_export."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 16)
        self.b = nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.a(x))
        if h.sum() > 0:
            h = h * 2
        return self.b(h)


def test_draft_export_capture_leaves_no_open_file_and_no_trace_log(monkeypatch, tmp_path):
    """draft_export's trace handler opens a log file under the temp folder and never closes it: a
    ResourceWarning at garbage collection and a file left per compile, until siftc closed and
    removed it (passes/capture_export._closed_draft_trace)."""
    import gc
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gm = siftc.compile(_DataDependent(), policy="sparse:0.5,capture=export",
                           example_inputs=(torch.randn(4, 8),))
        gc.collect()
    assert any("data-dependent branch" in w for w in gm.siftc.warnings)   # it went through draft_export
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not [p for p in tmp_path.rglob("*.log")]
