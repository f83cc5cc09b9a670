"""Local thickness (Hildebrand & Rüegsegger 1997), exact, as BoneJ / Fiji LocalThickness.

LT(p) = 2·max{ EDT(c) : |p − c| ≤ EDT(c) }, with EDT measured from voxel centre to the
nearest background voxel centre and the image border *not* background. Reported as a
diameter in µm (BoneJ convention; porespy and ``localthickness`` report radii).

Balls are discrete: the ball of a centre with squared distance ``k`` (an exact integer) is
the set of voxels ``p`` with ``|p − c|² ≤ k``, evaluated in integers on CPU and GPU alike.
Only ridge centres are needed: a centre whose ball, as a set of voxels, lies inside a
26-neighbour's ball is dropped without changing the map (Dougherty's Distance Ridge; the
test is a table lookup, :func:`ball_containment_table`). On the CPU the remaining balls are
inserted in parallel over output planes: each plane takes the balls crossing it, largest
first, and paints each row span only over voxels not yet painted (a union-find over the
row), so every voxel is written once and keeps the largest ball that holds it. On the GPU
every ball writes its span with an atomic max (``kernels/metrics_thickness.cu``).

References
----------
Hildebrand T, Rüegsegger P (1997). A new method for the model-independent assessment of
thickness in three-dimensional images. J Microsc 185:67–75.
Dougherty R, Kunzelmann K-H (2007). Computing local thickness of 3D structures with ImageJ.
Microsc Microanal 13(S02):1678–1679.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import edt
import numba
import numpy as np

from ..backend import array_module, asnumpy
from ._common import ball_containment_table, check_mask
from .gpu import local_thickness_gpu

__all__ = ["ThicknessStats", "ball_containment_table", "local_thickness", "thickness_stats"]


def _squared_distance(mask: np.ndarray) -> np.ndarray:
    """Squared EDT (voxel units, exact integers) of a mask with some background; border not background."""
    d = edt.edtsq(np.ascontiguousarray(mask, dtype=np.uint8), black_border=False, parallel=0)
    return np.rint(d).astype(np.int32)


@numba.njit(parallel=True, cache=True)
def _ridge_flags(k2: np.ndarray, table: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    nz, ny, nx = k2.shape
    keep = np.zeros(k2.shape, dtype=np.bool_)
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                k = k2[z, y, x]
                if k <= 0:
                    continue
                contained = False
                for dz in range(-1, 2):
                    zz = z + dz
                    if zz < 0 or zz >= nz:
                        continue
                    for dy in range(-1, 2):
                        yy = y + dy
                        if yy < 0 or yy >= ny:
                            continue
                        for dx in range(-1, 2):
                            xx = x + dx
                            c = dz * dz + dy * dy + dx * dx
                            if xx < 0 or xx >= nx or c == 0:
                                continue
                            if k2[zz, yy, xx] >= table[c - 1, k]:
                                contained = True
                                break
                        if contained:
                            break
                    if contained:
                        break
                keep[z, y, x] = not contained
    return keep


@numba.njit(inline="always")
def _isqrt(v: int) -> int:  # pragma: no cover - compiled
    return int(np.sqrt(np.float64(v)))  # exact floor below 2**52


@numba.njit(inline="always")
def _find(row: np.ndarray, x: int) -> int:  # pragma: no cover - compiled
    root = x
    while row[root] != root:
        root = row[root]
    while row[x] != root:  # path compression
        nxt = row[x]
        row[x] = root
        x = nxt
    return root


@numba.njit(parallel=True, cache=True)
def _insert_balls(
    mask: np.ndarray,
    cz: np.ndarray,
    cy: np.ndarray,
    cx: np.ndarray,
    ck: np.ndarray,
    z_start: np.ndarray,
    r_max: int,
    k_max: int,
) -> np.ndarray:  # pragma: no cover - compiled
    nz, ny, nx = mask.shape
    out = np.zeros(mask.shape, dtype=np.float32)
    for z in numba.prange(nz):
        lo = z_start[max(z - r_max, 0)]
        hi = z_start[min(z + r_max + 1, nz)]
        # the balls crossing this plane, largest first (counting sort on the squared radius)
        count = np.zeros(k_max + 2, dtype=np.int64)
        for i in range(lo, hi):
            dz = z - cz[i]
            if ck[i] >= dz * dz:
                count[k_max - ck[i] + 1] += 1
        for j in range(1, k_max + 2):
            count[j] += count[j - 1]
        order = np.empty(count[k_max + 1], dtype=np.int64)
        for i in range(lo, hi):
            dz = z - cz[i]
            if ck[i] >= dz * dz:
                slot = k_max - ck[i]
                order[count[slot]] = i
                count[slot] += 1
        # next unpainted bone voxel of each row at or after x (a union-find over the row)
        nxt = np.empty((ny, nx + 1), dtype=np.int64)
        for y in range(ny):
            for x in range(nx):
                nxt[y, x] = x if mask[z, y, x] else x + 1
            nxt[y, nx] = nx
        for i in order:
            k = ck[i]
            dz = z - cz[i]
            rem = k - dz * dz
            diam = np.float32(2.0) * np.float32(np.sqrt(np.float64(k)))
            ry = _isqrt(rem)
            for y in range(max(cy[i] - ry, 0), min(cy[i] + ry, ny - 1) + 1):
                dy = y - cy[i]
                rx = _isqrt(rem - dy * dy)
                x1 = min(cx[i] + rx, nx - 1)
                row = nxt[y]
                x = _find(row, max(cx[i] - rx, 0))
                while x <= x1:
                    out[z, y, x] = diam
                    row[x] = x + 1
                    x = _find(row, x + 1)
    return out


def local_thickness(mask: Any, voxel_size_um: float = 1.0) -> Any:
    """Exact local thickness map of a binary structure.

    Parameters
    ----------
    mask : ndarray of bool, shape (nz, ny, nx)
        The structure (bone for Tb.Th, marrow for Tb.Sp); NumPy or CuPy (the CuPy path runs
        the same algorithm in CUDA kernels and returns a CuPy array).
    voxel_size_um : float
        Isotropic voxel edge in µm; the map is returned in µm.

    Returns
    -------
    ndarray of float32
        Diameter of the largest inscribed ball containing each voxel, in µm; 0 outside
        the mask. A mask that fills the grid has no background, so its thickness is
        unbounded: it is reported as the grid's smallest extent, with a warning.

    Examples
    --------
    A plate six voxels thick at 20 µm is 120 µm thick everywhere:

    >>> import numpy as np
    >>> plate = np.zeros((32, 32, 32), dtype=bool)
    >>> plate[:, :, 12:18] = True
    >>> lt = local_thickness(plate, voxel_size_um=20.0)
    >>> lt.dtype, float(lt[plate].min()), float(lt[plate].max()), float(lt[~plate].max())
    (dtype('float32'), 120.0, 120.0, 0.0)
    """
    xp = array_module(mask)
    if not voxel_size_um > 0:
        raise ValueError(f"voxel_size_um must be > 0, got {voxel_size_um}")
    m = check_mask(mask)
    if not bool(m.any()):
        return xp.zeros(m.shape, dtype=xp.float32)
    if bool(m.all()):
        warnings.warn("the mask fills the grid (no background): its local thickness is unbounded and is "
                      "reported as the grid's smallest extent", RuntimeWarning, stacklevel=2)
        return xp.full(m.shape, np.float32(min(m.shape) * voxel_size_um), dtype=xp.float32)
    if xp is not np:  # CuPy: the same algorithm in CUDA kernels
        return local_thickness_gpu(m, voxel_size_um)
    m = np.ascontiguousarray(m)
    k2 = _squared_distance(m)
    k_max = int(k2.max())
    keep = _ridge_flags(k2, ball_containment_table(k_max))
    zz, yy, xx = np.nonzero(keep)  # sorted by z (C order)
    kk = k2[zz, yy, xx]
    z_start = np.searchsorted(zz, np.arange(m.shape[0] + 1)).astype(np.int64)
    lt = _insert_balls(m, zz.astype(np.int64), yy.astype(np.int64), xx.astype(np.int64), kk.astype(np.int64),
                       z_start, int(np.sqrt(k_max)), k_max)
    lt *= np.float32(voxel_size_um)
    return lt


@dataclass(frozen=True)
class ThicknessStats:
    """Summary of a local-thickness map over a mask (µm).

    ``histogram`` counts voxels in ``bin_edges_um`` (µm). Values follow BoneJ: mean, SD and
    maximum of the local thickness (a diameter) over the structure's voxels.
    """

    mean_um: float
    sd_um: float
    max_um: float
    n_voxels: int
    histogram: np.ndarray
    bin_edges_um: np.ndarray


def thickness_stats(
    mask: Any,
    voxel_size_um: float,
    *,
    within: Any | None = None,
    bins: int | np.ndarray = 32,
    thickness_map: Any | None = None,
) -> ThicknessStats:
    """Local-thickness statistics of a structure (Tb.Th on bone, Tb.Sp on marrow, Ct.Th on cortex).

    Parameters
    ----------
    mask : array of bool
        The structure whose thickness is measured.
    voxel_size_um : float
        Voxel edge, µm.
    within : array of bool, optional
        Restrict the statistics to these voxels (the map is still computed on the whole
        mask, so balls are not cut by the VOI).
    bins : int or array
        Histogram bins (count or edges in µm).
    thickness_map : array, optional
        A precomputed map from :func:`local_thickness`.

    Returns
    -------
    ThicknessStats
        Zeros (with a warning) for an empty structure.
    """
    xp = array_module(mask)
    m = xp.asarray(mask).astype(bool)
    lt = local_thickness(m, voxel_size_um) if thickness_map is None else thickness_map
    sel = m if within is None else (m & xp.asarray(within).astype(bool))
    vals = asnumpy(lt[sel]).astype(np.float64)
    if vals.size == 0:
        warnings.warn("thickness of an empty structure is reported as 0", RuntimeWarning, stacklevel=2)
        edges = np.linspace(0, 1, (bins if isinstance(bins, int) else len(bins) - 1) + 1)
        return ThicknessStats(0.0, 0.0, 0.0, 0, np.zeros(edges.size - 1, dtype=np.int64), edges)
    hist, edges = np.histogram(vals, bins=bins, range=None if not isinstance(bins, int) else (0, float(vals.max()) or 1.0))
    return ThicknessStats(float(vals.mean()), float(vals.std()), float(vals.max()), int(vals.size), hist, edges)
