"""The clinical acceptance table and the runs that check the model against it.

``CLINICAL_TARGETS`` holds the annualised BMD changes the product is calibrated to
(model.md §3, from the source articles): absolute change of the site's DXA-equivalent areal
BMD (``abmd_pct``: the trabecular and cortical compartments' relative mineral changes,
weighted by the site's DXA shares, :class:`voxelbone.sites.DxaWeights`) from the start of
therapy, over the first year (the first two years for GH therapy, whose gain follows an
early dip).

:func:`bmd_change` runs one preset on a phantom measuring only masked sums of the mineral
and bone fields (``abmd_pct``, the compartments' vBMD, the cube's mean BMD and BV/TV), so
the table can be checked in seconds per run;
:func:`calibration_checks` runs the whole table; ``voxelbone calibrate`` (or
``python -m voxelbone.calibration``) prints it.

The study functions run grids of such runs in parallel worker processes and summarise each
cell (preset, site, cube edge, voxel size) by the mean of its seeds with the 95 % interval
of :mod:`voxelbone.intervals`: :func:`calibration_cells` is the table the README shows
(``python benchmarks/calibration_table.py`` regenerates it), :func:`run_study` runs any
cells (the invariance matrix of ``benchmarks/invariance_matrix.py`` too), and
:func:`calibration_markdown` writes the table from the study's record.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from .intervals import Interval, paired_interval, t_interval
from .metrics import bmd_proxy_mg_cm3, compartment_vbmd_mg_cm3, vbmd_mg_cm3
from .remodel.params import model_revision
from .scenario import Period, Scenario
from .simulate import Result, simulate
from .units import whole_days
from .volume import BONE_THRESHOLD, BoneVolume, Region

__all__ = ["CALIBRATION_EDGE_MM", "CALIBRATION_SEEDS", "CALIBRATED_VOXEL_SIZES_UM", "CLINICAL_TARGETS",
           "SEED_NOISE_PCT_PER_YR", "STUDY_COMPARTMENTS", "STUDY_METRICS", "STUDY_SAMPLE_DAYS", "VOXEL_RECIPES",
           "CalibrationCheck", "CalibrationResult", "CellVerdict", "StudyCell", "Target",
           "bmd_change", "bmd_proxy", "calibration_cells", "calibration_checks", "calibration_markdown", "commit_text",
           "provenance_text",
           "cell_intervals", "INVARIANCE_EDGES_MM", "INVARIANCE_EXTRA_PRESETS", "INVARIANCE_METRICS", "INVARIANCE_SEEDS",
           "INVARIANCE_VOXEL_SIZES_UM", "invariance_cells", "invariance_markdown", "invariance_verdict", "verdict_resolved", "replace_between_markers", "run_study", "site_measures", "study_run", "study_volume"]


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
    """The cube's mean BMD (mg HA/cm³) of a volume (:func:`voxelbone.metrics.bmd_proxy_mg_cm3`)."""
    return bmd_proxy_mg_cm3(volume.mineral, volume.region)


def site_measures(volume: BoneVolume, *, contour: bool = True) -> dict[str, float]:
    """The cheap measures of a calibration run: the cube's mean BMD, Tb.vBMD, Ct.vBMD, BV/TV
    and the trabecular bone fraction.

    BV/TV counts the trabecular voxels of bone fraction ≥ ``BONE_THRESHOLD`` (binarised, as
    BoneJ does); ``tb_bone_fraction`` is the mean bone fraction of the trabecular VOI,
    partial voxels counted as they are. The compartments are contoured from the bone
    (``contour``, default; :func:`voxelbone.compartments.contoured_regions`) and the
    trabecular measures taken in the trabecular VOI
    (:func:`voxelbone.compartments.trabecular_voi`), as :func:`voxelbone.metrics.morphometry`
    measures them; else the compartments are taken as labelled.
    (``abmd_pct`` is added to every row by :func:`voxelbone.simulate.simulate`.)
    """
    region = volume.region
    if contour:
        from .compartments import contoured_regions, trabecular_voi  # noqa: PLC0415

        region = contoured_regions(volume.bone, region, volume.voxel_size_um)
        trab = trabecular_voi(region, volume.voxel_size_um)
    else:
        trab = region == int(Region.TRABECULAR)
    n_trab = int(trab.sum())
    bv_tv = int(((volume.bone >= BONE_THRESHOLD) & trab).sum()) / n_trab if n_trab else float("nan")
    fraction = float(volume.bone[trab].astype(np.float64).sum()) / n_trab if n_trab else float("nan")
    return {
        "bmd_mg_cm3": bmd_proxy(volume),
        "tb_vbmd_mg_cm3": vbmd_mg_cm3(volume.mineral, trab),
        "ct_vbmd_mg_cm3": compartment_vbmd_mg_cm3(volume.mineral, region, Region.CORTICAL),
        "bv_tv": bv_tv,
        "tb_bone_fraction": fraction,
    }


@dataclass(frozen=True)
class CalibrationResult:
    """Annualised change of the site's DXA-equivalent areal BMD in one run, and the time courses.

    ``percent_per_year`` is ``abmd_pct`` at the end over the years run; ``series`` holds every
    sampled measure of :func:`site_measures` and ``abmd_pct``, one value per sample.
    """

    preset: str
    site: str
    seed: int
    voxel_size_um: float
    step_days: int
    percent_per_year: float
    years: np.ndarray
    abmd_pct: np.ndarray
    series: dict[str, np.ndarray]

    @property
    def minimum_percent(self) -> float:
        """Largest dip of ``abmd_pct`` below the start (%), for therapies that dip before they gain."""
        return float(self.abmd_pct.min())

    def annual_change_pct(self, metric: str) -> float:
        """Annualised change of a sampled measure over the run, %/yr (``abmd_pct``: its end value / years)."""
        if metric == "abmd_pct":
            return self.percent_per_year
        v = self.series[metric]
        return float(100.0 * (v[-1] / v[0] - 1.0) / self.years[-1])


