# siftc input: MLP
# policy: parallel:0.75
# target: cpu
# example input shapes: [(2, 1, 28, 28)]

# module tree:
#   MLP(
#     (net): Sequential(
#       (0): Flatten(start_dim=1, end_dim=-1)
#       (1): Linear(in_features=784, out_features=256, bias=True)
#       (2): ReLU()
#       (3): Linear(in_features=256, out_features=256, bias=True)
#       (4): ReLU()
#       (5): Linear(in_features=256, out_features=10, bias=True)
#     )
#   )
