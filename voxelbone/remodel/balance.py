"""The bone one BMU leaves behind: a probe of the engine's geometry.

A BMU of refill r (W.Th/E.De, the cell layer's balance) should leave r − 1 cavity volumes
of bone where it worked: it refills its cavity and, when r > 1, builds the rest above the
old surface. :func:`one_bmu_build` measures what the engine's rules (``cpu.claim`` and
``cpu.update``, the NumPy twin of ``kernels/remodel.cu``) actually leave, for one
hemi-osteonal BMU on a flat trabecular surface, so that the rules can be held to that
balance at every voxel size (``benchmarks/overfill_build_study.py``).
"""

from __future__ import annotations

import math

import numpy as np

from ..volume import Region
from . import cpu
from .params import RemodelParams
from .state import RemodelingRates, RemodelState, step_scalars

__all__ = ["one_bmu_build"]

_STEP_DAYS = 5


def _net_bone(refill: float, voxel_size_um: float, surface_fraction: float, erosion_depth_um: float,
              params: RemodelParams, seed: int) -> float:
    lateral = params.lateral_radius_um * 1.2 + erosion_depth_um * 3.2  # the cavity and its overfill, with margin
    n = 2 * int(math.ceil(lateral / voxel_size_um)) + 6
    bone = np.zeros((n, n, n), np.float32)
    bone[: n // 2] = 1.0
    bone[n // 2] = surface_fraction  # the surface lies inside this layer
    region = np.full(bone.shape, Region.TRABECULAR, np.uint8)
    state = RemodelState.new(bone, bone * np.float32(0.9), region)
    sc = step_scalars(RemodelingRates(1.0, 1.0, erosion_depth_um, refill, refill), params, voxel_size_um, _STEP_DAYS)
    start = float(state.bone.sum(dtype=np.float64))
    z = n // 2 if surface_fraction >= 0.5 else n // 2 - 1  # the surface voxel: bone ≥ ½ with a marrow neighbour
    seeds = np.array([(z * n + n // 2) * n + n // 2], np.int64)
    idx, code = cpu.claim(state, seeds, seed, 0, sc)
    cpu.update(state, idx, code, sc)
    none_i, none_c = np.empty(0, np.int64), np.empty(0, np.uint64)
    for _ in range(int(math.ceil(params.cycle_days / _STEP_DAYS))):
        cpu.update(state, none_i, none_c, sc)
    return float(state.bone.sum(dtype=np.float64)) - start


def one_bmu_build(refill: float, voxel_size_um: float, *, surface_fraction: float = 0.5,
                  erosion_depth_um: float = 50.0, params: RemodelParams | None = None, seed: int = 1) -> float:
    """Net bone one BMU leaves on a flat surface after its cycle, in volumes of its cavity.

    Parameters
    ----------
    refill : float
        The BMU's refill r (0–3); r − 1 is what it should leave.
    voxel_size_um : float
        Voxel edge.
    surface_fraction : float
        Bone fraction of the voxel layer the surface lies in (where the surface sits
        between two voxel centres).
    erosion_depth_um : float
        Cavity depth.
    params : RemodelParams, optional
        Engine parameters (default ``RemodelParams()``).
    seed : int
        Cavity-shape draw.

    Returns
    -------
    float
        Net bone over the bone the same BMU removes with refill 0 (its cavity).

    Examples
    --------
    >>> abs(one_bmu_build(1.0, 20.0)) < 1e-6  # a balanced BMU restores what it removed
    True
    """
    if not 0.0 < surface_fraction < 1.0:
        raise ValueError(f"surface_fraction must lie in (0, 1), got {surface_fraction!r}")
    if not (math.isfinite(voxel_size_um) and voxel_size_um > 0):
        raise ValueError(f"voxel_size_um must be a positive number, got {voxel_size_um!r}")
    params = params or RemodelParams()
    cavity = -_net_bone(0.0, voxel_size_um, surface_fraction, erosion_depth_um, params, seed)
    return _net_bone(refill, voxel_size_um, surface_fraction, erosion_depth_um, params, seed) / cavity