def study_run(preset: str, site: str = "lumbar_spine", *, seed: int = 0, years: float | None = None,
              size: int | None = None, voxel_size_um: float | None = None, step_days: int = 10,
              measure_every_days: int | None = None, backend: str | None = None,
              volume: BoneVolume | None = None, fe_every_days: int = 0) -> Result:
    """Run a preset as the studies run it (the calibration table, the invariance matrix) and return the run.

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
        Interval of the samples (default: the scenario's default metrics interval, 30 days;
        with mechanics on, every solve). Day 0 and the last day are always sampled; each
        sample contours the compartments (:func:`site_measures`).
    volume
        Start from this (phantom-like) volume instead of the site's phantom; its mineral is
        equilibrated to the starting rates like a phantom's.
    fe_every_days
        Load-driven remodelling (:class:`~voxelbone.scenario.Scenario`): a micro-FE solve every
        this many days; 0 (default) is mechanics off.

    Returns
    -------
    voxelbone.simulate.Result
        The run: its rows (:func:`site_measures` at each sample) and its final volume.
    """
    target = CLINICAL_TARGETS.get(preset)
    yrs = float(years if years is not None else (target.years if target else 1.0))
    every = measure_every_days or fe_every_days or Scenario.metrics_every_days  # mechanics on: on the solve days
    scenario = Scenario(name=f"calibration-{preset}", site=site, periods=(Period(preset, yrs),), size=size,
                        voxel_size_um=voxel_size_um, seed=seed, step_days=step_days, metrics_every_days=every,
                        checkpoint_every_days=10**6, fragments_every_days=max(30, step_days),
                        fe_every_days=fe_every_days)
    return simulate(scenario, None, backend=backend, progress=False, render=False,
                    measure=site_measures, volume=volume, equilibrate=True)


def bmd_change(preset: str, site: str = "lumbar_spine", *, seed: int = 0, years: float | None = None,
               size: int | None = None, voxel_size_um: float | None = None, step_days: int = 10,
               measure_every_days: int | None = None, backend: str | None = None,
               volume: BoneVolume | None = None, fe_every_days: int = 0) -> CalibrationResult:
    """Run a preset (:func:`study_run`, the same parameters) and return the annualised change of the
    site's DXA-equivalent areal BMD and of the study's measures."""
    res = study_run(preset, site, seed=seed, years=years, size=size, voxel_size_um=voxel_size_um,
                    step_days=step_days, measure_every_days=measure_every_days, backend=backend, volume=volume,
                    fe_every_days=fe_every_days)
    t = res.column("year")
    series = {k: res.column(k) for k in ("abmd_pct", *site_measures(res.volume, contour=False))}  # its keys
    a = series["abmd_pct"]
    return CalibrationResult(preset, site, seed, float(res.volume.voxel_size_um), step_days, float(a[-1] / t[-1]), t, a,
                             series)


@dataclass(frozen=True)
class CalibrationCheck:
    """One run of the calibration table beside its clinical range (a cell of several seeds is
    judged by :class:`CellVerdict`, not run by run)."""

    result: CalibrationResult
    low: float
    high: float


#: How far one seed of a calibration cell may lie outside the clinical range, %/yr: a 3.84 mm
#: cube holds a few hundred BMUs a year, and the seed-to-seed spread of its annual change was
#: measured at ±0.3–0.4 %/yr. A cell passes when the mean of its seeds lies in the range and
#: no seed lies further than this outside it (:class:`CellVerdict`).
SEED_NOISE_PCT_PER_YR = 0.5


