"""Bone surface from a marching-cubes mesh (not voxel faces).

Voxel-face counting overestimates the area of smooth surfaces by ~50 %, and raw binary
marching cubes by ~9 %; marching cubes on a lightly smoothed field (Gaussian σ ≈ 0.7 voxel
for binary masks) brings a sphere's area to within ~1 % (model.md §4; Lorensen & Cline
1987; Lewiner et al. 2003 as implemented in scikit-image). A fractional bone field (partial
volumes) is already smooth and is meshed directly at the 0.5 level.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..backend import asnumpy

__all__ = ["bone_surface_mm2"]


def bone_surface_mm2(
    field: Any,
    voxel_size_um: float,
    *,
    within: Any | None = None,
    level: float = 0.5,
    sigma_voxels: float | None = None,
) -> float:
    """Area of the bone surface in mm².

    Parameters
    ----------
    field : array
        Bone fraction in [0, 1] (meshed as is) or a binary mask (smoothed with
        ``sigma_voxels``, default 0.7, before meshing).
    voxel_size_um : float
        Voxel edge, µm.
    within : array of bool, optional
        Count only mesh triangles whose centroid lies in these voxels (a VOI).
    level : float
        Iso-level.
    sigma_voxels : float, optional
        Gaussian pre-smoothing in voxels; default 0.7 for binary input, 0 for fractions.

    Returns
    -------
    float
        Surface area, mm² (0 for an empty or full field).
    """
    from skimage.measure import marching_cubes, mesh_surface_area  # noqa: PLC0415

    f = asnumpy(field)
    if f.ndim != 3:
        raise ValueError(f"field must be 3-D, got shape {f.shape}")
    binary = f.dtype == bool or (f.dtype.kind in "iu")
    f = f.astype(np.float32)
    if sigma_voxels is None:
        sigma_voxels = 0.7 if binary else 0.0
    if sigma_voxels > 0:
        f = ndi.gaussian_filter(f, sigma_voxels)
    f = np.pad(f, 1)  # close the surface at the border of the grid
    if not (f.min() < level < f.max()):
        return 0.0
    verts, faces, _, _ = marching_cubes(f, level=level, allow_degenerate=False)
    if within is not None:
        w = np.pad(asnumpy(within).astype(bool), 1)
        cent = np.rint(verts[faces].mean(axis=1)).astype(np.int64)
        cent = np.clip(cent, 0, np.array(w.shape) - 1)
        faces = faces[w[cent[:, 0], cent[:, 1], cent[:, 2]]]
        if faces.size == 0:
            return 0.0
    area_vox = mesh_surface_area(verts, faces)
    return float(area_vox) * (voxel_size_um / 1000.0) ** 2
