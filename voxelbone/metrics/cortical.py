"""Cortical morphometry: thickness, porosity, canals, cortical vBMD; compartments of unlabelled images.

Definitions (model.md §4; Bouxsein et al. 2010; Burghardt et al. 2010):

* the cortical compartment lies between the periosteal and endosteal envelopes and holds
  cortical bone and intracortical pores;
* Ct.Th = mean local thickness of the compartment with its pores filled (µm);
* Ct.Po = pore volume / compartment volume;
* Ct.Po.Dm = mean local thickness (diameter) of the pores (µm);
* canal density = 2-D pore profiles per mm² of cortex, averaged over the z-slices (canals
  run along z, the bone's long axis);
* Ct.vBMD = mean over the compartment of bone fraction × tissue mineral density (mg HA/cm³).

By default the compartments are contoured from the bone at every evaluation
(:func:`voxelbone.compartments.segment_compartments`, the dual-threshold method of Buie et
al. 2007) inside the periosteal envelope of the labels, so the endosteal envelope follows
the bone: pores that open into the marrow through gaps wider than a Haversian canal leave
the cortex and Ct.Th falls as the endocortical cortex trabecularises (Zebaze et al. 2010
Lancet 375:1729), while canals that widen but stay walled off raise Ct.Po.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import array_module, asnumpy, ndimage_module
from ..volume import BONE_THRESHOLD, TMD_MAX_MG_CM3, Region
from .thickness import local_thickness

__all__ = ["CorticalMetrics", "cortical_metrics", "segment_compartments"]


@dataclass(frozen=True)
class CorticalMetrics:
    """Cortical morphometry (NaN when the volume has no cortex)."""

    ct_th_um: float
    ct_po: float
    ct_po_dm_um: float
    ct_canal_n_per_mm2: float
    ct_volume_mm3: float
    ct_vbmd_mg_cm3: float = float("nan")


def cortical_metrics(
    bone: Any,
    region: Any,
    voxel_size_um: float,
    *,
    mineral: Any | None = None,
    resegment: bool = True,
) -> CorticalMetrics:
    """Ct.Th, Ct.Po, pore diameter, canal density and Ct.vBMD of a volume.

    Parameters
    ----------
    bone : array
        Bone fraction (or binary mask).
    region : array of uint8
        :class:`Region` labels: their periosteal envelope (not OUTSIDE) bounds the
        contouring; with ``resegment=False`` their CORTICAL compartment is measured as is.
    voxel_size_um : float
        Voxel edge, µm.
    mineral : array, optional
        Mineral content (fraction of fully mineralised bone) for Ct.vBMD; NaN without it.
    resegment : bool
        Contour the cortex from the bone (default) instead of using the labels' cortex.

    NumPy and CuPy arrays alike: on the device only scalars come back.
    """
    from ..compartments import contoured_regions  # noqa: PLC0415

    xp = array_module(bone, region)
    b = xp.asarray(bone)
    mask = b >= BONE_THRESHOLD if b.dtype != bool else b
    reg = xp.asarray(region)
    cortex = (contoured_regions(mask, reg, voxel_size_um) if resegment else reg) == Region.CORTICAL
    nan = float("nan")
    if not bool(cortex.any()):
        return CorticalMetrics(nan, nan, nan, nan, 0.0, nan)
    pores = cortex & ~mask
    v = voxel_size_um
    n_cortex = int(cortex.sum())
    ct_th = float(local_thickness(cortex, v)[cortex].mean(dtype=np.float64))
    ct_po = int(pores.sum()) / n_cortex
    ct_po_dm = float(local_thickness(pores, v)[pores].mean(dtype=np.float64)) if bool(pores.any()) else 0.0
    # canal profiles per mm² of cortex, slice by slice (8-connected 2-D components): one 3-D
    # labelling whose structuring element does not connect neighbouring slices
    s3 = np.zeros((3, 3, 3), bool)
    s3[1] = True
    _, counts = ndimage_module(xp).label(pores, structure=xp.asarray(s3))
    areas = n_cortex * (v / 1000.0) ** 2
    vbmd = (TMD_MAX_MG_CM3 * float(xp.asarray(mineral)[cortex].sum(dtype=np.float64)) / n_cortex
            if mineral is not None else nan)
    return CorticalMetrics(ct_th, ct_po, ct_po_dm, int(counts) / areas if areas else nan,
                           n_cortex * (v / 1000.0) ** 3, vbmd)


def segment_compartments(
    bone_mask: Any,
    voxel_size_um: float,
    *,
    canal_radius_um: float = 60.0,
    cortex_min_thickness_um: float = 200.0,
) -> np.ndarray:
    """Region labels (outside / trabecular / cortical) of an unlabelled bone image (NumPy).

    The labels of :func:`voxelbone.compartments.segment_compartments` (dual-threshold
    contouring of Buie et al. 2007) with canals up to ``canal_radius_um`` sealed and the
    thinnest recognised cortex ``cortex_min_thickness_um``. A volume cut entirely from
    trabecular bone (no shell) comes out all trabecular.
    """
    from ..compartments import ContourParams  # noqa: PLC0415
    from ..compartments import segment_compartments as contour  # noqa: PLC0415

    m = np.asarray(asnumpy(bone_mask))
    if m.ndim != 3:
        raise ValueError(f"bone_mask must be 3-D, got shape {m.shape}")
    params = ContourParams(seal_um=float(canal_radius_um), cortex_min_um=float(cortex_min_thickness_um))
    return contour(m.astype(bool) if m.dtype != bool else m, voxel_size_um, params=params).region_labels()
