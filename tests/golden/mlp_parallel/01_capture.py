# siftc dump 01: pass 'capture' (transform)
# trace the model into a torch.fx GraphModule (deep copy; user model untouched); torch.export when fx cannot (policy capture=auto|fx|export)
# policy: parallel:0.75   target: cpu   pass options: none
# nodes: 0 -> 8 (+8)
# FLOPs: before n/a / after 1,076,224
# stats: {"decomposed_attention": 0, "lifted_modules": 0, "mode_ops": 0, "retraced": 1, "via": "fx"}

def forward(self, x):
    net_0 = getattr(self.net, "0")(x);  x = None
    net_1 = getattr(self.net, "1")(net_0);  net_0 = None
    net_2 = getattr(self.net, "2")(net_1);  net_1 = None
    net_3 = getattr(self.net, "3")(net_2);  net_2 = None
    net_4 = getattr(self.net, "4")(net_3);  net_3 = None
    net_5 = getattr(self.net, "5")(net_4);  net_4 = None
    return net_5

# ---- nodes (meta written so far) ----
# node | op | target | shape | role | category | FLOPs
# x | placeholder | x | (2, 1, 28, 28) | - | none | 0
# net_0 | call_module | net.0 | (2, 784) | - | none | 0
# net_1 | call_module | net.1 | (2, 256) | - | linear | 802,816
# net_2 | call_module | net.2 | (2, 256) | - | act | 512
# net_3 | call_module | net.3 | (2, 256) | - | linear | 262,144
# net_4 | call_module | net.4 | (2, 256) | - | act | 512
# net_5 | call_module | net.5 | (2, 10) | - | linear | 10,240
# output | output | output | (2, 10) | - | none | 0

# ---- weight modules called by the graph ----
# module | type | weight | non-zeros
# net.1 | Linear | (256, 784) | dense
# net.3 | Linear | (256, 256) | dense
# net.5 | Linear | (10, 256) | dense
