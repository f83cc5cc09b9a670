"""Mechanostat: the local mechanical signal steers where BMUs resorb and how much they refill.

Every ``fe_every_days`` of a run (:class:`~voxelbone.scenario.Scenario`) the micro-FE
solver (:func:`voxelbone.mechanics.apparent_modulus`) compresses the volume along the
site's main load axis (z: the spine's and the femoral neck's trabeculae are aligned with
it), warm-started from the previous displacement. Its effective strain steers the BMUs:

**Signal.** ``S`` = effective strain ε_eff = sqrt(2·SED / E_tissue) (Pistoia et al. 2002),
averaged over the bone within the osteocytes' influence distance ``D`` (a normalised
Gaussian of σ = ``D`` µm, so a marrow voxel beside bone carries the signal of the bone
around it; Huiskes et al. 2000 Nature 405:704 used an exponential decay with D = 100 µm),
times the period's ``load_scale`` (linear elasticity: strain ∝ load; presets
``bed_rest``, ``spaceflight``).

**Rule** (Walle et al. 2023, human HR-pQCT over a year: 1 % higher local strain made
formation 1.9 % more likely and resorption 2.0 % less likely, and about 40 % of the
remodelling events followed the strain). With the relative signal ``s = S / S_set``
clipped to ``[s_min, s_max]``, each surface voxel's

* activation probability is multiplied by ``a(s) = 1 − w + w·s^(−α_r)``,
* refill level (wall thickness / erosion depth) by ``f(s) = 1 − w + w·s^(α_f)`` — the
  ``f`` of the voxel where the BMU started (its seed, ``RemodelState.bmu_seed``): every voxel
  of one BMU, the marrow above its opening included, refills at one factor, read afresh
  after every solve,

with ``α_r = −100·ln(1 − 0.020) ≈ 2.02`` and ``α_f = 100·ln(1 + 0.019) ≈ 1.88`` (a 1 %
change of ``s`` changes ``s^α`` by α %), and ``w = 0.4`` the share of remodelling that
follows the strain. Where a strut carries less than the set point its BMUs start more
often and refill less (it thins and goes); where it carries more they start less often
and refill more (Frost's mechanostat; Huiskes et al. 2000; Schulte et al. 2013 Bone 52:485).

**Set points, one per compartment, fixed at the start.** ``S_set`` of resorption and of
formation are fitted separately for the trabecular and the cortical compartment (the cell
layer calibrates their rates separately, :class:`voxelbone.sites.SiteRates`) so that, at the
habitual load and the starting hormone state, the mean of ``a`` over each compartment's bone
surface is exactly 1 and the mean of ``f`` over its BMUs is exactly 1 — the BMUs in
flight, weighted by the bone they remove (:func:`bmus_in_flight`), or while there are too
few of them the surface weighted by ``a``: the starting structure is assumed to be adapted
to its habitual load, and the set points then stay fixed, as the thresholds of the
mechanostat models that keep a structure at homeostasis under a constant load do (Huiskes
et al. 2000 Nature 405:704; Badilatti et al. 2016 J Biomech 49:3770). The solve is
displacement-controlled (1 % strain), so a structure that thins everywhere alike keeps its
strains and the set points do not feed the hormones' loss of bone mass back (that
feedback is the cell layer's ``mechanical_feedback`` of
:class:`voxelbone.biology.HormoneEffects`, fitted to the clinical loss); what moves the
signal against the set points is the *architecture*: when unloaded struts go, the surface
that remains is the loaded one, above the set points on average, so its BMUs start less
often and refill more — the restoring force that the re-fitted set points lacked. Three
things this excludes, each measured:

* set points fitted again on every solve (the rule until this was measured): every
  structure is then re-centred on its own strain distribution, so some struts are always
  below the set point; an unloaded strut that thins keeps its low strain and goes on
  thinning to perforation (irreversible), while a loaded strut gains only as long as it
  stays above a set point that rises with it, and nothing restores the lost bone. Balanced
  hormones and a constant load lost 0.3–0.45 %/yr on a 64³ lumbar cube (−4.3 % in ten
  years; blind remodelling −0.7 %, held set points −1.5 %). Decomposed with fast balanced
  turnover (2 /yr) on a 48³ lumbar cube, BV change against blind BMUs of the same seed,
  mean of years 3–4: re-fitted rule −7.5 points;
  refill steering alone −5.9 (refill set point fitted over the cavities in flight), −2.5
  (fitted over the surface), −2.2 (and each BMU's refill held from its start); activation
  steering alone −0.3; fixed set points +3.0 (refill steering alone with fixed set points
  +7.4, a frozen first field +5.4);
* one set point for both compartments would hand the cortex — a vertical wall carrying
  about twice the trabeculae's strain — fewer BMUs that refill more, and the trabeculae the
  rest (lumbar cube: cortex refill ×1.63, activation ×0.70);
* set points fixed under the habitual *force* (the signal scaled by E_app,0/E_app) would feed
  every loss of bone mass back as higher strain, a second copy of the cell layer's
  ``mechanical_feedback``: it cut the untreated loss several-fold.

The load and the hormones then move ``s`` away from the set points: disuse
(``load_scale < 1``) lowers every ``s`` and so raises resorption and lowers refill
everywhere; estrogen deficiency raises the set points (below). The set points are single
numbers per compartment, never per voxel: a voxel at its own set point would feel no load.

**Hormones** (Frost 1987 Bone Miner 2:73; Lanyon & Skerry 2001 J Bone Miner Res 16:1937:
estrogen deficiency raises the strain threshold at which bone is kept). Both set points are
multiplied by ``1 + k_E·(1 − e_E)`` (relative to that factor at the start), where ``e_E`` is
the cell layer's estradiol signal (the Hill function of :func:`voxelbone.biology.cell_activity`,
1 at the premenopausal reference, clipped to ≤ 1). ``k_E = 0.1`` — a 10 % higher set point
at full deficiency — is an assumption: the mechanostat theory gives the direction, no
study gives the size; it is not fitted.

GPU and CPU apply the same fields (``vb_mech_scale`` in ``kernels/remodel.cu``) with the
same random keys; with mechanics off no field is passed and the engine is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import array_module, asnumpy, ndimage_module
from ..volume import BoneVolume, Region

__all__ = ["COMPARTMENTS", "STEER_CHOICES", "Cavities", "bmus_in_flight", "MechanostatParams", "Mechanostat", "Modulation",
           "estradiol_signal", "local_signal", "surface_mask"]


#: The levers the signal may move (:attr:`MechanostatParams.steer`).
STEER_CHOICES = ("both", "activation", "refill")


@dataclass(frozen=True)
class MechanostatParams:
    """Constants of the mechanostat rule (see the module docstring for sources).

    Parameters
    ----------
    resorption_exponent : float
        ``α_r``: −100·ln(1 − 0.020) (Walle et al. 2023: resorption 2.0 % less likely per 1 %).
    formation_exponent : float
        ``α_f``: 100·ln(1 + 0.019) (Walle et al. 2023: formation 1.9 % more likely per 1 %).
    mechanical_share : float
        ``w``: share of remodelling that follows the strain (Walle et al. 2023: ~40 %).
    influence_distance_um : float
        ``D``: σ of the Gaussian over which osteocytes sense the strain (Huiskes et al. 2000: 100 µm).
    signal_ratio_min, signal_ratio_max : float
        Clip of ``s = S / S_set`` (keeps unloaded and overloaded voxels finite).
    estradiol_setpoint_shift : float
        ``k_E``: relative rise of the set points at full estradiol deficiency (assumed).
    accommodate : bool
        Fit the set points again on every solve; ``False`` (default) keeps those of the
        calibration at the start (see the module docstring: re-fitted set points lose bone
        under balanced hormones and a constant load).
    axis : str
        Load axis of the solve.
    boundary : str
        Boundary condition of the solve (:mod:`voxelbone.mechanics.problem`).
    rtol : float
        Relative residual of the solve.
    steer : str
        Which of the rule's two levers the signal moves: ``"both"`` (the model), or
        ``"activation"`` / ``"refill"`` alone (the other factor stays 1) — an ablation to
        measure what each lever does to a run (``benchmarks/gh_mechanics_study.py``).
    """

    resorption_exponent: float = -100.0 * math.log(1.0 - 0.020)
    formation_exponent: float = 100.0 * math.log(1.0 + 0.019)
    mechanical_share: float = 0.4
    influence_distance_um: float = 100.0
    signal_ratio_min: float = 0.5
    signal_ratio_max: float = 2.0
    estradiol_setpoint_shift: float = 0.1
    accommodate: bool = False
    axis: str = "z"
    boundary: str = "constrained"
    rtol: float = 1e-4
    steer: str = "both"

    def __post_init__(self) -> None:
        if not 0.0 <= self.mechanical_share <= 1.0:
            raise ValueError(f"mechanical_share must lie in [0, 1], got {self.mechanical_share}")
        if not 0.0 < self.signal_ratio_min < 1.0 < self.signal_ratio_max:
            raise ValueError("signal ratio clip must satisfy 0 < signal_ratio_min < 1 < signal_ratio_max, got "
                             f"{self.signal_ratio_min}, {self.signal_ratio_max}")
        if self.influence_distance_um <= 0 or self.estradiol_setpoint_shift < 0:
            raise ValueError("influence_distance_um must be > 0 and estradiol_setpoint_shift ≥ 0")
        from ..mechanics.problem import BOUNDARIES  # noqa: PLC0415

        if self.boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, got {self.boundary!r}")
        if self.steer not in STEER_CHOICES:
            raise ValueError(f"steer must be one of {STEER_CHOICES}, got {self.steer!r}")


@dataclass
class Modulation:
    """Per-voxel float32 factors the engine applies (NumPy or CuPy, shape of the volume)."""

    activation: Any
    refill: Any


def estradiol_signal(estradiol_pg_ml: float) -> float:
    """The cell layer's relative estradiol signal ``e_E`` (1 at the premenopausal reference).

    The Hill function of :func:`voxelbone.biology.cell_activity` with its constants
    (:class:`voxelbone.biology.HormoneEffects`).
    """
    from ..biology import HormoneEffects  # noqa: PLC0415 — numba/scipy cost at import

    fx = HormoneEffects()
    n = fx.estradiol_hill
    k = fx.K_estradiol_pg_ml ** n
    e = max(float(estradiol_pg_ml), 0.0) ** n
    e0 = fx.reference.estradiol_pg_ml ** n
    return (e / (e + k)) / (e0 / (e0 + k))


def surface_mask(bone: Any, region: Any) -> Any:
    """Bone voxels (≥ 0.5, inside) with a marrow face-neighbour: where BMUs start."""
    xp = array_module(bone)
    ndi = ndimage_module(xp)
    inside = region != int(Region.OUTSIDE)
    solid = (bone >= 0.5) & inside
    marrow = (bone < 0.5) & inside
    structure = xp.asarray(np.array([[[0, 0, 0], [0, 1, 0], [0, 0, 0]],
                                     [[0, 1, 0], [1, 1, 1], [0, 1, 0]],
                                     [[0, 0, 0], [0, 1, 0], [0, 0, 0]]], dtype=bool))
    return solid & ndi.binary_dilation(marrow, structure=structure)


def local_signal(effective_strain: Any, bone: Any, voxel_size_um: float, influence_distance_um: float) -> Any:
    """Effective strain averaged over the bone within the influence distance (float32).

    A normalised Gaussian (σ = ``influence_distance_um``): ``G*(ε·b) / G*(b)`` with ``b``
    the bone mask, so the value is a bone average wherever bone is near, 0 far from bone.
    """
    xp = array_module(bone)
    ndi = ndimage_module(xp)
    sigma = float(influence_distance_um) / float(voxel_size_um)
    b = (bone >= 0.5).astype(xp.float32)
    num = ndi.gaussian_filter(xp.asarray(effective_strain, dtype=xp.float32) * b, sigma, mode="nearest")
    den = ndi.gaussian_filter(b, sigma, mode="nearest")
    out = xp.where(den > 1e-3, num / xp.maximum(den, 1e-3), 0.0)
    return out.astype(xp.float32)


def _solve_setpoint(values: np.ndarray, exponent: float, lo: float, hi: float, share: float,
                    weights: np.ndarray | None = None) -> float:
    """``S`` with the (``weights``-weighted) mean of ``1 − w + w·clip(values/S, lo, hi)^exponent`` = 1.

    Root of a monotonic function of log S (Brent's method).
    """
    from scipy.optimize import brentq  # noqa: PLC0415

    v = np.asarray(values, dtype=np.float64)
    wt = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = v > 0
    v, wt = v[keep], wt[keep]
    if v.size == 0:
        raise ValueError("no loaded bone surface: the structure carries no load along the axis")

    def g(log_s: float) -> float:
        factor = (1.0 - share) + share * np.clip(v / math.exp(log_s), lo, hi) ** exponent
        return float(np.sum(wt * factor) / np.sum(wt)) - 1.0

    a, b = math.log(v.min()) - math.log(hi) - 1.0, math.log(v.max()) - math.log(lo) + 1.0
    return math.exp(brentq(g, a, b, xtol=1e-12, rtol=1e-12))


#: Fewest cavity voxels in flight over which a compartment's refill set point is fitted.
MIN_CAVITY_VOXELS = 50


@dataclass
class Cavities:
    """The BMUs in flight, per voxel (NumPy or CuPy, shape of the volume).

    ``weight``: the bone fraction the voxel's BMU removes or removed (float32; 0 outside any
    BMU and in the marrow above an opening, which removed nothing). ``seed``: the flat index
    of the voxel where that BMU started (uint32), whose signal steers its refill
    (``RemodelState.bmu_seed``; meaningful where ``weight`` > 0).
    """

    weight: Any
    seed: Any


def bmus_in_flight(state: Any) -> Cavities:
    """The :class:`Cavities` of the engine's state (:class:`voxelbone.remodel.state.RemodelState`):
    voxels owned by a BMU, dug (``bmu_amount`` is the bone removed) or still to dig
    (``bmu_amount`` of the voxel's bone), each with its BMU's seed."""
    from .state import FLAG_OVERFILL, FLAG_RESORBED  # noqa: PLC0415

    xp = array_module(state.bone)
    owned = (state.bmu_day >= 0) & ((state.bmu_flags & FLAG_OVERFILL) == 0)
    dug = (state.bmu_flags & FLAG_RESORBED) != 0
    removed = xp.where(dug, state.bmu_amount, state.bmu_amount * state.bone)
    return Cavities(xp.where(owned, removed, 0.0).astype(xp.float32), state.bmu_seed)


#: Compartments with a set point of their own (their rates are calibrated separately).
COMPARTMENTS: dict[str, int] = {"trabecular": int(Region.TRABECULAR), "cortical": int(Region.CORTICAL)}


class Mechanostat:
    """Solves the load case, holds the signal and set points, and builds the modulation.

    Parameters
    ----------
    params : MechanostatParams, optional
        Rule constants.
    """

    def __init__(self, params: MechanostatParams | None = None) -> None:
        self.params = params or MechanostatParams()
        #: Set points per compartment (``COMPARTMENTS`` names); ``None`` until :meth:`calibrate`.
        self.setpoint_resorption: dict[str, float] | None = None
        self.setpoint_formation: dict[str, float] | None = None
        self.shift_start: float | None = None
        self.result: Any = None
        self.signal: Any = None
        self.region: Any = None

    def solve(self, volume: BoneVolume, keep: bool = True, cavities: Cavities | None = None) -> Any:
        """Compress ``volume`` along the load axis (warm start) and update the signal.

        With ``keep=False`` (a measurement only) the signal and the warm start stay as they
        were. ``cavities``: :func:`bmus_in_flight` of the engine, over
        which the refill set points are fitted when there are enough of them. Returns the
        :class:`~voxelbone.mechanics.MechanicsResult`.
        """
        from ..mechanics import apparent_modulus  # noqa: PLC0415

        prev = None if self.result is None else self.result.displacement_voxels
        res = apparent_modulus(volume, axis=self.params.axis, rtol=self.params.rtol, boundary=self.params.boundary,
                               initial_displacement=prev)
        if not keep:
            return res
        self.result = res
        self.signal = local_signal(res.effective_strain, volume.bone, volume.voxel_size_um,
                                   self.params.influence_distance_um)
        self.region = volume.region.copy()  # the compartments this signal belongs to
        if self.params.accommodate and self.setpoint_resorption is not None:
            self._fit_setpoints(volume, cavities)
        return res

    def _shift(self, estradiol_pg_ml: float) -> float:
        return 1.0 + self.params.estradiol_setpoint_shift * max(1.0 - estradiol_signal(estradiol_pg_ml), 0.0)

    def calibrate(self, volume: BoneVolume, estradiol_pg_ml: float, cavities: Cavities | None = None) -> None:
        """Fix the set points so each compartment's mean modulation is 1 (habitual load).

        ``estradiol_pg_ml`` is the hormone state the set points belong to (the start of the
        run); they stay fixed (or, with ``accommodate``, later solves fit them again at that
        state). ``cavities``: as
        in :meth:`solve`.
        """
        if self.signal is None:
            raise ValueError("calibrate needs a solve first (Mechanostat.solve)")
        self._fit_setpoints(volume, cavities)
        self.shift_start = self._shift(estradiol_pg_ml)

    def _fit_setpoints(self, volume: BoneVolume, cavities: Cavities | None = None) -> None:
        """Per compartment (trabecular, cortical; one without loaded surface gets none and
        borrows the other's): activation's mean over its surface voxels is 1; refill's mean
        over its BMUs is 1, so the net bone balance of the cell layer stays too.

        The BMUs are those in flight (``cavities``: each voxel weighted by the bone its BMU
        removes, at the signal of its BMU's seed, the one its refill follows, and in the
        compartment of that seed) when a compartment seeds at least ``MIN_CAVITY_VOXELS`` of
        their voxels, else the
        surface weighted by activation (BMUs start more often where they refill less). The
        cavities matter: a cavity weakens its strut, so the next solve finds more strain
        around it and it would refill more than the surface's mean says — a gain from every
        BMU's own hole (measured: the lumbar cortex gained 0.4–2.2 % a year more than blind
        remodelling under untreated loss).
        """
        p = self.params
        surf = asnumpy(surface_mask(volume.bone, volume.region))
        region = asnumpy(volume.region)
        signal = asnumpy(self.signal)
        lo, hi, w = p.signal_ratio_min, p.signal_ratio_max, p.mechanical_share
        if cavities is not None:
            weight = asnumpy(cavities.weight).ravel()
            owned = weight > 0
            weight = weight[owned]
            at = asnumpy(cavities.seed).ravel()[owned].astype(np.int64)
            seed_signal, seed_region = signal.ravel()[at], region.ravel()[at]
        res, form = {}, {}
        for name, label in COMPARTMENTS.items():
            values = signal[surf & (region == label)]
            if not (values > 0).any():
                continue
            res[name] = _solve_setpoint(values, -p.resorption_exponent, lo, hi, w)
            in_flight = None if cavities is None else (seed_region == label) & (seed_signal > 0)
            if in_flight is not None and int(in_flight.sum()) >= MIN_CAVITY_VOXELS:
                form[name] = _solve_setpoint(seed_signal[in_flight], p.formation_exponent, lo, hi, w,
                                             weights=weight[in_flight])
            else:
                act = (1.0 - w) + w * np.clip(values / res[name], lo, hi) ** (-p.resorption_exponent)
                form[name] = _solve_setpoint(values, p.formation_exponent, lo, hi, w, weights=act)
        if not res:
            raise ValueError("no loaded bone surface: the structure carries no load along the axis")
        self.setpoint_resorption, self.setpoint_formation = res, form

    def _setpoint_field(self, setpoints: dict[str, float], factor: float) -> Any:
        """Per voxel ``factor / S_set`` of its compartment (float32)."""
        xp = array_module(self.signal)
        first = next(iter(setpoints.values()))
        trab = np.float32(factor / setpoints.get("trabecular", first))
        cort = np.float32(factor / setpoints.get("cortical", first))
        return xp.where(self.region == int(Region.CORTICAL), cort, trab).astype(xp.float32)

    def modulation(self, load_scale: float, estradiol_pg_ml: float) -> Modulation:
        """The activation and refill factors for the current signal, load and hormones."""
        if self.setpoint_resorption is None or self.setpoint_formation is None or self.signal is None:
            raise ValueError("modulation needs a solve and a calibration first")
        if not (math.isfinite(load_scale) and load_scale >= 0):
            raise ValueError(f"load_scale must be a finite number ≥ 0, got {load_scale!r}")
        p = self.params
        xp = array_module(self.signal)
        factor = load_scale * self.shift_start / self._shift(estradiol_pg_ml)
        w = p.mechanical_share
        s_r = xp.clip(self.signal * self._setpoint_field(self.setpoint_resorption, factor),
                      p.signal_ratio_min, p.signal_ratio_max)
        s_f = xp.clip(self.signal * self._setpoint_field(self.setpoint_formation, factor),
                      p.signal_ratio_min, p.signal_ratio_max)
        act = (1.0 - w) + w * s_r ** (-p.resorption_exponent)
        ref = (1.0 - w) + w * s_f ** p.formation_exponent
        if p.steer == "refill":
            act = xp.ones_like(act)
        elif p.steer == "activation":
            ref = xp.ones_like(ref)
        return Modulation(xp.ascontiguousarray(act, dtype=xp.float32), xp.ascontiguousarray(ref, dtype=xp.float32))

    def state(self) -> dict[str, Any]:
        """Set points for a checkpoint."""
        return {"setpoint_resorption": self.setpoint_resorption, "setpoint_formation": self.setpoint_formation,
                "shift_start": self.shift_start}

    def restore(self, state: dict[str, Any]) -> None:
        """Set points from :meth:`state`."""
        def per_compartment(v: Any) -> dict[str, float] | None:
            return {"trabecular": float(v)} if isinstance(v, (int, float)) else v  # one set point: older checkpoints

        self.setpoint_resorption = per_compartment(state.get("setpoint_resorption"))
        self.setpoint_formation = per_compartment(state.get("setpoint_formation"))
        self.shift_start = state.get("shift_start")
