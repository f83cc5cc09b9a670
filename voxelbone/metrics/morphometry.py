"""The standard morphometry of a bone volume, in one result object.

Trabecular metrics are measured in the trabecular VOI, cortical ones in the cortical
compartment, both contoured from the bone at each call inside the labels' periosteal
envelope (:func:`voxelbone.compartments.contoured_regions`, the dual-threshold method of
Buie et al. 2007, as HR-pQCT contours each scan); the VOI is the trabecular compartment
without its band within 150 µm of the cortex (:func:`voxelbone.compartments.trabecular_voi`,
as the guidelines draw it away from the endocortical surface); the BMD proxy over both
compartments. Definitions follow
BoneJ, ITK BoneMorphometry and the micro-CT guidelines (Bouxsein et al. 2010 J Bone Miner
Res 25:1468):

======================  =====================================================================
BV/TV                   bone voxels (bone fraction ≥ 0.5) / VOI voxels
Tb.Th, Tb.Sp            mean local thickness (Hildebrand & Rüegsegger 1997) of bone / marrow, µm
Tb.N                    1 / (Tb.Th + Tb.Sp), mm⁻¹ (by definition; BoneJ has no Tb.N)
Tb.Th (plate)           2·BV/BS, µm (what ITK BoneMorphometry calls Tb.Th; ~half the local value)
BS/BV, BS/TV            marching-cubes surface / bone volume (or VOI volume), mm⁻¹
Conn.D                  (1 − Δχ)/TV on the largest box inside the VOI, Odgaard-Gundersen corrected
SMI                     structure model index on the marching-cubes mesh (option; 0 plate, 3 rod, 4 sphere)
DA                      MIL fabric: BoneJ 1 − λmin/λmax (``da``) and Scanco r_max/r_min (``da_ratio``)
Ct.Th, Ct.Po, Ct.vBMD   see :mod:`.cortical`
BMD (cube mean)         mean of bone fraction × tissue mineral density over the cube's bone region
                        (trabecular compartment + cortex), mg HA/cm³: it depends on the cube's cortex share
Tb.vBMD                 the same mean within the trabecular VOI (QCT, HR-pQCT)
TMD                     mean tissue mineral density of the bone, mg HA/cm³
======================  =====================================================================

The site's DXA-equivalent areal BMD change, ``abmd_pct``, needs the day-0 volume: see
:class:`ArealBmdReference`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any
import numpy as np

from ..backend import asnumpy
from ..sites import DxaWeights
from ..volume import BONE_THRESHOLD, TMD_MAX_MG_CM3, BoneVolume, Region
from .anisotropy import mean_intercept_length
from .connectivity import connectivity_density, euler_characteristic, inscribed_box
from .cortical import cortical_metrics
from .surface import bone_surface_mm2, mesh_smi, surface_mesh
from .thickness import local_thickness

__all__ = ["ASBMR", "ArealBmdReference", "Morphometry", "compartment_vbmd_mg_cm3", "morphometry", "vbmd_mg_cm3"]

#: ASBMR names (Bouxsein et al. 2010) of the fields, with units, for tables and plots.
ASBMR: dict[str, tuple[str, str]] = {
    "bv_tv": ("BV/TV", ""),
    "tb_th_um": ("Tb.Th", "µm"),
    "tb_th_sd_um": ("Tb.Th.SD", "µm"),
    "tb_th_max_um": ("Tb.Th.Max", "µm"),
    "tb_sp_um": ("Tb.Sp", "µm"),
    "tb_sp_sd_um": ("Tb.Sp.SD", "µm"),
    "tb_sp_max_um": ("Tb.Sp.Max", "µm"),
    "tb_n_per_mm": ("Tb.N", "1/mm"),
    "tb_th_plate_um": ("Tb.Th (2·BV/BS)", "µm"),
    "bs_bv_per_mm": ("BS/BV", "1/mm"),
    "bs_tv_per_mm": ("BS/TV", "1/mm"),
    "euler": ("χ", ""),
    "conn_d_per_mm3": ("Conn.D", "1/mm³"),
    "smi": ("SMI", ""),
    "da": ("DA (BoneJ)", ""),
    "da_ratio": ("DA (MIL ratio)", ""),
    "ct_th_um": ("Ct.Th", "µm"),
    "ct_po": ("Ct.Po", ""),
    "ct_po_dm_um": ("Ct.Po.Dm", "µm"),
    "ct_canal_n_per_mm2": ("Ct.Canal.N", "1/mm²"),
    "bmd_mg_cm3": ("BMD (cube mean)", "mg HA/cm³"),
    "tb_vbmd_mg_cm3": ("Tb.vBMD", "mg HA/cm³"),
    "ct_vbmd_mg_cm3": ("Ct.vBMD", "mg HA/cm³"),
    "abmd_pct": ("aBMD change (DXA-equivalent)", "%"),
    "tmd_mg_cm3": ("TMD", "mg HA/cm³"),
    "voxel_size_um": ("voxel size", "µm"),
}


@dataclass(frozen=True)
class Morphometry:
    """Morphometry of one volume; NaN where a quantity is undefined (e.g. no cortex)."""

    voxel_size_um: float
    bv_tv: float
    tb_th_um: float
    tb_th_sd_um: float
    tb_th_max_um: float
    tb_sp_um: float
    tb_sp_sd_um: float
    tb_sp_max_um: float
    tb_n_per_mm: float
    tb_th_plate_um: float
    bs_bv_per_mm: float
    bs_tv_per_mm: float
    euler: float
    conn_d_per_mm3: float
    smi: float
    da: float
    da_ratio: float
    ct_th_um: float
    ct_po: float
    ct_po_dm_um: float
    ct_canal_n_per_mm2: float
    ct_vbmd_mg_cm3: float
    bmd_mg_cm3: float
    tb_vbmd_mg_cm3: float
    tmd_mg_cm3: float

    def as_row(self) -> dict[str, float]:
        """Field → value (the CSV columns)."""
        return asdict(self)

    def table(self) -> str:
        """Aligned text with ASBMR names and units."""
        lines = []
        for f in fields(self):
            name, unit = ASBMR.get(f.name, (f.name, ""))
            v = getattr(self, f.name)
            lines.append(f"{name:<18} {v:>12.4g} {unit}")
        return "\n".join(lines)


def _stats(lt: Any, sel: Any) -> tuple[float, float, float]:
    """Mean, SD and maximum of a map over a selection (on the map's device; three scalars back)."""
    vals = lt[sel].astype(np.float64)
    if vals.size == 0:
        return 0.0, 0.0, 0.0
    return float(vals.mean()), float(vals.std()), float(vals.max())


def bmd_proxy_mg_cm3(mineral: Any, region: Any) -> float:
    """The cube's mean BMD (mg HA/cm³): mineral averaged over its bone region (trabecular compartment + cortex).

    A property of the sample (it moves with the cube's cortex share); compare therapies on
    :func:`compartment_vbmd_mg_cm3` and ``abmd_pct`` (:class:`ArealBmdReference`).

    Cheap (one sum, on the arrays' device), so it can be sampled every step; NaN for a
    volume without tissue.
    """
    tissue = region != Region.OUTSIDE
    n = int(tissue.sum())
    return TMD_MAX_MG_CM3 * float(mineral[tissue].sum(dtype=np.float64)) / n if n else float("nan")


def compartment_vbmd_mg_cm3(mineral: Any, region: Any, compartment: Region) -> float:
    """Volumetric BMD (mg HA/cm³) within one compartment: bone fraction × tissue mineral, averaged.

    The trabecular value is QCT's and HR-pQCT's Tb.vBMD, the cortical one their Ct.vBMD
    (pores included). Cheap (one masked sum); NaN for an empty compartment.
    """
    return vbmd_mg_cm3(mineral, region == int(compartment))


def vbmd_mg_cm3(mineral: Any, within: Any) -> float:
    """Volumetric BMD (mg HA/cm³) within a mask (a VOI): bone fraction × tissue mineral, averaged.

    NaN for an empty mask.
    """
    n = int(within.sum())
    return TMD_MAX_MG_CM3 * float(mineral[within].sum(dtype=np.float64)) / n if n else float("nan")


@dataclass(frozen=True)
class ArealBmdReference:
    """The day-0 compartments of a run, against which the DXA-equivalent change is measured.

    ``abmd_pct(t) = 100 · Σ_c w_c · (M_c(t)/M_c(0) − 1)``, where ``M_c`` is the mineral within
    compartment ``c`` *as it was on day 0* (the masks are fixed, so bone that changes
    compartment — trabecularised cortex — moves no mineral between the terms) and ``w_c`` the
    site's share of that compartment in the DXA region (:class:`voxelbone.sites.DxaWeights`).
    The cube's own cortex share does not enter. A sample without one of the compartments
    reports the other's change (weights renormalised over the compartments it holds).

    Build it with :meth:`of` from the day-0 volume (after spin-up: a run's first metrics
    row); a resumed run rebuilds it from the day-0 snapshot, so it gives the same numbers.
    """

    trabecular: Any
    cortical: Any
    trabecular_mineral: float
    cortical_mineral: float
    weights: DxaWeights

    @classmethod
    def of(cls, volume: BoneVolume, weights: DxaWeights) -> "ArealBmdReference":
        """The reference of ``volume`` (day 0) with the site's DXA ``weights``."""
        if not isinstance(volume, BoneVolume):
            raise TypeError(f"ArealBmdReference.of needs a BoneVolume, got {type(volume).__name__}")
        trab = volume.region == int(Region.TRABECULAR)
        cort = volume.region == int(Region.CORTICAL)
        m = volume.mineral
        return cls(trab, cort, float(m[trab].sum(dtype=np.float64)), float(m[cort].sum(dtype=np.float64)), weights)

    def abmd_pct(self, volume: BoneVolume) -> float:
        """DXA-equivalent areal BMD of ``volume`` relative to day 0, %."""
        if tuple(volume.shape) != tuple(self.trabecular.shape):
            raise ValueError(f"volume {tuple(volume.shape)} is not the shape of the day-0 reference "
                             f"{tuple(self.trabecular.shape)}")
        m = volume.mineral
        terms = []
        for mask, m0, w in ((self.trabecular, self.trabecular_mineral, self.weights.trabecular),
                            (self.cortical, self.cortical_mineral, self.weights.cortical)):
            if m0 > 0:
                terms.append((w, float(m[mask].sum(dtype=np.float64)) / m0 - 1.0))
        w_sum = sum(w for w, _ in terms)
        if not terms or w_sum <= 0:
            return float("nan")
        return 100.0 * sum(w * d for w, d in terms) / w_sum


def morphometry(
    volume: BoneVolume,
    *,
    tb_sp: bool = True,
    surface: bool = True,
    connectivity: bool = True,
    anisotropy: bool = False,
    smi: bool = False,
    cortical: bool = True,
    contour: bool = True,
) -> Morphometry:
    """Measure a bone volume.

    A CuPy volume stays on the device for BV/TV, local thickness (Tb.Th, Tb.Sp, Ct.Th:
    CUDA kernels), Euler characteristic (CUDA kernel), cortical porosity and canals
    (``cupyx.scipy.ndimage``), the marching-cubes surface (BS: CUDA kernel), the inscribed
    box and the mineral sums; only scalars come back. SMI and MIL anisotropy (options) run on
    the host, on a copy of the trabecular bone field and of the Conn.D box.

    Parameters
    ----------
    volume : BoneVolume
        NumPy or CuPy volume.
    tb_sp, surface, connectivity, anisotropy, smi, cortical : bool
        Which (costlier) parts to compute; skipped ones are NaN.
    contour : bool
        Contour both compartments from the bone inside the labels' periosteal envelope
        (default; :func:`voxelbone.compartments.contoured_regions`), so the trabecular
        metrics and Tb.vBMD, and Ct.Th, Ct.Po and Ct.vBMD, follow the bone: bone built on the
        endocortical surface is cortex, trabecularised cortex is trabecular. The trabecular
        metrics take the trabecular VOI, the compartment without its band beside the cortex
        (:func:`voxelbone.compartments.trabecular_voi`). False measures the compartments as
        labelled, the whole trabecular compartment.

    Returns
    -------
    Morphometry
    """
    if not isinstance(volume, BoneVolume):
        raise TypeError(f"morphometry needs a BoneVolume, got {type(volume).__name__}")
    nan = float("nan")
    v = float(volume.voxel_size_um)
    bone, mineral, region = volume.bone, volume.mineral, volume.region
    mask = bone >= BONE_THRESHOLD
    if contour:
        from ..compartments import contoured_regions, trabecular_voi  # noqa: PLC0415

        region = contoured_regions(mask, region, v)
        trab = trabecular_voi(region, v)
    else:
        trab = region == Region.TRABECULAR
    tissue = region != Region.OUTSIDE
    vox_mm3 = (v / 1000.0) ** 3

    n_trab = int(trab.sum())
    if n_trab == 0:
        warnings.warn("the volume has no trabecular compartment; trabecular metrics are NaN", RuntimeWarning, stacklevel=2)
    bone_t = mask & trab
    marrow_t = ~mask & trab
    n_bone = int(bone_t.sum())
    bv_tv = n_bone / n_trab if n_trab else nan
    if n_trab and bool(bone_t.any()):
        tb_th, tb_th_sd, tb_th_max = _stats(local_thickness(bone_t, v), bone_t)
    else:
        tb_th = tb_th_sd = tb_th_max = 0.0 if n_trab else nan
    if tb_sp and n_trab and bool(marrow_t.any()):
        tb_sp_m, tb_sp_sd, tb_sp_max = _stats(local_thickness(marrow_t, v), marrow_t)
    else:
        tb_sp_m = tb_sp_sd = tb_sp_max = nan
    tb_n = 1000.0 / (tb_th + tb_sp_m) if tb_sp and (tb_th + tb_sp_m) > 0 else nan
    if tb_sp and n_trab and n_bone == 0:
        tb_n = 0.0  # no trabeculae: none per mm (1/(Tb.Th + Tb.Sp) would be the marrow's 1/Tb.Sp)

    trab_bone = bone * trab if (surface or smi) and n_trab else None
    bs_mm2 = bone_surface_mm2(trab_bone, v, within=trab) if surface and n_trab else nan
    bv_mm3 = n_bone * vox_mm3
    bs_bv = bs_mm2 / bv_mm3 if surface and bv_mm3 > 0 else nan
    bs_tv = bs_mm2 / (n_trab * vox_mm3) if surface and n_trab else nan
    smi_value = mesh_smi(surface_mesh(trab_bone, 0.5, None)) if smi and n_trab else nan
    tb_th_plate = 2000.0 / bs_bv if surface and bs_bv and bs_bv > 0 and math.isfinite(bs_bv) else nan

    euler = conn_d = da = da_ratio = nan
    if (connectivity or anisotropy) and n_trab:
        box = inscribed_box(trab)
        sub = mask[box]
        if min(sub.shape) >= 4:
            if connectivity:
                euler = float(euler_characteristic(sub))
                conn_d = connectivity_density(sub, v)
            if anisotropy and bool(sub.any()) and not bool(sub.all()):
                try:
                    a = mean_intercept_length(asnumpy(sub))
                    da, da_ratio = a.da_bonej, a.da_ratio
                except ValueError:
                    pass

    if cortical:
        c = cortical_metrics(mask, region, v, mineral=mineral, resegment=False)  # region is contoured above (contour=True)
        ct = (c.ct_th_um, c.ct_po, c.ct_po_dm_um, c.ct_canal_n_per_mm2, c.ct_vbmd_mg_cm3)
    else:
        ct = (nan, nan, nan, nan, nan)

    bmd = bmd_proxy_mg_cm3(mineral, region)
    tb_vbmd = vbmd_mg_cm3(mineral, trab)
    b_sum = float(bone[tissue].sum(dtype=np.float64))
    tmd = TMD_MAX_MG_CM3 * float(mineral[tissue].sum(dtype=np.float64)) / b_sum if b_sum > 0 else nan
    return Morphometry(
        voxel_size_um=v, bv_tv=bv_tv, tb_th_um=tb_th, tb_th_sd_um=tb_th_sd, tb_th_max_um=tb_th_max,
        tb_sp_um=tb_sp_m, tb_sp_sd_um=tb_sp_sd, tb_sp_max_um=tb_sp_max, tb_n_per_mm=tb_n,
        tb_th_plate_um=tb_th_plate, bs_bv_per_mm=bs_bv, bs_tv_per_mm=bs_tv, euler=euler, conn_d_per_mm3=conn_d,
        smi=smi_value, da=da, da_ratio=da_ratio, ct_th_um=ct[0], ct_po=ct[1], ct_po_dm_um=ct[2], ct_canal_n_per_mm2=ct[3],
        bmd_mg_cm3=bmd, tb_vbmd_mg_cm3=tb_vbmd, ct_vbmd_mg_cm3=ct[4], tmd_mg_cm3=tmd,
    )
