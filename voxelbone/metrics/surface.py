"""Bone surface from marching cubes (not voxel faces), on the CPU or the GPU.

Voxel-face counting overestimates the area of smooth surfaces by ~50 %, and raw binary
marching cubes by ~9 %; marching cubes on a lightly smoothed field (Gaussian σ ≈ 0.7 voxel
for binary masks) brings a sphere's area to within ~1 % (model.md §4; Lorensen & Cline
1987). A fractional bone field (partial volumes) is already smooth and is meshed directly at
the 0.5 level. The area is summed cube by cube (:mod:`.marching_cubes`): Numba on the CPU,
a CUDA kernel for CuPy arrays, the same arithmetic. The structure model index needs a
mesh whose vertices move along their normals; it uses scikit-image's marching cubes
(Lewiner et al. 2003) on the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage.measure import marching_cubes, mesh_surface_area

from ..backend import array_module, asnumpy, is_device_array, ndimage_module
from .gpu import surface_area_gpu
from .marching_cubes import surface_area_voxels

__all__ = ["bone_surface_mm2", "structure_model_index"]


def _is_binary(f: Any) -> bool:
    """Bool, integer or only 0/1 values: a mask (smoothed before meshing)."""
    return f.dtype == bool or f.dtype.kind in "iu" or bool(((f == 0) | (f == 1)).all())


def smoothed_field(field: Any, sigma_voxels: float | None) -> Any:
    """The field as float32, Gaussian-smoothed when it is a mask (default σ 0.7) or when asked, on its device."""
    xp = array_module(field)
    if field.ndim != 3:
        raise ValueError(f"field must be a 3-D volume (z, y, x), got shape {field.shape}")
    if sigma_voxels is None:
        sigma_voxels = 0.7 if _is_binary(field) else 0.0
    f = field.astype(xp.float32)
    if sigma_voxels > 0:
        f = ndimage_module(xp).gaussian_filter(f, sigma_voxels)
    return f


def surface_mesh(field: Any, level: float, sigma_voxels: float | None) -> tuple[np.ndarray, np.ndarray] | None:
    """scikit-image marching-cubes mesh (vertices in voxel units, faces) of a field padded by one voxel; None if no surface."""
    f = np.pad(asnumpy(smoothed_field(field, sigma_voxels)), 1)  # close the surface at the border of the grid
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
    field : array (NumPy or CuPy)
        Bone fraction in [0, 1] (meshed as is) or a binary mask — bool, integer or only 0/1
        values, e.g. a thresholded scan — smoothed with ``sigma_voxels`` (default 0.7)
        before meshing. A CuPy field is measured on its GPU; only the area comes back.
    voxel_size_um : float
        Voxel edge, µm.
    within : array of bool, optional
        Count only triangles whose centroid lies nearest to one of these voxels (a VOI).
    level : float
        Iso-level.
    sigma_voxels : float, optional
        Gaussian pre-smoothing in voxels; default 0.7 for binary input, 0 for fractions.
    drop_cut_planes : bool
        Leave out the surface where the grid border cuts the structure (default). ``False``
        closes the surface there (the field is padded with marrow) and counts the closing
        faces; the engine's surface-density constant is measured that way (see
        :func:`voxelbone.remodel.engine.measure_surface_density`).

    Returns
    -------
    float
        Surface area, mm² (0 for an empty or full field).

    Notes
    -----
    The grid border cuts the sample, and the faces that would close the surface there are
    cut planes, not bone surface: by default BS is the surface of the structure between the
    outermost voxel centres (counting the cut planes added ~5 % to BS/BV of a 128³ phantom
    whose trabeculae cross four faces of the grid).
    """
    if voxel_size_um <= 0:
        raise ValueError(f"voxel_size_um must be positive, got {voxel_size_um}")
    f = smoothed_field(field, sigma_voxels)
    w = within
    if w is not None and tuple(w.shape) != tuple(f.shape):
        raise ValueError(f"within has shape {tuple(w.shape)} but the field has {tuple(f.shape)}; pass a VOI mask of the field's shape")
    if not drop_cut_planes:
        xp = array_module(f)
        f = xp.pad(f, 1)
        w = None if w is None else xp.pad(w.astype(bool), 1)
    if is_device_array(f):
        area = surface_area_gpu(f, level, w)
    else:
        area = surface_area_voxels(f, level, w)
    return area * (voxel_size_um / 1000.0) ** 2


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

    Examples
    --------
    A ball is close to the ideal sphere's 4:

    >>> import numpy as np
    >>> z, y, x = np.ogrid[:40, :40, :40]
    >>> ball = (z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 15**2
    >>> round(float(structure_model_index(ball)), 1)
    3.9
    """
    return mesh_smi(surface_mesh(field, level, sigma_voxels), step_voxels)


def mesh_smi(mesh: tuple[np.ndarray, np.ndarray] | None, step_voxels: float = 0.01) -> float:
    """SMI of a closed mesh from :func:`surface_mesh` (NaN for none)."""
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
