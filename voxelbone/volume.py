"""BoneVolume: the voxel grid every stage reads and writes.

A volume holds, per voxel of an isotropic (z, y, x) grid:

* ``bone`` — bone volume fraction in [0, 1] (sub-voxel bone: BMU deficits of a few µm
  accumulate below the voxel size);
* ``mineral`` — mineral content as a volume fraction of fully mineralised bone,
  0 ≤ mineral ≤ bone. The tissue mineral density of the voxel's bone is
  ``TMD_MAX_MG_CM3 * mineral / bone`` and the BMD proxy of a region is
  ``TMD_MAX_MG_CM3 * mean(mineral)`` (model.md §4: mean of bone fraction × TMD);
* ``region`` — compartment labels (:class:`Region`): outside the bone, the trabecular
  compartment (trabecular bone + marrow; the trabecular VOI) and the cortical compartment
  (cortical bone + intracortical pores, between the periosteal and endosteal envelopes).

Arrays may be NumPy or CuPy; a volume's arrays all live on the same device.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from .backend import array_module, asnumpy, is_device_array

__all__ = ["BONE_THRESHOLD", "BoneVolume", "Region", "TMD_MAX_MG_CM3"]

#: Tissue mineral density of fully mineralised bone, mg HA/cm³ (mineral == bone).
TMD_MAX_MG_CM3 = 1200.0
#: Bone fraction at or above which a voxel counts as bone in binary metrics.
BONE_THRESHOLD = 0.5


class Region(IntEnum):
    """Compartment labels stored in :attr:`BoneVolume.region`."""

    OUTSIDE = 0
    TRABECULAR = 1
    CORTICAL = 2


@dataclass
class BoneVolume:
    """A bone sample on an isotropic voxel grid.

    Parameters
    ----------
    bone : array, float32, shape (nz, ny, nx)
        Bone volume fraction per voxel, in [0, 1].
    mineral : array, float32, same shape
        Mineral content per voxel as a fraction of fully mineralised bone volume,
        0 ≤ mineral ≤ bone.
    region : array, uint8, same shape
        Compartment labels (:class:`Region`).
    voxel_size_um : float
        Edge length of a (cubic) voxel in micrometres, > 0.
    site : str, optional
        Anatomical site the volume represents (e.g. ``"lumbar_spine"``).
    meta : dict
        Free-form provenance (generator parameters, source file, ...).

    Raises
    ------
    ValueError
        On wrong dimensionality, mismatched shapes, non-finite values, fractions
        outside [0, 1], mineral above bone, unknown region labels or a non-positive
        voxel size; the message names the argument.
    """

    bone: Any
    mineral: Any
    region: Any
    voxel_size_um: float
    site: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xp = array_module(self.bone, self.mineral, self.region)
        self.bone = _as_volume_array(xp, self.bone, "bone", xp.float32)
        self.mineral = _as_volume_array(xp, self.mineral, "mineral", xp.float32)
        self.region = _as_volume_array(xp, self.region, "region", xp.uint8)
        if not (self.bone.shape == self.mineral.shape == self.region.shape):
            raise ValueError(
                f"bone {self.bone.shape}, mineral {self.mineral.shape} and region "
                f"{self.region.shape} must have the same shape"
            )
        try:
            vs = float(self.voxel_size_um)
        except (TypeError, ValueError):
            raise ValueError(
                f"voxel_size_um must be a single number (isotropic voxels), got {self.voxel_size_um!r}; "
                "resample anisotropic data with voxelbone.io.resample_isotropic"
            ) from None
        if not np.isfinite(vs) or vs <= 0:
            raise ValueError(f"voxel_size_um must be a positive number of micrometres, got {self.voxel_size_um!r}")
        self.voxel_size_um = vs
        if not bool(xp.isfinite(self.bone).all()):
            raise ValueError("bone contains NaN or infinite values")
        if not bool(xp.isfinite(self.mineral).all()):
            raise ValueError("mineral contains NaN or infinite values")
        lo, hi = float(self.bone.min()), float(self.bone.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"bone fractions must lie in [0, 1]; found values in [{lo:g}, {hi:g}]")
        if float(self.mineral.min()) < 0.0:
            raise ValueError("mineral must be ≥ 0")
        excess = float((self.mineral - self.bone).max())
        if excess > 1e-5:
            raise ValueError(f"mineral must not exceed bone in any voxel (largest excess {excess:g})")
        if int(self.region.max()) > max(Region):
            raise ValueError(
                f"region labels must be one of {[int(r) for r in Region]} "
                f"(outside, trabecular, cortical); found {int(self.region.max())}"
            )

    # -- convenience ---------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape (nz, ny, nx)."""
        return tuple(self.bone.shape)  # type: ignore[return-value]

    @property
    def xp(self) -> Any:
        """Array module of the volume's arrays."""
        return array_module(self.bone)

    @property
    def on_device(self) -> bool:
        """True when the arrays are CuPy arrays."""
        return is_device_array(self.bone)

    @property
    def physical_size_mm(self) -> tuple[float, float, float]:
        """Extent of the grid in millimetres."""
        return tuple(n * self.voxel_size_um / 1000.0 for n in self.shape)  # type: ignore[return-value]

    def mask(self, threshold: float = BONE_THRESHOLD) -> Any:
        """Binary bone mask (``bone >= threshold``)."""
        return self.bone >= threshold

    def tmd_mg_cm3(self) -> Any:
        """Tissue mineral density of each voxel's bone (0 where there is no bone)."""
        xp = self.xp
        safe = xp.where(self.bone > 0, self.bone, xp.float32(1))
        return xp.where(self.bone > 0, TMD_MAX_MG_CM3 * self.mineral / safe, xp.float32(0))

    def to(self, xp: Any) -> "BoneVolume":
        """A copy of this volume on another array module (``numpy`` or ``cupy``)."""
        if xp is np:
            conv = asnumpy
        else:
            conv = xp.asarray
        return dataclasses.replace(
            self,
            bone=conv(self.bone),
            mineral=conv(self.mineral),
            region=conv(self.region),
            meta=dict(self.meta),
        )

    def copy(self) -> "BoneVolume":
        """A deep copy on the same device."""
        return dataclasses.replace(
            self, bone=self.bone.copy(), mineral=self.mineral.copy(), region=self.region.copy(), meta=dict(self.meta)
        )

    @classmethod
    def from_mask(
        cls,
        mask: Any,
        voxel_size_um: float,
        region: Any | None = None,
        mineralisation: float = 0.9,
        site: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> "BoneVolume":
        """Build a volume from a binary or fractional bone image.

        Parameters
        ----------
        mask : array, shape (nz, ny, nx)
            Boolean mask or bone fractions in [0, 1].
        voxel_size_um : float
            Voxel edge in µm.
        region : array of uint8, optional
            Compartment labels; default: everything trabecular.
        mineralisation : float
            Degree of mineralisation of the bone (mineral = bone × this), in (0, 1].
        """
        xp = array_module(mask)
        m = xp.asarray(mask)
        if m.ndim != 3:
            raise ValueError(f"mask must be a 3-D array (z, y, x), got {m.ndim}-D with shape {m.shape}")
        if not 0.0 < mineralisation <= 1.0:
            raise ValueError(f"mineralisation must lie in (0, 1], got {mineralisation}")
        bone = m.astype(xp.float32)
        reg = xp.full(m.shape, int(Region.TRABECULAR), dtype=xp.uint8) if region is None else region
        return cls(bone, bone * xp.float32(mineralisation), reg, voxel_size_um, site, dict(meta or {}))


def _as_volume_array(xp: Any, a: Any, name: str, dtype: Any) -> Any:
    arr = xp.asarray(a)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a 3-D array (z, y, x), got {arr.ndim}-D with shape {arr.shape}")
    if min(arr.shape) < 1:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if arr.dtype == xp.bool_ and name != "region":
        arr = arr.astype(dtype)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if name == "region" and arr.dtype.kind == "f":
        raise ValueError("region must hold integer labels, got a floating-point array")
    return xp.ascontiguousarray(arr.astype(dtype, copy=False))


def coarsen(volume: BoneVolume, factor: int) -> BoneVolume:
    """Block-average a volume by an integer ``factor`` (the same structure, larger voxels).

    Bone and mineral fractions are averaged (partial volume kept, so the 0.5 iso-surface
    stays sub-voxel); a block's region is cortical or trabecular when that compartment
    fills at least half of it, else outside. Edges that do not fill a whole block are cut.
    """
    if not (isinstance(factor, int) and factor >= 1):
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    if factor == 1:
        return volume.copy()
    xp = volume.xp
    s = [d - d % factor for d in volume.shape]
    if min(s) == 0:
        raise ValueError(f"volume {volume.shape} is smaller than one block of {factor}")

    def mean(a: Any) -> Any:
        a = a[: s[0], : s[1], : s[2]].astype(xp.float32)
        return a.reshape(s[0] // factor, factor, s[1] // factor, factor, s[2] // factor, factor).mean(axis=(1, 3, 5))

    region = xp.full(tuple(d // factor for d in s), int(Region.OUTSIDE), dtype=xp.uint8)
    for label in (Region.TRABECULAR, Region.CORTICAL):
        region[mean(volume.region == int(label)) >= 0.5] = int(label)
    bone = mean(volume.bone)
    return BoneVolume(bone, xp.minimum(mean(volume.mineral), bone), region, volume.voxel_size_um * factor,
                      volume.site, {**volume.meta, "coarsened_from_um": volume.voxel_size_um})

