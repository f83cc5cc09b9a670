"""The clinical acceptance table and the runs that check the model against it.

``CLINICAL_TARGETS`` holds the annualised BMD changes the product is calibrated to
(model.md §3, from the source articles): absolute change of the BMD proxy of the whole
simulated region (trabecular VOI plus its cortex) from the start of therapy, over the first
year (the first two years for GH therapy, whose gain follows an early dip).

:func:`bmd_change` runs one preset on a phantom measuring only the BMD proxy (cheap: a sum
of the mineral field), so the table can be checked in seconds per run;
:func:`calibration_checks` runs the whole table; ``voxelbone calibrate`` (or
``python -m voxelbone.calibration``) prints it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from .metrics import bmd_proxy_mg_cm3
from .scenario import Period, Scenario
from .simulate import simulate
from .volume import BoneVolume

__all__ = ["CLINICAL_TARGETS", "CalibrationCheck", "CalibrationResult", "Target", "bmd_change", "bmd_proxy",
           "calibration_checks"]


@dataclass(frozen=True)
class Target:
    """Annualised BMD change range (%/yr) of a preset at the two sites."""

    preset: str
    lumbar_spine: tuple[float, float]
    femoral_neck: tuple[float, float]
    years: float = 1.0
    source: str = ""

    def range(self, site: str) -> tuple[float, float]:
        """The (low, high) range at ``site``."""
        return getattr(self, site)


CLINICAL_TARGETS: dict[str, Target] = {
    t.preset: t
    for t in (
        Target("mht_estradiol_progesterone", (5.0, 7.0), (2.0, 4.0), 1.0, "estrogen + progestin, postmenopausal women"),
        Target("trt", (4.0, 8.0), (2.0, 4.0), 1.0, "testosterone replacement, hypogonadal men"),
        Target("gh_peptide_sermorelin", (2.0, 5.0), (1.0, 3.0), 2.0, "GH peptide therapy, adults with GH deficiency"),
        Target("postmenopausal_untreated", (-2.5, -1.0), (-2.0, -1.0), 1.0, "no treatment, postmenopausal women"),
    )
}


def bmd_proxy(volume: BoneVolume) -> float:
    """BMD proxy (mg HA/cm³) of a volume (:func:`voxelbone.metrics.bmd_proxy_mg_cm3`)."""
    return bmd_proxy_mg_cm3(volume.mineral, volume.region)


@dataclass(frozen=True)
class CalibrationResult:
    """Annualised BMD change of one run and its time course."""

    preset: str
    site: str
    seed: int
    voxel_size_um: float
    step_days: int
    percent_per_year: float
    years: np.ndarray
    bmd_mg_cm3: np.ndarray

    @property
    def minimum_percent(self) -> float:
        """Largest dip below the start (%), for therapies that dip before they gain."""
        return float(100.0 * (self.bmd_mg_cm3.min() / self.bmd_mg_cm3[0] - 1.0))


def bmd_change(preset: str, site: str = "lumbar_spine", *, seed: int = 0, years: float | None = None,
               size: int | None = None, voxel_size_um: float | None = None, step_days: int = 10,
               measure_every_days: int | None = None, backend: str | None = None,
               volume: BoneVolume | None = None) -> CalibrationResult:
    """Run a preset and return the annualised change of the BMD proxy.

    Parameters
    ----------
    preset, site
        What to run.
    seed
        Phantom and remodeling seed.
    years
        Simulated years (default: the target's evaluation window, else 1).
    size, voxel_size_um
        Phantom edge in voxels and voxel size (defaults of the site). Keep the physical edge
        (``size × voxel_size_um``) when changing the voxel size.
    step_days
        Remodeling step; 10 days gives the same annual changes as 1 day (tested) at a tenth
        of the cost.
    measure_every_days
        Interval of the BMD samples (default: every step).
    volume
        Start from this (phantom-like) volume instead of the site's phantom; its mineral is
        equilibrated to the starting rates like a phantom's.
    """
    target = CLINICAL_TARGETS.get(preset)
    yrs = float(years if years is not None else (target.years if target else 1.0))
    every = measure_every_days or step_days
    scenario = Scenario(name=f"calibration-{preset}", site=site, periods=(Period(preset, yrs),), size=size,
                        voxel_size_um=voxel_size_um, seed=seed, step_days=step_days, metrics_every_days=every,
                        checkpoint_every_days=10**6, fragments_every_days=max(30, step_days))
    res = simulate(scenario, None, backend=backend, progress=False, render=False,
                   measure=lambda v: {"bmd_mg_cm3": bmd_proxy(v)}, volume=volume, equilibrate=True)
    t = res.column("year")
    b = res.column("bmd_mg_cm3")
    pct = 100.0 * (b[-1] / b[0] - 1.0) / t[-1]
    return CalibrationResult(preset, site, seed, float(res.volume.voxel_size_um), step_days, float(pct), t, b)


@dataclass(frozen=True)
class CalibrationCheck:
    """One run of the calibration table beside its clinical range."""

    result: CalibrationResult
    low: float
    high: float

    @property
    def ok(self) -> bool:
        """True when the annualised change lies in the clinical range."""
        return self.low <= self.result.percent_per_year <= self.high


def calibration_checks(presets: Sequence[str], sites: Sequence[str], seeds: Sequence[int], *, size: int | None = None,
                       voxel_size_um: float | None = None, step_days: int = 10,
                       backend: str | None = None) -> Iterator[CalibrationCheck]:
    """Run every preset, site and seed and yield each result beside its clinical range, as it finishes.

    Parameters
    ----------
    presets
        Presets of :data:`CLINICAL_TARGETS`.
    sites, seeds
        Phantom sites and seeds.
    size, voxel_size_um, step_days, backend
        As in :func:`bmd_change`.

    Raises
    ------
    ValueError
        For a preset with no clinical target (before anything runs).
    """
    unknown = [p for p in presets if p not in CLINICAL_TARGETS]
    if unknown:
        raise ValueError(f"no clinical target for {', '.join(unknown)}; presets with one: {', '.join(CLINICAL_TARGETS)}")
    for preset in presets:
        for site in sites:
            for seed in seeds:
                r = bmd_change(preset, site, seed=int(seed), size=size, voxel_size_um=voxel_size_um, step_days=step_days,
                               backend=backend)
                lo, hi = CLINICAL_TARGETS[preset].range(site)
                yield CalibrationCheck(r, lo, hi)


if __name__ == "__main__":  # pragma: no cover
    from .cli import main

    sys.exit(main(["calibrate", *sys.argv[1:]]))
