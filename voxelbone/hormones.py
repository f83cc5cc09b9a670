"""Hormone levels: populations, their time trends, and the course a regimen produces.

Levels are in clinical units: estradiol pg/mL, testosterone ng/dL, IGF-1 ng/mL, PTH pg/mL,
cortisol µg/dL (cortisol-equivalent for glucocorticoid drugs), IL-6, IL-1β and TNF-α pg/mL.

A course is built on an hourly grid (so a daily PTH injection stays a pulse) from

* the population's baseline and trends: the fall of estradiol across the menopause
  transition (SWAN; Randolph et al. 2011) and the slow rise of PTH and IL-6 with years
  after menopause;
* the drugs of each period (:mod:`voxelbone.pharmacokinetics`), whose levels decay after a
  period ends;
* the couplings between hormones: aromatisation of testosterone to estradiol (~0.3 % of
  testosterone production; here serum E2 ≈ 0.05 pg/mL per ng/dL of testosterone, Longcope
  et al. 1969; Finkelstein et al. 2013) and its dose-dependent inhibition by aromatase
  inhibitors (``C/(C + IC50)``); negative feedback of exogenous testosterone on LH and the
  rise of endogenous testosterone with LH drive (gonadorelin, enclomiphene); IGF-1 rising
  with GH drive (GH secretagogues) with a time constant of days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.signal import lfilter

from .pharmacokinetics import Dosing, DrugSpec, dose_train, drug_level
from .units import DAYS_PER_YEAR, HOURS_PER_DAY

__all__ = [
    "HORMONES",
    "HormoneCourse",
    "HormoneState",
    "REFERENCE_STATE",
    "Population",
    "build_course",
]

#: Fields of a hormone state, in order.
HORMONES = (
    "estradiol_pg_ml",
    "testosterone_ng_dl",
    "igf1_ng_ml",
    "pth_pg_ml",
    "cortisol_ug_dl",
    "il6_pg_ml",
    "il1_pg_ml",
    "tnf_pg_ml",
)
#: Physiological bounds used to validate levels (a preset or file outside them is refused).
BOUNDS = {
    "estradiol_pg_ml": (0.0, 2000.0),
    "testosterone_ng_dl": (0.0, 3000.0),
    "igf1_ng_ml": (10.0, 1500.0),
    "pth_pg_ml": (1.0, 2000.0),
    "cortisol_ug_dl": (0.5, 200.0),
    "il6_pg_ml": (0.0, 1000.0),
    "il1_pg_ml": (0.0, 1000.0),
    "tnf_pg_ml": (0.0, 1000.0),
}
AROMATISATION_PG_ML_PER_NG_DL = 0.05
LH_FEEDBACK_NG_DL = 60.0
IGF1_TIME_CONSTANT_DAYS = 4.0
#: Steps per day of a hormone course: hourly, so a daily injection stays a pulse.
STEPS_PER_DAY = HOURS_PER_DAY


@dataclass(frozen=True)
class HormoneState:
    """Hormone levels at one time (clinical units)."""

    estradiol_pg_ml: float
    testosterone_ng_dl: float
    igf1_ng_ml: float
    pth_pg_ml: float
    cortisol_ug_dl: float
    il6_pg_ml: float
    il1_pg_ml: float
    tnf_pg_ml: float


#: Reference levels (premenopausal woman) to which every hormone effect of the cell layer is
#: relative (:class:`voxelbone.biology.HormoneEffects`) and at which the sites' reference BMU
#: rates hold.
REFERENCE_STATE = HormoneState(
    estradiol_pg_ml=100.0,
    testosterone_ng_dl=30.0,
    igf1_ng_ml=180.0,
    pth_pg_ml=30.0,
    cortisol_ug_dl=12.0,
    il6_pg_ml=1.5,
    il1_pg_ml=0.5,
    tnf_pg_ml=5.0,
)


@dataclass(frozen=True)
class Population:
    """Baseline levels of a population and how they change with time."""

    name: str
    description: str
    baseline: HormoneState
    adapted_to: str
    years_since_menopause: float | None = None
    transition_from_estradiol_pg_ml: float | None = None
    transition_time_constant_years: float = 0.4
    pth_trend_per_year: float = 0.0
    il6_trend_per_year: float = 0.0
    bone_deficit: float | str = 0.0
    bone_deficit_per_year_since_menopause: float = 0.0
    references: tuple[str, ...] = ()

    @property
    def initial_bone_volume(self) -> float | None:
        """Bone volume relative to the adapted state at the start; ``None``: at equilibrium.

        A long-standing hormone state (``bone_deficit = "equilibrium"``) has lost bone until
        the mechanical stimulus balances it; after menopause the loss so far grows with the
        years since the final menstrual period.
        """
        if self.bone_deficit == "equilibrium":
            return None
        lost = float(self.bone_deficit) + self.bone_deficit_per_year_since_menopause * (self.years_since_menopause or 0.0)
        return float(min(max(1.0 - lost, 0.5), 1.0))

    @property
    def circulating(self) -> HormoneState:
        """The population's own circulating levels on day 0, no drug: its levels with the
        aromatisation of its testosterone to estradiol added, as :func:`build_course` does."""
        lv = {h: float(v[0]) for h, v in self.levels(np.zeros(1)).items()}
        lv["estradiol_pg_ml"] += AROMATISATION_PG_ML_PER_NG_DL * lv["testosterone_ng_dl"]
        return HormoneState(**lv)

    def levels(self, days: np.ndarray, start_offset_years: float = 0.0) -> dict[str, np.ndarray]:
        """Baseline levels on ``days`` (days since the scenario start)."""
        out = {h: np.full(days.shape, float(getattr(self.baseline, h))) for h in HORMONES}
        if self.years_since_menopause is None:
            return out
        ysm = self.years_since_menopause + start_offset_years + days / DAYS_PER_YEAR
        if self.transition_from_estradiol_pg_ml is not None:
            e_post = self.baseline.estradiol_pg_ml
            e_pre = self.transition_from_estradiol_pg_ml
            out["estradiol_pg_ml"] = e_post + (e_pre - e_post) * np.exp(-np.maximum(ysm, 0.0) / self.transition_time_constant_years)
        out["pth_pg_ml"] = out["pth_pg_ml"] * (1.0 + self.pth_trend_per_year * np.maximum(ysm, 0.0))
        out["il6_pg_ml"] = out["il6_pg_ml"] * (1.0 + self.il6_trend_per_year * np.maximum(ysm, 0.0))
        return out


@dataclass
class HormoneCourse:
    """Hormone levels over time (clinical units) on a regular grid of ``days``.

    ``extras`` holds the drug-effect channels (aromatase inhibition, LH and GH drive) and
    the exogenous testosterone, for plots and checks. ``pre_state`` is the population's
    levels on day 0 before any drug (what the bone was exposed to before the scenario).
    """

    days: np.ndarray
    estradiol_pg_ml: np.ndarray
    testosterone_ng_dl: np.ndarray
    igf1_ng_ml: np.ndarray
    pth_pg_ml: np.ndarray
    cortisol_ug_dl: np.ndarray
    il6_pg_ml: np.ndarray
    il1_pg_ml: np.ndarray
    tnf_pg_ml: np.ndarray
    population: str = ""
    adapted_to: str = ""
    initial_bone_volume: float | None = 1.0
    pre_state: HormoneState | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def dt_days(self) -> float:
        """Grid step in days."""
        return float(self.days[1] - self.days[0]) if self.days.size > 1 else 1.0

    def at(self, day: float) -> HormoneState:
        """Levels at ``day`` (linear interpolation)."""
        return HormoneState(**{h: float(np.interp(day, self.days, getattr(self, h))) for h in HORMONES})

    def mean(self, start_day: float = 0.0, end_day: float | None = None) -> HormoneState:
        """Mean levels over ``[start_day, end_day)``."""
        sel = (self.days >= start_day) & (self.days < (self.days[-1] + 1 if end_day is None else end_day))
        return HormoneState(**{h: float(getattr(self, h)[sel].mean()) for h in HORMONES})

    def daily_mean(self) -> "HormoneCourse":
        """The course averaged over each whole day."""
        per = int(round(1.0 / self.dt_days))
        if per <= 1:
            return self
        n = self.days.size // per
        arrays = {h: getattr(self, h)[: n * per].reshape(n, per).mean(axis=1) for h in HORMONES}
        extras = {k: v[: n * per].reshape(n, per).mean(axis=1) for k, v in self.extras.items()}
        return HormoneCourse(np.arange(n, dtype=float), population=self.population, adapted_to=self.adapted_to,
                             initial_bone_volume=self.initial_bone_volume, pre_state=self.pre_state,
                             extras=extras, **arrays)

    def as_table(self) -> dict[str, np.ndarray]:
        """Column name → array (``day`` first)."""
        return {"day": self.days, **{h: getattr(self, h) for h in HORMONES}}


@dataclass(frozen=True)
class Segment:
    """One period of a course: a population and its drugs over ``[start_day, end_day)``."""

    population: Population
    dosings: tuple[tuple[Dosing, DrugSpec], ...]
    start_day: float
    end_day: float


def _lowpass(x: np.ndarray, tau_days: float, dt_days: float) -> np.ndarray:
    """First-order lag starting from 0 (no drug effect before the course)."""
    a = math.exp(-dt_days / tau_days)
    return lfilter([1.0 - a], [1.0, -a], x)


def build_course(segments: Sequence[Segment], total_days: float, steps_per_day: int = STEPS_PER_DAY) -> HormoneCourse:
    """Hormone course for consecutive periods.

    Parameters
    ----------
    segments : sequence of Segment
        Periods in time order covering ``[0, total_days)``. Populations timed from the
        menopause share one clock: a later period continues the years since menopause of
        the first timed one (menopause, then therapy, then stopping it is one woman).
    total_days : float
        Length of the course.
    steps_per_day : int
        Grid resolution (24: hourly).

    Returns
    -------
    HormoneCourse
    """
    if not segments:
        raise ValueError("a hormone course needs at least one period")
    dt = 1.0 / steps_per_day
    days = np.arange(0.0, float(total_days) + dt / 2, dt)
    base = {h: np.zeros(days.shape) for h in HORMONES}
    first = segments[0].population
    # One menopause clock for the whole chain: the first period whose population is timed
    # from the final menstrual period sets it (its years since menopause at its start);
    # later timed periods continue it instead of restarting from their own population's.
    clock_at_day0: float | None = None
    for i, seg in enumerate(segments):
        sel = (days >= seg.start_day) & ((days < seg.end_day) if i < len(segments) - 1 else np.ones(days.shape, bool))
        ysm0 = seg.population.years_since_menopause
        offset = 0.0
        if ysm0 is not None:
            if clock_at_day0 is None:
                clock_at_day0 = ysm0 - seg.start_day / DAYS_PER_YEAR
            offset = clock_at_day0 - ysm0
        lv = seg.population.levels(days, start_offset_years=offset)
        for h in HORMONES:
            base[h][sel] = lv[h][sel]
    channels = {k: np.zeros(days.shape) for k in
                ("testosterone_ng_dl", "estradiol_pg_ml", "pth_pg_ml", "cortisol_ug_dl", "aromatase_inhibitor_ng_ml",
                 "lh_drive", "gh_drive", "none")}
    for seg in segments:
        for dosing, spec in seg.dosings:
            train = dose_train(dosing, days, end_day=seg.end_day)
            level = drug_level(spec, train, dt)
            key = "aromatase_inhibitor_ng_ml" if spec.target == "aromatase_inhibition" else spec.target
            if key not in channels:
                raise ValueError(f"drug {spec.name} drives unknown target {spec.target!r}")
            if spec.target == "aromatase_inhibition":
                channels["aromatase_ic50"] = np.full(days.shape, float(spec.ic50 or 1.0))
            channels[key] += level
    exo_t = channels["testosterone_ng_dl"]
    lh = channels["lh_drive"]
    endo_t = base["testosterone_ng_dl"] * (1.0 + lh) / (1.0 + exo_t / LH_FEEDBACK_NG_DL)
    total_t = endo_t + exo_t
    ic50 = channels.get("aromatase_ic50", np.ones(days.shape))
    inhibition = channels["aromatase_inhibitor_ng_ml"] / (channels["aromatase_inhibitor_ng_ml"] + ic50)
    aromatised = AROMATISATION_PG_ML_PER_NG_DL * total_t * (1.0 - inhibition)
    estradiol = base["estradiol_pg_ml"] + aromatised + channels["estradiol_pg_ml"]
    igf1 = base["igf1_ng_ml"] * (1.0 + _lowpass(channels["gh_drive"], IGF1_TIME_CONSTANT_DAYS, dt))
    course = HormoneCourse(
        days=days,
        estradiol_pg_ml=estradiol,
        testosterone_ng_dl=total_t,
        igf1_ng_ml=igf1,
        pth_pg_ml=base["pth_pg_ml"] + channels["pth_pg_ml"],
        cortisol_ug_dl=base["cortisol_ug_dl"] + channels["cortisol_ug_dl"],
        il6_pg_ml=base["il6_pg_ml"],
        il1_pg_ml=base["il1_pg_ml"],
        tnf_pg_ml=base["tnf_pg_ml"],
        population=first.name,
        adapted_to=first.adapted_to,
        initial_bone_volume=first.initial_bone_volume,
        pre_state=first.circulating,
        extras={"aromatase_inhibition": inhibition, "lh_drive": lh, "gh_drive": channels["gh_drive"],
                "exogenous_testosterone_ng_dl": exo_t, "aromatised_estradiol_pg_ml": aromatised},
    )
    check_levels(course)
    return course


def check_levels(course: HormoneCourse) -> None:
    """Refuse courses with levels outside physiological bounds (names the hormone and day)."""
    for h in HORMONES:
        v = getattr(course, h)
        lo, hi = BOUNDS[h]
        bad = np.flatnonzero(~np.isfinite(v) | (v < lo) | (v > hi))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{h} reaches {v[i]:.4g} on day {course.days[i]:.1f}, outside the physiological range "
                f"[{lo:g}, {hi:g}]; check the preset's doses and the population's baseline"
            )


def state_from_mapping(data: dict[str, Any], source: str) -> HormoneState:
    """A :class:`HormoneState` from a mapping with every hormone field, validated."""
    missing = [h for h in HORMONES if h not in data]
    if missing:
        raise ValueError(f"{source}: missing hormone level(s) {', '.join(missing)}")
    values = {}
    for h in HORMONES:
        try:
            v = float(data[h])
        except (TypeError, ValueError):
            raise ValueError(f"{source}: {h} must be a number, got {data[h]!r}") from None
        lo, hi = BOUNDS[h]
        if not lo <= v <= hi:
            raise ValueError(f"{source}: {h}={v:g} is outside the physiological range [{lo:g}, {hi:g}]")
        values[h] = v
    return HormoneState(**values)

