"""The per-layer Sparse-IFT members (docs/method.md, "The family"), as nn.Modules.

Each member is an nn.Module whose ``forward`` is the structure that replaces one dense layer;
``substitute`` traces it and inlines its graph at every call site, so the forward written
here is the one source of truth for what the compiled graph computes. Sparse weights are the
nn.Linear / nn.Conv2d children whose weight carries a mask (siftc/core/mask_api.py).
"""
from siftc.core.members.base import MemberLayer, new_like, mark_sparse, sparse_children
from siftc.core.members.parallel import ParallelLayer, parallel_branches
from siftc.core.members.factorized import FactorizedLayer, factorized_inner_dim
from siftc.core.members.doped import DopedLayer, doped_rank
from siftc.core.members.sparse import SparseLayer

BUILDERS = {
    "parallel": ParallelLayer.build,
    "factorized": FactorizedLayer.build,
    "doped": DopedLayer.build,
    "sparse": SparseLayer.build,
}

__all__ = ["MemberLayer", "ParallelLayer", "FactorizedLayer", "DopedLayer", "SparseLayer", "BUILDERS",
           "parallel_branches", "factorized_inner_dim", "doped_rank", "new_like", "mark_sparse",
           "sparse_children"]
