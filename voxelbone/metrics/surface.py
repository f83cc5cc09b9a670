"""Bone surface from a marching-cubes mesh (not voxel faces).

Voxel-face counting overestimates the area of smooth surfaces by ~50 %, and raw binary
marching cubes by ~9 %; marching cubes on a lightly smoothed field (Gaussian σ ≈ 0.7 voxel
for binary masks) brings a sphere's area to within ~1 % (model.md §4; Lorensen & Cline
1987; Lewiner et al. 2003 as implemented in scikit-image). A fractional bone field (partial
volumes) is already smooth and is meshed directly at the 0.5 level. The structure model
index is computed on the same mesh.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..backend import asnumpy

__all__ = ["bone_surface_mm2", "structure_model_index"]


def _mesh(field: Any, level: float, sigma_voxels: float | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Marching-cubes mesh (vertices in voxel units, faces) of a field padded by one voxel; None if no surface."""
    from skimage.measure import marching_cubes  # noqa: PLC0415

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
        return None
    verts, faces, _, _ = marching_cubes(f, level=level, allow_degenerate=False)
    return verts, faces


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
    from skimage.measure import mesh_surface_area  # noqa: PLC0415

    mesh = _mesh(field, level, sigma_voxels)
    if mesh is None:
        return 0.0
    verts, faces = mesh
    if within is not None:
        w = np.pad(asnumpy(within).astype(bool), 1)
        cent = np.rint(verts[faces].mean(axis=1)).astype(np.int64)
        cent = np.clip(cent, 0, np.array(w.shape) - 1)
        faces = faces[w[cent[:, 0], cent[:, 1], cent[:, 2]]]
        if faces.size == 0:
            return 0.0
    area_vox = mesh_surface_area(verts, faces)
    return float(area_vox) * (voxel_size_um / 1000.0) ** 2


def _outward_vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals (area-weighted face normals), oriented out of the enclosed volume."""
    tri = verts[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # |fn| = 2 × area
    vn = np.zeros_like(verts)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
    # signed volume by the divergence theorem: positive when the face normals point outwards
    signed = float(np.einsum("ij,ij->i", tri[:, 0], fn).sum()) / 6.0
    return vn if signed >= 0 else -vn


def structure_model_index(
    field: Any,
    *,
    level: float = 0.5,
    sigma_voxels: float | None = None,
    step_voxels: float = 0.01,
) -> float:
    """Structure model index (Hildebrand & Rüegsegger 1997), as BoneJ computes it.

    SMI = 6 · V · (dS/dr) / S², with S the area of the marching-cubes surface, V the volume
    it encloses and dS/dr the rate at which the area grows when every vertex moves outwards
    along its normal (a central difference over ``±step_voxels``). Ideal plates give 0,
    rods 3 and spheres 4; concave surfaces (marrow cavities in dense bone) make it negative
    (Salmon et al. 2015 Front Endocrinol 6:162), so read it with BV/TV.

    Parameters
    ----------
    field : array
        Bone fraction in [0, 1] or a binary mask (smoothed as for :func:`bone_surface_mm2`).
    level, sigma_voxels
        As for :func:`bone_surface_mm2`.
    step_voxels : float
        Normal displacement for the derivative, voxels.

    Returns
    -------
    float
        SMI (dimensionless); NaN for an empty or full field.
    """
    from skimage.measure import mesh_surface_area  # noqa: PLC0415

    mesh = _mesh(field, level, sigma_voxels)
    if mesh is None:
        return float("nan")
    verts, faces = mesh
    verts = verts.astype(np.float64)
    normals = _outward_vertex_normals(verts, faces)
    area = mesh_surface_area(verts, faces)
    grow = (mesh_surface_area(verts + step_voxels * normals, faces)
            - mesh_surface_area(verts - step_voxels * normals, faces)) / (2.0 * step_voxels)
    tri = verts[faces]
    volume = abs(float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6.0)
    return 6.0 * volume * grow / area**2 if area > 0 else float("nan")
