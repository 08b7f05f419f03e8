"""The per-layer Sparse-IFT members (SPEC.md, "The family"), as nn.Modules.

Each member is an nn.Module whose ``forward`` is the structure that replaces one dense layer;
``substitute`` traces it and inlines its graph at every call site, so the forward written
here is the one source of truth for what the compiled graph computes. Sparse weights are the
nn.Linear / nn.Conv2d children that carry a ``weight_mask`` buffer.
"""
from .base import MemberLayer, new_like, mark_sparse, sparse_children
from .parallel import ParallelLayer, parallel_branches
from .factorized import FactorizedLayer, factorized_inner_dim
from .doped import DopedLayer, doped_rank
from .sparse import SparseLayer

BUILDERS = {
    "parallel": ParallelLayer.build,
    "factorized": FactorizedLayer.build,
    "doped": DopedLayer.build,
    "sparse": SparseLayer.build,
}

__all__ = ["MemberLayer", "ParallelLayer", "FactorizedLayer", "DopedLayer", "SparseLayer", "BUILDERS",
           "parallel_branches", "factorized_inner_dim", "doped_rank", "new_like", "mark_sparse",
           "sparse_children"]
