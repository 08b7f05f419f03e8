"""Hugging Face model families at small configs, built from their config classes (random init,
offline: nothing is downloaded). Needs ``transformers`` (the ``library`` extra).

``create(family, size)``: ``tiny`` (hidden 64, 2 layers) is what the tests compile;
``small`` (hidden 256, 4 layers) is what ``siftc bench compile --models hf:FAMILY`` times.
Models are in eval mode with ``use_cache=False`` (the KV cache is an output torch.export cannot
carry; training does not use it). ``example_inputs(family, batch, tokens)``: token ids.

Families were picked for the ops each brings to siftc's capture and channel coupling
(tests/test_hf_families.py says which).
"""
from __future__ import annotations

import torch

FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "gemma", "gpt_neox", "gptj", "phi", "phi3", "falcon", "opt", "gpt2",
            "bert", "roberta", "deberta", "mobilebert", "bart", "clip_text")
VOCAB = 128
_SIZES = {"tiny": (64, 96, 2, 4), "small": (256, 688, 4, 8)}     # hidden, FFN, layers, heads


def create(family: str, size: str = "tiny") -> torch.nn.Module:
    import transformers as T
    if family not in FAMILIES or size not in _SIZES:
        raise KeyError(f"hf_families.create({family!r}, {size!r}): families {', '.join(FAMILIES)}; "
                       f"sizes {', '.join(_SIZES)}")
    d, ffn, layers, heads = _SIZES[size]
    kw = dict(hidden_size=d, intermediate_size=ffn, num_hidden_layers=layers, num_attention_heads=heads,
              vocab_size=VOCAB)
    gqa = dict(num_key_value_heads=heads // 2)
    make = {
        "llama": lambda: T.LlamaForCausalLM(T.LlamaConfig(**gqa, **kw)),
        "qwen2": lambda: T.Qwen2ForCausalLM(T.Qwen2Config(**gqa, **kw)),
        "qwen3": lambda: T.Qwen3ForCausalLM(T.Qwen3Config(**gqa, head_dim=d // heads, **kw)),
        "phi3": lambda: T.Phi3ForCausalLM(T.Phi3Config(**gqa, pad_token_id=0, **kw)),
        "mistral": lambda: T.MistralForCausalLM(T.MistralConfig(**gqa, **kw)),
        "gemma": lambda: T.GemmaForCausalLM(T.GemmaConfig(**gqa, head_dim=d // heads, **kw)),
        "gpt_neox": lambda: T.GPTNeoXForCausalLM(T.GPTNeoXConfig(**kw)),
        "gptj": lambda: T.GPTJForCausalLM(T.GPTJConfig(n_embd=d, n_layer=layers, n_head=heads, vocab_size=VOCAB,
                                                       rotary_dim=d // heads // 2)),
        "phi": lambda: T.PhiForCausalLM(T.PhiConfig(**kw)),
        "falcon": lambda: T.FalconForCausalLM(T.FalconConfig(hidden_size=d, num_hidden_layers=layers,
                                                             num_attention_heads=heads, vocab_size=VOCAB)),
        "opt": lambda: T.OPTForCausalLM(T.OPTConfig(hidden_size=d, ffn_dim=ffn, num_hidden_layers=layers,
                                                    num_attention_heads=heads, vocab_size=VOCAB,
                                                    word_embed_proj_dim=d)),
        "gpt2": lambda: T.GPT2LMHeadModel(T.GPT2Config(n_embd=d, n_layer=layers, n_head=heads, vocab_size=VOCAB,
                                                       bos_token_id=0, eos_token_id=0)),
        "bert": lambda: T.BertForMaskedLM(T.BertConfig(**kw)),
        "roberta": lambda: T.RobertaModel(T.RobertaConfig(**kw)),
        "deberta": lambda: T.DebertaV2Model(T.DebertaV2Config(**kw)),
        "mobilebert": lambda: T.MobileBertModel(T.MobileBertConfig(
            hidden_size=d, embedding_size=d // 2, intermediate_size=ffn, num_hidden_layers=layers,
            num_attention_heads=heads, vocab_size=VOCAB, intra_bottleneck_size=d // 2, true_hidden_size=d // 2)),
        "bart": lambda: T.BartModel(T.BartConfig(d_model=d, encoder_layers=layers // 2, decoder_layers=layers // 2,
                                                 encoder_attention_heads=heads, decoder_attention_heads=heads,
                                                 encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, vocab_size=VOCAB)),
        "clip_text": lambda: T.CLIPTextModel(T.CLIPTextConfig(**kw)),
    }
    model = make[family]().eval()
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    return model


def example_inputs(family: str, batch_size: int = 1, tokens: int = 10, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, VOCAB, (batch_size, tokens), generator=g),)
