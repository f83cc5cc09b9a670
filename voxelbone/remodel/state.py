"""Engine state (per-voxel arrays) and the per-step scalars shared by both implementations."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..backend import array_module
from ..units import DAYS_PER_YEAR
from .params import RemodelParams

__all__ = [
    "CLAIM_FLAGS_MASK",
    "CLAIM_FLAGS_SHIFT",
    "CLAIM_FRAC_SHIFT",
    "CLAIM_FRAC_STEPS",
    "CLAIM_K_MASK",
    "CLAIM_NONE",
    "CLAIM_SEED_SHIFT",
    "CLAIM_U_MASK",
    "CLAIM_U_SHIFT",
    "CLAIM_U_STEPS",
    "COUNTERS",
    "FLAG_OSTEONAL",
    "FLAG_OVERFILL",
    "FLAG_PERFORATED",
    "FLAG_RESORBED",
    "MAX_COLUMN_DEPTH",
    "MAX_STATE_VOXELS",
    "MAX_MODELLING_UM_PER_DAY",
    "MIN_COLUMN_DEPTH",
    "MIN_FILL_RAMP",
    "Rates",
    "RemodelState",
    "RemodelingRates",
    "RemodelStats",
    "StepScalars",
    "claim_share_steps",
    "step_scalars",
]

FLAG_PERFORATED = 1
FLAG_OSTEONAL = 2
FLAG_RESORBED = 4
FLAG_OVERFILL = 8  # a marrow voxel above the cavity opening, filled by a positive BMU balance
#: Upper bound of the modelling-based apposition rate (µm/day per µm² of quiescent surface):
#: twice the mineral apposition rate of an osteoblast team (~0.63 µm/day; Kragstrup et al. 1983).
MAX_MODELLING_UM_PER_DAY = 2.0
#: Claim code of a voxel no cavity claims (``VB_CLAIM_NONE`` in ``kernels/remodel.cu``).
CLAIM_NONE = np.uint64(0xFFFFFFFFFFFFFFFF)
#: Layout of a 64-bit claim code, high to low (``VB_CLAIM_*_SHIFT`` in ``kernels/remodel.cu``):
#: seed index (35 bits, so the lowest seed wins a contested voxel), flags (4), the voxel's
#: share of the cavity (8, steps of 1/255), its height u above the cavity floor (9, steps of
#: 1/127.5, so u ≤ 4) and the local column depth k (8, steps of 1/8 voxel).
CLAIM_SEED_SHIFT = 29
CLAIM_FLAGS_SHIFT = 25
CLAIM_FLAGS_MASK = 15
CLAIM_FRAC_SHIFT = 17
CLAIM_U_SHIFT = 8
CLAIM_U_MASK = 511
CLAIM_K_MASK = 255
#: Steps per unit of the cavity share (its 8-bit field holds 0..255; ``VB_CLAIM_FRAC_STEPS``).
CLAIM_FRAC_STEPS = 255
#: Steps per voxel of the column height u (``VB_CLAIM_U_STEPS``): the 9-bit field holds u ≤ 4.
CLAIM_U_STEPS = 127.5
#: Smallest column depth a claim stores (voxels; ``VB_MIN_COLUMN_DEPTH``): the resolution of the
#: 8-bit depth field. A shallow rim column is filled over its own depth, not over one voxel.
MIN_COLUMN_DEPTH = 0.125
#: Deepest column depth a claim stores (voxels; ``VB_MAX_COLUMN_DEPTH``): 255 steps of the 8-bit field.
MAX_COLUMN_DEPTH = CLAIM_K_MASK * MIN_COLUMN_DEPTH
#: Smallest rise φ(1) − φ(0) of a claimed voxel's fill ramp over formation (``VB_MIN_FILL_RAMP``):
#: a flatter ramp refills nothing, so such a voxel below the opening is not claimed at all.
MIN_FILL_RAMP = 0.001


def claim_share_steps(codes: np.ndarray) -> np.ndarray:
    """The cavity-share field of 64-bit claim codes, in steps of 1/``CLAIM_FRAC_STEPS`` (uint64, 0..255).

    Callers turn it into a fraction in their own precision (the update in float32, the starting
    estimate in float64), so the bits of each stay what they were.

    Parameters
    ----------
    codes
        Claim codes (uint64), as ``pack_claims`` and ``vb_pack_claim`` write them.

    Returns
    -------
    numpy.ndarray
        The share of each claim in steps (uint64, same shape as ``codes``).
    """
    return (codes >> np.uint64(CLAIM_FRAC_SHIFT)) & np.uint64(CLAIM_FRAC_STEPS)


#: Most voxels an engine state holds: ``bmu_seed`` stores a flat voxel index as uint32.
MAX_STATE_VOXELS = 2**32 - 1

#: Order of the uint64 counters array (kernels index it the same way).
COUNTERS = ("bmus_trabecular", "bmus_osteonal", "perforations", "fragments_removed", "seed_overflow")


@dataclass(frozen=True)
class RemodelingRates:
    """What the voxel layer reads from the cell layer at each step (``biology`` produces them)."""

    activation_trabecular_per_yr: float
    activation_cortical_per_yr: float
    erosion_depth_um: float
    refill_trabecular: float
    refill_cortical: float
    #: Modelling-based formation: new bone laid on quiescent surfaces without prior
    #: resorption, µm per day per µm² of quiescent surface (0: none; intermittent PTH).
    modelling_um_per_day: float = 0.0


#: Anything with the fields of :class:`RemodelingRates` (duck-typed in tests).
Rates = RemodelingRates


@dataclass
class RemodelState:
    """Per-voxel arrays of the engine (NumPy or CuPy, all of shape (nz, ny, nx)).

    ``osteoid`` is the part of ``bone`` not yet mineralised (new bone).
    ``bmu_day`` is −1 where no BMU owns the voxel, else days since its BMU was activated;
    ``bmu_u`` (height above the cavity floor in units of the local column depth, 0 to
    max(2, 1 + ``RemodelParams.overfill_reach_depths``) in steps of 1/127.5; uint16), ``bmu_k`` (the local column depth in voxels, steps of 1/8) and
    ``bmu_flags`` describe the voxel's place in its cavity; ``bmu_amount`` is the fraction
    to excavate before excavation and the bone removed after; ``bmu_seed`` (uint32) is the
    flat index of the voxel where its BMU started, whose mechanical factor its refill
    follows (meaningful only where ``bmu_day`` ≥ 0). ``counters`` (uint64) and ``fragment_bone`` (float64, voxel units) are
    cumulative.
    """

    bone: Any
    mineral: Any
    region: Any
    osteoid: Any
    bmu_day: Any
    bmu_k: Any
    bmu_u: Any
    bmu_flags: Any
    bmu_amount: Any
    bmu_seed: Any
    counters: Any
    fragment_bone: Any

    @classmethod
    def new(cls, bone: Any, mineral: Any, region: Any, osteoid: Any | None = None) -> "RemodelState":
        """A state with no BMU active (arrays are used in place, not copied)."""
        xp = _xp(bone)
        shape = bone.shape
        if int(np.prod(shape, dtype=np.int64)) > MAX_STATE_VOXELS:
            raise ValueError(f"a volume of {shape} voxels is larger than the engine's {MAX_STATE_VOXELS} "
                             "(bmu_seed holds a voxel's flat index in 32 bits); crop or coarsen it")
        return cls(
            bone=bone, mineral=mineral, region=region,
            osteoid=xp.zeros(shape, dtype=xp.float32) if osteoid is None else osteoid,
            bmu_day=xp.full(shape, -1, dtype=xp.int16),
            bmu_k=xp.zeros(shape, dtype=xp.uint8),
            bmu_u=xp.zeros(shape, dtype=xp.uint16),
            bmu_flags=xp.zeros(shape, dtype=xp.uint8),
            bmu_amount=xp.zeros(shape, dtype=xp.float32),
            bmu_seed=xp.zeros(shape, dtype=xp.uint32),
            counters=xp.zeros(len(COUNTERS), dtype=xp.uint64),
            fragment_bone=xp.zeros(1, dtype=xp.float64),
        )

    def arrays(self) -> dict[str, Any]:
        """Name → array (for checkpoints and comparisons)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def bytes_per_voxel() -> int:
        """Bytes of state per voxel (plus the 8-byte claim scratch of the GPU path)."""
        return 4 + 4 + 1 + 4 + 2 + 1 + 2 + 1 + 4 + 4


