"""Starting state consistent with the turnover the bone had before a scenario.

Bone that has been remodelled at a steady rate is a mosaic of packets of different ages;
each packet's mineral content follows the mineralisation law, so the tissue mineral
density distribution reflects the turnover (Ruffoni et al. 2007 Bone 40:1308: the bone
mineralisation density distribution as a fingerprint of the mineralisation process). With
a fraction ``f`` of the bone renewed per year at random, packet ages are exponentially
distributed with mean ``1/f``.

:func:`equilibrate_mineral` draws packet ages (spatially correlated over BMU-sized
patches, seeded) and sets each voxel's mineral to the degree of its packet's age, so a
run does not start with a spurious mineral drift. The remodeling space is opened by the
spin-up of :func:`voxelbone.simulate.simulate` (balanced BMUs at the same rates).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.special import ndtr

from ..units import DAYS_PER_YEAR
from ..volume import BONE_THRESHOLD, BoneVolume, Region
from .cpu import claim_codes, make_cavity, surface_flags
from .params import RemodelParams
from .state import CLAIM_FRAC_STEPS, Rates, RemodelState, claim_share_steps, step_scalars

__all__ = ["bone_turnover_per_yr", "equilibrate_mineral"]

PACKET_UM = 150.0
CAVITY_SAMPLE = 400  # cortical surface voxels whose cavities are measured (turnover within a few %)


def _cortical_excavation_per_yr(volume: BoneVolume, rates: Rates, params: RemodelParams, seed: int) -> float:
    """Bone volume (voxels) the cortical BMUs excavate per year at ``rates``.

    The cavities are those of the engine (:func:`voxelbone.remodel.cpu.make_cavity` and
    :func:`~voxelbone.remodel.cpu.claim_codes`) seeded on a sample of the cortical surface
    voxels, each weighted by its activation rate (pore walls: the cortical Ac.f over the
    pore-wall footprint; endocortical voxels facing the marrow: the trabecular Ac.f over the
    hemi-osteonal footprint), so the estimate holds whatever the shape of the canals (a
    pore-wall cavity around a narrow canal takes more than ⅔·E.De per area of wall).
    """
    v = float(volume.voxel_size_um)
    bone = np.asarray(volume.bone, dtype=np.float32)
    region = np.asarray(volume.region)
    any_m, any_tm = surface_flags(bone, region)
    cand = np.flatnonzero(((region == Region.CORTICAL) & (bone >= 0.5) & any_m).ravel())
    if cand.size == 0:
        return 0.0
    k = params.surface_voxels_per_area
    per_voxel_osteonal = float(rates.activation_cortical_per_yr) * v * v / (params.wall_kappa * np.pi * params.lateral_radius_um
                                                                             * params.osteon_half_length_um)
    per_voxel_hemi = float(rates.activation_trabecular_per_yr) * v * v / (k * np.pi * params.lateral_radius_um**2)
    rng = np.random.default_rng([int(seed), 7708])
    sample = np.sort(rng.choice(cand, size=min(CAVITY_SAMPLE, cand.size), replace=False))
    state = RemodelState.new(bone, np.asarray(volume.mineral, dtype=np.float32), region)
    sc = step_scalars(rates, params, v, 1)
    flat = bone.ravel()
    total = 0.0
    for si in sample.tolist():
        c = make_cavity(state, si, int(seed), 0, sc)
        idx, code = claim_codes(state, si, c)
        frac = claim_share_steps(code).astype(np.float64) / CLAIM_FRAC_STEPS
        dug = float((flat[idx] * frac).sum())
        total += dug * (per_voxel_osteonal if c.osteonal else per_voxel_hemi)
    return total * cand.size / sample.size


def bone_turnover_per_yr(volume: BoneVolume, rates: Rates, params: RemodelParams, seed: int = 0) -> tuple[float, float]:
    """Fraction of trabecular and of cortical bone renewed per year at ``rates``.

    Trabecular: Ac.f × BS/BV × mean cavity depth (⅔ of the erosion depth); BS from the
    surface-voxel count (κ voxels per voxel-face area). Cortical: the volume the engine's
    cavities excavate on the cortical surfaces per year (measured on a seeded sample of
    them, see ``_cortical_excavation_per_yr``) over the cortical bone volume.
    """
    v = float(volume.voxel_size_um)
    bone, region = np.asarray(volume.bone), np.asarray(volume.region)
    solid = bone >= BONE_THRESHOLD
    any_m, _ = surface_flags(bone, region)
    surf = solid & any_m
    trab, cort = region == Region.TRABECULAR, region == Region.CORTICAL
    k = params.surface_voxels_per_area
    out = []
    n_bt = int((solid & trab).sum())
    s_t = float((surf & trab).sum()) * v * v / k
    out.append(rates.activation_trabecular_per_yr * s_t * (2.0 / 3.0) * rates.erosion_depth_um / (n_bt * v**3) if n_bt else 0.0)
    n_bc = int((solid & cort).sum())
    out.append(_cortical_excavation_per_yr(volume, rates, params, seed) / n_bc if n_bc else 0.0)
    return out[0], out[1]


def equilibrate_mineral(volume: BoneVolume, rates: Rates, params: RemodelParams, seed: int) -> BoneVolume:
    """The volume with mineral set to the tissue-age mosaic of steady remodeling at ``rates``.

    Parameters
    ----------
    volume : BoneVolume
        NumPy volume (before it goes to the device).
    rates : RemodelingRates
        The turnover before the scenario.
    params : RemodelParams
        Mineralisation law and BMU geometry.
    seed : int
        Seed of the packet pattern.

    Returns
    -------
    BoneVolume
        A new volume; bone and regions unchanged.
    """
    f_trab, f_cort = bone_turnover_per_yr(volume, rates, params, seed)
    rng = np.random.default_rng([int(seed), 7707])
    sigma = max(PACKET_UM / float(volume.voxel_size_um) / 2.0, 0.5)
    z = ndi.gaussian_filter(rng.standard_normal(volume.shape).astype(np.float32), sigma)
    z /= max(float(z.std()), 1e-6)
    u = np.clip(ndtr(z), 1e-6, 1 - 1e-6)  # uniform, spatially correlated
    region = np.asarray(volume.region)
    rate = np.where(region == Region.CORTICAL, f_cort, f_trab)
    # packets younger than a few primary time constants would carry osteoid; start them mineralised
    age_days = np.maximum(-np.log(u) / np.maximum(rate, 1e-4) * DAYS_PER_YEAR, 10.0 * params.mineralisation.primary_days)
    degree = params.mineralisation.degree_at_age(age_days).astype(np.float32)
    bone = np.asarray(volume.bone)
    mineral = np.minimum(bone * degree, bone).astype(np.float32)
    meta = dict(volume.meta, initial_turnover_per_yr={"trabecular": f_trab, "cortical": f_cort})
    return BoneVolume(bone, mineral, region, volume.voxel_size_um, site=volume.site, meta=meta)
