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

Compartments of a loaded scan: :func:`choose_compartments` (``auto``, ``trabecular`` or
given labels) with :func:`has_periosteal_shell` and :func:`field_of_view`; the contouring
itself is reached through one entry point, :func:`segment_regions`.
"""

from __future__ import annotations

import math
import dataclasses
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from .backend import array_module, asnumpy, is_device_array

__all__ = ["BONE_THRESHOLD", "BoneVolume", "COMPARTMENT_CHOICES", "Region", "TMD_MAX_MG_CM3", "choose_compartments",
           "field_of_view", "has_periosteal_shell", "segment_regions"]

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
    stays sub-voxel); a block more than half inside the bone takes the compartment that fills
    more of it (on a tie, cortical when the block is bone, trabecular when it is marrow), else
    it is outside. Edges that do not fill a whole block
    are cut.
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

    return _averaged(volume, mean, volume.voxel_size_um * factor)


def coarsen_to(volume: BoneVolume, voxel_size_um: float) -> BoneVolume:
    """The volume as voxels of ``voxel_size_um`` (≥ its own) would hold it: each new voxel
    averages the old ones by the volume they share with it (a box filter), so any ratio of
    voxel sizes works (30 → 40 µm as well as 20 → 40 µm). A whole-number ratio is
    :func:`coarsen`; compartments as there. Edges that do not fill a whole new voxel are cut.
    """
    v = float(volume.voxel_size_um)
    target = float(voxel_size_um)
    if not (math.isfinite(target) and target >= v):
        raise ValueError(f"voxel_size_um must be at least the volume's {v:g} µm, got {voxel_size_um!r}")
    ratio = target / v
    if abs(ratio - round(ratio)) < 1e-9:
        return coarsen(volume, int(round(ratio)))
    xp = volume.xp
    weights = []
    for n in volume.shape:
        m = int(math.floor(n / ratio + 1e-9))
        if m == 0:
            raise ValueError(f"volume {volume.shape} is smaller than one voxel of {target:g} µm")
        lo = np.arange(m)[:, None] * ratio
        j = np.arange(n)[None, :]
        overlap = np.clip(np.minimum(lo + ratio, j + 1.0) - np.maximum(lo, j), 0.0, None) / ratio
        weights.append(xp.asarray(overlap, dtype=xp.float32))  # (m, n): rows sum to 1

    def mean(a: Any) -> Any:
        a = a.astype(xp.float32)
        for axis, w in enumerate(weights):
            a = xp.moveaxis(xp.tensordot(w, a, axes=([1], [axis])), 0, axis)
        return xp.ascontiguousarray(a)

    return _averaged(volume, mean, target)


def _averaged(volume: BoneVolume, mean: Any, voxel_size_um: float) -> BoneVolume:
    """The volume with fractions averaged by ``mean`` onto voxels of ``voxel_size_um``; compartments by share."""
    xp = volume.xp
    # a block is inside the bone when more than half of it is (a block half outside, at the
    # periosteal surface, holds half a voxel of bone: labelled cortical it would be a spurious
    # pore along the whole surface, on which tunnelling BMUs start); inside, the larger
    # compartment names it. A tie (the endosteal envelope through the block's centre) goes
    # to the compartment of what the block holds: cortical when it is bone, trabecular when
    # it is marrow, so the endosteal envelope follows the bone. Cortical on every tie made
    # each half-marrow block along an endosteal face a spurious pore (lumbar phantoms, 20 µm
    # → 40 µm: Ct.Po 0.07 → 0.10, endocortical surface 17 → 11 mm², pore walls 15 → 22 mm²),
    # turning endocortical surface (hemi-osteonal BMUs) into canal walls.
    trab, cort = mean(volume.region == int(Region.TRABECULAR)), mean(volume.region == int(Region.CORTICAL))
    bone = mean(volume.bone)
    region = xp.full(bone.shape, int(Region.OUTSIDE), dtype=xp.uint8)
    inside = (trab + cort) > 0.5
    cortical = (cort > trab) | ((cort == trab) & (bone >= BONE_THRESHOLD))
    region[inside & ~cortical] = int(Region.TRABECULAR)
    region[inside & cortical] = int(Region.CORTICAL)
    return BoneVolume(bone, xp.minimum(mean(volume.mineral), bone), region, voxel_size_um,
                      volume.site, {**volume.meta, "coarsened_from_um": volume.voxel_size_um})



# -- compartments of a loaded volume --------------------------------------------------
#: Choices of :func:`choose_compartments` besides a region file.
COMPARTMENT_CHOICES = ("auto", "trabecular")


def segment_regions(bone_mask: Any, voxel_size_um: float) -> np.ndarray:
    """Outside / trabecular / cortical labels of an unlabelled bone mask.

    The one entry point through which loading calls the compartment contouring
    (today :func:`voxelbone.metrics.segment_compartments`); swap the method here.
    """
    from .metrics import segment_compartments  # noqa: PLC0415

    return segment_compartments(bone_mask, voxel_size_um)


def has_periosteal_shell(bone_mask: Any, voxel_size_um: float, *, canal_radius_um: float = 60.0,
                         min_space_fraction: float = 0.02) -> bool:
    """Whether the bone has a periosteal shell: a bone layer sealing the space outside off the marrow.

    A shell splits the non-bone space of the grid in two: outside the bone (soft tissue,
    air, mounting medium) and the marrow inside. After closing the bone over canals up to
    ``canal_radius_um`` (pores through the cortex do not open it), the shell is there when
    the non-bone space holds two separate parts of at least ``min_space_fraction`` of the
    grid each. In a volume cut inside trabecular bone (a box, or a cored cylinder with
    empty corners) the marrow is one connected space, open at the cut faces and to the
    corners: no shell.

    Parameters
    ----------
    bone_mask : array of bool, (nz, ny, nx)
        Bone voxels.
    voxel_size_um : float
        Voxel edge, µm.
    canal_radius_um : float
        Pores up to this radius through the shell do not open it.
    min_space_fraction : float
        Smallest separate non-bone space, as a fraction of the grid, that counts (smaller
        sealed pockets are cut or closed marrow spaces).

    Returns
    -------
    bool

    Notes
    -----
    A block of compact bone without marrow has no second space and reads as having no
    shell; give it a region file.
    """
    m = asnumpy(bone_mask).astype(bool)
    if m.ndim != 3:
        raise ValueError(f"bone_mask must be 3-D, got shape {m.shape}")
    _, _, big = _non_bone_spaces(m, voxel_size_um, canal_radius_um, min_space_fraction)
    return len(big) >= 2


def _non_bone_spaces(m: np.ndarray, voxel_size_um: float, canal_radius_um: float = 60.0,
                     min_space_fraction: float = 0.02) -> tuple[np.ndarray, int, list[int]]:
    """Connected non-bone spaces once canals are closed: (labels, canal radius in voxels, large ones)."""
    from scipy import ndimage as ndi  # noqa: PLC0415

    rc = max(1, int(round(canal_radius_um / float(voxel_size_um))))
    z, y, x = np.ogrid[-rc:rc + 1, -rc:rc + 1, -rc:rc + 1]
    ball = (z * z + y * y + x * x) <= rc * rc
    closed = ndi.binary_closing(np.pad(m, rc, mode="edge"), structure=ball)[rc:-rc, rc:-rc, rc:-rc] | m
    labels, n = ndi.label(~closed)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    big = [int(i) for i in np.flatnonzero(sizes >= min_space_fraction * m.size) if i > 0]
    return labels, rc, big


def _exterior(m: np.ndarray, labels: np.ndarray, voxel_size_um: float) -> np.ndarray:
    """The space outside a shelled bone, among the large non-bone spaces the shell separates.

    The contouring puts some of the marrow inside its envelope (marrow it sees enclosed in
    a slice) but none of the space beyond the periosteal surface: the outside is the large
    spaces of which (almost) nothing lies inside the envelope. Returns them grown over the
    canal-closing layer at the periosteal surface (bone excluded).
    """
    from scipy import ndimage as ndi  # noqa: PLC0415

    space, rc, big = _non_bone_spaces(m, voxel_size_um)
    sizes = np.bincount(space.ravel())
    enclosed = np.bincount(space[labels != Region.OUTSIDE], minlength=sizes.size) / np.maximum(sizes, 1)
    outer = np.isin(space, [i for i in big if enclosed[i] < 0.25 * max(enclosed[j] for j in big)])
    return ndi.binary_dilation(outer, structure=np.ones((3, 3, 3), bool), iterations=rc + 1) & ~m


def field_of_view(bone_mask: Any) -> np.ndarray:
    """The scanned tissue of a volume cut from bone: the convex hull of the bone seen along z.

    A box cut inside the bone gives the whole grid; a cored cylinder (long axis z) gives
    the cylinder, leaving out the empty corners of its bounding box.
    """
    from skimage.morphology import convex_hull_image  # noqa: PLC0415

    m = asnumpy(bone_mask).astype(bool)
    footprint = m.any(axis=0)
    if footprint.all() or not footprint.any():
        return np.ones(m.shape, bool)
    hull = convex_hull_image(footprint) | footprint
    return np.broadcast_to(hull, m.shape).copy()


def choose_compartments(bone_mask: Any, voxel_size_um: float, compartments: str = "auto", *,
                        region: Any | None = None, source: str = "the volume") -> tuple[np.ndarray, str]:
    """Compartment labels of a loaded volume, and a sentence saying how they were chosen.

    Parameters
    ----------
    bone_mask : array of bool, (nz, ny, nx)
        Bone voxels.
    voxel_size_um : float
        Voxel edge, µm.
    compartments : {"auto", "trabecular", "given"}
        ``auto``: contour the bone (:func:`segment_regions`); when it has no periosteal
        shell (:func:`has_periosteal_shell`: a volume cut inside trabecular bone, a box or
        a cored cylinder) the whole field of view (:func:`field_of_view`) is trabecular.
        ``trabecular``: the field of view is trabecular, without contouring.
        ``given``: use ``region`` (labels 0 outside, 1 trabecular, 2 cortical).
    region : array, optional
        The labels for ``given``.
    source : str
        Where ``region`` came from, for the messages.

    Returns
    -------
    (labels, how)
        uint8 :class:`Region` labels and a one-line description of the choice.

    Raises
    ------
    ValueError
        An unknown choice; ``given`` labels of another shape or with values other than
        0, 1, 2; a cortex that holds most of the bone of a volume without a periosteal
        shell (a trabecular region of interest read as cortex).
    """
    m = asnumpy(bone_mask).astype(bool)
    if compartments == "trabecular":
        fov = field_of_view(m)
        labels = np.where(fov, np.uint8(Region.TRABECULAR), np.uint8(Region.OUTSIDE)).astype(np.uint8)
        return labels, f"trabecular (asked): the field of view ({100 * fov.mean():.1f} % of the grid) is the trabecular VOI"
    if compartments == "auto":
        # the shell is decided first: the contouring calls a volume whose shell it does not
        # recognise as cortex all trabecular, empty corners included
        if has_periosteal_shell(m, voxel_size_um):
            labels = np.asarray(segment_regions(m, voxel_size_um), dtype=np.uint8)
            # marrow open at the cut faces is trabecular; outside is only the space beyond the shell
            outside = (labels == Region.OUTSIDE) & _exterior(m, labels, voxel_size_um)
            labels = np.where((labels == Region.OUTSIDE) & ~outside, np.uint8(Region.TRABECULAR), labels)
            share = _cortical_share(m, labels)
            return labels.astype(np.uint8), (f"auto: periosteal shell found; cortex and trabecular compartment "
                                             f"contoured (cortex holds {100 * share:.0f} % of the bone)")
        fov = field_of_view(m)
        labels = np.where(fov, np.uint8(Region.TRABECULAR), np.uint8(Region.OUTSIDE)).astype(np.uint8)
        return labels, ("auto: no periosteal shell (the space outside the bone is the marrow, open at the cut "
                        f"faces); the field of view ({100 * fov.mean():.1f} % of the grid) is all trabecular")
    if compartments != "given":
        raise ValueError(f"compartments must be 'auto', 'trabecular' or a region file, got {compartments!r}")
    if region is None:
        raise ValueError("compartments='given' needs the region labels")
    reg = asnumpy(region)
    if reg.shape != m.shape:
        raise ValueError(f"{source}: region of shape {reg.shape} does not match the image's {m.shape}; "
                         "give labels on the same grid (z, y, x)")
    if reg.dtype.kind == "f":
        if not np.all(np.isfinite(reg)) or not np.all(reg == np.round(reg)):
            raise ValueError(f"{source}: region must hold whole-number labels 0, 1, 2, found fractional values")
    values = np.unique(reg)
    if values.size and (values.min() < 0 or values.max() > max(Region)):
        raise ValueError(f"{source}: region labels must be 0 (outside), 1 (trabecular) or 2 (cortical); "
                         f"found {sorted(int(v) for v in values)[:8]}")
    labels = reg.astype(np.uint8)
    share = _cortical_share(m, labels)
    if share > 0.5 and not has_periosteal_shell(m, voxel_size_um):
        raise ValueError(
            f"{source}: its cortex holds {100 * share:.0f} % of the bone, but the volume has no periosteal shell "
            "(the space outside the bone is the marrow itself, open at the cut faces): a volume cut inside "
            "trabecular bone has no cortex, and trabeculae labelled cortical would be measured and remodelled as "
            "cortex. Use compartments 'auto' or 'trabecular', or labels whose cortex is a shell around the marrow")
    return labels, f"given: labels from {source} (cortex holds {100 * share:.0f} % of the bone)"


def _cortical_share(mask: np.ndarray, labels: np.ndarray) -> float:
    n = int(mask.sum())
    return int((mask & (labels == Region.CORTICAL)).sum()) / n if n else 0.0
