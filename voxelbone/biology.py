"""Hormones → bone cell activity → remodeling rates for the voxel layer.

The backbone is the bone cell population model of Pivonka et al. (2008, Bone 43:249),
built on Lemaire et al. (2004, J Theor Biol 229:293), with the parameter values of the
maintained open implementation ``cmodiz/Bone-Models`` (MIT; several printed values are
wrong in the papers): precursor and active osteoblasts (OBp, OBa) and active osteoclasts
(OCa), coupled by TGF-β released from resorbed bone and by RANKL/RANK/OPG, with PTH acting
on RANKL and OPG expression.

Hormones enter where the biology puts them (model.md §1b):

* **estradiol** lowers RANKL production (postmenopausal deficiency as an extra RANKL
  production term, Martínez-Reina & Pivonka 2019 Bone 125:87), raises OPG production and
  shortens osteoclast life (Nakamura et al. 2007 Cell 130:811) — the last deepens erosion
  cavities when it is missing. In men estradiol comes from aromatised testosterone
  (:mod:`voxelbone.hormones`), so most of testosterone's anti-resorptive effect runs
  through it (Finkelstein et al. 2013);
* **testosterone** drives osteoblast differentiation through the androgen receptor;
* **IGF-1** (GH) recruits and differentiates osteoblasts and raises osteoclastogenesis:
  turnover rises first, formation follows (the remodeling-space transient);
* **PTH**: its concentration acts on RANKL/OPG as in Pivonka et al. (catabolic when
  continuous); its anabolic action runs through a two-state receptor (Martonova et al.
  2023): occupied receptors desensitise and recover, and the osteoblast response follows the
  rise of active receptor above its adapted level, so daily pulses are anabolic and a
  sustained excess is not;
* **cortisol excess** raises osteoblast apoptosis, lowers their differentiation and
  transiently raises RANKL (Weinstein 2011);
* **IL-1, IL-6, TNF-α** raise RANKL production and lower osteoblast differentiation
  (Redlich & Smolen 2012);
* **mechanical feedback** (Scheiner et al. 2013; Pivonka et al. 2013): an internal bone
  volume follows formation minus resorption, and its loss raises the strain-energy
  stimulus, which recruits osteoblasts — so the loss after menopause slows as bone is lost,
  without being told to.

The cell model is integrated hourly (compiled with Numba: ten years take milliseconds) and
mapped to the rates of the voxel layer (:class:`RemodelingRates`):

* activation frequency Ac.f ∝ osteoclast generation flux (``D_OCp · π_act,OCp^RANKL``),
  scaled to the site's reference value (0.13 /yr iliac premenopausal; Recker et al. 2004);
* erosion depth ∝ osteoclast life span (1 / apoptosis rate), 47 µm at the reference;
* refill fraction (W.Th/E.De) = active osteoblasts over the osteoclasts of ~100 days
  before (formation follows resorption), each relative to the population's adapted steady
  state, so an adapted population is balanced;
* modelling-based formation (µm/day per µm² of quiescent surface) while PTH pulses drive
  osteoblast commitment: a share of formation laid on quiescent surfaces without prior
  resorption (:func:`modelling_um_per_day`; Dempster et al. 2001, Lindsay et al. 2006).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any

import numba
import numpy as np
from scipy.optimize import brentq

from .hormones import REFERENCE_STATE, STEPS_PER_DAY, HormoneCourse, HormoneState
from .presets import populations
from .remodel.state import RemodelingRates
from .sites import get_site
from .units import DAYS_PER_YEAR

__all__ = [
    "CELL_OUTPUTS",
    "CELL_STATE",
    "ActivityCourse",
    "CellOutput",
    "CellParameters",
    "CellState",
    "HormoneEffects",
    "RemodelingRates",
    "cell_activity",
    "modelling_um_per_day",
    "steady_state",
]

PTH_PG_ML_PER_PM = 9.4  # PTH(1-84), 9.4 kDa: 1 pM = 9.4 pg/mL


@dataclass(frozen=True)
class CellParameters:
    """Pivonka et al. (2008) parameters as maintained in ``cmodiz/Bone-Models`` (pM, days)."""

    D_OBu: float = 7.00e-4
    D_OBp: float = 2.674077909527713e-1
    D_OCp: float = 2.1e-3
    A_OBa: float = 1.89e-1
    A_OCa: float = 7.00e-1
    K_TGF_act_OBu: float = 4.545454545454545e-3
    K_TGF_rep_OBp: float = 1.415624253823446e-3
    K_TGF_act_OCa: float = 4.545454545454545e-3
    K_PTH_act: float = 1.5e2
    K_PTH_rep: float = 2.225814277099542e-1
    beta_OPG: float = 1.624900337835679e8
    OPG_max: float = 2.0e8
    D_OPG: float = 3.5e-1
    R_RANKL: float = 2.703476379131062e6
    beta_RANKL: float = 1.684195714712206e2
    D_RANKL: float = 1.0132471014805027e1
    K_A_OPG: float = 1.0e-3
    K_A_RANK: float = 3.411764705882353e-2
    RANK: float = 10.0
    K_RANKL_RANK: float = 4.457452802710724


@dataclass(frozen=True)
class HormoneEffects:
    """Strengths of the hormone entry points (the model's calibration parameters).

    Estradiol acts through a threshold-like Hill function of its level; testosterone and
    IGF-1 as power laws of their ratio to the reference (premenopausal) level; cortisol and
    cytokine excesses are relative to their reference. The reference levels are
    ``reference`` (default :data:`voxelbone.hormones.REFERENCE_STATE`).
    The parameters marked *fitted* were adjusted so the cell layer reproduces model.md §2
    (Ac.f 0.13 → 0.24 /yr one year after menopause, E.De 47 → 52 µm, BMU balance → −5.7 µm
    at two years) and the clinical BMD table of model.md §3.
    """

    reference: HormoneState = REFERENCE_STATE  # levels every effect is relative to
    K_estradiol_pg_ml: float = 15.0
    estradiol_hill: float = 2.0            # threshold-like response (Khosla et al. 2001: ~25 pg/mL in men)
    estradiol_rankl: float = 7.0          # fitted: PMO RANKL production (× β_RANKL) at full deficiency
    estradiol_opg: float = 0.3             # OPG production change per unit of relative E2 signal
    estradiol_oc_apoptosis: float = 0.3   # fitted: E.De 47 → 52 µm early after menopause
    erosion_depth_exponent: float = 1.0    # E.De ∝ (osteoclast life span)^exponent
    testosterone_ob: float = 0.05           # fitted: AR drive on osteoblast commitment, ∝ (T/T_ref)^this
    testosterone_ob_survival: float = 0.05  # fitted: AR drive on osteoblast survival
    igf1_obu: float = 1.2                  # fitted: osteoblast recruitment ∝ (IGF-1/ref)^this
    igf1_ocp: float = 1.0                  # fitted: osteoclastogenesis (turnover) ∝ (IGF-1/ref)^this
    K_pth_receptor_pm: float = 20.0        # PTH1R occupancy half-saturation
    pth_desensitise_per_day: float = 2.0  # desensitisation of occupied receptors
    pth_recover_per_day: float = 4.0       # resensitisation
    pth_adapt_days: float = 3.0            # adaptation of the osteoblast response
    # Teriparatide's first-year gain with modelling-based formation (lumbar abmd_pct +5 to +8 %/yr,
    # femoral neck +1.5 to +4 %/yr; Neer et al. 2001, McClung et al. 2005); was 100 and 10:
    pth_anabolic: float = 10.0             # fitted: OB commitment per unit anabolic signal
    pth_ob_survival: float = 2.0           # fitted: OB apoptosis reduction per unit anabolic signal
    cortisol_ob_apoptosis: float = 0.15
    cortisol_ob_differentiation: float = 0.1
    cortisol_rankl_transient: float = 0.6
    cortisol_adapt_days: float = 90.0
    cytokine_rankl: float = 0.15
    cytokine_ob: float = 0.06
    mechanical_feedback: float = 2.4       # fitted: OB recruitment per unit SED stimulus (loss slows)
    formation_lag_days: float = 100.0
    refill_gain: float = 0.8               # fitted: BMU balance per unit of formation/resorption imbalance
    max_refill: float = 2.1                # fitted: upper bound of the refill fraction (anabolic BMUs overfill their cavity)
    # IGF-1 relative to the level the bone is adapted to (the population's own, before any
    # drug): GH therapy raises turnover within weeks (more BMUs: the early dip) and the work
    # of each osteoblast team (wall thickness: the later gain). Untreated courses: factor 1.
    igf1_activation: float = 0.6           # fitted: Ac.f ∝ (IGF-1/IGF-1 adapted)^this (GH dip)
    igf1_refill: float = 1.0               # fitted: refill ∝ (IGF-1/IGF-1 adapted)^this (GH gain)
    # Modelling-based formation under intermittent PTH (lining cells on quiescent surfaces turned
    # into osteoblasts; Dempster et al. 2001 JBMR 16:1846; Lindsay et al. 2006 JBMR 21:366):
    modelling_share: float = 0.30          # share of formation on quiescent surfaces (Lindsay et al. 2006: ~30 %)
    pth_modelling_drive: float = 0.1       # assumed: anabolic drive k_PTH·a at which quiescent surfaces form


@dataclass
class ActivityCourse:
    """Remodeling rates and cell populations over time (daily samples).

    ``initial_rates`` are the rates of the steady state before the scenario (the
    population's own hormone levels, no drug): the bone's remodeling space and tissue age
    are set to them before day 0.
    """

    days: np.ndarray
    activation_trabecular_per_yr: np.ndarray
    activation_cortical_per_yr: np.ndarray
    erosion_depth_um: np.ndarray
    refill_trabecular: np.ndarray
    refill_cortical: np.ndarray
    cells: dict[str, np.ndarray] = field(default_factory=dict)
    initial_rates: RemodelingRates | None = None
    #: Modelling-based formation, µm/day per µm² of quiescent surface (``None``: none).
    modelling_um_per_day: np.ndarray | None = None

    def at(self, day: float) -> RemodelingRates:
        """Rates at ``day`` (linear interpolation)."""
        return RemodelingRates(**{
            f.name: float(np.interp(day, self.days, v)) if (v := getattr(self, f.name)) is not None else 0.0
            for f in fields(RemodelingRates)
        })

    def bmu_balance_um(self) -> np.ndarray:
        """Trabecular BMU balance (wall thickness − erosion depth), µm."""
        return (self.refill_trabecular - 1.0) * self.erosion_depth_um


# --------------------------------------------------------------------------------------
# hormone signals → modifiers (vectorised over the course)
# --------------------------------------------------------------------------------------
def _modifiers(course: HormoneCourse, fx: HormoneEffects) -> dict[str, np.ndarray]:
    ref = fx.reference
    E = np.asarray(course.estradiol_pg_ml)
    n = fx.estradiol_hill
    sE = E**n / (E**n + fx.K_estradiol_pg_ml**n)
    sE0 = ref.estradiol_pg_ml**n / (ref.estradiol_pg_ml**n + fx.K_estradiol_pg_ml**n)
    eE = sE / sE0
    lT = np.log(np.maximum(np.asarray(course.testosterone_ng_dl), 1.0) / ref.testosterone_ng_dl)
    lI = np.log(np.maximum(np.asarray(course.igf1_ng_ml), 1.0) / ref.igf1_ng_ml)
    xC = np.maximum(np.asarray(course.cortisol_ug_dl) / ref.cortisol_ug_dl - 1.0, 0.0)
    xI = (np.maximum(np.log(np.maximum(course.il6_pg_ml, 1e-3) / ref.il6_pg_ml), 0)
          + np.maximum(np.log(np.maximum(course.il1_pg_ml, 1e-3) / ref.il1_pg_ml), 0)
          + np.maximum(np.log(np.maximum(course.tnf_pg_ml, 1e-3) / ref.tnf_pg_ml), 0)) / 3.0
    return {
        "rankl_extra": fx.estradiol_rankl * np.maximum(1.0 - eE, 0.0) + fx.cytokine_rankl * xI,
        "cortisol_excess": xC,
        "opg": np.maximum(1.0 + fx.estradiol_opg * (eE - 1.0), 0.05),
        "a_oca": np.maximum(1.0 + fx.estradiol_oc_apoptosis * (eE - 1.0), 0.3),
        # osteoblast commitment (D_OBu) and survival (A_OBa) set the steady-state OBa; D_OBp does not
        "d_obu": (np.exp(fx.igf1_obu * lI + fx.testosterone_ob * lT) * np.maximum(1.0 - fx.cytokine_ob * xI, 0.05)
                  * np.maximum(1.0 - fx.cortisol_ob_differentiation * xC, 0.05)),
        "d_obp": np.ones_like(E),
        "a_oba": (1.0 + fx.cortisol_ob_apoptosis * xC) * np.exp(-fx.testosterone_ob_survival * lT),
        "d_ocp": np.exp(fx.igf1_ocp * lI),
        "pth_pm": np.asarray(course.pth_pg_ml) / PTH_PG_ML_PER_PM,
    }


# --------------------------------------------------------------------------------------
# named slots of the integrator's flat vectors (one definition of each order)
# --------------------------------------------------------------------------------------
#: Starting values of the cell model, in the order of its flat state vector: the integrated
#: variables, then the adapted set points the internal bone volume is balanced against.
CELL_STATE = (
    "OBp",                  # precursor osteoblasts, pM
    "OBa",                  # active osteoblasts, pM
    "OCa",                  # active osteoclasts, pM
    "bone_volume",          # internal bone volume relative to the adapted state
    "receptor",             # free (sensitive) fraction of PTH receptors
    "receptor_adapted",     # adapted level of active receptor (anabolic PTH signal baseline)
    "cortisol_adapted",     # adapted cortisol excess (its RANKL transient decays)
    "oca_lagged",           # osteoclasts of ~formation_lag_days before (formation follows resorption)
    "adapted_OBa",          # set point: OBa of the population's adapted steady state
    "adapted_OCa",          # set point: OCa of the population's adapted steady state
)
#: Outputs of the cell model per sample, in the order of its output columns.
CELL_OUTPUTS = (
    "OBp",
    "OBa",
    "OCa",
    "bone_volume_internal",
    "oc_flux",              # osteoclast generation flux D_OCp · π_act,OCp^RANKL (drives Ac.f)
    "oc_apoptosis",         # osteoclast apoptosis rate (sets E.De)
    "oca_lagged",
    "RANKL",
    "OPG",
    "pth_anabolic_signal",
)
#: Hormone-effect constants of the integrator, in the order of its flat vector (names of
#: :class:`HormoneEffects` fields, plus ``bone_volume_rate`` set from the site).
_EFFECT_SLOTS = (
    "K_pth_receptor_pm",
    "pth_desensitise_per_day",
    "pth_recover_per_day",
    "pth_adapt_days",
    "pth_anabolic",
    "pth_ob_survival",
    "cortisol_rankl_transient",
    "cortisol_adapt_days",
    "mechanical_feedback",
    "bone_volume_rate",
    "formation_lag_days",
)
#: Slot index of each :data:`CELL_STATE` name (``CellState.OBa`` ...), used by the integrator.
CellState = IntEnum("CellState", CELL_STATE, start=0)
#: Column index of each :data:`CELL_OUTPUTS` name (``CellOutput.RANKL`` ...).
CellOutput = IntEnum("CellOutput", CELL_OUTPUTS, start=0)
_Effect = IntEnum("_Effect", _EFFECT_SLOTS, start=0)
_N_OUTPUTS = len(CELL_OUTPUTS)
_STATE_DTYPE = np.dtype([(name, np.float64) for name in CELL_STATE])
_OUTPUT_DTYPE = np.dtype([(name, np.float64) for name in CELL_OUTPUTS])


def _pack_state(**values: float) -> np.ndarray:
    """The integrator's flat starting vector from one value per :data:`CELL_STATE` name."""
    missing = sorted(set(CELL_STATE) - set(values))
    unknown = sorted(set(values) - set(CELL_STATE))
    if missing or unknown:
        raise ValueError(f"cell state needs exactly {', '.join(CELL_STATE)}; missing {missing}, unknown {unknown}")
    x0 = np.zeros((), dtype=_STATE_DTYPE)
    for name, v in values.items():
        x0[name] = v
    return x0.reshape(1).view(np.float64)


def _named_outputs(samples: np.ndarray) -> np.ndarray:
    """Output rows (n, len(CELL_OUTPUTS)) as a structured array with one field per output name."""
    return np.ascontiguousarray(samples).view(_OUTPUT_DTYPE).reshape(samples.shape[0])


# --------------------------------------------------------------------------------------
# the ODE (Numba)
# --------------------------------------------------------------------------------------
@numba.njit(cache=True)
def _fluxes(OBp, OBa, OCa, pth, rankl_extra, opg_mod, p):  # pragma: no cover - compiled
    (D_OBu, D_OBp, D_OCp, A_OBa, A_OCa, K1, K2, K3, K_act, K_rep, beta_OPG, OPG_max, D_OPG, R_RANKL,
     beta_RANKL, D_RANKL, KA_OPG, KA_RANK, RANK, K8) = p
    tgf = OCa
    act_obu = tgf / (tgf + K1)
    rep_obp = K2 / (tgf + K2)
    act_oca = tgf / (tgf + K3)
    pi_act = pth / (pth + K_act)
    pi_rep = K_rep / (pth + K_rep)
    p_opg = beta_OPG * OBa * pi_rep * opg_mod
    opg = p_opg * OPG_max / (p_opg + D_OPG * OPG_max)
    rankl_eff = R_RANKL * OBp * pi_act
    rankl = rankl_eff / (1.0 + KA_OPG * opg + KA_RANK * RANK) * (beta_RANKL * (1.0 + rankl_extra)) / (
        beta_RANKL * (1.0 + rankl_extra) + D_RANKL * rankl_eff)
    rr = KA_RANK * rankl * RANK
    act_ocp = rr / (rr + K8)
    return act_obu, rep_obp, act_oca, act_ocp, rankl, opg


@numba.njit(cache=True)
def _integrate(dt, pth, rankl_extra, cort, opg_mod, a_oca, d_obu, d_obp, a_oba, d_ocp, p, fx, x0):  # pragma: no cover
    """Heun's method; returns the :data:`CELL_OUTPUTS` at every sample (slots named by :class:`CellState`)."""
    K_R = fx[_Effect.K_pth_receptor_pm]
    k_des = fx[_Effect.pth_desensitise_per_day]
    k_rec = fx[_Effect.pth_recover_per_day]
    tau_adapt = fx[_Effect.pth_adapt_days]
    k_ana = fx[_Effect.pth_anabolic]
    k_surv = fx[_Effect.pth_ob_survival]
    c_rankl = fx[_Effect.cortisol_rankl_transient]
    tau_cort = fx[_Effect.cortisol_adapt_days]
    mech = fx[_Effect.mechanical_feedback]
    lam = fx[_Effect.bone_volume_rate]
    tau_lag = fx[_Effect.formation_lag_days]
    n = pth.shape[0]
    out = np.empty((n, _N_OUTPUTS))
    OBp = x0[CellState.OBp]
    OBa = x0[CellState.OBa]
    OCa = x0[CellState.OCa]
    vbv = x0[CellState.bone_volume]
    R = x0[CellState.receptor]
    S_ad = x0[CellState.receptor_adapted]
    c_ad = x0[CellState.cortisol_adapted]
    oca_lag = x0[CellState.oca_lagged]
    oba_home = x0[CellState.adapted_OBa]
    oca_home = x0[CellState.adapted_OCa]
    D_OBu = p[0]
    D_OBp = p[1]
    D_OCp = p[2]
    A_OBa = p[3]
    A_OCa = p[4]
    for i in range(n):
        occ = pth[i] / (pth[i] + K_R)
        active = occ * R
        ana = max(active - S_ad, 0.0)
        trans_c = max(cort[i] - c_ad, 0.0)
        stim = 1.0 / (vbv * vbv) - 1.0
        mech_f = max(1.0 + mech * stim, 0.05)
        extra = rankl_extra[i] + c_rankl * trans_c
        dobu = D_OBu * d_obu[i] * mech_f * (1.0 + k_ana * ana)
        dobp = D_OBp * d_obp[i]
        aoba = A_OBa * a_oba[i] * max(1.0 - k_surv * ana, 0.2)
        docp = D_OCp * d_ocp[i]
        aoca = A_OCa * a_oca[i]
        # stage 1
        a1, r1, c1, o1, rankl, opg = _fluxes(OBp, OBa, OCa, pth[i], extra, opg_mod[i], p)
        f_obp1 = dobu * a1 - dobp * OBp * r1
        f_oba1 = dobp * OBp * r1 - aoba * OBa
        f_oca1 = docp * o1 - aoca * OCa * c1
        # stage 2
        OBp2 = OBp + dt * f_obp1
        OBa2 = OBa + dt * f_oba1
        OCa2 = OCa + dt * f_oca1
        a2, r2, c2, o2, _, _ = _fluxes(OBp2, OBa2, OCa2, pth[i], extra, opg_mod[i], p)
        f_obp2 = dobu * a2 - dobp * OBp2 * r2
        f_oba2 = dobp * OBp2 * r2 - aoba * OBa2
        f_oca2 = docp * o2 - aoca * OCa2 * c2
        OBp = OBp + 0.5 * dt * (f_obp1 + f_obp2)
        OBa = OBa + 0.5 * dt * (f_oba1 + f_oba2)
        OCa = OCa + 0.5 * dt * (f_oca1 + f_oca2)
        # receptor, adaptation, lags (exact exponential updates)
        R = R + dt * (k_rec * (1.0 - R) - k_des * occ * R)
        S_ad = S_ad + (active - S_ad) * (1.0 - math.exp(-dt / tau_adapt))
        c_ad = c_ad + (cort[i] - c_ad) * (1.0 - math.exp(-dt / tau_cort))
        oca_lag = oca_lag + (OCa - oca_lag) * (1.0 - math.exp(-dt / tau_lag))
        out[i, CellOutput.OBp] = OBp
        out[i, CellOutput.OBa] = OBa
        out[i, CellOutput.OCa] = OCa
        out[i, CellOutput.bone_volume_internal] = vbv
        out[i, CellOutput.oc_flux] = docp * o1
        out[i, CellOutput.oc_apoptosis] = aoca
        out[i, CellOutput.oca_lagged] = oca_lag
        out[i, CellOutput.RANKL] = rankl
        out[i, CellOutput.OPG] = opg
        out[i, CellOutput.pth_anabolic_signal] = ana
        # internal bone volume: formation − resorption relative to the adapted state (lam set by caller)
        vbv = vbv + dt * lam * (OBa / oba_home - oca_lag / oca_home)
        if vbv < 0.2:
            vbv = 0.2
    return out


def _param_vector(cp: CellParameters) -> np.ndarray:
    return np.array([getattr(cp, f.name) for f in fields(CellParameters)], dtype=np.float64)


def _fx_vector(fx: HormoneEffects, lam: float) -> np.ndarray:
    """The integrator's effect constants (:data:`_EFFECT_SLOTS`); ``lam`` is the bone-volume rate."""
    return np.array([lam if name == "bone_volume_rate" else getattr(fx, name) for name in _EFFECT_SLOTS],
                    dtype=np.float64)


def _constant_course(state: HormoneState, days: float = 2.0) -> HormoneCourse:
    d = np.arange(0.0, days, 1.0 / STEPS_PER_DAY)
    arrays = {f.name: np.full(d.shape, getattr(state, f.name)) for f in fields(HormoneState)}
    return HormoneCourse(d, **arrays)


def steady_state(state: HormoneState, cp: CellParameters | None = None, fx: HormoneEffects | None = None,
                 bone_volume: float = 1.0) -> dict[str, float]:
    """Steady state of the cell populations under constant hormone levels.

    ``bone_volume`` is the internal bone volume relative to the adapted state (its
    mechanical stimulus recruits osteoblasts).

    Solved exactly: for given OCa, OBp and OBa follow from the osteoblast equations, and
    OCa is the root of the osteoclast equation (``brentq``). Returns OBp, OBa, OCa (pM), the
    osteoclast generation flux and apoptosis rate, and the receptor's steady state.

    Examples
    --------
    >>> from voxelbone.hormones import REFERENCE_STATE
    >>> ss = steady_state(REFERENCE_STATE)
    >>> round(ss["OCa"] * 1e4, 2), ss["oc_apoptosis"]
    (8.46, 0.7)
    """
    cp = cp or CellParameters()
    fx = fx or HormoneEffects()
    m = {k: float(v[0]) for k, v in _modifiers(_constant_course(state), fx).items()}
    p = _param_vector(cp)
    pth = m["pth_pm"]
    occ = pth / (pth + fx.K_pth_receptor_pm)
    R = fx.pth_recover_per_day / (fx.pth_recover_per_day + fx.pth_desensitise_per_day * occ)
    extra = m["rankl_extra"]  # cortisol transient is 0 at steady state
    mech_f = max(1.0 + fx.mechanical_feedback * (1.0 / bone_volume**2 - 1.0), 0.05)
    dobu, dobp = cp.D_OBu * m["d_obu"] * mech_f, cp.D_OBp * m["d_obp"]
    aoba, docp, aoca = cp.A_OBa * m["a_oba"], cp.D_OCp * m["d_ocp"], cp.A_OCa * m["a_oca"]

    def ob(oca: float) -> tuple[float, float]:
        a1, r1, *_ = _fluxes(1.0, 1.0, oca, pth, extra, m["opg"], p)
        obp = dobu * a1 / (dobp * r1)
        oba = dobp * obp * r1 / aoba
        return obp, oba

    def g(oca: float) -> float:
        obp, oba = ob(oca)
        _, _, c1, o1, _, _ = _fluxes(obp, oba, oca, pth, extra, m["opg"], p)
        return docp * o1 - aoca * oca * c1

    oca = brentq(g, 1e-9, 1e-1, xtol=1e-18, rtol=1e-14, maxiter=500)
    obp, oba = ob(oca)
    _, _, _, o1, rankl, opg = _fluxes(obp, oba, oca, pth, extra, m["opg"], p)
    return {"OBp": obp, "OBa": oba, "OCa": oca, "oc_flux": docp * o1, "oc_apoptosis": aoca,
            "RANKL": rankl, "OPG": opg, "receptor": R, "receptor_active": occ * R}


def derivatives(x: np.ndarray, state: HormoneState, cp: CellParameters | None = None, fx: HormoneEffects | None = None) -> np.ndarray:
    """dOBp/dt, dOBa/dt, dOCa/dt at ``x = (OBp, OBa, OCa)`` under constant hormones (vBV = 1, receptor adapted)."""
    cp = cp or CellParameters()
    fx = fx or HormoneEffects()
    m = {k: float(v[0]) for k, v in _modifiers(_constant_course(state), fx).items()}
    p = _param_vector(cp)
    a1, r1, c1, o1, _, _ = _fluxes(x[0], x[1], x[2], m["pth_pm"], m["rankl_extra"], m["opg"], p)
    dobu, dobp = cp.D_OBu * m["d_obu"], cp.D_OBp * m["d_obp"]
    return np.array([dobu * a1 - dobp * x[0] * r1,
                     dobp * x[0] * r1 - cp.A_OBa * m["a_oba"] * x[1],
                     cp.D_OCp * m["d_ocp"] * o1 - cp.A_OCa * m["a_oca"] * x[2] * c1])


def equilibrium_bone_volume(state: HormoneState, home: dict[str, float], cp: CellParameters | None = None,
                            fx: HormoneEffects | None = None) -> float:
    """Internal bone volume at which BMUs are balanced under constant ``state`` (adapted set point ``home``).

    The mechanical stimulus of lost (or gained) bone changes osteoblast recruitment until
    formation matches resorption; a long-standing hormone state sits there.
    """
    def imbalance(v: float) -> float:
        ss = steady_state(state, cp, fx, bone_volume=v)
        return ss["OBa"] / home["OBa"] - ss["OCa"] / home["OCa"]

    lo, hi = 0.5, 1.5
    if imbalance(lo) * imbalance(hi) > 0:
        return lo if imbalance(lo) < 0 else hi
    return float(brentq(imbalance, lo, hi, xtol=1e-6))


def modelling_um_per_day(activation_per_yr: Any, erosion_depth_um: Any, refill: Any, pth_anabolic_signal: Any,
                         fx: HormoneEffects | None = None) -> np.ndarray:
    """Modelling-based formation rate, µm/day per µm² of quiescent surface.

    Intermittent PTH turns lining cells on quiescent surfaces into osteoblasts, which form
    bone without prior resorption (Dempster et al. 2001 J Bone Miner Res 16:1846; Jiang et
    al. 2003 J Bone Miner Res 18:1932; Kim et al. 2012 J Bone Miner Res 27:2075). In the
    first months of teriparatide about 30 % of cancellous formation is modelling-based
    (Lindsay et al. 2006 J Bone Miner Res 21:366). Remodelling units refill their cavities
    with ``RBF = Ac.f · E.De · min(ρ, 1) / 365.25`` µm/day per µm² of bone surface; with
    φ = ``fx.modelling_share`` of that formation and the modelling-based one together laid
    on quiescent surfaces,

    ``J_m = φ / (1 − φ) · RBF``

    while the anabolic drive ``k_PTH · a`` (the relative rise of osteoblast commitment by
    the PTH receptor's anabolic signal ``a``) is at least ``fx.pth_modelling_drive``; else 0.
    The overflow of overfilled units (ρ > 1, built above the cavity opening by the voxel
    layer; "overflow MBF", Dempster et al. 2018 J Bone Miner Res 33:627) comes on top.
    Daily PTH pulses hold the drive near 0.145; a sustained excess adapts it away, and the slow
    PTH drift of ageing keeps it near 10⁻⁴, so every course without intermittent PTH has
    exactly no modelling-based formation.

    Examples
    --------
    >>> import numpy as np
    >>> j = modelling_um_per_day(np.array([0.5, 0.5, 0.5]), np.array([60.0, 60.0, 60.0]), np.array([1.2, 2.0, 1.2]),
    ...                          np.array([0.0145, 0.0145, 1e-5]))
    >>> [round(float(v), 4) for v in j]
    [0.0352, 0.0352, 0.0]
    """
    fx = fx or DEFAULT_EFFECTS
    phi = fx.modelling_share
    if not 0.0 <= phi < 1.0:
        raise ValueError(f"modelling_share must lie in [0, 1), got {phi!r}")
    rho = np.asarray(refill, dtype=float)
    cavity = np.asarray(activation_per_yr, dtype=float) * np.asarray(erosion_depth_um, dtype=float) / DAYS_PER_YEAR
    mbf = phi / (1.0 - phi) * np.minimum(rho, 1.0) * cavity
    drive = fx.pth_anabolic * np.asarray(pth_anabolic_signal, dtype=float)
    return np.where(drive >= fx.pth_modelling_drive, mbf, 0.0)


#: The calibrated hormone effects used when none are given.
DEFAULT_EFFECTS = HormoneEffects()


#: The cell outputs an :class:`ActivityCourse` carries in ``cells``.
_ACTIVITY_CELLS = ("OBp", "OBa", "OCa", "bone_volume_internal", "RANKL", "OPG", "pth_anabolic_signal")


def cell_activity(
    course: HormoneCourse,
    site: str,
    *,
    adapted: HormoneState | None = None,
    cp: CellParameters | None = None,
    fx: HormoneEffects | None = None,
) -> ActivityCourse:
    """Integrate the cell model over a hormone course and map it to remodeling rates.

    Parameters
    ----------
    course : HormoneCourse
        Hormone levels on a regular grid (hourly for PTH pulses).
    site : str
        ``lumbar_spine`` or ``femoral_neck`` (reference rates, surface density).
    adapted : HormoneState, optional
        Hormone levels the bone is adapted to (mechanical set point, balanced BMUs);
        default: the baseline of the course's ``adapted_to`` population.
    cp, fx : optional
        Cell parameters and hormone effects.

    Returns
    -------
    ActivityCourse
        Daily rates and cell populations. The cells start at the quasi-steady state of the
        hormone levels on day 0.

    Examples
    --------
    A year without estradiol: turnover stays high and each BMU removes more than it rebuilds.

    >>> from voxelbone.presets import course_for_periods
    >>> a = cell_activity(course_for_periods([("postmenopausal_untreated", 1.0)]), "lumbar_spine")
    >>> a.days.size, sorted(a.cells)[:3]
    (365, ['OBa', 'OBp', 'OCa'])
    >>> round(float(a.activation_trabecular_per_yr[-1]), 2), round(float(a.bmu_balance_um()[-1]), 1)
    (0.54, -4.3)
    """
    sr = get_site(site).remodeling
    cp = cp or CellParameters()
    fx = fx or DEFAULT_EFFECTS
    if adapted is None:
        pops = populations()
        adapted = pops[course.adapted_to].circulating if course.adapted_to in pops else fx.reference
    ref = steady_state(fx.reference, cp, fx)
    home = steady_state(adapted, cp, fx)
    start_state = course.pre_state or HormoneState(**{f.name: float(getattr(course, f.name)[0]) for f in fields(HormoneState)})
    vbv0 = course.initial_bone_volume
    if vbv0 is None:
        vbv0 = equilibrium_bone_volume(start_state, home, cp, fx)
    start = steady_state(start_state, cp, fx, bone_volume=vbv0)
    mods = _modifiers(course, fx)
    dt = course.dt_days
    # internal bone volume: relative change per day at the reference turnover and a unit imbalance
    lam = sr.activation_trabecular_per_yr / DAYS_PER_YEAR * sr.bs_bv_per_mm * (2.0 / 3.0) * sr.erosion_depth_um / 1000.0
    x0 = _pack_state(OBp=start["OBp"], OBa=start["OBa"], OCa=start["OCa"], bone_volume=vbv0,
                     receptor=start["receptor"], receptor_adapted=start["receptor_active"],
                     cortisol_adapted=mods["cortisol_excess"][0], oca_lagged=start["OCa"],
                     adapted_OBa=home["OBa"], adapted_OCa=home["OCa"])
    out = _integrate(dt, mods["pth_pm"], mods["rankl_extra"], mods["cortisol_excess"], mods["opg"], mods["a_oca"],
                     mods["d_obu"], mods["d_obp"], mods["a_oba"], mods["d_ocp"], _param_vector(cp), _fx_vector(fx, lam), x0)
    per = max(int(round(1.0 / dt)), 1)
    n = out.shape[0] // per
    daily = _named_outputs(out[: n * per].reshape(n, per, out.shape[1]).mean(axis=1))
    OBa, OCa, flux, aoca = daily["OBa"], daily["OCa"], daily["oc_flux"], daily["oc_apoptosis"]
    igf = course.daily_mean().igf1_ng_ml[:n] if course.dt_days < 1.0 else np.asarray(course.igf1_ng_ml)[:n]
    igf_rel = np.maximum(igf, 1.0) / max(start_state.igf1_ng_ml, 1.0)
    acf_scale = flux / ref["oc_flux"] * igf_rel**fx.igf1_activation

    def balance(oba: Any, oca: Any) -> Any:  # refill fraction from the osteoblast/osteoclast ratio (unclipped)
        return sr.refill * (1.0 + fx.refill_gain * ((oba / home["OBa"]) / (oca / home["OCa"]) - 1.0))

    def depth_um(oc_apoptosis: Any) -> Any:
        return np.clip(sr.erosion_depth_um * (ref["oc_apoptosis"] / oc_apoptosis) ** fx.erosion_depth_exponent, 5.0, 200.0)

    refill = np.clip(balance(OBa, OCa) * igf_rel**fx.igf1_refill, 0.0, fx.max_refill)
    depth = depth_um(aoca)
    acf_trab = sr.activation_trabecular_per_yr * acf_scale
    modelling = modelling_um_per_day(acf_trab, depth, refill, daily["pth_anabolic_signal"], fx)
    start_refill = float(np.clip(balance(start["OBa"], start["OCa"]), 0.0, fx.max_refill))
    initial = RemodelingRates(
        activation_trabecular_per_yr=sr.activation_trabecular_per_yr * start["oc_flux"] / ref["oc_flux"],
        activation_cortical_per_yr=sr.activation_cortical_per_yr * start["oc_flux"] / ref["oc_flux"],
        erosion_depth_um=float(depth_um(start["oc_apoptosis"])),
        refill_trabecular=start_refill,
        refill_cortical=start_refill,
    )
    return ActivityCourse(
        initial_rates=initial,
        days=np.arange(n, dtype=float),
        activation_trabecular_per_yr=acf_trab,
        activation_cortical_per_yr=sr.activation_cortical_per_yr * acf_scale,
        erosion_depth_um=depth,
        refill_trabecular=refill,
        refill_cortical=refill,
        cells={name: daily[name] for name in _ACTIVITY_CELLS},
        modelling_um_per_day=modelling,
    )

