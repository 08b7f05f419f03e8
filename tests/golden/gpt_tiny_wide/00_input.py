# siftc input: GPT
# policy: wide:0.5
# target: cpu
# example input shapes: [(2, 64)]

# module tree:
#   GPT(
#     (wte): Embedding(65, 128)
#     (wpe): Embedding(64, 128)
#     (h): ModuleList(
#       (0-1): 2 x Block(
#         (ln_1): LayerNorm((128,), eps=1e-05, elementwise_affine=True, bias=True)
#         (attn): CausalSelfAttention(
#           (c_attn): Linear(in_features=128, out_features=384, bias=True)
#           (c_proj): Linear(in_features=128, out_features=128, bias=True)
#         )
#         (ln_2): LayerNorm((128,), eps=1e-05, elementwise_affine=True, bias=True)
#         (mlp): MLPBlock(
#           (c_fc): Linear(in_features=128, out_features=512, bias=True)
#           (gelu): GELU(approximate='none')
#           (c_proj): Linear(in_features=512, out_features=128, bias=True)
#         )
#       )
#     )
#     (ln_f): LayerNorm((128,), eps=1e-05, elementwise_affine=True, bias=True)
#     (lm_head): Linear(in_features=128, out_features=65, bias=False)
#   )
