"""torch.nn modules decomposed before capture, so the members can reach their weights.

``nn.MultiheadAttention`` keeps its q/k/v projections in one packed ``in_proj_weight`` and runs
them inside ``F.multi_head_attention_forward``: to torch.fx it is one opaque leaf. Before tracing,
capture swaps each one (on its deep copy of the model) for ``DecomposedMHA``: the same function
written with four ``nn.Linear`` (q, k, v, out, weights copied from the packed ones), head views and
``F.scaled_dot_product_attention``, so every member applies to the projections and Sparse Wide
couples the embedding and head dims like any attention it traces. The transformer layers that call
it (``nn.TransformerEncoderLayer``, ``nn.TransformerDecoderLayer``, ``nn.TransformerEncoder``,
``nn.TransformerDecoder``, ``nn.Transformer``) are then traced through rather than kept as leaves;
the encoder ones get a subclass without their fused inference fast path, and nn.Transformer one
without its Python size checks, which tracing cannot follow.

Not decomposed (left opaque, costed and listed): ``add_bias_kv``, ``add_zero_attn``, modules the
user keeps whole with ``leaf_modules`` (and everything inside them). Inputs must be batched (3-D).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from siftc.core import ops

# torch.nn containers capture traces through once their attention is decomposed (the encoder
# ones become the subclasses below first: their fused fast-path checks branch on tensors)
TRACE_THROUGH = (nn.TransformerDecoderLayer, nn.TransformerDecoder)


class TracedEncoderLayer(nn.TransformerEncoderLayer):
    """nn.TransformerEncoderLayer without its fused inference fast path (whose checks branch on
    tensor properties, which tracing cannot follow): the standard path, which the fast path
    computes too."""

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal=is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal=is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x


class TracedEncoder(nn.TransformerEncoder):
    """nn.TransformerEncoder without its nested-tensor fast path: the layers, then the norm."""

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        out = src
        for layer in self.layers:
            out = layer(out, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        return self.norm(out) if self.norm is not None else out


class TracedDecoder(nn.TransformerDecoder):
    """nn.TransformerDecoder without its causal-mask detection, which compares ``tgt_mask`` with a
    causal mask in Python (a data-dependent branch): the flag is only a hint where a mask is given
    (the attention applies the mask), so it is passed on as given, None being False."""

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False):
        out = tgt
        for layer in self.layers:
            out = layer(out, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                        tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                        tgt_is_causal=bool(tgt_is_causal), memory_is_causal=bool(memory_is_causal))
        return self.norm(out) if self.norm is not None else out


class TracedTransformer(nn.Transformer):
    """nn.Transformer (encoder + decoder) without its input checks, which compare sizes in Python
    (``src.size(0) != tgt.size(0)``) and so cannot be traced: the encoder, then the decoder, with
    every mask and causal flag passed on as nn.Transformer passes them. shape-prop runs the graph on
    the example inputs, so inputs the checks would refuse still fail, at the node that reads them."""

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
                tgt_key_padding_mask=None, memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
                memory_is_causal=False):
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=tgt_is_causal,
                            memory_is_causal=memory_is_causal)


class DecomposedMHA(nn.Module):
    """nn.MultiheadAttention for batched inputs, as four linears and scaled dot-product attention.

    Same arguments, outputs and training behaviour (attention dropout while training) as the
    module it replaces; ``tests/test_guarantees.py`` compares the two on masks and both layouts."""

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        e, h = mha.embed_dim, mha.num_heads
        self.embed_dim, self.num_heads, self.head_dim = e, h, e // h
        self.batch_first, self.dropout = mha.batch_first, mha.dropout
        bias = mha.in_proj_bias
        kw = dict(device=mha.out_proj.weight.device, dtype=mha.out_proj.weight.dtype)
        self.q_proj = nn.Linear(e, e, bias=bias is not None, **kw)
        self.k_proj = nn.Linear(mha.kdim, e, bias=bias is not None, **kw)
        self.v_proj = nn.Linear(mha.vdim, e, bias=bias is not None, **kw)
        self.out_proj = nn.Linear(e, e, bias=mha.out_proj.bias is not None, **kw)
        with torch.no_grad():
            if mha._qkv_same_embed_dim:
                for proj, wq in zip((self.q_proj, self.k_proj, self.v_proj), mha.in_proj_weight.chunk(3)):
                    proj.weight.copy_(wq)
            else:
                self.q_proj.weight.copy_(mha.q_proj_weight)
                self.k_proj.weight.copy_(mha.k_proj_weight)
                self.v_proj.weight.copy_(mha.v_proj_weight)
            if bias is not None:
                for proj, b in zip((self.q_proj, self.k_proj, self.v_proj), bias.chunk(3)):
                    proj.bias.copy_(b)
            self.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.out_proj.bias is not None:
                self.out_proj.bias.copy_(mha.out_proj.bias)
        self.train(mha.training)
        # what nn.TransformerEncoderLayer / DecoderLayer read to choose their fused fast path: no
        # packed projection here, so they take the standard path that calls this module
        self.in_proj_weight = self.in_proj_bias = None
        self._qkv_same_embed_dim = False

    def _heads(self, x, batch: int):
        return x.view(batch, -1, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        batch, tgt = query.shape[0], query.shape[1]
        q = self._heads(self.q_proj(query), batch)
        k = self._heads(self.k_proj(key), batch)
        v = self._heads(self.v_proj(value), batch)
        mask = None
        if attn_mask is not None or key_padding_mask is not None:   # None is known while tracing
            mask = attention_mask(attn_mask, key_padding_mask, q, self.num_heads)
        p = self.dropout if self.training else 0.0
        if need_weights:
            scores = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)
            if mask is not None:
                scores = scores + mask
            elif is_causal:
                scores = scores + _causal(tgt, k.shape[2], q)
            weights = scores.softmax(-1)
            # the flag as a call argument: capture's mode_ops keeps it following .training
            attended = F.dropout(weights, self.dropout, training=self.training) if self.dropout > 0 else weights
            out = attended @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                                 is_causal=bool(is_causal and mask is None))
            weights = None
        out = self.out_proj(out.transpose(1, 2).reshape(batch, tgt, self.embed_dim))
        if not self.batch_first:
            out = out.transpose(0, 1)
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)
        return out, weights


ops.register_transparent(DecomposedMHA)


@torch.fx.wrap
def attention_mask(attn_mask, key_padding_mask, q, heads: int):
    """nn.MultiheadAttention's masks as one additive float mask for q (batch, heads, L, E).

    One call in a torch.fx graph (torch.fx.wrap): its branches read the masks' dtypes and sizes,
    which a masked model computes in its forward (a causal mask made from the target length), so
    torch.fx could not trace them."""
    batch, tgt = q.shape[0], q.shape[2]
    mask = _additive(attn_mask, q)
    if mask is not None and mask.dim() == 3 and mask.shape[0] != 1:    # (batch * heads, L, S)
        mask = mask.view(batch, heads, tgt, -1)
    kpm = _additive(key_padding_mask, q)
    if kpm is not None:
        kpm = kpm.view(batch, 1, 1, -1)
        mask = kpm if mask is None else mask + kpm
    return mask


def _additive(mask, like):
    """A bool mask (True = not allowed) as an additive float mask; float masks as they are."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(mask, float("-inf"))
    return mask.to(like.dtype)


