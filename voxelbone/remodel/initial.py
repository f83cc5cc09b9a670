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
from .cpu import surface_flags
from .params import RemodelParams
from .state import Rates

__all__ = ["bone_turnover_per_yr", "equilibrate_mineral"]

PACKET_UM = 150.0


def bone_turnover_per_yr(volume: BoneVolume, rates: Rates, params: RemodelParams) -> tuple[float, float]:
    """Fraction of trabecular and of cortical bone renewed per year at ``rates``.

    Trabecular: Ac.f × BS/BV × mean cavity depth (⅔ of the erosion depth); BS from the
    surface-voxel count (κ voxels per voxel-face area). Cortical: each osteonal activation
    re-excavates a tunnel of volume ⁴⁄₃πR²H around a canal wall patch of area 4πr_cH.
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
    s_c = float((surf & cort).sum()) * v * v / k
    r_o, r_c = params.osteon_radius_um, params.canal_radius_um
    out.append(rates.activation_cortical_per_yr * s_c * r_o**2 / (3.0 * r_c) / (n_bc * v**3) if n_bc else 0.0)
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
    f_trab, f_cort = bone_turnover_per_yr(volume, rates, params)
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
