"""CuPy launches of the metric kernels (``kernels/metrics_*.cu``).

Only scalars come back to the host: the Euler characteristic is reduced on the device.

Device work and host reads never share a stage: ``euler_sum_device`` and
``surface_area_device`` queue kernels and return device scalars (no ``.get()``, no
``int()``/``float()`` inside), converted by ``euler_gpu`` / ``surface_area_gpu`` afterwards.
Local thickness has two data-dependent sizes (the largest squared radius sizes the
containment table; the number of ridge centres sizes the insertion grid), read in two
*sizing* stages between three device stages; a ``clock`` (:class:`StageClock`) is told
where each stage begins, so a benchmark times the device stages with CUDA events only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol

from ..kernels import get_function, index_defines
from ._common import ball_containment_table, euler_lut
from .marching_cubes import kernel_tables

__all__ = ["Launch", "StageClock", "balls_launch", "euler_gpu", "euler_launch", "euler_sum_device",
           "local_thickness_gpu", "ridge_launch", "surface_area_device", "surface_area_gpu", "surface_launch"]

_THREADS = 256
_BALL_THREADS = 128  # four warps, one ball per warp


@dataclass(frozen=True)
class Launch:
    """Launch configuration of one metric kernel: blocks, threads per block, index width."""

    blocks: int
    threads: int
    defines: tuple[tuple[str, int], ...]


def _launch(items: int, max_blocks: int, threads: int = _THREADS) -> Launch:
    blocks = max(1, min(-(-items // threads), max_blocks))
    return Launch(blocks, threads, index_defines(items + blocks * threads))


def euler_launch(shape: tuple[int, int, int]) -> Launch:
    """``vb_euler8``: a thread per corner point at most; one atomic per block, so 2048 blocks suffice."""
    nz, ny, nx = shape
    return _launch((nz + 1) * (ny + 1) * (nx + 1), 2048)


def ridge_launch(shape: tuple[int, int, int]) -> Launch:
    """``vb_ridge_flags``: a thread per voxel (grid-stride beyond 65535 × 8 blocks)."""
    nz, ny, nx = shape
    return _launch(nz * ny * nx, 65535 * 8)


def balls_launch(n_centres: int, shape: tuple[int, int, int]) -> Launch:
    """``vb_insert_balls``: a warp per ball, four per block (grid-stride beyond 2²⁰ blocks)."""
    warps = _BALL_THREADS // 32
    blocks = max(1, min(-(-n_centres // warps), 1 << 20))
    nz, ny, nx = shape
    return Launch(blocks, _BALL_THREADS, index_defines(nz * ny * nx))


def surface_launch(shape: tuple[int, int, int]) -> Launch:
    """``vb_surface_area``: a thread per cube at most, 2048 blocks (one partial sum per thread)."""
    nz, ny, nx = shape
    return _launch(max(nz - 1, 0) * max(ny - 1, 0) * max(nx - 1, 0), 2048)


class StageClock(Protocol):
    """Told where each stage of a metric begins: ``stage("device", name)`` (only queues device
    work), ``stage("sizing", name)`` (reads a value back: a synchronisation), ``stage(None, None)``
    (the end)."""

    def stage(self, kind: str | None, name: str | None) -> None: ...


class _NoClock:
    def stage(self, kind: str | None, name: str | None) -> None:
        return None


_NO_CLOCK = _NoClock()


@functools.cache
def _euler_lut_device(device_id: int) -> Any:
    """The 256-entry Euler table on one GPU, uploaded once (not a host-to-device copy per call)."""
    import cupy as cp  # noqa: PLC0415 - cupy: optional GPU dependency, loaded only for device arrays

    with cp.cuda.Device(device_id):
        return cp.asarray(euler_lut().astype("int32"))


def euler_gpu(mask: Any) -> int:
    """Euler characteristic (26/6 connectivity) of a CuPy boolean volume, on the device.

    Parameters
    ----------
    mask : cupy.ndarray of bool, 3-D

    Returns
    -------
    int
        χ, identical to the NumPy path (same table, exact integer arithmetic).
    """
    value = int(euler_sum_device(mask).get()[0])
    if value >= 1 << 63:  # the sum was negative (two's complement)
        value -= 1 << 64
    return value // 8


def euler_sum_device(mask: Any) -> Any:
    """Queue ``vb_euler8`` on a CuPy boolean volume; its 8·χ as a device ``uint64[1]`` (two's
    complement when negative), with no host synchronisation (:func:`euler_gpu` reads it)."""
    import cupy as cp  # noqa: PLC0415 - cupy: optional GPU dependency, loaded only for device arrays

    m = cp.ascontiguousarray(mask, dtype=cp.uint8)
    nz, ny, nx = (int(s) for s in m.shape)
    lut = _euler_lut_device(cp.cuda.Device().id)
    total = cp.zeros(1, dtype=cp.uint64)
    launch = euler_launch((nz, ny, nx))
    fn = get_function("metrics_euler", "vb_euler8", launch.defines)
    fn((launch.blocks,), (launch.threads,), (m, cp.int64(nz), cp.int64(ny), cp.int64(nx), lut, total))
    return total


def local_thickness_gpu(mask: Any, voxel_size_um: float, *, clock: StageClock | None = None) -> Any:
    """Exact local thickness of a CuPy boolean volume, on the device (µm, 0 outside).

    The same algorithm as the CPU path (:func:`voxelbone.metrics.local_thickness`), in the
    same integer arithmetic: squared EDT (``cupyx.scipy.ndimage``), centres whose discrete
    ball is not held by a neighbour's (``vb_ridge_flags``, the same containment table),
    balls written by their centres with an atomic max (``vb_insert_balls``: a warp per
    ball, its lanes along x, so stores coalesce and small balls leave no block idle).
    The maps are identical. ``mask`` must hold some bone and some background (the caller checks).

    ``clock`` (optional) is told the stages: device ``edt``, sizing ``table`` (the largest
    squared radius comes back to size the containment table), device ``ridges``, sizing
    ``centres`` (the ridge centres are compacted; their count sizes the insertion grid),
    device ``balls``.
    """
    import cupy as cp  # noqa: PLC0415 - cupy: optional GPU dependency, loaded only for device arrays
    from cupyx.scipy.ndimage import distance_transform_edt  # noqa: PLC0415 - cupyx: optional GPU dependency

    clock = clock or _NO_CLOCK
    m = cp.ascontiguousarray(mask, dtype=cp.uint8)
    nz, ny, nx = (int(s) for s in m.shape)
    clock.stage("device", "edt")
    d = distance_transform_edt(m, float64_distances=True)
    k2 = cp.rint(d * d).astype(cp.int32)
    del d
    clock.stage("sizing", "table")
    k_max = int(k2.max())
    table = cp.asarray(ball_containment_table(k_max))
    clock.stage("device", "ridges")
    keep = cp.zeros(m.shape, dtype=cp.uint8)
    ridge = ridge_launch((nz, ny, nx))
    get_function("metrics_thickness", "vb_ridge_flags", ridge.defines)(
        (ridge.blocks,), (ridge.threads,), (k2, table, cp.int64(k_max), cp.int64(nz), cp.int64(ny), cp.int64(nx), keep))
    clock.stage("sizing", "centres")
    flat = cp.flatnonzero(keep)
    nc = int(flat.size)
    clock.stage("device", "balls")
    cz, rest = cp.divmod(flat, ny * nx)
    cy, cx = cp.divmod(rest, nx)
    ck = cp.ascontiguousarray(k2.ravel()[flat])
    out = cp.zeros(m.shape, dtype=cp.int32)
    balls = balls_launch(nc, (nz, ny, nx))
    get_function("metrics_thickness", "vb_insert_balls", balls.defines)(
        (balls.blocks,), (balls.threads,),  # a warp per ball (grid-stride), lanes along x
        (cz.astype(cp.int64), cy.astype(cp.int64), cx.astype(cp.int64), ck, cp.int64(nc), m,
         cp.int64(nz), cp.int64(ny), cp.int64(nx), out))
    result = out.view(cp.float32) * cp.float32(voxel_size_um)
    clock.stage(None, None)
    return result


@functools.cache
def _surface_tables(device_id: int) -> tuple[Any, Any, Any]:
    """The marching-cubes tables on one GPU, uploaded once (not at every metric evaluation)."""
    import cupy as cp  # noqa: PLC0415 - cupy: optional GPU dependency, loaded only for device arrays

    with cp.cuda.Device(device_id):
        return kernel_tables(cp)


def surface_area_gpu(field: Any, level: float = 0.5, within: Any | None = None) -> float:
    """Iso-surface area of a CuPy field in voxel units², on the device (``vb_surface_area``).

    The CUDA twin of :func:`voxelbone.metrics.marching_cubes.surface_area_voxels`: the same
    tables and per-cube arithmetic; each thread returns one partial sum and the partials are
    added on the device in a fixed order. Only the total comes back.
    """
    return float(surface_area_device(field, level, within))


def surface_area_device(field: Any, level: float = 0.5, within: Any | None = None) -> Any:
    """Queue ``vb_surface_area`` and the sum of its partials; the area as a device 0-d float64,
    with no host synchronisation (:func:`surface_area_gpu` reads it)."""
    import cupy as cp  # noqa: PLC0415 - cupy: optional GPU dependency, loaded only for device arrays

    f = cp.ascontiguousarray(field, dtype=cp.float32)
    nz, ny, nx = (int(s) for s in f.shape)
    use_within = within is not None
    w = cp.ascontiguousarray(within, dtype=cp.uint8) if use_within else cp.zeros(1, dtype=cp.uint8)
    table, edge_corners, face_corners = _surface_tables(cp.cuda.Device().id)
    launch = surface_launch((nz, ny, nx))
    partial = cp.zeros(launch.blocks * launch.threads, dtype=cp.float64)
    get_function("metrics_surface", "vb_surface_area", launch.defines)(
        (launch.blocks,), (launch.threads,),
        (f, cp.int64(nz), cp.int64(ny), cp.int64(nx), cp.float64(level), table, w, cp.int32(use_within),
         edge_corners, face_corners, partial))
    return partial.sum()
