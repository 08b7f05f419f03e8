# siftc dump 01: pass 'capture' (transform)
# trace the model into a torch.fx GraphModule (deep copy; user model untouched); torch.export when fx cannot (policy capture=auto|fx|export)
# policy: wide:0.5   target: cpu   pass options: none
# nodes: 0 -> 70 (+70)
# FLOPs: before n/a / after 111,722,496
# stats: {"decomposed_attention": 0, "lifted_modules": 0, "mode_ops": 0, "retraced": 1, "via": "fx"}

def forward(self, idx):
    size = idx.size(1)
    getattr_1 = idx.device
    arange = torch.arange(0, size, dtype = torch.int64, device = getattr_1);  size = getattr_1 = None
    wte = self.wte(idx);  idx = None
    wpe = self.wpe(arange);  arange = None
    add = wte + wpe;  wte = wpe = None
    h_0_ln_1 = getattr(self.h, "0").ln_1(add)
    size_1 = h_0_ln_1.size()
    getitem = size_1[0]
    getitem_1 = size_1[1]
    getitem_2 = size_1[2];  size_1 = None
    h_0_attn_c_attn = getattr(self.h, "0").attn.c_attn(h_0_ln_1);  h_0_ln_1 = None
    split = h_0_attn_c_attn.split(getitem_2, dim = 2);  h_0_attn_c_attn = None
    getitem_3 = split[0]
    getitem_4 = split[1]
    getitem_5 = split[2];  split = None
    floordiv = getitem_2 // 4
    view = getitem_3.view(getitem, getitem_1, 4, floordiv);  getitem_3 = floordiv = None
    transpose = view.transpose(1, 2);  view = None
    floordiv_1 = getitem_2 // 4
    view_1 = getitem_4.view(getitem, getitem_1, 4, floordiv_1);  getitem_4 = floordiv_1 = None
    transpose_1 = view_1.transpose(1, 2);  view_1 = None
    floordiv_2 = getitem_2 // 4
    view_2 = getitem_5.view(getitem, getitem_1, 4, floordiv_2);  getitem_5 = floordiv_2 = None
    transpose_2 = view_2.transpose(1, 2);  view_2 = None
    scaled_dot_product_attention = torch._C._nn.scaled_dot_product_attention(transpose, transpose_1, transpose_2, is_causal = True, dropout_p = 0.0);  transpose = transpose_1 = transpose_2 = None
    transpose_3 = scaled_dot_product_attention.transpose(1, 2);  scaled_dot_product_attention = None
    contiguous = transpose_3.contiguous();  transpose_3 = None
    view_3 = contiguous.view(getitem, getitem_1, getitem_2);  contiguous = getitem = getitem_1 = getitem_2 = None
    h_0_attn_c_proj = getattr(self.h, "0").attn.c_proj(view_3);  view_3 = None
    add_1 = add + h_0_attn_c_proj;  add = h_0_attn_c_proj = None
    h_0_ln_2 = getattr(self.h, "0").ln_2(add_1)
    h_0_mlp_c_fc = getattr(self.h, "0").mlp.c_fc(h_0_ln_2);  h_0_ln_2 = None
    h_0_mlp_gelu = getattr(self.h, "0").mlp.gelu(h_0_mlp_c_fc);  h_0_mlp_c_fc = None
    h_0_mlp_c_proj = getattr(self.h, "0").mlp.c_proj(h_0_mlp_gelu);  h_0_mlp_gelu = None
    add_2 = add_1 + h_0_mlp_c_proj;  add_1 = h_0_mlp_c_proj = None
    h_1_ln_1 = getattr(self.h, "1").ln_1(add_2)
    size_2 = h_1_ln_1.size()
    getitem_6 = size_2[0]
    getitem_7 = size_2[1]
    getitem_8 = size_2[2];  size_2 = None
    h_1_attn_c_attn = getattr(self.h, "1").attn.c_attn(h_1_ln_1);  h_1_ln_1 = None
    split_1 = h_1_attn_c_attn.split(getitem_8, dim = 2);  h_1_attn_c_attn = None
    getitem_9 = split_1[0]
    getitem_10 = split_1[1]
    getitem_11 = split_1[2];  split_1 = None
    floordiv_3 = getitem_8 // 4
    view_4 = getitem_9.view(getitem_6, getitem_7, 4, floordiv_3);  getitem_9 = floordiv_3 = None
    transpose_4 = view_4.transpose(1, 2);  view_4 = None
    floordiv_4 = getitem_8 // 4
    view_5 = getitem_10.view(getitem_6, getitem_7, 4, floordiv_4);  getitem_10 = floordiv_4 = None
    transpose_5 = view_5.transpose(1, 2);  view_5 = None
    floordiv_5 = getitem_8 // 4
    view_6 = getitem_11.view(getitem_6, getitem_7, 4, floordiv_5);  getitem_11 = floordiv_5 = None
    transpose_6 = view_6.transpose(1, 2);  view_6 = None
    scaled_dot_product_attention_1 = torch._C._nn.scaled_dot_product_attention(transpose_4, transpose_5, transpose_6, is_causal = True, dropout_p = 0.0);  transpose_4 = transpose_5 = transpose_6 = None
    transpose_7 = scaled_dot_product_attention_1.transpose(1, 2);  scaled_dot_product_attention_1 = None
    contiguous_1 = transpose_7.contiguous();  transpose_7 = None
    view_7 = contiguous_1.view(getitem_6, getitem_7, getitem_8);  contiguous_1 = getitem_6 = getitem_7 = getitem_8 = None
    h_1_attn_c_proj = getattr(self.h, "1").attn.c_proj(view_7);  view_7 = None
    add_3 = add_2 + h_1_attn_c_proj;  add_2 = h_1_attn_c_proj = None
    h_1_ln_2 = getattr(self.h, "1").ln_2(add_3)
    h_1_mlp_c_fc = getattr(self.h, "1").mlp.c_fc(h_1_ln_2);  h_1_ln_2 = None
    h_1_mlp_gelu = getattr(self.h, "1").mlp.gelu(h_1_mlp_c_fc);  h_1_mlp_c_fc = None
    h_1_mlp_c_proj = getattr(self.h, "1").mlp.c_proj(h_1_mlp_gelu);  h_1_mlp_gelu = None
    add_4 = add_3 + h_1_mlp_c_proj;  add_3 = h_1_mlp_c_proj = None
    ln_f = self.ln_f(add_4);  add_4 = None
    lm_head = self.lm_head(ln_f);  ln_f = None
    return lm_head