def _xp(a: Any) -> Any:
    return array_module(a)


@dataclass(frozen=True)
class RemodelStats:
    """Cumulative counts of a run (copied to the host by ``Remodeler.stats``)."""

    bmus_trabecular: int
    bmus_osteonal: int
    perforations: int
    fragments_removed: int
    fragment_volume_mm3: float
    active_bmu_voxels: int


@dataclass(frozen=True)
class StepScalars:
    """Everything one step needs besides the arrays, as float32/int scalars (identical on CPU and GPU)."""

    p_hemi: np.float32
    p_osteonal: np.float32
    depth_um: np.float32
    lateral_um: np.float32
    osteon_radius_um: np.float32
    osteon_half_length_um: np.float32
    canal_radius_um: np.float32
    voxel_um: np.float32
    dt: int
    t_resorb: np.float32
    t_form_start: np.float32
    t_form: np.float32
    t_end: np.float32
    refill_trab: np.float32
    refill_cort: np.float32
    refill_perforated: np.float32
    overfill_reach: np.float32
    m_mature: np.float32
    e_primary: np.float32
    e_secondary: np.float32
    c_osteoid: np.float32
    model_frac: np.float32 = np.float32(0.0)
    #: The previous step's refill levels (the current ones on an engine's first step): a
    #: forming voxel's level at the start of the step is read on the previous balance.
    refill_trab_prev: np.float32 | None = None
    refill_cort_prev: np.float32 | None = None

    def __post_init__(self) -> None:
        if self.refill_trab_prev is None:
            object.__setattr__(self, "refill_trab_prev", self.refill_trab)
        if self.refill_cort_prev is None:
            object.__setattr__(self, "refill_cort_prev", self.refill_cort)


