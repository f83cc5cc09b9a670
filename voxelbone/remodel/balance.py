"""The bone one BMU leaves behind: a probe of the engine's geometry.

A BMU of refill r (W.Th/E.De, the cell layer's balance) should leave r − 1 cavity volumes
of bone where it worked: it refills its cavity and, when r > 1, builds the rest above the
old surface. :func:`one_bmu_build` measures what the engine's rules (``cpu.claim`` and
``cpu.update``, the NumPy twin of ``kernels/remodel.cu``) actually leave, for one
hemi-osteonal BMU on a flat trabecular surface, so that the rules can be held to that
balance at every voxel size (``benchmarks/overfill_build_study.py``); ``after=`` starts it
on the mound an earlier BMU left. :func:`surface_build_um` runs many BMUs on a flat slab
through the engine itself (``benchmarks/surface_build_study.py``).
"""

from __future__ import annotations

import math

import numpy as np

from ..volume import Region
from . import cpu
from .params import RemodelParams
from .state import RemodelingRates, RemodelState, StepScalars, refill_levels, step_scalars

__all__ = ["one_bmu_build", "one_bmu_cavity_um3", "one_bmu_net_um3", "surface_build_um"]

_STEP_DAYS = 5


def _rod(n: int, voxel_size_um: float, radius_um: float, offset_um: float) -> np.ndarray:
    """Bone fractions of a rod along x through the grid's centre (its axis shifted by ``offset_um``
    in z and by 0.37 of it in y, so the two axes sample different sub-voxel positions), each
    voxel's fraction from 8 × 8 sub-samples of its cross-section."""
    ss = 8
    g = (np.arange(n * ss) + 0.5) / ss * voxel_size_um - n / 2 * voxel_size_um
    zz, yy = np.meshgrid(g - offset_um, g - 0.37 * offset_um, indexing="ij")
    frac = ((zz * zz + yy * yy) <= radius_um * radius_um).reshape(n, ss, n, ss).mean(axis=(1, 3))
    return np.ascontiguousarray(np.broadcast_to(frac.astype(np.float32)[:, :, None], (n, n, n)))


def _run_bmu(state: RemodelState, z: int, y: int, x: int, sc: StepScalars, seed: int, step: int,
             params: RemodelParams, start: tuple[StepScalars, StepScalars] | None = None) -> None:
    """One BMU seeded at voxel (z, y, x), run through its whole cycle at ``sc``; with ``start``,
    claimed and run for its first step at ``start[0]``, its second at ``start[1]`` (the change
    of balance), then at ``sc``."""
    _, ny, nx = state.bone.shape
    first, turn = start if start is not None else (sc, sc)
    idx, code = cpu.claim(state, np.array([(z * ny + y) * nx + x], np.int64), seed, step, first)
    cpu.update(state, idx, code, first)
    none_i, none_c = np.empty(0, np.int64), np.empty(0, np.uint64)
    for k in range(int(math.ceil(params.cycle_days / _STEP_DAYS))):
        cpu.update(state, none_i, none_c, turn if k == 0 else sc)


