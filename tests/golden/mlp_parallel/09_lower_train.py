# siftc dump 09: pass 'lower-train' (transform)
# zero-filled weights + gradient-mask hooks (no mask multiply in forward); move to target
# policy: parallel:0.75   target: cpu   pass options: none
# nodes: 22 -> 22 (+0)
# FLOPs: before 1,076,224 / after 1,076,224
# stats: {"device": "cpu", "hooked": 4}

def forward(self, x):
    net_0 = getattr(self.net, "0")(x);  x = None
    net_1 = getattr(self.net, "1")(net_0);  net_0 = None
    net_2 = getattr(self.net, "2")(net_1);  net_1 = None
    net_3_branches_0 = getattr(getattr(self.net, "3").branches, "0")(net_2)
    net_3_norms_0 = getattr(getattr(self.net, "3").norms, "0")(net_3_branches_0);  net_3_branches_0 = None
    net_3_relu = torch.nn.functional.relu(net_3_norms_0, inplace = False);  net_3_norms_0 = None
    net_3_branches_1 = getattr(getattr(self.net, "3").branches, "1")(net_2)
    net_3_norms_1 = getattr(getattr(self.net, "3").norms, "1")(net_3_branches_1);  net_3_branches_1 = None
    net_3_relu_1 = torch.nn.functional.relu(net_3_norms_1, inplace = False);  net_3_norms_1 = None
    net_3_add = net_3_relu + net_3_relu_1;  net_3_relu = net_3_relu_1 = None
    net_3_branches_2 = getattr(getattr(self.net, "3").branches, "2")(net_2)
    net_3_norms_2 = getattr(getattr(self.net, "3").norms, "2")(net_3_branches_2);  net_3_branches_2 = None
    net_3_relu_2 = torch.nn.functional.relu(net_3_norms_2, inplace = False);  net_3_norms_2 = None
    net_3_add_1 = net_3_add + net_3_relu_2;  net_3_add = net_3_relu_2 = None
    net_3_branches_3 = getattr(getattr(self.net, "3").branches, "3")(net_2);  net_2 = None
    net_3_norms_3 = getattr(getattr(self.net, "3").norms, "3")(net_3_branches_3);  net_3_branches_3 = None
    net_3_relu_3 = torch.nn.functional.relu(net_3_norms_3, inplace = False);  net_3_norms_3 = None
    net_3_add_2 = net_3_add_1 + net_3_relu_3;  net_3_add_1 = net_3_relu_3 = None
    net_4 = getattr(self.net, "4")(net_3_add_2);  net_3_add_2 = None
    net_5 = getattr(self.net, "5")(net_4);  net_4 = None
    return net_5

# ---- nodes (meta written so far) ----
# node | op | target | shape | role | category | FLOPs
# x | placeholder | x | (2, 1, 28, 28) | - | none | 0
# net_0 | call_module | net.0 | (2, 784) | - | none | 0
# net_1 | call_module | net.1 | (2, 256) | stem | linear | 802,816
# net_2 | call_module | net.2 | (2, 256) | - | act | 512
# net_3_branches_0 | call_module | net.3.branches.0 | (2, 256) | - | linear | 62,592
# net_3_norms_0 | call_module | net.3.norms.0 | (2, 256) | - | norm | 2,048
# net_3_relu | call_function | relu | (2, 256) | - | act | 512
# net_3_branches_1 | call_module | net.3.branches.1 | (2, 256) | - | linear | 62,592
# net_3_norms_1 | call_module | net.3.norms.1 | (2, 256) | - | norm | 2,048
# net_3_relu_1 | call_function | relu | (2, 256) | - | act | 512
# net_3_add | call_function | add | (2, 256) | - | elementwise | 512
# net_3_branches_2 | call_module | net.3.branches.2 | (2, 256) | - | linear | 62,592
# net_3_norms_2 | call_module | net.3.norms.2 | (2, 256) | - | norm | 2,048
# net_3_relu_2 | call_function | relu | (2, 256) | - | act | 512
# net_3_add_1 | call_function | add | (2, 256) | - | elementwise | 512
# net_3_branches_3 | call_module | net.3.branches.3 | (2, 256) | - | linear | 62,592
# net_3_norms_3 | call_module | net.3.norms.3 | (2, 256) | - | norm | 2,048
# net_3_relu_3 | call_function | relu | (2, 256) | - | act | 512
# net_3_add_2 | call_function | add | (2, 256) | - | elementwise | 512
# net_4 | call_module | net.4 | (2, 256) | - | act | 512
# net_5 | call_module | net.5 | (2, 10) | head | linear | 10,240
# output | output | output | (2, 10) | - | none | 0

# ---- weight modules called by the graph ----
# module | type | weight | non-zeros
# net.1 | Linear | (256, 784) | dense
# net.3.branches.0 | Linear | (256, 256) | 15,648/65,536
# net.3.norms.0 | LayerNorm | (256,) | dense
# net.3.branches.1 | Linear | (256, 256) | 15,648/65,536
# net.3.norms.1 | LayerNorm | (256,) | dense
# net.3.branches.2 | Linear | (256, 256) | 15,648/65,536
# net.3.norms.2 | LayerNorm | (256,) | dense
# net.3.branches.3 | Linear | (256, 256) | 15,648/65,536
# net.3.norms.3 | LayerNorm | (256,) | dense
# net.5 | Linear | (10, 256) | dense