def _causal(tgt: int, src: int, like):
    return torch.full((tgt, src), float("-inf"), dtype=like.dtype, device=like.device).triu(1)


def decomposable(mha: nn.MultiheadAttention) -> str:
    """'' when ``mha`` can be decomposed, else why not."""
    if mha.bias_k is not None or mha.bias_v is not None:
        return "add_bias_kv=True"
    if mha.add_zero_attn:
        return "add_zero_attn=True"
    return ""


def decompose_attention(model: nn.Module, leaf_modules=()) -> tuple[int, list[str]]:
    """Replace every decomposable nn.MultiheadAttention in ``model`` (in place) and give the
    encoder layers that call it their traceable class; returns how many attentions and a note
    for each one left as it is."""
    count, notes = 0, []
    leaf_types = tuple(m for m in leaf_modules if isinstance(m, type))
    leaf_names = {m for m in leaf_modules if isinstance(m, str)}
    kept = {n for n, m in model.named_modules()            # the user keeps these whole (leaf_modules)
            if n in leaf_names or (leaf_types and isinstance(m, leaf_types))}

    def inside_kept(name: str) -> bool:
        return any(name == k or name.startswith(k + ".") for k in kept)
    for name, mod in model.named_modules():
        if inside_kept(name):
            continue
        attn = getattr(mod, "self_attn", None)
        if type(mod) is nn.TransformerEncoderLayer and isinstance(attn, nn.MultiheadAttention) \
                and not decomposable(attn):
            mod.__class__ = TracedEncoderLayer
        elif type(mod) is nn.TransformerEncoder and all(type(m) is nn.TransformerEncoderLayer and not decomposable(
                m.self_attn) for m in mod.layers):
            mod.__class__ = TracedEncoder
        elif type(mod) is nn.TransformerDecoder:
            mod.__class__ = TracedDecoder
        elif type(mod) is nn.Transformer and all(
                isinstance(getattr(m, a, None), nn.MultiheadAttention) and not decomposable(getattr(m, a))
                for m in [*mod.encoder.layers, *mod.decoder.layers] for a in ("self_attn",)):
            mod.__class__ = TracedTransformer
    for name, mod in list(model.named_modules()):
        if type(mod) is nn.MultiheadAttention and not inside_kept(name):
            why = decomposable(mod)
            if why:
                notes.append(f"capture: nn.MultiheadAttention '{name}' has {why}: kept as one opaque module "
                             f"(costed, weights dense)")
                continue
            if name:
                model.set_submodule(name, DecomposedMHA(mod))
                count += 1
    return count, notes