def _check_rates(rates: Rates) -> None:
    checks = (
        ("activation_trabecular_per_yr", 0.0, 10.0),
        ("activation_cortical_per_yr", 0.0, 10.0),
        ("erosion_depth_um", 5.0, 200.0),
        ("refill_trabecular", 0.0, 3.0),
        ("refill_cortical", 0.0, 3.0),
    )
    for name, lo, hi in checks:
        v = getattr(rates, name, None)
        if v is None:
            raise ValueError(f"remodeling rates lack {name!r}")
        v = float(v)
        if not (math.isfinite(v) and lo <= v <= hi):
            raise ValueError(f"remodeling rate {name}={v!r} is outside the physiological bounds [{lo:g}, {hi:g}]")
    model = float(getattr(rates, "modelling_um_per_day", 0.0))
    if not (math.isfinite(model) and 0.0 <= model <= MAX_MODELLING_UM_PER_DAY):
        raise ValueError(f"remodeling rate modelling_um_per_day={model!r} is outside [0, {MAX_MODELLING_UM_PER_DAY:g}] "
                         "µm/day (osteoblasts appose at most ~1–2 µm/day)")


def refill_levels(rates: Rates) -> tuple[float, float]:
    """The (trabecular, cortical) refill levels of ``rates``: what a step hands to the next."""
    return float(rates.refill_trabecular), float(rates.refill_cortical)


