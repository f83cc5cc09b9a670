"""CuPy launches of the metric kernels (``kernels/metrics_*.cu``).

Only scalars come back to the host: the Euler characteristic is reduced on the device.
"""

from __future__ import annotations

from typing import Any

from ..kernels import get_function
from .connectivity import euler_lut

__all__ = ["euler_gpu", "local_thickness_gpu"]

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
    import cupy as cp  # noqa: PLC0415

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

    The same algorithm as the CPU path (:func:`voxelbone.metrics.local_thickness`): EDT
    (``cupyx.scipy.ndimage``), centres not contained in a neighbour's ball
    (``vb_ridge_flags``), balls written by their centres with an atomic max
    (``vb_insert_balls``). The maps agree up to the last bit of the EDT.
    """
    import cupy as cp  # noqa: PLC0415
    from cupyx.scipy.ndimage import distance_transform_edt  # noqa: PLC0415

    m = cp.ascontiguousarray(mask, dtype=cp.uint8)
    nz, ny, nx = (int(s) for s in m.shape)
    n = nz * ny * nx
    if not bool(m.any()):
        return cp.zeros(m.shape, dtype=cp.float32)
    dist = distance_transform_edt(m).astype(cp.float32) if bool((m == 0).any()) else cp.full(m.shape, float(max(m.shape)), cp.float32)
    keep = cp.zeros(m.shape, dtype=cp.uint8)
    blocks = min((n + _THREADS - 1) // _THREADS, 65535 * 8)
    get_function("metrics_thickness", "vb_ridge_flags")((blocks,), (_THREADS,),
                                                        (dist, cp.int64(nz), cp.int64(ny), cp.int64(nx), keep))
    flat = cp.flatnonzero(keep)
    cz, rest = cp.divmod(flat, ny * nx)
    cy, cx = cp.divmod(rest, nx)
    cr = dist.ravel()[flat]
    out = cp.zeros(m.shape, dtype=cp.int32)
    nc = int(flat.size)
    get_function("metrics_thickness", "vb_insert_balls")(
        (max(min((nc + 127) // 128, 65535), 1),), (128,),
        (cz.astype(cp.int64), cy.astype(cp.int64), cx.astype(cp.int64), cr, cp.int64(nc), m,
         cp.int64(nz), cp.int64(ny), cp.int64(nx), out))
    return out.view(cp.float32) * cp.float32(voxel_size_um)