# ---- nodes (meta written so far) ----
# node | op | target | shape | role | category | FLOPs
# idx | placeholder | idx | (2, 64) | - | none | 0
# size | call_method | size | - | - | none | 0
# getattr_1 | call_function | getattr | - | - | none | 0
# arange | call_function | arange | (64,) | - | none | 0
# wte | call_module | wte | (2, 64, 128) | - | embedding | 0
# wpe | call_module | wpe | (64, 128) | - | embedding | 0
# add | call_function | add | (2, 64, 128) | - | elementwise | 16,384
# h_0_ln_1 | call_module | h.0.ln_1 | (2, 64, 128) | - | norm | 65,536
# size_1 | call_method | size | - | - | none | 0
# getitem | call_function | getitem | - | - | none | 0
# getitem_1 | call_function | getitem | - | - | none | 0
# getitem_2 | call_function | getitem | - | - | none | 0
# h_0_attn_c_attn | call_module | h.0.attn.c_attn | (2, 64, 384) | - | linear | 12,582,912
# split | call_method | split | ((2, 64, 128), (2, 64, 128), (2, 64, 128)) | - | none | 0
# getitem_3 | call_function | getitem | (2, 64, 128) | - | none | 0
# getitem_4 | call_function | getitem | (2, 64, 128) | - | none | 0
# getitem_5 | call_function | getitem | (2, 64, 128) | - | none | 0
# floordiv | call_function | floordiv | - | - | none | 0
# view | call_method | view | (2, 64, 4, 32) | - | none | 0
# transpose | call_method | transpose | (2, 4, 64, 32) | - | none | 0
# floordiv_1 | call_function | floordiv | - | - | none | 0
# view_1 | call_method | view | (2, 64, 4, 32) | - | none | 0
# transpose_1 | call_method | transpose | (2, 4, 64, 32) | - | none | 0
# floordiv_2 | call_function | floordiv | - | - | none | 0
# view_2 | call_method | view | (2, 64, 4, 32) | - | none | 0
# transpose_2 | call_method | transpose | (2, 4, 64, 32) | - | none | 0
# scaled_dot_product_attention | call_function | scaled_dot_product_attention | (2, 4, 64, 32) | - | attention | 4,194,304
# transpose_3 | call_method | transpose | (2, 64, 4, 32) | - | none | 0
# contiguous | call_method | contiguous | (2, 64, 4, 32) | - | none | 0
# view_3 | call_method | view | (2, 64, 128) | - | none | 0
# h_0_attn_c_proj | call_module | h.0.attn.c_proj | (2, 64, 128) | - | linear | 4,194,304
# add_1 | call_function | add | (2, 64, 128) | - | elementwise | 16,384
# h_0_ln_2 | call_module | h.0.ln_2 | (2, 64, 128) | - | norm | 65,536
# h_0_mlp_c_fc | call_module | h.0.mlp.c_fc | (2, 64, 512) | - | linear | 16,777,216
# h_0_mlp_gelu | call_module | h.0.mlp.gelu | (2, 64, 512) | - | act | 65,536
# h_0_mlp_c_proj | call_module | h.0.mlp.c_proj | (2, 64, 128) | - | linear | 16,777,216
# add_2 | call_function | add | (2, 64, 128) | - | elementwise | 16,384
# h_1_ln_1 | call_module | h.1.ln_1 | (2, 64, 128) | - | norm | 65,536
# size_2 | call_method | size | - | - | none | 0
# getitem_6 | call_function | getitem | - | - | none | 0
# getitem_7 | call_function | getitem | - | - | none | 0
# getitem_8 | call_function | getitem | - | - | none | 0
# h_1_attn_c_attn | call_module | h.1.attn.c_attn | (2, 64, 384) | - | linear | 12,582,912
# split_1 | call_method | split | ((2, 64, 128), (2, 64, 128), (2, 64, 128)) | - | none | 0
# getitem_9 | call_function | getitem | (2, 64, 128) | - | none | 0
# getitem_10 | call_function | getitem | (2, 64, 128) | - | none | 0
# getitem_11 | call_function | getitem | (2, 64, 128) | - | none | 0
# floordiv_3 | call_function | floordiv | - | - | none | 0
# view_4 | call_method | view | (2, 64, 4, 32) | - | none | 0
# transpose_4 | call_method | transpose | (2, 4, 64, 32) | - | none | 0
# floordiv_4 | call_function | floordiv | - | - | none | 0
# view_5 | call_method | view | (2, 64, 4, 32) | - | none | 0
# transpose_5 | call_method | transpose | (2, 4, 64, 32) | - | none | 0
# floordiv_5 | call_function | floordiv | - | - | none | 0
# view_6 | call_method | view | (2, 64, 4, 32) | - | none | 0
# transpose_6 | call_method | transpose | (2, 4, 64, 32) | - | none | 0
# scaled_dot_product_attention_1 | call_function | scaled_dot_product_attention | (2, 4, 64, 32) | - | attention | 4,194,304
# transpose_7 | call_method | transpose | (2, 64, 4, 32) | - | none | 0
# contiguous_1 | call_method | contiguous | (2, 64, 4, 32) | - | none | 0
# view_7 | call_method | view | (2, 64, 128) | - | none | 0
# h_1_attn_c_proj | call_module | h.1.attn.c_proj | (2, 64, 128) | - | linear | 4,194,304
# add_3 | call_function | add | (2, 64, 128) | - | elementwise | 16,384
# h_1_ln_2 | call_module | h.1.ln_2 | (2, 64, 128) | - | norm | 65,536
# h_1_mlp_c_fc | call_module | h.1.mlp.c_fc | (2, 64, 512) | - | linear | 16,777,216
# h_1_mlp_gelu | call_module | h.1.mlp.gelu | (2, 64, 512) | - | act | 65,536
# h_1_mlp_c_proj | call_module | h.1.mlp.c_proj | (2, 64, 128) | - | linear | 16,777,216
# add_4 | call_function | add | (2, 64, 128) | - | elementwise | 16,384
# ln_f | call_module | ln_f | (2, 64, 128) | - | norm | 65,536
# lm_head | call_module | lm_head | (2, 64, 65) | - | linear | 2,129,920
# output | output | output | (2, 64, 65) | - | none | 0

# ---- weight modules called by the graph ----
# module | type | weight | non-zeros
# wte | Embedding | (65, 128) | dense
# wpe | Embedding | (64, 128) | dense
# h.0.ln_1 | LayerNorm | (128,) | dense
# h.0.attn.c_attn | Linear | (384, 128) | dense
# h.0.attn.c_proj | Linear | (128, 128) | dense
# h.0.ln_2 | LayerNorm | (128,) | dense
# h.0.mlp.c_fc | Linear | (512, 128) | dense
# h.0.mlp.c_proj | Linear | (128, 512) | dense
# h.1.ln_1 | LayerNorm | (128,) | dense
# h.1.attn.c_attn | Linear | (384, 128) | dense
# h.1.attn.c_proj | Linear | (128, 128) | dense
# h.1.ln_2 | LayerNorm | (128,) | dense
# h.1.mlp.c_fc | Linear | (512, 128) | dense
# h.1.mlp.c_proj | Linear | (128, 512) | dense
# ln_f | LayerNorm | (128,) | dense
# lm_head | Linear | (65, 128) | dense
