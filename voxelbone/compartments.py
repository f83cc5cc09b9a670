"""Cortical and trabecular compartments contoured from the bone itself.

The method is the dual-threshold contouring of Buie et al. 2007 (Bone 41:505), the
automatic segmentation used for HR-pQCT and in Burghardt et al. 2010 (Bone 47:519),
applied to the bone-fraction field with every distance in µm, so the contours do not depend
on the voxel size:

1. **periosteal envelope** — given by the caller (a simulation: the periosteum of the
   starting volume, which the remodeling engine does not move), or detected from the bone:
   the empty space reaching the image border beyond a cortex (bone at least
   ``cortex_min_um`` thick, closed over canals by ``seal_um``). Buie's periosteal step
   (dilate, fill slice by slice, erode) needs the whole cross-section of a bone in the
   field of view; a cube cut from inside a bone has marrow reaching the image border too,
   which only the cortex separates from the outside;
2. **marrow cavity** — Buie's endosteal step: the space inside the envelope that is not bone,
   eroded (only voids wider than ``2·marrow_seed_um`` survive: the marrow, not Haversian
   canals of 20–100 µm, model.md §5), dilated back by the same radius, and extended
   by ``marrow_reach_um`` of path (a geodesic dilation, 6-connected steps of one voxel)
   through the voids wider than a Haversian canal: the voids opened with a ball of
   ``passage_radius_um``, so the marrow passes only where a ball of that radius fits, as
   Buie's endosteal mask is an opening of the low-density space with a structuring element
   of hundreds of µm, not a flood through any gap. A pore therefore joins the marrow where
   the bone between it and the marrow is gone and the pore has grown wider than a canal
   (trabecularisation of the endocortical cortex, Zebaze et al. 2010 Lancet 375:1729); a
   closed intracortical canal, a canal-sized pore breached by a narrower cavity, and a
   pore enlarged but not yet open stay pores of the cortex, whose porosity they raise
   (Zebaze et al. 2010 count the transitional zone as cortex). The reach is bounded as
   Buie's dilation is: Haversian canals run millimetres along the bone, and one breach
   into the marrow does not turn a whole canal into marrow (an unbounded reconstruction
   did, and a canal's wall flickering across the bone threshold during one BMU's
   resorption moved a band of cortex 300 µm × 4 mm in and out of the cortex);
3. **trabecular compartment** — the marrow cavity closed with a ball of radius
   ``trabecular_close_um``: bone thinner than twice that (trabeculae, and cortical
   remnants between coalesced pores) is engulfed, while the cortex, backed by the space
   beyond the periosteum, is not;
4. **cortex** — the rest of the envelope, kept where it touches the periosteal surface. A
   volume whose periosteal surface is not covered for at least ``shell_coverage`` by such a
   cortex has no periosteal shell: it is all trabecular (a core cut inside trabecular bone).

The trabecular metrics are measured in the **trabecular VOI** (:func:`trabecular_voi`): the
trabecular compartment without the band within ``trabecular_close_um`` of the contoured
cortex, as the micro-CT guidelines draw the trabecular VOI away from the endocortical
surface (Bouxsein et al. 2010 J Bone Miner Res 25:1468). Within that distance the contour
cannot tell a trabecula from a cortical bridge: a trabecula thickening beside the
endosteum joins the cortex at one measurement and not at the next, and the band moves
with the endosteum. In a bone that band is a small share of the trabecular compartment; in
a cube of a few mm with a cortex along one face it is not, and it made the trabecular
change depend on the cube (docs/user-guide/invariance.md).

The simulated field has one grey value for all bone, so the two thresholds of Buie et al.
(a low one for the periosteal mask, a higher one separating the denser cortex) become one
bone threshold and the two morphological scales above. Arrays stay on their device (NumPy
with SciPy and ``edt``; CuPy with ``cupyx.scipy.ndimage``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import array_module, ndimage_module
from .volume import BONE_THRESHOLD, Region

__all__ = ["Compartments", "ContourParams", "contoured_regions", "segment_compartments", "trabecular_voi"]


@dataclass(frozen=True)
class ContourParams:
    """Distances (µm) of the contouring; see the module docstring.

    Parameters
    ----------
    marrow_seed_um : float
        A void belongs to the marrow cavity when it holds a point farther than this from any
        bone (the marrow is hundreds of µm wide; Haversian canals have radii of 10–50 µm).
    marrow_reach_um : float
        How far (path length through voids, beyond ``marrow_seed_um``) the marrow extends
        past the eroded cavity into narrower spaces: crevices between trabeculae and the
        endosteum, and pores that opened into the marrow. The length of canal one
        intracortical BMU excavates (twice ``RemodelParams.osteon_half_length_um``, 250 µm;
        an opening is about that long), so a breach opens the canal it belongs to, not
        the millimetres of canal beyond. Chosen between 250 µm (the femoral-neck cortex
        then thins less than its seed spread, p = 0.055 over five seeds) and an unbounded
        reach (the contour flickers).
    passage_radius_um : float
        The marrow's reach passes only through voids that hold a ball of this radius: gaps
        at least twice as wide (100 µm, the widest human Haversian canal, model.md §5;
        Cooper et al. 2006, Bousson et al. 2001). A passage no wider than a canal is a
        canal, or a perforation of a canal's size, whatever it connects; a pore behind it
        stays cortical porosity until it is wider. Reaching through gaps of any width (the
        contour before this parameter) moved the porous inner layer of a lumbar shell into
        the marrow through one-voxel perforations: Ct.Po of the contoured 300 µm shell did
        not rise under untreated loss (−0.1 ± 0.3 points, six seeds) although its canals
        widened (docs/model.md, "The cortex"). On voxels coarser than 50 µm the ball is one
        voxel and every gap passes (a grid that coarse does not resolve a canal's width).
    trabecular_close_um : float
        Radius of the ball that closes the marrow over trabeculae (bone thinner than twice
        this, surrounded by marrow, is trabecular; human Tb.Th 110–220 µm, model.md §5).
        Also the margin between the cortex and the trabecular VOI (:func:`trabecular_voi`).
    seal_um : float
        Closing radius that seals canals and surface pits before the periosteal envelope is
        detected (unlabelled images only).
    cortex_min_um : float
        Thinnest cortex the periosteal step of an unlabelled image recognises (lumbar
        shells are 200–400 µm, model.md §5); the space beyond such a cortex is outside.
    shell_coverage : float
        Share of the periosteal surface a cortex must cover for the volume to have a shell.
    """

    marrow_seed_um: float = 100.0
    marrow_reach_um: float = 500.0
    passage_radius_um: float = 50.0
    trabecular_close_um: float = 150.0
    seal_um: float = 60.0
    cortex_min_um: float = 200.0
    shell_coverage: float = 0.5

    def __post_init__(self) -> None:
        for name in ("marrow_seed_um", "marrow_reach_um", "passage_radius_um", "trabecular_close_um", "seal_um",
                     "cortex_min_um"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number of micrometres, got {v!r}")
        if not 0.0 < self.shell_coverage <= 1.0:
            raise ValueError(f"shell_coverage must lie in (0, 1], got {self.shell_coverage!r}")


@dataclass(frozen=True)
class Compartments:
    """Compartment masks of a bone volume (on the input's device).

    Attributes
    ----------
    cortex : array of bool
        Cortical compartment: cortical bone and intracortical pores.
    trabecular : array of bool
        Trabecular compartment: trabecular bone and marrow.
    marrow : array of bool
        Non-bone space of the trabecular compartment (pores opened into it included).
    outside : array of bool
        Beyond the periosteal envelope.
    voxel_size_um : float
        Voxel edge, µm.
    has_periosteal_shell : bool
        A cortex covers the periosteal surface (False: the volume is all trabecular).
    cortical_bone_share : float
        Share of the bone voxels that lie in the cortex (0 without bone).
    """

    cortex: Any
    trabecular: Any
    marrow: Any
    outside: Any
    voxel_size_um: float
    has_periosteal_shell: bool
    cortical_bone_share: float

    def region_labels(self) -> Any:
        """:class:`~voxelbone.volume.Region` labels (uint8) of the compartments."""
        xp = array_module(self.cortex)
        region = xp.full(self.cortex.shape, int(Region.OUTSIDE), dtype=xp.uint8)
        region[self.trabecular] = int(Region.TRABECULAR)
        region[self.cortex] = int(Region.CORTICAL)
        return region


def _edtsq(mask: Any, xp: Any) -> Any:
    """Squared distance (voxels², exact integers) of each ``mask`` voxel to the nearest non-mask voxel.

    The image border is not background. A mask without background gets a distance larger
    than any in the grid.
    """
    if bool(mask.all()):
        return xp.full(mask.shape, sum(n * n for n in mask.shape) + 1, dtype=xp.int32)
    if xp is np:
        import edt  # noqa: PLC0415

        d = edt.edtsq(np.ascontiguousarray(mask, dtype=np.uint8), black_border=False, parallel=1)
        return np.rint(d).astype(np.int32)
    from cupyx.scipy.ndimage import distance_transform_edt  # noqa: PLC0415

    d = distance_transform_edt(xp.ascontiguousarray(mask, dtype=xp.uint8), float64_distances=True)
    return xp.rint(d * d).astype(xp.int32)


def _dilate(mask: Any, r2: float, xp: Any) -> Any:
    """Points within distance √r2 (voxels) of ``mask``."""
    if not bool(mask.any()):
        return mask.copy()
    return mask | (_edtsq(~mask, xp) <= r2)


def _erode(mask: Any, r2: float, xp: Any) -> Any:
    """Points farther than √r2 (voxels) from every non-``mask`` voxel."""
    return _edtsq(mask, xp) > r2


def _geodesic_dilate(seeds: Any, within: Any, steps: float, ndi: Any, structure: Any) -> Any:
    """``within`` voxels reached from ``seeds`` by at most ``steps`` structure steps inside ``within``."""
    n = int(math.floor(steps))
    if n < 1 or not bool(seeds.any()):
        return seeds & within
    return ndi.binary_dilation(seeds & within, structure=structure, iterations=n, mask=within)


def _close(mask: Any, r2: float, xp: Any) -> Any:
    return mask | _erode(_dilate(mask, r2, xp), r2, xp)


def _face_touching(mask: Any, other: Any, xp: Any) -> Any:
    """``mask`` voxels with a 6-neighbour in ``other``."""
    near = xp.zeros(mask.shape, dtype=bool)
    for axis in range(3):
        n = mask.shape[axis]
        if n < 2:
            continue
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        near[tuple(lo)] |= other[tuple(hi)]
        near[tuple(hi)] |= other[tuple(lo)]
    return mask & near


def _periosteal_envelope(bone: Any, v: float, p: ContourParams, xp: Any) -> Any:
    """Inside the periosteum: all but the empty space beyond a cortex.

    The bone is closed over canals and surface pits (``seal_um``); thick bone is the sealed
    bone opened with a ball of radius ``cortex_min_um / 2``. An empty region (6-connected)
    that reaches the image border and whose bone neighbours are at least 90 % thick bone is
    outside the bone (a cut through the marrow meets trabeculae instead).
    """
    ndi = ndimage_module(xp)
    sealed = _close(bone, (p.seal_um / v) ** 2, xp)
    inside = xp.ones(bone.shape, dtype=bool)
    ro2 = (p.cortex_min_um / 2.0 / v) ** 2
    thick = _dilate(_erode(sealed, ro2, xp), ro2, xp) & sealed
    six = xp.asarray(ndi.generate_binary_structure(3, 1))
    labels, n = ndi.label(~sealed, structure=six)
    if int(n):
        border = xp.zeros(sealed.shape, dtype=bool)
        border[[0, -1], :, :] = True
        border[:, [0, -1], :] = True
        border[:, :, [0, -1]] = True
        n_thick = xp.bincount(labels[_face_touching(~sealed, thick, xp)].ravel(), minlength=int(n) + 1)
        n_thin = xp.bincount(labels[_face_touching(~sealed, sealed & ~thick, xp)].ravel(), minlength=int(n) + 1)
        at_border = xp.zeros(int(n) + 1, dtype=bool)
        at_border[labels[border]] = True
        beyond = at_border & (n_thick > 0) & (n_thin * 9 <= n_thick)
        beyond[0] = False
        inside &= ~beyond[labels]
    return inside


def segment_compartments(
    bone_fraction: Any,
    voxel_size_um: float,
    *,
    envelope: Any | None = None,
    threshold: float = BONE_THRESHOLD,
    params: ContourParams | None = None,
) -> Compartments:
    """Contour the cortical and trabecular compartments of a bone volume.

    Parameters
    ----------
    bone_fraction : array, shape (nz, ny, nx)
        Bone fraction in [0, 1], or a boolean bone mask (NumPy or CuPy).
    voxel_size_um : float
        Voxel edge in µm (> 0).
    envelope : array of bool, optional
        Inside the periosteal envelope (``region != Region.OUTSIDE``); detected from the
        bone when omitted.
    threshold : float
        Bone fraction counted as bone (default 0.5, as every metric).
    params : ContourParams, optional
        Contouring distances in µm.

    Returns
    -------
    Compartments
        Masks on the input's device, whether the volume has a periosteal shell, and the
        share of the bone in the cortex.

    Raises
    ------
    ValueError
        For a non-3-D image, a non-positive voxel size, a threshold outside (0, 1] or an
        envelope of another shape.
    """
    xp = array_module(bone_fraction)
    b = xp.asarray(bone_fraction)
    if b.ndim != 3:
        raise ValueError(f"bone_fraction must be a 3-D array (z, y, x), got shape {tuple(b.shape)}")
    v = float(voxel_size_um)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"voxel_size_um must be a positive number of micrometres, got {voxel_size_um!r}")
    if not 0.0 < float(threshold) <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold!r}")
    p = params or ContourParams()
    ndi = ndimage_module(xp)
    bone = b if b.dtype == bool else b >= xp.float32(threshold)
    if envelope is None:
        inside = _periosteal_envelope(bone, v, p, xp)
    else:
        inside = xp.asarray(envelope).astype(bool)
        if inside.shape != bone.shape:
            raise ValueError(f"envelope {tuple(inside.shape)} and bone_fraction {tuple(bone.shape)} differ in shape")
    bone = bone & inside
    outside = ~inside
    surface = _face_touching(inside, outside, xp)  # the periosteal surface inside the image
    n_surface = int(surface.sum())
    cortex = xp.zeros(bone.shape, dtype=bool)
    if n_surface:
        voids = inside & ~bone
        seeds = _erode(voids, (p.marrow_seed_um / v) ** 2, xp)
        six = xp.asarray(ndi.generate_binary_structure(3, 1))
        opened = _dilate(seeds, (p.marrow_seed_um / v) ** 2, xp) & voids  # Buie: erode, dilate back
        r2 = (p.passage_radius_um / v) ** 2
        passable = _dilate(_erode(voids, r2, xp), r2, xp) & voids  # voids wider than a canal
        marrow = _geodesic_dilate(opened, passable | opened, p.marrow_reach_um / v, ndi, six)
        trabecular = _close(marrow, (p.trabecular_close_um / v) ** 2, xp) & inside
        candidate = inside & ~trabecular
        if bool(candidate.any()):
            labels, _ = ndi.label(candidate, structure=six)
            ids = xp.unique(labels[candidate & surface])
            cortex = xp.isin(labels, ids[ids > 0])
            del labels
    has_shell = n_surface > 0 and int((cortex & surface).sum()) >= p.shell_coverage * n_surface
    if not has_shell:
        cortex = xp.zeros(bone.shape, dtype=bool)
    trabecular = inside & ~cortex
    n_bone = int(bone.sum())
    share = int((bone & cortex).sum()) / n_bone if n_bone else 0.0
    return Compartments(cortex=cortex, trabecular=trabecular, marrow=trabecular & ~bone, outside=outside,
                        voxel_size_um=v, has_periosteal_shell=bool(has_shell), cortical_bone_share=float(share))


def contoured_regions(bone_fraction: Any, region: Any, voxel_size_um: float, *,
                      params: ContourParams | None = None) -> Any:
    """Region labels contoured from the bone inside the periosteal envelope of ``region``.

    The measure of every compartment metric (trabecular and cortical): the labels of the
    remodelling engine fix only the periosteal envelope (``region != Region.OUTSIDE``, which
    the engine does not move); the endosteal envelope is contoured from the bone at the time
    of the measurement (:func:`segment_compartments`), as HR-pQCT and micro-CT contour each
    scan. Bone built on the endocortical surface therefore counts as cortex and trabecularised
    cortex as trabecular, whatever the starting labels said.

    Parameters
    ----------
    bone_fraction : array, shape (nz, ny, nx)
        Bone fraction in [0, 1], or a boolean bone mask (NumPy or CuPy).
    region : array of uint8
        :class:`~voxelbone.volume.Region` labels of the same shape.
    voxel_size_um : float
        Voxel edge, µm.
    params : ContourParams, optional
        Contouring distances in µm.

    Returns
    -------
    array of uint8
        Region labels on the input's device.
    """
    xp = array_module(bone_fraction, region)
    envelope = xp.asarray(region) != int(Region.OUTSIDE)
    return segment_compartments(bone_fraction, voxel_size_um, envelope=envelope, params=params).region_labels()


def trabecular_voi(region: Any, voxel_size_um: float, *, params: ContourParams | None = None) -> Any:
    """The trabecular volume of interest of contoured labels: the trabecular compartment
    farther than ``params.trabecular_close_um`` from the cortex.

    Every trabecular metric is measured in it (the module docstring says why). A volume
    without a cortex is all VOI. Distances run between voxel centres.

    Parameters
    ----------
    region : array of uint8
        Contoured :class:`~voxelbone.volume.Region` labels (:func:`contoured_regions`).
    voxel_size_um : float
        Voxel edge, µm (> 0).
    params : ContourParams, optional
        Contouring distances in µm.

    Returns
    -------
    array of bool
        The VOI, on the input's device.

    Examples
    --------
    >>> labels = np.full((1, 1, 12), int(Region.TRABECULAR), dtype=np.uint8)
    >>> labels[..., :2] = int(Region.CORTICAL)
    >>> trabecular_voi(labels, 50.0).astype(int)  # 150 µm is 3 voxels: 4 and more from the cortex
    array([[[0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]]])
    """
    v = float(voxel_size_um)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"voxel_size_um must be a positive number of micrometres, got {voxel_size_um!r}")
    xp = array_module(region)
    r = xp.asarray(region)
    trabecular = r == int(Region.TRABECULAR)
    cortex = r == int(Region.CORTICAL)
    if not bool(cortex.any()):
        return trabecular
    margin2 = ((params or ContourParams()).trabecular_close_um / v) ** 2
    return trabecular & (_edtsq(~cortex, xp) > margin2)
