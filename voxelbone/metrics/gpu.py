"""CuPy launches of the metric kernels (``kernels/metrics_*.cu``).

Only scalars come back to the host: the Euler characteristic is reduced on the device.
"""

from __future__ import annotations

from typing import Any

from ..kernels import get_function
from .connectivity import euler_lut

__all__ = ["euler_gpu"]

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
