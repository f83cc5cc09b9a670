"""CuPy launches of the metric kernels (``kernels/metrics_*.cu``).

Only scalars come back to the host: the Euler characteristic is reduced on the device.
"""

from __future__ import annotations

import functools
from typing import Any

from ..kernels import get_function
from ._common import ball_containment_table, euler_lut
from .marching_cubes import kernel_tables

__all__ = ["euler_gpu", "local_thickness_gpu", "surface_area_gpu"]

_THREADS = 256


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
    import cupy as cp  # noqa: PLC0415 - cupy: optional GPU dependency, loaded only for device arrays

    m = cp.ascontiguousarray(mask, dtype=cp.uint8)
    nz, ny, nx = (int(s) for s in m.shape)
    lut = cp.asarray(euler_lut().astype("int32"))
    total = cp.zeros(1, dtype=cp.uint64)
    n = (nz + 1) * (ny + 1) * (nx + 1)
    blocks = min((n + _THREADS - 1) // _THREADS, 65535 * 8)
    fn = get_function("metrics_euler", "vb_euler8")
    fn((blocks,), (_THREADS,), (m, cp.int64(nz), cp.int64(ny), cp.int64(nx), lut, total))
    value = int(total.get()[0])
    if value >= 1 << 63:  # the sum was negative (two's complement)
        value -= 1 << 64
    return value // 8


def local_thickness_gpu(mask: Any, voxel_size_um: float) -> Any:
    """Exact local thickness of a CuPy boolean volume, on the device (µm, 0 outside).

    The same algorithm as the CPU path (:func:`voxelbone.metrics.local_thickness`), in the
    same integer arithmetic: squared EDT (``cupyx.scipy.ndimage``), centres whose discrete
    ball is not held by a neighbour's (``vb_ridge_flags``, the same containment table),
    balls written by their centres with an atomic max (``vb_insert_balls``: one block per
    ball, its threads over the ball's rows, so large marrow balls do not serialise on one
    thread). The maps are identical. ``mask`` must hold some bone and some background (the caller checks).
    """
    import cupy as cp  # noqa: PLC0415 - cupy: optional GPU dependency, loaded only for device arrays
    from cupyx.scipy.ndimage import distance_transform_edt  # noqa: PLC0415 - cupyx: optional GPU dependency

    m = cp.ascontiguousarray(mask, dtype=cp.uint8)
    nz, ny, nx = (int(s) for s in m.shape)
    n = nz * ny * nx
    d = distance_transform_edt(m, float64_distances=True)
    k2 = cp.rint(d * d).astype(cp.int32)
    del d
    k_max = int(k2.max())
    table = cp.asarray(ball_containment_table(k_max))
    keep = cp.zeros(m.shape, dtype=cp.uint8)
    blocks = min((n + _THREADS - 1) // _THREADS, 65535 * 8)
    get_function("metrics_thickness", "vb_ridge_flags")(
        (blocks,), (_THREADS,), (k2, table, cp.int64(k_max), cp.int64(nz), cp.int64(ny), cp.int64(nx), keep))
    flat = cp.flatnonzero(keep)
    cz, rest = cp.divmod(flat, ny * nx)
    cy, cx = cp.divmod(rest, nx)
    ck = cp.ascontiguousarray(k2.ravel()[flat])
    out = cp.zeros(m.shape, dtype=cp.int32)
    nc = int(flat.size)
    get_function("metrics_thickness", "vb_insert_balls")(
        (max(min(nc, 1 << 20), 1),), (128,),  # one block per ball (grid-stride), threads over its rows
        (cz.astype(cp.int64), cy.astype(cp.int64), cx.astype(cp.int64), ck, cp.int64(nc), m,
         cp.int64(nz), cp.int64(ny), cp.int64(nx), out))
    return out.view(cp.float32) * cp.float32(voxel_size_um)


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
    import cupy as cp  # noqa: PLC0415 - cupy: optional GPU dependency, loaded only for device arrays

    f = cp.ascontiguousarray(field, dtype=cp.float32)
    nz, ny, nx = (int(s) for s in f.shape)
    use_within = within is not None
    w = cp.ascontiguousarray(within, dtype=cp.uint8) if use_within else cp.zeros(1, dtype=cp.uint8)
    table, edge_corners, face_corners = _surface_tables(cp.cuda.Device().id)
    cubes = max(nz - 1, 0) * max(ny - 1, 0) * max(nx - 1, 0)
    blocks = max(min((cubes + _THREADS - 1) // _THREADS, 2048), 1)
    partial = cp.zeros(blocks * _THREADS, dtype=cp.float64)
    get_function("metrics_surface", "vb_surface_area")(
        (blocks,), (_THREADS,),
        (f, cp.int64(nz), cp.int64(ny), cp.int64(nx), cp.float64(level), table, w, cp.int32(use_within),
         edge_corners, face_corners, partial))
    return float(partial.sum())