@dataclass(frozen=True)
class CellVerdict:
    """The seeds of one calibration cell (a preset at a site) beside the clinical range.

    ``interval`` is the seeds' mean annual change of ``abmd_pct`` with its 95 % interval
    (undefined, NaN, for one seed). The cell passes (``ok``) when the mean lies in
    ``[low, high]`` and no seed lies more than :data:`SEED_NOISE_PCT_PER_YR` outside it.
    """

    low: float
    high: float
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    interval: Interval

    @classmethod
    def of(cls, low: float, high: float, seeds: Sequence[int], values: Sequence[float]) -> "CellVerdict":
        """The verdict on ``values`` (%/yr, one per seed in ``seeds``)."""
        if len(seeds) != len(values) or not values:
            raise ValueError(f"one value per seed is needed, got {len(values)} values for seeds {list(seeds)}")
        vals = tuple(float(v) for v in values)
        return cls(float(low), float(high), tuple(int(s) for s in seeds), vals, t_interval(vals))

    @property
    def in_range(self) -> bool:
        """True when the seeds' mean lies in the clinical range."""
        return self.low <= self.interval.mean <= self.high

    @property
    def seeds_far(self) -> tuple[int, ...]:
        """The seeds further than :data:`SEED_NOISE_PCT_PER_YR` outside the range."""
        lo, hi = self.low - SEED_NOISE_PCT_PER_YR, self.high + SEED_NOISE_PCT_PER_YR
        return tuple(s for s, v in zip(self.seeds, self.values) if not lo <= v <= hi)

    @property
    def ok(self) -> bool:
        """True when the mean is in range and every seed near it."""
        return self.in_range and not self.seeds_far


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
        When this call is made, before anything runs: for a preset with no clinical target, an
        unknown site, a phantom that does not fit its site, or a seed given twice (a cell's
        interval would count it as two independent replicates).
    """
    from .phantom import check_phantom_fits  # noqa: PLC0415  (the phantom generator is not needed to import this module)

    unknown = [p for p in presets if p not in CLINICAL_TARGETS]
    if unknown:
        raise ValueError(f"no clinical target for {', '.join(unknown)}; presets with one: {', '.join(CLINICAL_TARGETS)}")
    repeated = sorted({int(s) for s in seeds if list(seeds).count(s) > 1})
    if repeated:
        raise ValueError(f"seed {', '.join(map(str, repeated))} given more than once: give each seed once "
                         "(each is one replicate of a cell's interval)")
    for site in sites:
        check_phantom_fits(site, size, voxel_size_um)

    def runs() -> Iterator[CalibrationCheck]:
        for preset in presets:
            for site in sites:
                for seed in seeds:
                    r = bmd_change(preset, site, seed=int(seed), size=size, voxel_size_um=voxel_size_um,
                                   step_days=step_days, backend=backend)
                    lo, hi = CLINICAL_TARGETS[preset].range(site)
                    yield CalibrationCheck(r, lo, hi)

    return runs()


# ----------------------------------------------------------------------------- studies
#: How a volume at each studied voxel size is made (µm → (phantom voxel size µm, block-averaging
#: factor)): 20 and 30 µm are the site's phantoms at that voxel size; 40 µm is a 20 µm phantom
#: block-averaged ×2 (``volume.coarsen``), the structure a 20 µm scan holds, as in
#: ``tests/test_calibration.py`` and ``tests/test_invariance.py``.
VOXEL_RECIPES: dict[float, tuple[float, int]] = {20.0: (20.0, 1), 30.0: (30.0, 1), 40.0: (20.0, 2)}

#: The clinical table's geometry in ``tests/test_calibration.py``: a 3.84 mm cube (128³ at 30 µm,
#: 96³ at 40 µm from 192³ at 20 µm), at both calibrated voxel sizes, seeds 1-3, 10-day steps.
CALIBRATION_EDGE_MM = 3.84
CALIBRATED_VOXEL_SIZES_UM = (30.0, 40.0)
CALIBRATION_SEEDS = (1, 2, 3)

#: Measures a study summarises per cell (annualised change, %/yr; ``abmd_pct``: its end value / years).
#: Sample interval of a study run without mechanics: longer than any run, so day 0 and the
#: last day only (a study records the change from the first to the last sample; every sample
#: contours the compartments, 16 s for a 384³ cube).
STUDY_SAMPLE_DAYS = 10**6
#: How a study's compartment measures (Tb.vBMD, BV/TV, Ct.vBMD) are taken, written into each
#: recorded cell: "contoured-voi" — compartments contoured from the bone at each sample, the
#: trabecular measures in the trabecular VOI (:func:`site_measures`). Cells recorded with
#: another measure ("contoured": the whole contoured trabecular compartment; no field: the
#: day-0 labels) are not current: not reused, shown "not run here". ``abmd_pct`` does not
#: depend on it (day-0 masks, :class:`ArealBmdReference`).
STUDY_COMPARTMENTS = "contoured-voi"
STUDY_METRICS = ("abmd_pct", "tb_vbmd_mg_cm3", "bv_tv", "ct_vbmd_mg_cm3", "bmd_mg_cm3")


def _edge_voxels(edge_mm: float, voxel_size_um: float) -> int:
    n = edge_mm * 1000.0 / voxel_size_um
    if abs(n - round(n)) > 1e-6 or round(n) < 16:
        raise ValueError(f"a {edge_mm:g} mm cube is not a whole number (≥ 16) of {voxel_size_um:g} µm voxels; "
                         "choose an edge that is (e.g. 1.92, 3.84 or 7.68 mm for 20, 30 and 40 µm)")
    return int(round(n))


def study_volume(site: str, edge_mm: float, voxel_size_um: float, seed: int) -> BoneVolume | None:
    """The starting volume of a study run, or None where the run builds the site's phantom itself.

    Parameters
    ----------
    site
        Phantom site.
    edge_mm
        Cube edge in mm (a whole number of voxels at ``voxel_size_um`` and at its phantom's voxel size).
    voxel_size_um
        A voxel size of :data:`VOXEL_RECIPES`.
    seed
        Phantom seed.

    Returns
    -------
    BoneVolume or None
        The block-averaged phantom for a coarsened voxel size; None for a native one (then
        :func:`bmd_change` builds the phantom from ``size`` and ``voxel_size_um``).
    """
    _check_cell(StudyCell("", site, edge_mm, voxel_size_um))
    phantom_um, factor = VOXEL_RECIPES[voxel_size_um]
    if factor == 1:
        return None
    from .phantom import make_phantom  # deferred: numba/scikit-image cost  # noqa: PLC0415
    from .volume import coarsen  # noqa: PLC0415

    return coarsen(make_phantom(site, _edge_voxels(edge_mm, phantom_um), phantom_um, seed=seed), factor)


@dataclass(frozen=True)
class StudyCell:
    """One cell of a study: a preset at one site, cube edge and voxel size, run on several seeds.

    ``years`` None takes the preset's clinical evaluation window (2 years for GH therapy),
    else 1 year. ``fe_every_days`` > 0 turns load-driven remodelling on (a solve every this
    many days).
    """

    preset: str
    site: str
    edge_mm: float
    voxel_size_um: float
    seeds: tuple[int, ...] = CALIBRATION_SEEDS
    years: float | None = None
    step_days: int = 10
    fe_every_days: int = 0

    @property
    def key(self) -> str:
        """A stable name of the cell (the record's key)."""
        fe = f"|fe{self.fe_every_days}d" if self.fe_every_days else ""
        return f"{self.preset}|{self.site}|{self.edge_mm:g}mm|{self.voxel_size_um:g}um|{self.years_run:g}y{fe}"

    @property
    def years_run(self) -> float:
        """The simulated years."""
        if self.years is not None:
            return float(self.years)
        target = CLINICAL_TARGETS.get(self.preset)
        return float(target.years) if target else 1.0

    @property
    def size(self) -> int:
        """Edge in voxels at ``voxel_size_um``."""
        return _edge_voxels(self.edge_mm, self.voxel_size_um)


def calibration_cells(presets: Sequence[str] | None = None, sites: Sequence[str] = ("lumbar_spine", "femoral_neck"),
                      voxel_sizes_um: Sequence[float] = CALIBRATED_VOXEL_SIZES_UM,
                      seeds: Sequence[int] = CALIBRATION_SEEDS, fe_every_days: int = 0) -> list[StudyCell]:
    """The cells of the README's calibration table (every preset of :data:`CLINICAL_TARGETS` by default).

    ``fe_every_days`` > 0: the same cells with load-driven remodelling on.
    """
    presets = list(presets) if presets is not None else list(CLINICAL_TARGETS)
    unknown = [p for p in presets if p not in CLINICAL_TARGETS]
    if unknown:
        raise ValueError(f"no clinical target for {', '.join(unknown)}; presets with one: {', '.join(CLINICAL_TARGETS)}")
    return [StudyCell(p, s, CALIBRATION_EDGE_MM, float(v), tuple(int(x) for x in seeds),
                      fe_every_days=int(fe_every_days))
            for p in presets for s in sites for v in voxel_sizes_um]


def _volume_task(site: str, edge_mm: float, voxel_size_um: float, seed: int,
                 runs: Sequence[tuple[str, str, float, int, int]], backend: str | None) -> list[dict[str, Any]]:
    """Executed in a worker: every run on one starting volume (built once); one record per run."""
    try:  # one core per worker process: the study is parallel over processes
        import numba  # noqa: PLC0415

        numba.set_num_threads(1)
    except (ImportError, ValueError):  # pragma: no cover
        pass
    volume = study_volume(site, edge_mm, voxel_size_um, seed)
    out = []
    for key, preset, years, step_days, fe_every_days in runs:
        t0 = time.perf_counter()
        every = None if fe_every_days else STUDY_SAMPLE_DAYS
        if volume is None:
            r = bmd_change(preset, site, seed=seed, years=years, size=_edge_voxels(edge_mm, voxel_size_um),
                           voxel_size_um=voxel_size_um, step_days=step_days, backend=backend,
                           fe_every_days=fe_every_days, measure_every_days=every)
        else:
            r = bmd_change(preset, site, seed=seed, years=years, volume=volume.copy(), step_days=step_days,
                           backend=backend, fe_every_days=fe_every_days, measure_every_days=every)
        out.append({"key": key, "seed": seed, "wall_s": time.perf_counter() - t0,
                    "change_pct_per_yr": {m: r.annual_change_pct(m) for m in STUDY_METRICS}})
    return out


def _check_cell(cell: StudyCell) -> None:
    """A ``ValueError`` for a cell that cannot run: unknown voxel recipe, an edge of no whole number of voxels."""
    if cell.voxel_size_um not in VOXEL_RECIPES:
        raise ValueError(f"no volume recipe for {cell.voxel_size_um:g} µm voxels; known: "
                         f"{', '.join(f'{v:g}' for v in VOXEL_RECIPES)} µm")
    _edge_voxels(cell.edge_mm, cell.voxel_size_um)
    _edge_voxels(cell.edge_mm, VOXEL_RECIPES[cell.voxel_size_um][0])
    if not cell.seeds:
        raise ValueError(f"cell {cell.key}: give at least one seed")
    if not isinstance(cell.fe_every_days, int) or isinstance(cell.fe_every_days, bool) or cell.fe_every_days < 0:
        raise ValueError(f"cell {cell.preset}|{cell.site}: fe_every_days must be a whole number of days ≥ 0 "
                         f"(0: mechanics off), got {cell.fe_every_days!r}")


def run_study(cells: Sequence[StudyCell], *, n_workers: int = 2, backend: str | None = "numpy",
              record: Mapping[str, Any] | None = None,
              progress: Callable[[str], None] | None = None,
              checkpoint: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every cell's seeds in parallel worker processes and return the study's record.

    Runs that share a starting volume (site, edge, voxel size, seed) go to one worker, which
    builds the volume once. Cells already in ``record`` (same key and seeds) are not run again,
    nor are the seeds of its ``"pending"`` part (the finished seeds of unfinished cells) when
    they ran on this commit, this model and these compartments.

    Parameters
    ----------
    cells
        What to run.
    n_workers
        Worker processes (each with one Numba thread).
    backend
        Array backend of every run.
    record
        An earlier record of this function to extend.
    progress
        Called with a line of text as each volume's runs finish.
    checkpoint
        Called with the record so far as each volume's runs finish (write it to disk, and an
        interrupted study resumes from it): the cells whose every seed has run, and under
        ``"pending"`` the finished seeds of the others.

    Returns
    -------
    dict
        ``{"cells": {key: {**cell fields, "seeds": [...], "change_pct_per_yr": {metric: [one value per seed]},
        "wall_s": total, "git_commit": ..., "date": ...}}, "wall_s": ..., "n_workers": ..., "git_commit": ...,
        "date": ..., "machine": ...}`` (the top-level commit and date: this call's; ``wall_s``: the wall
        time of every call that made the record; ``"pending"`` only in a checkpoint).
    """
    from .runfolder import git_commit  # noqa: PLC0415

    commit = git_commit()  # the source that runs (taken before the runs, not after)
    date = time.strftime("%Y-%m-%d")
    machine = _machine()
    if n_workers < 1:
        raise ValueError(f"n_workers must be ≥ 1, got {n_workers}")
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):
        raise ValueError(f"study cells repeat: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
    old = dict(record["cells"]) if record else {}
    todo = [c for c in cells if not _recorded({"cells": old}, c)]
    # (key, seed) → {"change_pct_per_yr": ..., "wall_s": ...}: finished seeds, from a checkpoint or this call
    runs_done = _pending_runs(record, todo, commit)
    tasks: dict[tuple[str, float, float, int], list[tuple[str, str, float, int, int]]] = {}
    for c in todo:
        _check_cell(c)  # before anything runs
        for seed in c.seeds:
            if (c.key, seed) not in runs_done:
                tasks.setdefault((c.site, c.edge_mm, c.voxel_size_um, seed), []).append(
                    (c.key, c.preset, c.years_run, c.step_days, c.fe_every_days))
    # the largest volumes first, so that the workers finish together
    order = sorted(tasks, key=lambda k: -(k[1] / k[2]) ** 3 * sum(r[2] for r in tasks[k]))
    previous_wall = float(record.get("wall_s", 0.0)) if record else 0.0
    t0 = time.perf_counter()

    def assemble() -> dict[str, Any]:
        out_cells, pending = dict(old), {}
        for c in todo:
            done = {s: runs_done[(c.key, s)] for s in c.seeds if (c.key, s) in runs_done}
            if len(done) == len(c.seeds):
                out_cells[c.key] = {
                    **asdict(c), "years": c.years_run, "simulated_days": whole_days(c.years_run),
                    "seeds": list(c.seeds), "wall_s": sum(d["wall_s"] for d in done.values()),
                    "git_commit": commit, "date": date, "machine": machine, "compartments": STUDY_COMPARTMENTS,
                    "model": model_revision(c.fe_every_days > 0),
                    "change_pct_per_yr": {m: [done[s]["change_pct_per_yr"][m] for s in c.seeds] for m in STUDY_METRICS}}
            elif done:
                pending[c.key] = {"git_commit": commit, "model": model_revision(c.fe_every_days > 0),
                                  "compartments": STUDY_COMPARTMENTS, "finished": {str(s): d for s, d in done.items()}}
        out = {"cells": out_cells, "wall_s": previous_wall + time.perf_counter() - t0,
               "n_workers": n_workers, "git_commit": commit, "date": date, "machine": machine}
        if pending:
            out["pending"] = pending
        return out

    if order:
        # spawn, never fork: Numba's default threading layer is GNU OpenMP, which is not
        # fork-safe; a child forked after the parent ran a parallel kernel dies and the pool hangs
        with ProcessPoolExecutor(max_workers=min(n_workers, len(order)), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_volume_task, *k, tasks[k], backend): k for k in order}
            for fut in as_completed(futures):
                site, edge, vox, seed = futures[fut]
                for row in fut.result():
                    runs_done[(row["key"], row["seed"])] = {"change_pct_per_yr": row["change_pct_per_yr"],
                                                            "wall_s": row["wall_s"]}
                if progress:
                    progress(f"{site} {edge:g} mm @ {vox:g} µm seed {seed}: {len(tasks[(site, edge, vox, seed)])} runs "
                             f"done ({time.perf_counter() - t0:.0f} s)")
                if checkpoint:
                    checkpoint(assemble())
    return assemble()


def _pending_runs(record: Mapping[str, Any] | None, cells: Sequence[StudyCell],
                  commit: str | None) -> dict[tuple[str, int], dict[str, Any]]:
    """The finished seeds of ``cells`` in a checkpoint's ``"pending"`` part that can stand in for
    running them now: run on this very commit (never one with uncommitted changes), on the
    model as it stands and measured in the study's compartments."""
    pending = (record or {}).get("pending", {})
    out: dict[tuple[str, int], dict[str, Any]] = {}
    if not commit or commit.endswith("-dirty"):
        return out
    for c in cells:
        p = pending.get(c.key)
        if (p is None or p.get("git_commit") != commit or p.get("model") != model_revision(c.fe_every_days > 0)
                or p.get("compartments") != STUDY_COMPARTMENTS):
            continue
        for s in c.seeds:
            if str(s) in p["finished"]:
                out[(c.key, s)] = p["finished"][str(s)]
    return out


def write_record(path: Path, record: Mapping[str, Any]) -> None:
    """Write a study record as JSON (the records' one-space indent), replacing ``path`` only once
    the new file is complete (:func:`voxelbone.results.atomic_write`)."""
    import json  # noqa: PLC0415

    from .results import atomic_write  # noqa: PLC0415

    atomic_write(path, lambda fh: fh.write((json.dumps(record, indent=1) + "\n").encode("utf-8")))


def _machine() -> str:
    import platform  # noqa: PLC0415

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}"


def cell_intervals(record: Mapping[str, Any], key: str) -> dict[str, Interval]:
    """Metric → mean annual change of a recorded cell with its 95 % interval over the seeds."""
    return {m: t_interval(v) for m, v in record["cells"][key]["change_pct_per_yr"].items()}


_SITE_NAMES = {"lumbar_spine": "lumbar spine", "femoral_neck": "femoral neck"}


def _interval_text(iv: Interval) -> str:
    """``mean [low, high]`` of an annual change (%/yr), as the tables print it."""
    return f"{iv.mean:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}]"


def calibration_markdown(record: Mapping[str, Any], cells: Sequence[StudyCell] | None = None) -> str:
    """The README's calibration table from a study record: ``abmd_pct`` per preset, site and voxel size.

    Columns: preset, site, voxel size, mean annual change of ``abmd_pct`` (%/yr) with its 95 %
    interval over the seeds, the clinical range, whether the mean lies in the range (the
    test's criterion) and whether the change is resolved (its interval excludes zero).
    """
    cells = list(cells) if cells is not None else calibration_cells()
    lines = ["| preset | site | voxel | `abmd_pct` %/yr, mean [95 % interval] | clinical range | in range | resolved |",
             "|---|---|---|---|---|---|---|"]
    for c in cells:
        if not _on_this_model(record, c):
            lines.append(f"| {c.preset} | {_SITE_NAMES.get(c.site, c.site)} | {c.voxel_size_um:g} µm "
                         f"| {_not_run_text(record, c)} | | | |")
            continue
        cell = record["cells"][c.key]
        lo, hi = CLINICAL_TARGETS[c.preset].range(c.site)
        verdict = CellVerdict.of(lo, hi, cell["seeds"], cell["change_pct_per_yr"]["abmd_pct"])
        iv = verdict.interval
        years = f" ({c.years_run:g} yr)" if c.years_run != 1.0 else ""
        lines.append(f"| {c.preset}{years} | {_SITE_NAMES.get(c.site, c.site)} | {c.voxel_size_um:g} µm "
                     f"| {_interval_text(iv)} | {lo:+g} … {hi:+g} "
                     f"| {'yes' if verdict.in_range else 'no'} | {'yes' if iv.resolved else 'no'} |")
    return "\n".join(lines)


def mechanics_calibration_markdown(off: Mapping[str, Any], on: Mapping[str, Any], fe_every_days: int) -> str:
    """The calibration table with load-driven remodelling on beside the same cells off.

    Columns: preset, site, voxel size, ``abmd_pct`` %/yr with mechanics off and on (mean
    [95 % interval] over the seeds), the paired difference on − off (the same seeds: the same
    starting bone), the clinical range and whether the mechanics-on mean lies in it.
    ``off``/``on``: records of :func:`run_study` of :func:`calibration_cells` with
    ``fe_every_days`` 0 and ``fe_every_days``.
    """
    lines = ["| preset | site | voxel | off: `abmd_pct` %/yr | on: `abmd_pct` %/yr | on − off (paired) "
             "| clinical range | on in range |", "|---|---|---|---|---|---|---|---|"]

    for c_off, c_on in zip(calibration_cells(), calibration_cells(fe_every_days=fe_every_days)):
        name = f"| {c_off.preset}{f' ({c_off.years_run:g} yr)' if c_off.years_run != 1.0 else ''} " \
               f"| {_SITE_NAMES.get(c_off.site, c_off.site)} | {c_off.voxel_size_um:g} µm "
        if not (_on_this_model(off, c_off) and _on_this_model(on, c_on)):
            off_text = (_interval_text(t_interval(off["cells"][c_off.key]["change_pct_per_yr"]["abmd_pct"]))
                        if _on_this_model(off, c_off) else _not_run_text(off, c_off))
            lines.append(name + f"| {off_text} | {_not_run_text(on, c_on)} | | | |")
            continue
        a = off["cells"][c_off.key]
        b = on["cells"][c_on.key]
        pairs = dict(zip(a["seeds"], a["change_pct_per_yr"]["abmd_pct"]))
        seeds = [s for s in b["seeds"] if s in pairs]
        x_on = dict(zip(b["seeds"], b["change_pct_per_yr"]["abmd_pct"]))
        diff = paired_interval([pairs[s] for s in seeds], [x_on[s] for s in seeds])
        lo, hi = CLINICAL_TARGETS[c_off.preset].range(c_off.site)
        verdict_on = CellVerdict.of(lo, hi, b["seeds"], b["change_pct_per_yr"]["abmd_pct"])
        lines.append(name + f"| {_interval_text(t_interval(a['change_pct_per_yr']['abmd_pct']))} "
                     f"| {_interval_text(verdict_on.interval)} | {_interval_text(diff)} "
                     f"| {lo:+g} … {hi:+g} | {'yes' if verdict_on.in_range else 'no'} |")
    return "\n".join(lines)


#: Presets of the invariance matrix beside those of :data:`CLINICAL_TARGETS` (issue: invariance).
INVARIANCE_EXTRA_PRESETS = ("teriparatide", "hyperparathyroidism", "glucocorticoid_excess")
#: Edges (mm) and voxel sizes (µm) of the full invariance matrix: whole numbers of 20, 30 and 40 µm voxels.
INVARIANCE_EDGES_MM = (1.92, 3.84, 7.68)
INVARIANCE_VOXEL_SIZES_UM = (20.0, 30.0, 40.0)
#: Seeds of the invariance matrix per cube edge (mm). A small cube's mean needs more seeds: the
#: seed spread of a one-year change grows as the cube shrinks (GH therapy's `abmd_pct`, lumbar,
#: 40 µm, seeds 1-9: SD 0.95 %/yr at 1.92 mm, 0.40 at 3.84 mm; seeds 1-3 at 7.68 mm: 0.08), so
#: each edge gets enough seeds for a standard error of its mean of about 0.2 %/yr or less, well
#: inside the matrix's 0.5 %/yr floor (24 runs of a 1.92 mm cube take a tenth of the time of
#: 3 runs of a 7.68 mm one).
INVARIANCE_SEEDS: dict[float, tuple[int, ...]] = {1.92: tuple(range(1, 25)), 3.84: tuple(range(1, 10)),
                                                  7.68: CALIBRATION_SEEDS}
#: Measures the invariance matrix judges, with their labels.
INVARIANCE_METRICS = {"abmd_pct": "`abmd_pct`", "tb_vbmd_mg_cm3": "Tb.vBMD", "bv_tv": "BV/TV"}


def invariance_cells(presets: Sequence[str] | None = None, edges_mm: Sequence[float] = INVARIANCE_EDGES_MM,
                     voxel_sizes_um: Sequence[float] = INVARIANCE_VOXEL_SIZES_UM,
                     seeds: Sequence[int] | None = None, site: str = "lumbar_spine",
                     years: float = 1.0) -> list[StudyCell]:
    """The cells of the invariance matrix: every preset × edge × voxel size, one year each (default: the full matrix).

    ``seeds`` None takes each edge's seeds from :data:`INVARIANCE_SEEDS` (the calibration
    seeds for an edge not listed there); given, every cell runs those.
    """
    presets = list(presets) if presets is not None else [*CLINICAL_TARGETS, *INVARIANCE_EXTRA_PRESETS]

    def seeds_of(edge: float) -> tuple[int, ...]:
        return tuple(int(x) for x in (seeds if seeds is not None else INVARIANCE_SEEDS.get(edge, CALIBRATION_SEEDS)))

    return [StudyCell(p, site, float(e), float(v), seeds_of(float(e)), years)
            for p in presets for e in edges_mm for v in voxel_sizes_um]


def invariance_verdict(means: Sequence[float]) -> tuple[float, float, float, bool]:
    """The invariance acceptance over geometries' mean changes (%/yr): the effect (their mean),
    the largest distance of one from it, the tolerance max(0.5 %/yr, 20 % of the effect), and
    whether every geometry lies within it.

    >>> effect, worst, tol, agree = invariance_verdict([2.0, 4.0])
    >>> effect, worst, round(tol, 2), agree
    (3.0, 1.0, 0.6, False)
    """
    effect = float(np.mean(means))
    tol = max(0.5, 0.2 * abs(effect))
    worst = max(abs(float(v) - effect) for v in means)
    return effect, worst, tol, worst <= tol


def verdict_resolved(intervals: Sequence[Interval], effect: float, tol: float, agree: bool) -> bool:
    """Whether the seeds settle an invariance verdict: for agreement, every geometry's 95 %
    interval lies inside the tolerance band ``effect ± tol``; for disagreement, some geometry's
    interval lies wholly outside it. The effect is taken as known (it is the mean over all the
    geometries, surer than any one of them).

    >>> from voxelbone.intervals import Interval
    >>> verdict_resolved([Interval(-3.0, -3.9, -2.1, 24)], -3.8, 0.75, False)  # a miss inside its own spread
    False
    >>> verdict_resolved([Interval(-1.0, -1.4, -0.6, 24)], -3.8, 0.75, False)
    True
    """
    low, high = effect - tol, effect + tol
    if agree:
        return all(low <= iv.low and iv.high <= high for iv in intervals)
    return any(iv.high < low or iv.low > high for iv in intervals)


def invariance_markdown(record: Mapping[str, Any], cells: Sequence[StudyCell], command: str) -> str:
    """The invariance matrix as Markdown: one row per preset and geometry, a verdict per preset and metric.

    A cell missing from ``record`` is printed as "not run here" with ``command``. The
    verdict compares the measured geometries only: each mean within max(0.5 %/yr, 20 % of
    the effect) of their mean, where the effect is the mean over the geometries; whether the
    seeds settle it is :func:`verdict_resolved`.
    """
    metrics = list(INVARIANCE_METRICS)
    head = "| preset | edge | voxel | " + " | ".join(f"{INVARIANCE_METRICS[m]} %/yr" for m in metrics) + " |"
    lines = [head, "|" + "---|" * (3 + len(metrics))]
    verdicts = []
    by_preset: dict[str, list[StudyCell]] = {}
    for c in cells:
        by_preset.setdefault(c.preset, []).append(c)
    for preset, group in by_preset.items():
        intervals: dict[str, list[Interval]] = {m: [] for m in metrics}
        for c in group:
            geom = f"| {preset} | {c.edge_mm:.2f} mm | {c.voxel_size_um:g} µm |"
            if not _recorded(record, c):
                lines.append(geom + " not run here |" * len(metrics))
                continue
            ivs = cell_intervals(record, c.key)
            for m in metrics:
                intervals[m].append(ivs[m])
            lines.append(geom + "".join(f" {ivs[m].format()} |" for m in metrics))
        for m in metrics:
            vals = [iv.mean for iv in intervals[m]]
            if len(vals) < 2:
                verdicts.append(f"| {preset} | {INVARIANCE_METRICS[m]} | {len(vals)} of {len(group)} | – | – | "
                                "fewer than two geometries measured | – |")
                continue
            effect, worst, tol, agree = invariance_verdict(vals)
            sure = "yes" if verdict_resolved(intervals[m], effect, tol, agree) else "no"
            verdicts.append(f"| {preset} | {INVARIANCE_METRICS[m]} | {len(vals)} of {len(group)} | {effect:+.2f} "
                            f"| {worst:.2f} (±{tol:.2f}) | {'agree' if agree else 'disagree'} | {sure} |")
    per_edge = sorted({(c.edge_mm, len(c.seeds)) for c in cells})
    seeds_text = ", ".join(f"{n} at {e:.2f} mm" for e, n in per_edge)
    out = ["Cells: mean [95 % interval] of the seeds' annual change, %/yr (`unresolved`: the interval includes "
           f"zero); seeds per cell: {seeds_text}. A cell marked \"not run here\" (not in the record, or "
           f"recorded with other seeds, another compartment measure or another model revision) is produced by `{command}`.", "", *lines, "",
           "Agreement over the measured geometries (largest distance of a geometry's mean from the mean over "
           "them, against max(0.5 %/yr, 20 % of the effect)). *Settled by the seeds*: for agreement every "
           "geometry's 95 % interval lies inside the tolerance band around the effect, for disagreement one "
           "lies wholly outside it; \"no\" means the verdict rests on means the seeds' spread does not "
           "separate from the band's edge:", "",
           "| preset | metric | geometries measured | effect %/yr | largest distance (tolerance) | verdict "
           "| settled by the seeds |",
           "|---|---|---|---|---|---|---|", *verdicts]
    out += ["", f"Measured cells come from {provenance_text(record, [c.key for c in cells if _recorded(record, c)])}."]
    return "\n".join(out)


def provenance_text(record: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
    """Where the cells ``keys`` of a study record (default: all) were measured: each distinct
    date, commit (:func:`commit_text`) and machine, e.g. ``2026-12-01 at commit `abc…` on AMD EPYC, 2 cores``.

    A cell that does not name its machine (records before cells did) takes the record's.
    A cell recorded before a run's last step was cut at its last day simulated whole steps past
    it; the text says how many such cells there are and by how much they ran over.
    """
    cells = record["cells"]
    chosen = list(keys if keys is not None else cells)
    runs = sorted({(cells[k].get("date", "?"), str(cells[k].get("git_commit")),
                    str(cells[k].get("machine", record.get("machine", "unknown machine"))))
                   for k in chosen})
    text = "; ".join(f"{d} at {commit_text(g)} on {m}" for d, g, m in runs)
    over = Counter(d for d in (_days_run(cells[k]) for k in chosen) if d is not None and d[1] > d[0])
    for (days, simulated), n in sorted(over.items()):
        text += (f"; {n} of these cells ran {simulated} days for their {days}, recorded before a run's last step "
                 "was cut at its last day")
    return text


def _days_run(rec: Mapping[str, Any]) -> tuple[int, int] | None:
    """(days a recorded cell's years last, days it simulated), None for a cell that does not say
    its years: a cell without ``simulated_days`` was recorded when the last step was a whole
    step, ending on the first step boundary at or after the run's last day."""
    if "years" not in rec:
        return None
    days = whole_days(float(rec["years"]))
    step = int(rec.get("step_days", 1))
    return days, int(rec.get("simulated_days", math.ceil(days / step) * step))


def _on_this_model(record: Mapping[str, Any], cell: StudyCell) -> bool:
    """``cell`` is in ``record`` and was run on the model as it stands
    (:func:`~voxelbone.remodel.params.model_revision`, with the mechanostat's revision for a
    mechanics-on cell)."""
    rec = record["cells"].get(cell.key)
    return rec is not None and rec.get("model") == model_revision(cell.fe_every_days > 0)


def _not_run_text(record: Mapping[str, Any], cell: StudyCell) -> str:
    """What a table says of a cell it does not show: not run at all, or run on an earlier model."""
    if cell.key not in record["cells"]:
        return "not run"
    return "" if _on_this_model(record, cell) else "earlier model"


def _recorded(record: Mapping[str, Any], cell: StudyCell) -> bool:
    """``cell`` is in ``record`` with its seeds (a record without a seed list is taken as it is),
    measured as studies measure now (:data:`STUDY_COMPARTMENTS`) and run on the model as it
    stands (:func:`~voxelbone.remodel.params.model_revision`)."""
    rec = record["cells"].get(cell.key)
    return (_on_this_model(record, cell) and tuple(rec.get("seeds", cell.seeds)) == tuple(cell.seeds)
            and rec.get("compartments") == STUDY_COMPARTMENTS)


def commit_text(commit: str | None) -> str:
    """A record's commit as a caption says it: ``commit `abc123def456` `` and, for a commit
    recorded with ``-dirty`` (the run had uncommitted changes), ``with uncommitted changes``."""
    commit = commit or "unknown"
    dirty = " with uncommitted changes" if commit.endswith("-dirty") else ""
    return f"commit `{commit[:12]}`{dirty}"


def replace_between_markers(text: str, name: str, content: str) -> str:
    """``text`` with what lies between ``<!-- name:start -->`` and ``<!-- name:end -->`` replaced by ``content``.

    Raises
    ------
    ValueError
        When the markers are missing, repeated or out of order.
    """
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"expected one '{start}' followed by one '{end}' in the file")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{content}\n{end}{tail}"


if __name__ == "__main__":  # pragma: no cover
    from .cli import main

    sys.exit(main(["calibrate", *sys.argv[1:]]))
