"""Launch planning for the CUDA kernels: the [outer, C, inner] view and the grid of each call.

Pure Python, no CuPy: every choice here is tested on machines without a GPU.

Any rank and axis reduce to x viewed as [outer, C, inner] (outer = prod(shape[:axis]),
inner = prod(shape[axis+1:])), row-major. inner > 1 is the channel-first layout (e.g. NCHW,
axis 1), inner == 1 the channel-last one (e.g. NHWC with axis -1, or (N, C) with axis 1).

Grid sizing aims at one wave of about BLOCKS_PER_SM blocks per multiprocessor, but gives no
block less than MIN_STEPS steps of work per thread: below that the split bookkeeping (one
partial per block, the last block's merge) outweighs the parallelism gained. Splitting a
channel over several blocks is what makes small-C, large-M shapes use the whole GPU (the
grid-wide two-stage reduction); a channel-first shape with C >= the target block count uses
one block per channel and no partials.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import kernels

#: Blocks per multiprocessor a grid aims at: one wave at the 2-4 resident blocks of 256 threads
#: per SM that the kernels' 40-128 registers allow (nvcc -Xptxas -v; see test_cuda_compile).
BLOCKS_PER_SM = 4
#: Steps (of kernels.PACKS packs) each thread gets at least before a channel is split further.
MIN_STEPS = 2
#: Widest channel-last tile, in packs: one warp reads one 32-pack row segment (512 bytes).
MAX_TILE_COLUMNS = 32
#: gridDim.y limit (channel-last splits).
MAX_GRID_Y = 65535


@dataclass(frozen=True)
class Geometry:
    """x viewed as [outer, channels, inner]."""

    outer: int
    channels: int
    inner: int

    @property
    def count(self) -> int:
        """M: elements per channel."""
        return self.outer * self.inner

    @property
    def layout(self) -> str:
        return "channel_first" if self.inner > 1 else "channel_last"


def geometry(shape, axis: int) -> Geometry:
    """Return the [outer, C, inner] view of a shape for a normalized axis (0 <= axis < ndim)."""
    shape = tuple(int(n) for n in shape)
    if not 0 <= axis < len(shape):
        raise ValueError(f"axis={axis} must be normalized to 0..{len(shape) - 1}")
    return Geometry(math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:]))


@dataclass(frozen=True)
class Device:
    """What the planner needs to know about the GPU."""

    name: str
    multiprocessors: int


@dataclass(frozen=True)
class Launch:
    """Grid, block and workspace of one call; the same for its reduce and apply kernels."""

    layout: str
    vec: int  # elements per pack
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    splits: int  # blocks per channel (channel-first) or per column tile (channel-last)
    partials: int  # partial states in the workspace (0 when splits == 1)
    arrivals: int  # arrival counters (channels or column tiles)


def target_blocks(device: Device) -> int:
    return max(1, device.multiprocessors * BLOCKS_PER_SM)


def plan(geom: Geometry, dtype: str, device: Device) -> Launch:
    """Return the launch of a call on x of this geometry and dtype."""
    if geom.layout == "channel_first":
        return _plan_channel_first(geom, dtype, device)
    return _plan_channel_last(geom, dtype, device)


def _plan_channel_first(geom: Geometry, dtype: str, device: Device) -> Launch:
    vec = kernels.vector_width(dtype, geom.inner)
    packs = geom.count // vec  # per channel
    by_work = math.ceil(packs / (kernels.BLOCK_THREADS * kernels.PACKS * MIN_STEPS))
    splits = max(1, min(math.ceil(target_blocks(device) / geom.channels), by_work))
    return Launch("channel_first", vec, (geom.channels * splits, 1, 1),
                  (kernels.BLOCK_THREADS, 1, 1), splits,
                  geom.channels * splits if splits > 1 else 0, geom.channels)


def _plan_channel_last(geom: Geometry, dtype: str, device: Device) -> Launch:
    vec = kernels.vector_width(dtype, geom.channels)
    columns = geom.channels // vec
    tile = min(MAX_TILE_COLUMNS, 1 << (columns - 1).bit_length())  # power of two >= columns
    rows_per_block = kernels.BLOCK_THREADS // tile
    tiles = math.ceil(columns / tile)
    by_work = math.ceil(geom.outer / (rows_per_block * kernels.PACKS * MIN_STEPS))
    splits = max(1, min(math.ceil(target_blocks(device) / tiles), by_work, MAX_GRID_Y))
    return Launch("channel_last", vec, (tiles, splits, 1), (tile, rows_per_block, 1), splits,
                  geom.channels * splits if splits > 1 else 0, tiles)
