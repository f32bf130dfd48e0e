"""Tile sizes of the kernels, chosen per call from the shape by a stated rule.

``tl.dot`` needs every tile side >= 16, and tile sides are powers of two. Rows (batch)
tiles cover the batch up to 64; the hidden-unit tile of the fused forward step shrinks
from 64 to 16 until the grid has about one program per streaming multiprocessor
(:data:`TARGET_PROGRAMS`), since a step's work is small and latency-bound; the reduction
tile is 32 (16 for tiny widths). With layer norm the cell kernels' tile spans the whole
row of ``H`` units (the statistics are per row), with as many rows as fit in
:data:`ROW_ELEMENTS` values.
"""

from __future__ import annotations

from typing import NamedTuple

#: Programs a step's grid aims for (an H100/H200 has 132 streaming multiprocessors).
TARGET_PROGRAMS = 128
#: Values per program in the whole-row (layer-norm) tiles.
ROW_ELEMENTS = 4096


class Tiles(NamedTuple):
    rows: int  # BB / BM
    cols: int  # BH / BN
    inner: int  # BK


def pow2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 << max(0, (n - 1).bit_length())


def _clamp(n: int, low: int, high: int) -> int:
    return max(low, min(high, n))


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def dot_tiles(M: int, N: int, K: int) -> Tiles:
    """Tiles of a ``tl.dot`` kernel with an ``(M, N)`` result and ``K``-long products:
    the fused forward step (``M, N, K = B, H, P``) and the matmul kernel."""
    rows = _clamp(pow2(M), 16, 64)
    cols = 64
    while cols > 16 and cdiv(M, rows) * cdiv(N, cols) < TARGET_PROGRAMS:
        cols //= 2
    return Tiles(rows, cols, _clamp(pow2(K), 16, 32))


def row_tiles(B: int, H: int) -> Tiles:
    """Tiles of a cell kernel that spans whole rows (layer norm): ``(BB, pow2(H))``."""
    cols = max(16, pow2(H))
    rows = _clamp(ROW_ELEMENTS // cols, 1, _clamp(pow2(B), 1, 16))
    return Tiles(rows, cols, 0)


def pointwise_tiles(B: int, H: int) -> Tiles:
    """Tiles of the backward cell kernel without layer norm (no ``tl.dot``)."""
    return Tiles(_clamp(pow2(B), 1, 16), _clamp(pow2(H), 16, 128), 0)
