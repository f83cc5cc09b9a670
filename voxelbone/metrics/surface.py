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
    binary = f.dtype == bool or f.dtype.kind in "iu" or bool(np.all((f == 0) | (f == 1)))  # 0/1 values: a mask
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
    drop_cut_planes: bool = True,
) -> float:
    """Area of the bone surface in mm².

    Parameters
    ----------
    field : array
        Bone fraction in [0, 1] (meshed as is) or a binary mask — bool, integer or only 0/1
        values, e.g. a thresholded scan — smoothed with ``sigma_voxels`` (default 0.7)
        before meshing.
    voxel_size_um : float
        Voxel edge, µm.
    within : array of bool, optional
        Count only mesh triangles whose centroid lies in these voxels (a VOI).
    level : float
        Iso-level.
    sigma_voxels : float, optional
        Gaussian pre-smoothing in voxels; default 0.7 for binary input, 0 for fractions.
    drop_cut_planes : bool
        Leave out the faces that close the mesh at the grid border (default). ``False``
        keeps the mesh as scikit-image returns it, filtered only by ``within``; the engine's
        surface-density constant was fitted that way (see
        :func:`voxelbone.remodel.engine.measure_surface_density`).

    Returns
    -------
    float
        Surface area, mm² (0 for an empty or full field).

    Notes
    -----
    The mesh is closed at the grid border (the field is padded with marrow), but the
    closing faces are cut planes of the sample, not bone surface: triangles in the
    marching cubes that reach into the padding are not counted, so BS is the surface of the
    structure between the outermost voxel centres (counting them added ~5 % to BS/BV of a
    128³ phantom whose trabeculae cross four faces of the grid).
    """
    mesh = _mesh(field, level, sigma_voxels)
    return _area_mm2(mesh, np.shape(field), voxel_size_um, within, drop_cut_planes)


def _area_mm2(mesh: tuple[np.ndarray, np.ndarray] | None, shape: tuple[int, ...], voxel_size_um: float,
              within: Any | None = None, drop_cut_planes: bool = True) -> float:
    """Area (mm²) of a mesh from :func:`_mesh` of a field of ``shape``, filtered as :func:`bone_surface_mm2` says."""
    from skimage.measure import mesh_surface_area  # noqa: PLC0415

    if mesh is None:
        return 0.0
    verts, faces = mesh
    centroid = verts[faces].mean(axis=1)
    cube = np.floor(centroid).astype(np.int64)  # padded coordinates: real voxels at 1..n
    n = np.array(shape)
    keep = np.all((cube >= 1) & (cube <= n - 1), axis=1) if drop_cut_planes else np.ones(len(faces), bool)
    if within is not None:
        w = np.pad(asnumpy(within).astype(bool), 1)
        cent = np.clip(np.rint(centroid).astype(np.int64), 0, np.array(w.shape) - 1)
        keep &= w[cent[:, 0], cent[:, 1], cent[:, 2]]
    faces = faces[keep]
    if faces.size == 0:
        return 0.0
    return float(mesh_surface_area(verts, faces)) * (voxel_size_um / 1000.0) ** 2


def _outward_vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals (area-weighted face normals), oriented out of the enclosed volume."""
    tri = verts[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # |fn| = 2 × area
    vn = np.zeros_like(verts)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
    return vn if _signed_volume(verts, faces) >= 0 else -vn


def _signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed mesh (divergence theorem); positive when its faces point outwards."""
    tri = verts[faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6.0


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
    return _smi(_mesh(field, level, sigma_voxels), step_voxels)


def _smi(mesh: tuple[np.ndarray, np.ndarray] | None, step_voxels: float = 0.01) -> float:
    """SMI of a closed mesh from :func:`_mesh` (NaN for none)."""
    from skimage.measure import mesh_surface_area  # noqa: PLC0415

    if mesh is None:
        return float("nan")
    verts, faces = mesh
    verts = verts.astype(np.float64)
    normals = _outward_vertex_normals(verts, faces)
    area = mesh_surface_area(verts, faces)
    grow = (mesh_surface_area(verts + step_voxels * normals, faces)
            - mesh_surface_area(verts - step_voxels * normals, faces)) / (2.0 * step_voxels)
    volume = abs(_signed_volume(verts, faces))
    return 6.0 * volume * grow / area**2 if area > 0 else float("nan")
