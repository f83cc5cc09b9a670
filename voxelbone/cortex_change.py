"""How the cortex changed between two volumes: what the cortical-change figure draws.

A cortex that thins by 10 µm over a run at 30 µm voxels does not move its binary surface
by a whole voxel; the loss shows as partial volume (bone and mineral fractions falling in
the voxels of the endocortical surface) and as the contoured endosteal envelope moving
where pores open into the marrow. :func:`cortex_change` gathers both from a start and an
end volume of one grid:

* a cross-section (one z-slice: Haversian canals run along z, as in an HR-pQCT slice) of
  the tissue mineral density at start and end (``TMD_MAX_MG_CM3 × mineral``; the
  density a calibrated micro-CT reports) and their difference;
* the contoured cortex of each volume in that slice (the contouring of the cortical
  metrics, :func:`voxelbone.compartments.segment_compartments` inside the periosteal
  envelope), so the endosteal contour's move is seen;
* the mean density at each depth below the periosteal surface, over the whole volume,
  at start and end, and the share of each depth that lies in the contoured cortex;
* the local thickness of every voxel of the contoured cortex (pores filled), at start and
  end: their means are Ct.Th (:func:`voxelbone.metrics.cortical.cortical_metrics`);
* where the cortex lies along one face of the volume (a section through the periphery of
  a bone), a map over that face of the change of cortical bone per unit area: the bone
  fraction gained minus lost in the start or end cortex, summed through the cortex and
  times the voxel edge (µm of fully dense bone), so a thinning of a third of a voxel
  reads −10 µm and a breach of the endocortical wall reads its depth.

The drawing is :func:`voxelbone.plots.plot_cortex_change`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

from .backend import asnumpy
from .compartments import ContourParams, segment_compartments
from .metrics import local_thickness
from .volume import TMD_MAX_MG_CM3, BoneVolume, Region

__all__ = ["CortexChange", "cortex_change", "cortex_face"]

#: Depth below the periosteal surface drawn in the profiles, in Ct.Th of the start volume.
PROFILE_DEPTH_CT_TH = 2.5
#: Edge of the magnified window of the cross-section, in Ct.Th of the start volume.
WINDOW_CT_TH = 4.0
#: Fewest voxels across the magnified window.
WINDOW_MIN_VOXELS = 24


@dataclass(frozen=True)
class CortexChange:
    """The cortex of a start and an end volume, as the cortical-change figure draws it.

    Attributes
    ----------
    voxel_size_um : float
        Voxel edge (µm).
    slice_z : int
        Index along z of the cross-section.
    density_start_mg_cm3, density_end_mg_cm3 : ndarray, float32, shape (ny, nx)
        Tissue mineral density of the cross-section (``TMD_MAX_MG_CM3 × mineral``; 0 outside).
    cortex_start, cortex_end : ndarray of bool, shape (ny, nx)
        Contoured cortical compartment (bone and intracortical pores) in the cross-section.
    window : (slice, slice)
        The magnified part of the cross-section (y, x): the cortex and the trabecular bone
        behind it, around the endosteal contour nearest the slice's centre.
    depth_um : ndarray
        Depth below the periosteal surface of each profile bin's centre (µm; bins one voxel wide).
    profile_start_mg_cm3, profile_end_mg_cm3 : ndarray
        Mean density of the voxels at each depth (whole volume).
    cortex_share_start, cortex_share_end : ndarray
        Share of the voxels at each depth that lie in the contoured cortex.
    thickness_start_um, thickness_end_um : ndarray, float32
        Local thickness of each voxel of the contoured cortex (pores filled), µm.
    bone_change_map_um : ndarray or None, shape (nz, n)
        Change of cortical bone per unit area (µm of fully dense bone, end − start) at
        each z and position along the face the cortex lies on; None when the cortex does
        not lie along one face (a whole cross-section's ring, for instance).
    map_axis : str
        The in-slice axis of the map's columns (``"x"`` or ``"y"``; ``""`` without a map).
    """

    voxel_size_um: float
    slice_z: int
    density_start_mg_cm3: np.ndarray
    density_end_mg_cm3: np.ndarray
    cortex_start: np.ndarray
    cortex_end: np.ndarray
    window: tuple[slice, slice]
    depth_um: np.ndarray
    profile_start_mg_cm3: np.ndarray
    profile_end_mg_cm3: np.ndarray
    cortex_share_start: np.ndarray
    cortex_share_end: np.ndarray
    thickness_start_um: np.ndarray
    thickness_end_um: np.ndarray
    bone_change_map_um: np.ndarray | None = None
    map_axis: str = ""

    @property
    def difference_mg_cm3(self) -> np.ndarray:
        """End minus start density of the cross-section (mg HA/cm³; < 0 where mineral was lost)."""
        return self.density_end_mg_cm3 - self.density_start_mg_cm3

    @property
    def ct_th_start_um(self) -> float:
        """Ct.Th of the start volume (mean local thickness of its contoured cortex, µm)."""
        return float(self.thickness_start_um.mean(dtype=np.float64)) if self.thickness_start_um.size else math.nan

    @property
    def ct_th_end_um(self) -> float:
        """Ct.Th of the end volume (µm)."""
        return float(self.thickness_end_um.mean(dtype=np.float64)) if self.thickness_end_um.size else math.nan

    @staticmethod
    def _depth(share: np.ndarray, voxel_size_um: float) -> float:
        return float(np.nansum(share) * voxel_size_um)

    @property
    def endosteal_depth_start_um(self) -> float:
        """Mean depth of the start volume's endosteal contour below the periosteal surface (µm).

        The cortex's share summed over the depth bins: the volume of the contoured cortex
        per unit of periosteal area, to a fraction of a voxel (a flat band of thickness
        ``t`` gives ``t``).
        """
        return self._depth(self.cortex_share_start, self.voxel_size_um)

    @property
    def endosteal_depth_end_um(self) -> float:
        """Mean depth of the end volume's endosteal contour below the periosteal surface (µm)."""
        return self._depth(self.cortex_share_end, self.voxel_size_um)


def _contoured(volume: BoneVolume, params: ContourParams | None) -> np.ndarray:
    envelope = np.asarray(asnumpy(volume.region)) != int(Region.OUTSIDE)
    return np.asarray(asnumpy(segment_compartments(np.asarray(asnumpy(volume.bone)), volume.voxel_size_um,
                                                   envelope=envelope, params=params).cortex))


def _window(cortex: np.ndarray, trabecular: np.ndarray, side: int) -> tuple[slice, slice]:
    """A ``side``-voxel square around the endosteal contour point nearest the slice's centre."""
    ny, nx = cortex.shape
    near = np.zeros_like(cortex)
    near[1:, :] |= trabecular[:-1, :]
    near[:-1, :] |= trabecular[1:, :]
    near[:, 1:] |= trabecular[:, :-1]
    near[:, :-1] |= trabecular[:, 1:]
    ys, xs = np.nonzero(cortex & near)
    if ys.size == 0:
        ys, xs = np.nonzero(cortex)
    i = int(np.argmin((ys - (ny - 1) / 2.0) ** 2 + (xs - (nx - 1) / 2.0) ** 2))
    sy, sx = min(side, ny), min(side, nx)
    y0 = int(np.clip(ys[i] - sy // 2, 0, ny - sy))
    x0 = int(np.clip(xs[i] - sx // 2, 0, nx - sx))
    return slice(y0, y0 + sy), slice(x0, x0 + sx)


def cortex_face(cortex: np.ndarray) -> tuple[int, int] | None:
    """The in-slice axis (1: y, 2: x) across which the cortex lies along one face, and that face's side.

    The cortex lies along a face when it spans at most a third of the volume along that
    axis (a shell seen in a section through a bone's periphery), and not along the other.

    Parameters
    ----------
    cortex
        3-D mask (z, y, x) of the cortex.

    Returns
    -------
    (axis, side) or None
        ``side`` is −1 when the cortex lies at the low end of ``axis``, +1 at the high end;
        None when the cortex does not lie along one face (a ring, or no cortex).
    """
    extent, centre = [], []
    for axis in (1, 2):
        idx = np.nonzero(cortex.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        extent.append((idx.max() - idx.min() + 1) / cortex.shape[axis] if idx.size else 1.0)
        centre.append(0.5 * (idx.min() + idx.max()) if idx.size else 0.0)
    thin = [(a, c) for a, e, c in zip((1, 2), extent, centre) if e <= 1.0 / 3.0]
    if len(thin) != 1:
        return None
    axis, c = thin[0]
    return axis, (-1 if c < (cortex.shape[axis] - 1) / 2.0 else 1)


def cortex_change(before: BoneVolume, after: BoneVolume, *, slice_z: int | None = None,
                  params: ContourParams | None = None) -> CortexChange:
    """The cortex of ``before`` and ``after`` side by side (see the module docstring).

    Parameters
    ----------
    before, after
        Volumes of one grid (e.g. the first and the last snapshot of a run); host or device.
    slice_z
        Index along z of the cross-section (default: the middle slice, or the slice with
        the most cortex when the middle one has none).
    params
        Contouring distances (default those of the cortical metrics).

    Returns
    -------
    CortexChange

    Raises
    ------
    ValueError
        When the volumes differ in shape or voxel size, when ``slice_z`` lies outside the
        volume, or when neither volume has a contoured cortex (a volume cut inside
        trabecular bone: there is no cortical change to show).
    """
    if before.shape != after.shape or before.voxel_size_um != after.voxel_size_um:
        raise ValueError(f"cortex_change needs volumes of one grid: {before.shape} at {before.voxel_size_um} µm "
                         f"vs {after.shape} at {after.voxel_size_um} µm")
    nz = before.shape[0]
    if slice_z is not None and not 0 <= int(slice_z) < nz:
        raise ValueError(f"slice_z must lie in [0, {nz - 1}], got {slice_z}")
    v = float(before.voxel_size_um)
    c0, c1 = _contoured(before, params), _contoured(after, params)
    if not (c0.any() or c1.any()):
        raise ValueError("neither volume has a contoured cortex (no periosteal shell): no cortical change to show")
    m0 = TMD_MAX_MG_CM3 * np.asarray(asnumpy(before.mineral), dtype=np.float32)
    m1 = TMD_MAX_MG_CM3 * np.asarray(asnumpy(after.mineral), dtype=np.float32)
    inside = np.asarray(asnumpy(before.region)) != int(Region.OUTSIDE)

    lt0 = np.asarray(asnumpy(local_thickness(c0, v)))[c0] if c0.any() else np.zeros(0, np.float32)
    lt1 = np.asarray(asnumpy(local_thickness(c1, v)))[c1] if c1.any() else np.zeros(0, np.float32)
    ct_th = float(lt0.mean()) if lt0.size else float(lt1.mean())

    # depth below the periosteal surface: a voxel beside the outside lies half a voxel deep
    depth = (distance_transform_edt(inside) - 0.5) * v
    n_bins = max(2, int(math.ceil(PROFILE_DEPTH_CT_TH * ct_th / v)))
    bins = np.floor(depth / v).astype(np.int64)
    keep = inside & (bins < n_bins)
    idx = bins[keep]
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        prof0 = np.bincount(idx, weights=m0[keep], minlength=n_bins) / count
        prof1 = np.bincount(idx, weights=m1[keep], minlength=n_bins) / count
        share0 = np.bincount(idx, weights=c0[keep], minlength=n_bins) / count
        share1 = np.bincount(idx, weights=c1[keep], minlength=n_bins) / count

    if slice_z is None:
        slice_z = nz // 2
        if not c0[slice_z].any():
            slice_z = int(np.argmax(c0.sum(axis=(1, 2)) if c0.any() else c1.sum(axis=(1, 2))))
    z = int(slice_z)
    side = max(WINDOW_MIN_VOXELS, int(math.ceil(WINDOW_CT_TH * ct_th / v)))
    ref = c0[z] if c0[z].any() else c1[z]
    if ref.any():
        window = _window(ref, inside[z] & ~ref, side)
    else:
        window = (slice(0, before.shape[1]), slice(0, before.shape[2]))
    face = cortex_face(c0 | c1)
    axis = face[0] if face else None
    change_map = None
    if axis is not None:
        b0 = np.asarray(asnumpy(before.bone), dtype=np.float64)
        b1 = np.asarray(asnumpy(after.bone), dtype=np.float64)
        change_map = (np.where(c0 | c1, b1 - b0, 0.0).sum(axis=axis) * v).astype(np.float32)
    return CortexChange(
        voxel_size_um=v, slice_z=z, density_start_mg_cm3=m0[z].copy(), density_end_mg_cm3=m1[z].copy(),
        cortex_start=c0[z].copy(), cortex_end=c1[z].copy(), window=window,
        depth_um=(np.arange(n_bins) + 0.5) * v, profile_start_mg_cm3=prof0, profile_end_mg_cm3=prof1,
        cortex_share_start=share0, cortex_share_end=share1,
        thickness_start_um=lt0.astype(np.float32), thickness_end_um=lt1.astype(np.float32),
        bone_change_map_um=change_map, map_axis={1: "x", 2: "y"}.get(axis or 0, ""))

