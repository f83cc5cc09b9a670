"""Dosing regimens → serum levels: one-compartment pharmacokinetics per drug.

Each drug is a first-order absorption, first-order elimination compartment (the Bateman
function): a dose ``D`` at time 0 contributes

``C(t) = s · D · ka/(ka − ke) · (exp(−ke·t) − exp(−ka·t))``,

with ``ka = ln2 / t½,abs`` and ``ke = ln2 / t½,el``. The scale ``s`` is set from the drug's
``level_per_mg_per_day`` — the mean increase of the level per mg/day of dose rate at steady
state, taken from clinical pharmacokinetic studies — so that a weekly injection gives a
weekly sawtooth around the right mean and a daily pulse stays a pulse. Transdermal products
release their dose evenly over the dosing interval (zero-order input).

Levels are computed on a regular grid by an exact discrete-time recursion of the
two-compartment (depot → central) linear system, equivalent to superposing every dose's
Bateman curve, in O(samples) time (``scipy.signal.lfilter``).

References
----------
Rowland M, Tozer TN. Clinical Pharmacokinetics and Pharmacodynamics, 4th ed. (2011).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

__all__ = ["Dosing", "DrugSpec", "dose_train", "drug_level"]

ROUTES = ("oral", "im", "sc", "transdermal", "iv", "nasal")


@dataclass(frozen=True)
class DrugSpec:
    """Pharmacokinetic and pharmacodynamic description of a drug (from ``drugs.toml``).

    Attributes
    ----------
    name : str
        Key of the drug.
    target : str
        What its level drives: a hormone field of :class:`~voxelbone.hormones.HormoneState`
        (``testosterone_ng_dl``, ``estradiol_pg_ml``, ``pth_pg_ml``, ``cortisol_ug_dl``, ...)
        or an effect channel (``aromatase_inhibition``, ``lh_drive``, ``gh_drive``, ``none``).
    absorption_half_life_days, elimination_half_life_days : float
        Apparent half-lives (days).
    level_per_mg_per_day : float
        Steady-state mean level (target units) per mg/day of dose rate.
    routes : tuple of str
        Routes the preset may use.
    description, references : str, tuple of str
        What it is; where the numbers come from.
    """

    name: str
    target: str
    absorption_half_life_days: float
    elimination_half_life_days: float
    level_per_mg_per_day: float
    routes: tuple[str, ...]
    description: str = ""
    references: tuple[str, ...] = ()
    ic50: float | None = None

    @property
    def ka(self) -> float:
        """Absorption rate constant (1/day)."""
        return math.log(2.0) / self.absorption_half_life_days

    @property
    def ke(self) -> float:
        """Elimination rate constant (1/day)."""
        return math.log(2.0) / self.elimination_half_life_days


@dataclass(frozen=True)
class Dosing:
    """A regular regimen: ``dose_mg`` every ``every_days`` from ``start_day`` for ``duration_days``."""

    drug: str
    dose_mg: float
    every_days: float
    route: str
    start_day: float = 0.0
    duration_days: float | None = None

    def __post_init__(self) -> None:
        if not (self.dose_mg > 0 and math.isfinite(self.dose_mg)):
            raise ValueError(f"dose_mg of {self.drug} must be a positive number, got {self.dose_mg!r}")
        if not (self.every_days > 0 and math.isfinite(self.every_days)):
            raise ValueError(f"every_days of {self.drug} must be a positive number of days, got {self.every_days!r}")
        if self.route not in ROUTES:
            raise ValueError(f"route of {self.drug} must be one of {', '.join(ROUTES)}, got {self.route!r}")
        if self.duration_days is not None and self.duration_days <= 0:
            raise ValueError(f"duration_days of {self.drug} must be positive, got {self.duration_days!r}")

    @property
    def mg_per_day(self) -> float:
        """Mean dose rate."""
        return self.dose_mg / self.every_days


def dose_train(dosing: Dosing, days: np.ndarray, end_day: float | None = None) -> np.ndarray:
    """Amount (mg) entering the depot in each interval ``[days[i], days[i+1])`` of a regular grid.

    Bolus routes put each dose in the interval containing its time; transdermal delivery
    spreads it evenly over the dosing interval.

    Examples
    --------
    >>> import numpy as np
    >>> weekly = Dosing("testosterone_cypionate", dose_mg=140.0, every_days=7.0, route="im")
    >>> train = dose_train(weekly, np.arange(0.0, 28.0, 1.0))
    >>> np.flatnonzero(train).tolist(), float(train.sum())
    ([0, 7, 14, 21], 560.0)
    """
    dt = float(days[1] - days[0])
    n = days.size
    start = dosing.start_day
    stop = days[-1] + dt if dosing.duration_days is None else start + dosing.duration_days
    if end_day is not None:
        stop = min(stop, end_day)
    train = np.zeros(n)
    if stop <= start:
        return train
    if dosing.route == "transdermal":
        t = days
        active = (t >= start) & (t < stop)
        train[active] = dosing.mg_per_day * dt
        return train
    times = np.arange(start, stop, dosing.every_days)
    idx = np.floor((times - days[0]) / dt + 1e-9).astype(np.int64)
    idx = idx[(idx >= 0) & (idx < n)]
    np.add.at(train, idx, dosing.dose_mg)
    return train


def drug_level(spec: DrugSpec, train_mg: np.ndarray, dt_days: float) -> np.ndarray:
    """Mean level (target units) over each step of a regular grid, from a dose train.

    Doses enter at the start of their step. The depot ``A`` and central amount ``C``
    follow ``A' = −ka·A``, ``C' = ka·A − ke·C``; the recursion below is the exact average of
    the Bateman response over each step (a second-order IIR filter), so the area under the
    curve — and the mean level — is exact even for drugs cleared within a step.

    Examples
    --------
    At steady state the mean level is ``level_per_mg_per_day`` times the dose rate:

    >>> import numpy as np
    >>> spec = DrugSpec("depot", "testosterone_ng_dl", absorption_half_life_days=1.0,
    ...                 elimination_half_life_days=8.0, level_per_mg_per_day=3.0, routes=("im",))
    >>> weekly = Dosing("depot", dose_mg=140.0, every_days=7.0, route="im")
    >>> dt = 0.25
    >>> level = drug_level(spec, dose_train(weekly, np.arange(0.0, 700.0, dt)), dt)
    >>> round(float(level[-int(28 / dt):].mean()), 6), 3.0 * weekly.mg_per_day
    (60.0, 60.0)
    """
    ka, ke = spec.ka, spec.ke
    if abs(ka - ke) < 1e-9 * ka:
        ka *= 1.0 + 1e-6
    s = spec.level_per_mg_per_day * ke  # so that the mean level = level_per_mg_per_day × mg/day
    a, e = math.exp(-ka * dt_days), math.exp(-ke * dt_days)
    g = s * ka / (ka - ke)
    ce = (1.0 - e) / (ke * dt_days)
    ca = (1.0 - a) / (ka * dt_days)
    # y[n] = g Σ_k u[k] (ce·e^(n−k) − ca·a^(n−k)),  n − k ≥ 0
    b = [g * (ce - ca), g * (ca * e - ce * a)]
    den = [1.0, -(a + e), a * e]
    return lfilter(b, den, train_mg)
