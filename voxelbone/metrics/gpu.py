"""CuPy launches of the metric kernels (``kernels/metrics_*.cu``).

Only scalars come back to the host: the Euler characteristic is reduced on the device.

Each metric is split so that device work and host synchronisation never share a stage:
``euler_sum_device`` and ``surface_area_device`` queue kernels and return device scalars
(no ``.get()``, no ``int()``/``float()`` inside), converted by ``euler_gpu`` /
``surface_area_gpu`` afterwards; local thickness has two data-dependent sizes (the largest
squared radius, which sizes the containment table, and the number of ridge centres, which
sizes the insertion grid), read in two *sizing* stages between three device stages. A
``clock`` (see :class:`StageClock`) is told where each stage starts and ends, so a benchmark
times the device stages with CUDA events only and the sizing stages apart.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, ContextManager, Protocol

from ..kernels import get_function
from .connectivity import euler_lut
from .marching_cubes import _as_arguments
from .thickness import ball_containment_table

__all__ = [
    "StageClock",
    "euler_gpu",
    "euler_sum_device",
    "local_thickness_gpu",
    "surface_area_device",
    "surface_area_gpu",
]

_THREADS = 256


class StageClock(Protocol):
    """Told where the stages of a metric begin and end (``with clock.device(name): ...``).

    ``device`` stages only queue device work; ``sizing`` stages read a value back to the
    host (a synchronisation) to size what follows.
    """

    def device(self, name: str) -> ContextManager[Any]: ...

    def sizing(self, name: str) -> ContextManager[Any]: ...


class _NoClock:
    def device(self, name: str) -> ContextManager[Any]:
        return contextlib.nullcontext()

    def sizing(self, name: str) -> ContextManager[Any]:
        return contextlib.nullcontext()


_NO_CLOCK = _NoClock()


@functools.cache
def _euler_lut_device(device_id: int) -> Any:
    """The 256-entry Euler table on one GPU, uploaded once."""
    import cupy as cp  # noqa: PLC0415

    with cp.cuda.Device(device_id):
        return cp.asarray(euler_lut().astype("int32"))


def euler_sum_device(mask: Any) -> Any:
    """Queue ``vb_euler8`` on a CuPy boolean volume; return its 8·χ sum as a device ``uint64[1]``.

    No host synchronisation: the value stays on the device (two's complement for a negative
    sum) until :func:`euler_gpu` reads it.
    """
    import cupy as cp  # noqa: PLC0415

    m = cp.ascontiguousarray(mask, dtype=cp.uint8)
    nz, ny, nx = (int(s) for s in m.shape)
    lut = _euler_lut_device(cp.cuda.Device().id)
    total = cp.zeros(1, dtype=cp.uint64)
    n = (nz + 1) * (ny + 1) * (nx + 1)
    blocks = min((n + _THREADS - 1) // _THREADS, 65535 * 8)
    fn = get_function("metrics_euler", "vb_euler8")
    fn((blocks,), (_THREADS,), (m, cp.int64(nz), cp.int64(ny), cp.int64(nx), lut, total))
    return total


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


def local_thickness_gpu(mask: Any, voxel_size_um: float, *, clock: StageClock | None = None) -> Any:
    """Exact local thickness of a CuPy boolean volume, on the device (µm, 0 outside).

    The same algorithm as the CPU path (:func:`voxelbone.metrics.local_thickness`), in the
    same integer arithmetic: squared EDT (``cupyx.scipy.ndimage``), centres whose discrete
    ball is not held by a neighbour's (``vb_ridge_flags``, the same containment table),
    balls written by their centres with an atomic max (``vb_insert_balls``: one block per
    ball, its threads over the ball's rows, so large marrow balls do not serialise on one
    thread). The maps are identical. ``mask`` must hold some bone and some background (the caller checks).

    ``clock`` (optional) is told the stages: device ``edt``, sizing ``table`` (the largest
    squared radius comes back to size the containment table), device ``ridges``, sizing
    ``centres`` (the ridge centres are compacted; their count sizes the insertion grid),
    device ``balls``.
    """
    import cupy as cp  # noqa: PLC0415
    from cupyx.scipy.ndimage import distance_transform_edt  # noqa: PLC0415

    clock = clock or _NO_CLOCK
    m = cp.ascontiguousarray(mask, dtype=cp.uint8)
    nz, ny, nx = (int(s) for s in m.shape)
    n = nz * ny * nx
    with clock.device("edt"):
        d = distance_transform_edt(m, float64_distances=True)
        k2 = cp.rint(d * d).astype(cp.int32)
        del d
    with clock.sizing("table"):
        k_max = int(k2.max())
        table = cp.asarray(ball_containment_table(k_max))
    with clock.device("ridges"):
        keep = cp.zeros(m.shape, dtype=cp.uint8)
        blocks = min((n + _THREADS - 1) // _THREADS, 65535 * 8)
        get_function("metrics_thickness", "vb_ridge_flags")(
            (blocks,), (_THREADS,), (k2, table, cp.int64(k_max), cp.int64(nz), cp.int64(ny), cp.int64(nx), keep))
    with clock.sizing("centres"):
        flat = cp.flatnonzero(keep)
        nc = int(flat.size)
    with clock.device("balls"):
        cz, rest = cp.divmod(flat, ny * nx)
        cy, cx = cp.divmod(rest, nx)
        ck = cp.ascontiguousarray(k2.ravel()[flat])
        out = cp.zeros(m.shape, dtype=cp.int32)
        get_function("metrics_thickness", "vb_insert_balls")(
            (max(min(nc, 1 << 20), 1),), (128,),  # one block per ball (grid-stride), threads over its rows
            (cz.astype(cp.int64), cy.astype(cp.int64), cx.astype(cp.int64), ck, cp.int64(nc), m,
             cp.int64(nz), cp.int64(ny), cp.int64(nx), out))
        return out.view(cp.float32) * cp.float32(voxel_size_um)


@functools.cache
def _surface_tables(device_id: int) -> tuple[Any, Any, Any]:
    """The marching-cubes tables on one GPU, uploaded once (not at every metric evaluation)."""
    import cupy as cp  # noqa: PLC0415

    with cp.cuda.Device(device_id):
        return _as_arguments(cp)


def surface_area_device(field: Any, level: float = 0.5, within: Any | None = None) -> Any:
    """Queue ``vb_surface_area`` and the fixed-order sum of its partials; return a device 0-d float64.

    No host synchronisation: :func:`surface_area_gpu` converts the value afterwards.
    """
    import cupy as cp  # noqa: PLC0415

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
    return partial.sum()


def surface_area_gpu(field: Any, level: float = 0.5, within: Any | None = None) -> float:
    """Iso-surface area of a CuPy field in voxel units², on the device (``vb_surface_area``).

    The CUDA twin of :func:`voxelbone.metrics.marching_cubes.surface_area_voxels`: the same
    tables and per-cube arithmetic; each thread returns one partial sum and the partials are
    added on the device in a fixed order. Only the total comes back.
    """
    return float(surface_area_device(field, level, within))