def step_scalars(rates: Rates, params: RemodelParams, voxel_um: float, dt_days: int,
                 previous_refill: tuple[float, float] | None = None) -> StepScalars:
    """Turn rates (per year, µm) into per-step probabilities and kernel constants.

    ``previous_refill`` is the previous step's (trabecular, cortical) refill levels
    (:func:`refill_levels`; ``None``: those of ``rates``). They set where a forming voxel's
    fill stood at the start of the step, so a change of balance between steps moves the level
    of every forming BMU at once (the layer between
    the old and the new level is formed in that step, or, when the balance falls, nothing
    forms until the level rises above what stands), instead of the layer being skipped.

    The activation frequency Ac.f is the fraction of bone surface on which a new BMU starts
    per year. A BMU covers a footprint of area A (π·b² for a trabecular cavity of lateral
    semi-axis b; π·b·H for a pore-wall cavity elongated to H along the canal), and there are
    κ surface voxels per voxel-face area of true surface (κ_wall on the pore walls,
    ``params.wall_kappa``), so a surface voxel starts a BMU in a step with probability
    ``p = 1 − exp(−Ac.f · dt/DAYS_PER_YEAR · v² / (κ · A))``: the surface fraction activated
    per year is Ac.f whatever the voxel size v.

    Modelling-based formation lays ``J`` µm of bone per day on each µm² of quiescent surface
    (``rates.modelling_um_per_day``): each quiescent surface voxel, standing for v²/κ_m of true
    surface, hands ``model_frac = J · dt / (κ_m · v)`` of a voxel's volume per step to its
    marrow face-neighbours, so the volume formed per µm² does not depend on v. κ_m
    (``params.modelling_surface_voxels_per_area``, else κ) is measured on the rule's own
    surface voxels, which include the endocortical surface that κ does not count.

    Examples
    --------
    >>> from voxelbone.remodel import RemodelParams
    >>> rates = RemodelingRates(activation_trabecular_per_yr=0.2, activation_cortical_per_yr=0.05,
    ...                         erosion_depth_um=50.0, refill_trabecular=1.0, refill_cortical=1.0)
    >>> daily = step_scalars(rates, RemodelParams(), voxel_um=30.0, dt_days=1)
    >>> weekly = step_scalars(rates, RemodelParams(), voxel_um=30.0, dt_days=7)
    >>> float(daily.depth_um), round(float(weekly.p_hemi / daily.p_hemi), 3)
    (50.0, 7.0)
    """
    params.check_step(dt_days)
    _check_rates(rates)
    previous_refill = refill_levels(rates) if previous_refill is None else previous_refill
    f32 = np.float32
    v = float(voxel_um)
    kappa = params.surface_voxels_per_area
    years = dt_days / DAYS_PER_YEAR
    area_hemi = math.pi * params.lateral_radius_um**2
    area_osteon = math.pi * params.lateral_radius_um * params.osteon_half_length_um  # pore-wall cavity footprint
    p_hemi = -math.expm1(-float(rates.activation_trabecular_per_yr) * years * v * v / (kappa * area_hemi))
    p_ost = -math.expm1(-float(rates.activation_cortical_per_yr) * years * v * v / (params.wall_kappa * area_osteon))
    kappa_m = params.modelling_surface_voxels_per_area or kappa
    model_frac = float(getattr(rates, "modelling_um_per_day", 0.0)) * dt_days / (kappa_m * v)
    mm = params.mineralisation
    ep, es, co = mm.step_factors(dt_days)
    t_resorb = f32(params.resorption_days)
    t_form_start = f32(params.resorption_days + params.reversal_days)
    t_form = f32(params.formation_days)
    return StepScalars(
        p_hemi=f32(p_hemi), p_osteonal=f32(p_ost),
        depth_um=f32(rates.erosion_depth_um), lateral_um=f32(params.lateral_radius_um),
        osteon_radius_um=f32(params.osteon_radius_um), osteon_half_length_um=f32(params.osteon_half_length_um),
        canal_radius_um=f32(params.canal_radius_um), voxel_um=f32(v), dt=int(dt_days),
        t_resorb=t_resorb, t_form_start=t_form_start, t_form=t_form, t_end=f32(params.cycle_days),
        refill_trab=f32(rates.refill_trabecular), refill_cort=f32(rates.refill_cortical),
        refill_perforated=f32(params.perforated_refill),
        # every cavity reserves the marrow above its opening up to this reach (cpu.claim)
        overfill_reach=f32(params.overfill_reach_depths),
        m_mature=f32(mm.mature_degree), e_primary=f32(ep), e_secondary=f32(es), c_osteoid=f32(co),
        model_frac=f32(model_frac),
        refill_trab_prev=f32(previous_refill[0]), refill_cort_prev=f32(previous_refill[1]),
    )
