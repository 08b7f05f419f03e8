"""The compiled model is the user's model (docs/method.md, "What every member keeps").

Beside the member substitution nothing the user's model computes changes: a buffer keeps its
values and its non-channel dims (a position table stays as long as it was), a tie stays one
tensor or the compile is refused, nn.Transformer is traced through like its parts, and the verify
pass accounts for every parameter and buffer of the original model.
"""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import siftc
from siftc.core.pass_registry import PASSES, PassResult, register


def _compile(model, policy, *inputs, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return siftc.compile(model, policy=policy, example_inputs=inputs, **kw)


class SinusoidalLM(nn.Module):
    """Token embedding plus a fixed sinusoidal position table (a buffer (T, d)), sliced to the
    sequence length: the table's length is not a channel."""

    def __init__(self, vocab=50, max_len=12, d=32):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        pe = torch.zeros(max_len, d)
        pos = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        self.register_buffer("pe", pe)
        self.ln = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.head = nn.Linear(d, vocab)

    def forward(self, ids):
        h = self.emb(ids) + self.pe[:ids.shape[1]]
        h = h + self.fc2(torch.relu(self.fc1(self.ln(h))))
        return self.head(h)


def test_a_position_table_keeps_its_length_and_values_and_its_widened_channels_are_padded():
    torch.manual_seed(0)
    model, ids = SinusoidalLM(), torch.randint(0, 50, (2, 12))
    gm = _compile(model, "wide:0.75", ids)
    assert gm.fc1.weight.shape == (256, 64)                 # the channels widened
    assert gm.pe.shape == (12, 64)                          # the length did not (it was 24 x 64)
    torch.testing.assert_close(gm.pe[:, :32], model.pe, rtol=0, atol=0)
    assert not gm.pe[:, 32:].any()                          # new channels: zero, never drawn
    rep = gm.siftc.report()
    assert [(e["name"], e["from"], e["to"]) for e in rep.extended] == [("pe", [12, 32], [12, 64])]
    assert "original values in place" in str(rep) and "not a channel dimension" in str(rep)
    with pytest.raises(Exception):
        gm(torch.randint(0, 50, (2, 13)))                   # no longer than the original allowed
    with pytest.raises(Exception):
        model(torch.randint(0, 50, (2, 13)))


def test_buffers_policy_keeps_or_refuses():
    torch.manual_seed(0)
    model, ids = SinusoidalLM(), torch.randint(0, 50, (2, 12))
    kept = _compile(model, "wide:0.75,buffers=keep", ids)
    assert torch.equal(kept.pe, model.pe) and kept.emb.weight.shape[1] == 32   # its group kept its width
    assert kept.fc1.weight.shape[0] == 256                                     # the FFN still widened
    with pytest.raises(siftc.SiftcError, match=r"(?s)buffer 'pe' \(12, 32\).*buffers=pad.*buffers=keep"):
        _compile(model, "wide:0.75,buffers=refuse", ids)


def _rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class RotaryLM(nn.Module):
    """Attention with rotary tables cos/sin (T, head_dim) in buffers; heads split by a literal
    head count (``view(B, T, H, C // H)``) or by head size (``view(B, T, -1, head_dim)``)."""

    def __init__(self, by_head_dim: bool, vocab=64, d=32, heads=4, length=12):
        super().__init__()
        self.by_head_dim, self.heads, self.head_dim = by_head_dim, heads, d // heads
        self.emb = nn.Embedding(vocab, d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        inv = 1.0 / (10000 ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim))
        f = torch.outer(torch.arange(length).float(), inv)
        self.register_buffer("cos", torch.cat((f, f), -1).cos())
        self.register_buffer("sin", torch.cat((f, f), -1).sin())
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.head = nn.Linear(d, vocab)

    def _split(self, t):
        B, T, C = t.shape
        t = t.view(B, T, -1, self.head_dim) if self.by_head_dim else t.view(B, T, self.heads, C // self.heads)
        return t.transpose(1, 2)

    def forward(self, ids):
        h = self.emb(ids)
        B, T, C = h.shape
        q, k, v = self._split(self.q(h)), self._split(self.k(h)), self._split(self.v(h))
        q = q * self.cos + _rotate_half(q) * self.sin
        k = k * self.cos + _rotate_half(k) * self.sin
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + self.o(y.transpose(1, 2).reshape(B, T, C))
        return self.head(h + self.fc2(F.gelu(self.fc1(h))))


@pytest.mark.parametrize("by_head_dim", [False, True])
def test_rotary_tables_are_never_resized_and_heads_widen_where_the_model_allows(by_head_dim):
    torch.manual_seed(0)
    model, ids = RotaryLM(by_head_dim), torch.randint(0, 64, (2, 12))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gm = siftc.compile(model, policy="wide:0.75", example_inputs=(ids,))
    for name in ("cos", "sin"):                  # (it was (32, 8), with drawn values up to 1.9)
        assert torch.equal(gm.get_buffer(name), model.get_buffer(name))
    assert gm.fc1.weight.shape[0] == 256         # the FFN widened either way
    said = [str(w.message) for w in caught if "per-head table" in str(w.message)]
    if by_head_dim:       # reshaped by head size: more heads of the same size
        assert gm.q.weight.shape == (64, 64) and not said
    else:                 # a literal head count: the head size (and with it the stream) is kept, and said
        assert gm.q.weight.shape == (32, 32) and said and "buffer 'cos'" in said[0]
    gm(ids).sum().backward()


def _all_buffers_kept_or_padded(model, gm) -> None:
    extended = {e["name"] for e in gm.siftc.report().extended}
    for name, before in model.named_buffers():
        after = gm.get_buffer(name)
        part = after[tuple(slice(0, n) for n in before.shape)]
        assert torch.equal(part, before), name
        if name in extended:
            rest = after.clone()
            rest[tuple(slice(0, n) for n in before.shape)] = 0
            assert not rest.any(), f"{name}: new entries must be padding, never drawn"


def test_no_buffer_receives_drawn_values_on_a_model_with_a_trained_norm():
    """A BatchNorm with trained (non-constant) running statistics and a user buffer on the
    widened stream: statistics keep their values (new channels at a fresh norm's 0 / 1), the
    buffer keeps its values and is padded with zeros."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.bn, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, padding=1)
            self.register_buffer("shift", torch.randn(1, 8, 1, 1))
            self.head = nn.Linear(8, 4)

        def forward(self, x):
            h = torch.relu(self.bn(self.c1(x))) + self.shift
            return self.head(torch.relu(self.c2(h)).mean((2, 3)))
    torch.manual_seed(0)
    model, x = Net(), torch.randn(4, 3, 8, 8)
    model.train()
    for _ in range(3):
        model(torch.randn(4, 3, 8, 8))       # non-constant running statistics
    model.eval()
    gm = _compile(model, "wide:0.75", x)
    assert gm.bn.running_mean.shape == (16,)
    _all_buffers_kept_or_padded(model, gm)
    assert torch.equal(gm.bn.running_var[8:], torch.ones(8))    # a fresh norm's statistics


class TiedLM(nn.Module):
    def __init__(self, vocab=64, d=32):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        h = self.emb(ids)
        return self.head(h + self.fc2(torch.relu(self.fc1(h))))


@pytest.mark.parametrize("member", ["sparse", "wide", "parallel", "factorized", "doped"])
@pytest.mark.parametrize("head", ["dense", "sparse"])
def test_weight_ties_are_kept_or_refused(member, head):
    torch.manual_seed(0)
    ids = torch.randint(0, 64, (2, 8))
    policy = f"{member}:0.5,head={head}"
    if head == "sparse" and member in ("parallel", "factorized", "doped"):
        with pytest.raises(siftc.UsageError, match=r"layer 'head' shares its weight with 'emb.weight' \(a tie\)"):
            _compile(TiedLM(), policy, ids)
        return
    gm = _compile(TiedLM(), policy, ids)
    shared = [n for n, p in gm.named_parameters(remove_duplicate=False) if p is gm.emb.weight]
    assert len(shared) == 2, shared                      # still one tensor under two names
    assert gm.siftc.report().ties == [sorted(shared)]
    assert "tied (one tensor, kept)" in str(gm.siftc.report())
    if head == "sparse":              # the shared tensor is the head's masked weight
        mask = gm.siftc.masks()["head.W" if member == "sparse" else "head"]
        assert not gm.emb.weight[~mask].any()


def test_two_sparsifiable_layers_sharing_a_weight_are_refused():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.a, self.b, self.out = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 2)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.out(torch.relu(self.b(torch.relu(self.a(torch.relu(self.inp(x)))))))
    with pytest.raises(siftc.UsageError, match="layers 'a' and 'b' share one weight"):
        _compile(Shared(), "sparse:0.5", torch.randn(2, 8))


class Seq2Seq(nn.Module):
    def __init__(self, vocab=40, d=32):
        super().__init__()
        self.src_emb, self.tgt_emb = nn.Embedding(vocab, d), nn.Embedding(vocab, d)
        self.tr = nn.Transformer(d_model=d, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=64,
                                 dropout=0.0, batch_first=True)
        self.out = nn.Linear(d, vocab)

    def forward(self, src, tgt, src_pad):
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
        h = self.tr(self.src_emb(src), self.tgt_emb(tgt), tgt_mask=mask, tgt_is_causal=True,
                    src_key_padding_mask=src_pad, memory_key_padding_mask=src_pad)
        return self.out(h)


def test_nn_transformer_is_traced_through_and_equals_eager_under_all_ones_masks():
    """nn.Transformer (encoder + decoder, a causal target mask, key-padding masks) is captured by
    torch.fx and its layers transformed (it was one opaque module, "returned unchanged"). With
    the original weights copied into the sparse layers and every mask all ones, the compiled
    model computes what the user's model does."""
    torch.manual_seed(0)
    model = Seq2Seq().eval()
    src, tgt = torch.randint(0, 40, (2, 10)), torch.randint(0, 40, (2, 7))
    pad = torch.zeros(2, 10, dtype=torch.bool)
    pad[1, 7:] = True
    gm = _compile(model, "sparse:0.5", src, tgt, pad)
    assert gm.siftc.passes[0]["stats"]["via"] == "fx"
    names = {L["name"] for L in gm.siftc.report().layers}
    assert {"tr.encoder.layers.0.self_attn.q_proj", "tr.encoder.layers.1.linear2", "tr.decoder.layers.0.self_attn.k_proj",
            "tr.decoder.layers.1.multihead_attn.v_proj", "tr.decoder.layers.1.linear1"} <= names
    assert len(names) == 2 * 6 + 2 * 10          # every projection and FFN linear
    original = dict(model.named_modules())
    with torch.no_grad():
        for q, mask in gm.siftc.masks().items():
            layer, mod = q.rpartition(".W")[0], gm.get_submodule(q)
            mask.fill_(True)
            if layer in original:
                mod.weight.copy_(original[layer].weight)
                mod.bias.copy_(original[layer].bias)
            else:                                  # q/k/v: rows of the packed in_proj_weight
                attn, _, which = layer.rpartition(".")
                i = "qkv".index(which[0])
                mha = original[attn]
                mod.weight.copy_(mha.in_proj_weight.chunk(3)[i])
                mod.bias.copy_(mha.in_proj_bias.chunk(3)[i])
        torch.testing.assert_close(gm(src, tgt, pad), model(src, tgt, pad), atol=1e-5, rtol=1e-4)
    rep = _compile(model, "parallel:0.75", src, tgt, pad).siftc.report()
    assert len(rep.layers) == 32 and abs(rep.iso_flop_ratio - 1) < 0.005


def test_verify_accounts_for_every_tensor_and_catches_a_planted_change():
    """verify lists what became of each tensor of the original model (kept, member, extended,
    unused) and refuses a change that nothing accounts for: here a pass that quietly edits a
    buffer outside the member's layers."""
    torch.manual_seed(0)
    model, ids = SinusoidalLM(), torch.randint(0, 50, (2, 12))
    gm = _compile(model, "wide:0.75", ids)
    stats = next(p for p in gm.siftc.passes if p["name"] == "verify")["stats"]
    assert (stats["tensors_extended"], stats["tensors_member"]) == (1, 9)     # every layer widened; pe padded
    gm = _compile(model, "sparse:0.5", ids)
    stats = next(p for p in gm.siftc.passes if p["name"] == "verify")["stats"]
    assert (stats["tensors_kept"], stats["tensors_member"]) == (6, 4)          # emb, pe, ln, head; fc1, fc2
    if "plant-test" not in PASSES:
        @register("plant-test", "test pass that edits a buffer the member does not own", kind="weights")
        def plant(gm, ctx):
            with torch.no_grad():
                gm.pe[0, 0] += 1.0
            return PassResult(gm, True, {})
    with pytest.raises(siftc.VerifyError, match="'pe' was to be extended"):
        _compile(model, "wide:0.75", ids,
                 pipeline="capture,shape-prop,flops,roles,couple,substitute,masks,plant-test,verify,lower-train")
    with pytest.raises(siftc.VerifyError, match="'pe' of the original model changed its values"):
        _compile(model, "sparse:0.5", ids,
                 pipeline="capture,shape-prop,flops,roles,couple,substitute,masks,plant-test,verify,lower-train")