def _net_bone(refill: float, voxel_size_um: float, surface_fraction: float, erosion_depth_um: float,
              params: RemodelParams, seed: int, rod_radius_um: float | None = None,
              after: tuple[float, float] | None = None, refill_at_start: float | None = None) -> float:
    lateral = params.lateral_radius_um * 1.2 + erosion_depth_um * 3.2  # the cavity and its overfill, with margin
    if after is not None:  # room for the earlier BMU beside this one
        lateral += after[1]
    n = 2 * int(math.ceil((lateral + (rod_radius_um or 0.0)) / voxel_size_um)) + 6
    if rod_radius_um is None:
        bone = np.zeros((n, n, n), np.float32)
        bone[: n // 2] = 1.0
        bone[n // 2] = surface_fraction  # the surface lies inside this layer
        z = n // 2 if surface_fraction >= 0.5 else n // 2 - 1  # the surface voxel: bone ≥ ½ with a marrow neighbour
    else:
        bone = _rod(n, voxel_size_um, rod_radius_um, (surface_fraction - 0.5) * voxel_size_um)
        z = int(np.nonzero(bone[:, n // 2, n // 2] >= 0.5)[0].max())  # the top of the rod at mid-length
    region = np.full(bone.shape, Region.TRABECULAR, np.uint8)
    state = RemodelState.new(bone, bone * np.float32(0.9), region)
    x = n // 2
    if after is not None:
        # the earlier BMU, its whole cycle, at the middle; this one on its flank, ``after[1]`` µm along x
        first = step_scalars(RemodelingRates(1.0, 1.0, erosion_depth_um, after[0], after[0]), params, voxel_size_um,
                             _STEP_DAYS)
        _run_bmu(state, z, n // 2, n // 2, first, seed, 0, params)
        x = n // 2 + int(round(after[1] / voxel_size_um))
        z = int(np.nonzero(state.bone[:, n // 2, x] >= 0.5)[0].max())  # the surface voxel of that column now
    rates = RemodelingRates(1.0, 1.0, erosion_depth_um, refill, refill)
    sc = step_scalars(rates, params, voxel_size_um, _STEP_DAYS)
    begin = None
    if refill_at_start is not None:  # the balance changes once the BMU has started
        at_start = RemodelingRates(1.0, 1.0, erosion_depth_um, refill_at_start, refill_at_start)
        begin = (step_scalars(at_start, params, voxel_size_um, _STEP_DAYS),
                 step_scalars(rates, params, voxel_size_um, _STEP_DAYS, previous_refill=refill_levels(at_start)))
    start = float(state.bone.sum(dtype=np.float64))
    _run_bmu(state, z, n // 2, x, sc, seed, 1, params, begin)
    return float(state.bone.sum(dtype=np.float64)) - start


def one_bmu_build(refill: float, voxel_size_um: float, *, surface_fraction: float = 0.5,
                  erosion_depth_um: float = 50.0, params: RemodelParams | None = None, seed: int = 1,
                  rod_radius_um: float | None = None, after: tuple[float, float] | None = None,
                  refill_at_start: float | None = None) -> float:
    """Net bone one BMU leaves on a flat surface (or on a rod) after its cycle, in volumes of its cavity.

    Parameters
    ----------
    refill : float
        The BMU's refill r (0–3); r − 1 is what it should leave.
    voxel_size_um : float
        Voxel edge.
    surface_fraction : float
        Bone fraction of the voxel layer the surface lies in (where the surface sits
        between two voxel centres); on a rod, where its axis sits inside its voxel (0.5: at
        the centre).
    erosion_depth_um : float
        Cavity depth.
    params : RemodelParams, optional
        Engine parameters (default ``RemodelParams()``).
    seed : int
        Cavity-shape draw.
    rod_radius_um : float, optional
        Work on the top of a rod of this radius along x instead of a flat surface.
    after : (float, float), optional
        ``(refill, shift_um)`` of an earlier BMU that ran its whole cycle on the same
        surface ``shift_um`` away along x, before this one starts: this BMU works on what
        that one left (a mound when its refill was above 1). ``None``: a fresh surface.
    refill_at_start : float, optional
        The balance when this BMU starts (its claim and first step); ``refill`` from its
        second step on, as when a therapy changes the balance of BMUs already at work.
        ``None``: ``refill`` throughout.

    Returns
    -------
    float
        Net bone over the bone the same BMU removes with refill 0 (its cavity).

    Examples
    --------
    >>> abs(one_bmu_build(1.0, 20.0)) < 1e-6  # a balanced BMU restores what it removed
    True
    """
    cavity = one_bmu_cavity_um3(voxel_size_um, surface_fraction=surface_fraction, erosion_depth_um=erosion_depth_um,
                                params=params, seed=seed, rod_radius_um=rod_radius_um, after=after)
    return one_bmu_net_um3(refill, voxel_size_um, surface_fraction=surface_fraction, erosion_depth_um=erosion_depth_um,
                           params=params, seed=seed, rod_radius_um=rod_radius_um, after=after,
                           refill_at_start=refill_at_start) / cavity


def one_bmu_net_um3(refill: float, voxel_size_um: float, *, surface_fraction: float = 0.5,
                    erosion_depth_um: float = 50.0, params: RemodelParams | None = None, seed: int = 1,
                    rod_radius_um: float | None = None, after: tuple[float, float] | None = None,
                    refill_at_start: float | None = None) -> float:
    """Net bone one BMU leaves after its cycle, µm³ (negative: a deficit); the parameters are
    those of :func:`one_bmu_build`.

    Raises
    ------
    ValueError
        For a surface fraction outside (0, 1), a non-positive voxel size, a rod thinner
        than a voxel across, or an earlier BMU (``after``) on a rod, with a non-finite value
        or farther than three cavity radii away, or a ``refill_at_start`` outside [0, 3].
    """
    if refill_at_start is not None and not (math.isfinite(refill_at_start) and 0.0 <= refill_at_start <= 3.0):
        raise ValueError(f"refill_at_start must lie in [0, 3] (the bounds of a refill), got {refill_at_start!r}")
    if not 0.0 < surface_fraction < 1.0:
        raise ValueError(f"surface_fraction must lie in (0, 1), got {surface_fraction!r}")
    if not (math.isfinite(voxel_size_um) and voxel_size_um > 0):
        raise ValueError(f"voxel_size_um must be a positive number, got {voxel_size_um!r}")
    if rod_radius_um is not None and not (math.isfinite(rod_radius_um) and rod_radius_um >= 0.5 * voxel_size_um):
        raise ValueError(f"rod_radius_um must be at least half a voxel ({0.5 * voxel_size_um:g} µm), got {rod_radius_um!r}")
    params = params or RemodelParams()
    if after is not None:
        most_um = 3.0 * params.lateral_radius_um
        if rod_radius_um is not None:
            raise ValueError("after (an earlier BMU beside this one) works on a flat surface only; drop rod_radius_um")
        if not (all(math.isfinite(a) for a in after) and 0.0 <= after[1] <= most_um):
            raise ValueError(f"after must be (refill, shift_um) with 0 <= shift_um <= {most_um:g} µm (three cavity "
                             f"radii, RemodelParams.lateral_radius_um); got {after!r}")
    return _net_bone(refill, voxel_size_um, surface_fraction, erosion_depth_um, params, seed, rod_radius_um, after,
                     refill_at_start) * voxel_size_um**3


def one_bmu_cavity_um3(voxel_size_um: float, *, surface_fraction: float = 0.5, erosion_depth_um: float = 50.0,
                       params: RemodelParams | None = None, seed: int = 1, rod_radius_um: float | None = None,
                       after: tuple[float, float] | None = None) -> float:
    """Bone one BMU removes (its cavity: refill 0) on a flat surface or a rod, µm³.

    The parameters are those of :func:`one_bmu_build`. The cavity's depth is set in µm, so
    on a flat surface its volume does not depend on the voxel size; on a rod thinner than
    the cavity is wide it may.

    Examples
    --------
    >>> one_bmu_cavity_um3(20.0, rod_radius_um=55.0) < one_bmu_cavity_um3(20.0)  # the rod curves away
    True
    """
    return -one_bmu_net_um3(0.0, voxel_size_um, surface_fraction=surface_fraction, erosion_depth_um=erosion_depth_um,
                            params=params, seed=seed, rod_radius_um=rod_radius_um, after=after)


def surface_build_um(refill: float, voxel_size_um: float, *, surface_fraction: float = 0.5, years: float = 2.0,
                     activation_per_yr: float = 0.5, edge_um: float = 1920.0, seed: int = 1,
                     params: RemodelParams | None = None) -> float:
    """Bone that many BMUs of one refill leave on a flat surface, µm of thickness.

    A slab of bone, 300 µm thick plus ``surface_fraction`` of a voxel (the bone fraction of
    the voxel layer the surface lies in), under ``edge_um`` × ``edge_um`` of trabecular
    surface, is remodelled by the engine (:class:`~voxelbone.remodel.Remodeler`, NumPy twin)
    at ``activation_per_yr`` and ``refill`` with 50 µm cavities for ``years``. Unlike
    :func:`one_bmu_build`, BMUs land on surfaces earlier BMUs left, overlap, and start
    anywhere on the surface, as they do in a run. The difference between a refill above 1
    and a refill of 1 is what the positive balance built; a property of the balance, it
    should not depend on the voxel size or on where the surface sits inside its voxel
    (``benchmarks/surface_build_study.py``).

    Parameters
    ----------
    refill : float
        The BMUs' refill (0–3).
    voxel_size_um : float
        Voxel edge; at most ``edge_um / 8``.
    surface_fraction : float
        Bone fraction of the voxel layer the surface lies in, in [0, 1).
    years : float
        Time remodelled.
    activation_per_yr : float
        Activation frequency Ac.f of the trabecular surface.
    edge_um : float
        Lateral edge of the slab.
    seed : int
        The engine's seed (activations and cavity draws).
    params : RemodelParams, optional
        Engine parameters (default ``RemodelParams()``).

    Returns
    -------
    float
        Change of the slab's mean thickness, µm (negative: the remodelling space and any
        deficit).
    """
    from ..volume import BoneVolume  # noqa: PLC0415
    from .engine import Remodeler  # noqa: PLC0415

    if not 0.0 <= surface_fraction < 1.0:
        raise ValueError(f"surface_fraction must lie in [0, 1), got {surface_fraction!r}")
    if not (math.isfinite(voxel_size_um) and 0 < voxel_size_um <= edge_um / 8):
        raise ValueError(f"voxel_size_um must be positive and at most edge_um / 8 ({edge_um / 8:g} µm: eight voxels "
                         f"across the slab); got {voxel_size_um!r}")
    params = params or RemodelParams()
    n = int(round(edge_um / voxel_size_um))
    nz = int(math.ceil(600.0 / voxel_size_um))
    thickness_um = 300.0 + surface_fraction * voxel_size_um
    z = (np.arange(nz) + 0.5) * voxel_size_um
    profile = np.clip(0.5 + (thickness_um - z) / voxel_size_um, 0.0, 1.0).astype(np.float32)
    bone = np.ascontiguousarray(np.broadcast_to(profile[:, None, None], (nz, n, n)))
    vol = BoneVolume(bone, bone * np.float32(0.9), np.full(bone.shape, Region.TRABECULAR, np.uint8), voxel_size_um)
    engine = Remodeler(vol, params, seed=seed)
    area_um2 = n * n * voxel_size_um**2
    start = float(engine.state.bone.sum(dtype=np.float64))
    rates = RemodelingRates(activation_per_yr, 0.0, 50.0, refill, 1.0)
    for k in range(int(round(years * 365.25 / _STEP_DAYS))):
        engine.step(k, rates, _STEP_DAYS)
    return (float(engine.state.bone.sum(dtype=np.float64)) - start) * voxel_size_um**3 / area_um2
