"""Local thickness (Hildebrand & Rüegsegger 1997), exact, as BoneJ / Fiji LocalThickness.

LT(p) = 2·max{ EDT(c) : |p − c| ≤ EDT(c) }, with EDT measured from voxel centre to the
nearest background voxel centre and the image border *not* background. Reported as a
diameter in µm (BoneJ convention; porespy and ``localthickness`` report radii).

Only ridge centres are needed: a centre whose ball lies inside a 26-neighbour's ball
(``EDT(n) ≥ EDT(c) + |n − c|``) is dropped without changing the map. The remaining balls
are inserted in parallel over output planes, each plane visited by the balls that cross it.

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

import numba
import numpy as np

__all__ = ["ThicknessStats", "distance_ridge", "local_thickness", "thickness_stats"]


def _edt(mask: np.ndarray) -> np.ndarray:
    import edt  # noqa: PLC0415

    return edt.edt(np.ascontiguousarray(mask, dtype=np.uint8), black_border=False, parallel=0).astype(np.float32)


@numba.njit(parallel=True, cache=True)
def _ridge_flags(dist: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    nz, ny, nx = dist.shape
    keep = np.zeros(dist.shape, dtype=np.bool_)
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                r = dist[z, y, x]
                if r <= 0.0:
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
                            if xx < 0 or xx >= nx or (dz == 0 and dy == 0 and dx == 0):
                                continue
                            step = np.sqrt(np.float32(dz * dz + dy * dy + dx * dx))
                            if dist[zz, yy, xx] >= r + step:
                                contained = True
                                break
                        if contained:
                            break
                    if contained:
                        break
                keep[z, y, x] = not contained
    return keep


@numba.njit(parallel=True, cache=True)
def _insert_balls(
    shape: tuple[int, int, int],
    cz: np.ndarray,
    cy: np.ndarray,
    cx: np.ndarray,
    cr: np.ndarray,
    z_start: np.ndarray,
    rmax_int: int,
    mask: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    nz, ny, nx = shape
    out = np.zeros(shape, dtype=np.float32)
    for z in numba.prange(nz):
        lo = z_start[max(z - rmax_int, 0)]
        hi = z_start[min(z + rmax_int + 1, nz)]
        for i in range(lo, hi):
            r = cr[i]
            dz = np.float32(z - cz[i])
            rem = r * r - dz * dz
            if rem < 0.0:
                continue
            diam = 2.0 * r
            ry = int(np.floor(np.sqrt(rem)))
            y0 = max(cy[i] - ry, 0)
            y1 = min(cy[i] + ry, ny - 1)
            for y in range(y0, y1 + 1):
                dy = np.float32(y - cy[i])
                rem2 = rem - dy * dy
                if rem2 < 0.0:
                    continue
                rx = int(np.floor(np.sqrt(rem2)))
                x0 = max(cx[i] - rx, 0)
                x1 = min(cx[i] + rx, nx - 1)
                for x in range(x0, x1 + 1):
                    if mask[z, y, x] and out[z, y, x] < diam:
                        out[z, y, x] = diam
    return out


def distance_ridge(mask: np.ndarray, distance: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """EDT of ``mask`` (voxels) and the flags of centres not contained in a neighbour's ball."""
    dist = _edt(mask) if distance is None else np.asarray(distance, dtype=np.float32)
    return dist, _ridge_flags(dist)


def local_thickness(
    mask: np.ndarray,
    voxel_size_um: float = 1.0,
    distance: np.ndarray | None = None,
) -> np.ndarray:
    """Exact local thickness map of a binary structure.

    Parameters
    ----------
    mask : ndarray of bool, shape (nz, ny, nx)
        The structure (bone for Tb.Th, marrow for Tb.Sp).
    voxel_size_um : float
        Isotropic voxel edge in µm; the map is returned in µm.
    distance : ndarray of float32, optional
        A precomputed EDT of ``mask`` in voxel units (border not background).

    Returns
    -------
    ndarray of float32
        Diameter of the largest inscribed ball containing each voxel, in µm; 0 outside
        the mask.
    """
    from ..backend import array_module, asnumpy  # noqa: PLC0415
    from .connectivity import _check_mask  # noqa: PLC0415

    xp = array_module(mask)
    if getattr(mask, "ndim", 3) != 3:
        raise ValueError(f"mask must be 3-D (z, y, x), got shape {mask.shape}")
    if not voxel_size_um > 0:
        raise ValueError(f"voxel_size_um must be > 0, got {voxel_size_um}")
    if xp is not np and distance is None:  # CuPy: the same algorithm in CUDA kernels
        from .gpu import local_thickness_gpu  # noqa: PLC0415

        return local_thickness_gpu(_check_mask(mask), voxel_size_um)
    m = np.ascontiguousarray(asnumpy(_check_mask(mask)))
    if xp is not np:
        return xp.asarray(local_thickness(m, voxel_size_um, asnumpy(distance)))
    if not m.any():
        return np.zeros(m.shape, dtype=np.float32)
    dist, keep = distance_ridge(m, distance)
    zz, yy, xx = np.nonzero(keep)  # sorted by z (C order)
    rr = dist[zz, yy, xx].astype(np.float32)
    z_start = np.searchsorted(zz, np.arange(m.shape[0] + 1)).astype(np.int64)
    rmax_int = int(np.ceil(rr.max()))
    lt = _insert_balls(
        m.shape, zz.astype(np.int64), yy.astype(np.int64), xx.astype(np.int64), rr, z_start, rmax_int, m
    )
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
    from ..backend import array_module, asnumpy  # noqa: PLC0415

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
