"""Cortical morphometry: thickness, porosity, canals; compartments of unlabelled images.

Definitions (model.md §4; Bouxsein et al. 2010; Burghardt et al. 2010):

* the cortical compartment lies between the periosteal and endosteal envelopes and holds
  cortical bone and intracortical pores;
* Ct.Th = mean local thickness of the compartment with its pores filled (µm);
* Ct.Po = pore volume / compartment volume;
* Ct.Po.Dm = mean local thickness (diameter) of the pores (µm);
* canal density = 2-D pore profiles per mm² of cortex, averaged over the z-slices (canals
  run along z, the bone's long axis).

With ``resegment=True`` the endosteal envelope is recomputed from the bone: pores wider
than ``trabecularisation_um`` that open into the marrow leave the cortex (Zebaze et al.
2010: trabecularisation of the endocortical region thins the cortex).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..backend import array_module, asnumpy, ndimage_module
from ..volume import BONE_THRESHOLD, Region
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


def _ball(r: int) -> np.ndarray:
    z, y, x = np.ogrid[-r:r + 1, -r:r + 1, -r:r + 1]
    return (z * z + y * y + x * x) <= r * r


def _trabecularised(cortex: np.ndarray, pores: np.ndarray, marrow: np.ndarray, voxel_size_um: float,
                    trabecularisation_um: float) -> np.ndarray:
    """Pores of the cortex wider than the threshold that connect to the trabecular marrow."""
    xp = array_module(pores)
    space = pores | marrow
    lt = local_thickness(space, voxel_size_um)
    wide = pores & (lt >= trabecularisation_um)
    labels, n = ndimage_module(xp).label(wide | marrow)
    if int(n) == 0:
        return xp.zeros_like(pores)
    touching = xp.unique(labels[marrow])
    return wide & xp.isin(labels, touching[touching > 0])


def cortical_metrics(
    bone: Any,
    region: Any,
    voxel_size_um: float,
    *,
    resegment: bool = False,
    trabecularisation_um: float = 300.0,
) -> CorticalMetrics:
    """Ct.Th, Ct.Po, pore diameter and canal density of a labelled volume.

    Parameters
    ----------
    bone : array
        Bone fraction (or binary mask).
    region : array of uint8
        :class:`Region` labels; the CORTICAL compartment is measured.
    voxel_size_um : float
        Voxel edge, µm.
    resegment : bool
        Move wide pores connected to the marrow out of the cortex first.
    trabecularisation_um : float
        Width above which a pore opening into the marrow is marrow.

    NumPy and CuPy arrays alike: on the device only scalars come back.
    """
    xp = array_module(bone, region)
    b = xp.asarray(bone)
    mask = b >= BONE_THRESHOLD if b.dtype != bool else b
    reg = xp.asarray(region)
    cortex = reg == Region.CORTICAL
    nan = float("nan")
    if not bool(cortex.any()):
        return CorticalMetrics(nan, nan, nan, nan, 0.0)
    pores = cortex & ~mask
    if resegment and bool(pores.any()):
        marrow = (reg == Region.TRABECULAR) & ~mask
        moved = _trabecularised(cortex, pores, marrow, voxel_size_um, trabecularisation_um)
        cortex = cortex & ~moved
        pores = pores & ~moved
    v = voxel_size_um
    n_cortex = int(cortex.sum())
    ct_th = float(local_thickness(cortex, v)[cortex].mean(dtype=np.float64))
    ct_po = int(pores.sum()) / n_cortex
    ct_po_dm = float(local_thickness(pores, v)[pores].mean(dtype=np.float64)) if bool(pores.any()) else 0.0
    # canal profiles per mm² of cortex, slice by slice (8-connected 2-D components): one 3-D
    # labelling whose structuring element does not connect neighbouring slices
    s3 = np.zeros((3, 3, 3), bool)
    s3[1] = True
    _, counts = ndimage_module(xp).label(pores, structure=s3)
    areas = n_cortex * (v / 1000.0) ** 2
    return CorticalMetrics(ct_th, ct_po, ct_po_dm, int(counts) / areas if areas else nan,
                           n_cortex * (v / 1000.0) ** 3)


def segment_compartments(
    bone_mask: Any,
    voxel_size_um: float,
    *,
    canal_radius_um: float = 60.0,
    cortex_min_thickness_um: float = 180.0,
) -> np.ndarray:
    """Region labels (outside / trabecular / cortical) of an unlabelled bone image.

    1. Periosteal envelope: the bone, closed over canals, with every enclosed space filled
       (slice by slice along z).
    2. Cortex: the pore-filled bone opened with a ball of diameter
       ``cortex_min_thickness_um`` (trabeculae, thinner, vanish; the shell stays), restricted
       to the parts that touch the periosteal surface — a simplified dual-threshold
       approach (Buie et al. 2007 Bone 41:505).
    3. Trabecular compartment: inside the envelope, not cortex.

    A volume cut entirely from trabecular bone (no shell) comes out all trabecular.
    """
    m = asnumpy(bone_mask).astype(bool)
    if m.ndim != 3:
        raise ValueError(f"bone_mask must be 3-D, got shape {m.shape}")
    v = float(voxel_size_um)
    rc = max(1, int(round(canal_radius_um / v)))
    closed = ndi.binary_closing(np.pad(m, rc), structure=_ball(rc))[rc:-rc, rc:-rc, rc:-rc]
    envelope = np.stack([ndi.binary_fill_holes(s) for s in closed])
    region = np.full(m.shape, Region.OUTSIDE, np.uint8)
    region[envelope] = Region.TRABECULAR
    if envelope.all():
        return region
    ro = max(1, int(round(cortex_min_thickness_um / 2 / v)))
    filled = closed & envelope
    opened = ndi.binary_opening(filled, structure=_ball(ro))
    outer = envelope & ~ndi.binary_erosion(envelope, structure=np.ones((3, 3, 3), bool), border_value=1)
    labels, n = ndi.label(opened)
    keep = np.unique(labels[outer & opened])
    cortex = np.isin(labels, keep[keep > 0]) & envelope
    region[cortex] = Region.CORTICAL
    return region
