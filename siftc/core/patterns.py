"""Structured mask patterns: ``block:B`` (whole BxB blocks) and ``N:M`` (N of every M in a row).

Both act on a weight's 2-D matrix view (out, in * kh * kw), the view the sparse kernels multiply
with (siftc.kernels). ``block:B`` masks keep or drop whole BxB tiles, so BSR kernels can skip
them (docs/measurements.md: BSR gives 1.6-12x on 32x32-block masks at 90-99%); dynamic sparse training
moves whole blocks (scores summed over the block). ``N:M`` keeps N entries in every group of M
consecutive inputs (2:4 is what CUDA's semi-structured kernels run); its density is N/M by
construction, so it cannot be solved for iso-FLOP and masks under it do not move.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

# torch is imported inside the functions that use it: the policy (and with it `import siftc`
# and the command line's --help) must not pay for importing torch
from siftc.core.errors import PolicyError


@dataclass(frozen=True)
class Pattern:
    kind: str = "none"      # none | block | nm
    block: int = 0
    n: int = 0
    m: int = 0

    @property
    def density(self) -> float:
        return self.n / self.m if self.kind == "nm" else 1.0


def parse_pattern(text: str) -> Pattern:
    """'none', 'block:16', '2:4' -> Pattern; ValueError with the allowed forms otherwise."""
    if text == "none":
        return Pattern()
    mb = re.fullmatch(r"block:(\d+)", text)
    if mb and int(mb.group(1)) >= 2:
        return Pattern("block", block=int(mb.group(1)))
    mnm = re.fullmatch(r"(\d+):(\d+)", text)
    if mnm and 0 < int(mnm.group(1)) < int(mnm.group(2)):
        return Pattern("nm", n=int(mnm.group(1)), m=int(mnm.group(2)))
    raise PolicyError(f"pattern={text!r} is not allowed; allowed: none, block:B (B >= 2, e.g. block:16), "
                     f"N:M (0 < N < M, e.g. 2:4)")


def matrix_shape(shape) -> tuple[int, int]:
    return shape[0], math.prod(shape[1:])


def supports(shape, pattern: Pattern) -> bool:
    rows, cols = matrix_shape(shape)
    if pattern.kind == "block":
        return rows % pattern.block == 0 and cols % pattern.block == 0
    if pattern.kind == "nm":
        return cols % pattern.m == 0
    return True


def block_scores(t: torch.Tensor, b: int) -> torch.Tensor:
    """Sum of |t| over each BxB tile of t's matrix view: shape (rows/B, cols/B)."""
    rows, cols = matrix_shape(t.shape)
    return t.detach().abs().float().reshape(rows // b, b, cols // b, b).sum(dim=(1, 3))


def blocks_of(mask: torch.Tensor, b: int) -> torch.Tensor:
    """The tile-level mask of a block-structured element mask."""
    rows, cols = matrix_shape(mask.shape)
    return mask.reshape(rows // b, b, cols // b, b)[:, 0, :, 0].clone()


def expand_blocks(block_mask: torch.Tensor, b: int, shape) -> torch.Tensor:
    """Element mask of ``shape`` from a tile mask (each tile repeated BxB)."""
    return block_mask.repeat_interleave(b, 0).repeat_interleave(b, 1).reshape(shape)


def block_mask(shape, density: float, b: int, generator: torch.Generator, exact_mask) -> torch.Tensor:
    rows, cols = matrix_shape(shape)
    tiles = exact_mask((rows // b, cols // b), density, generator)
    return expand_blocks(tiles, b, shape)


def nm_mask(shape, n: int, m: int, generator: torch.Generator) -> torch.Tensor:
    """N random positions kept in every group of M consecutive entries of each row."""
    import torch
    rows, cols = matrix_shape(shape)
    keys = torch.rand(rows, cols // m, m, generator=generator)
    keep = keys.topk(n, dim=-1).indices
    mask = torch.zeros(rows, cols // m, m, dtype=torch.bool)
    mask.scatter_(-1, keep, True)
    return mask.reshape(shape)


def is_nm(mask: torch.Tensor, n: int, m: int) -> bool:
    rows, cols = matrix_shape(mask.shape)
    return bool((mask.reshape(rows, cols // m, m).sum(-1) == n).all())
