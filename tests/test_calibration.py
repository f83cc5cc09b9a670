"""The clinical table (model.md §3), and the choices of its geometry.

The table is calibrated on ``abmd_pct``, the site's DXA-equivalent areal BMD change (the
trabecular and cortical compartments' relative mineral changes, weighted by the site's DXA
shares), not on the cube's mean BMD, which moves with the cube's cortex share.
Runs are small and coarse where that does not change the answer: 10-day steps (shown
equivalent to 2-day steps below) and masked sums of the mineral field only.
The default voxel size (30 µm phantoms, 128³ = 3.84 mm) and a coarser one (40 µm: 20 µm
phantoms of the same 3.84 mm cube block-averaged ×2, so the structure is the same one a
20 µm scan would hold) are both checked, each with three seeds: the mean of the seeds must
land in the clinical range and every seed within ``SEED_NOISE_PCT_PER_YR`` of it (``CellVerdict``) (a 3.84 mm cube holds
a few hundred BMUs a year; seed-to-seed spread measured ±0.3-0.4 %/yr). The behaviours that
must emerge without being fitted are in ``test_emergence.py``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from study_runs import site_run
from voxelbone.calibration import (CALIBRATED_VOXEL_SIZES_UM, CALIBRATION_EDGE_MM, CALIBRATION_SEEDS, CLINICAL_TARGETS,
                                   SEED_NOISE_PCT_PER_YR, STUDY_SAMPLE_DAYS, CellVerdict, bmd_change, study_volume)

SEEDS = CALIBRATION_SEEDS
CALIBRATED = CALIBRATED_VOXEL_SIZES_UM


@functools.lru_cache(maxsize=None)
def _study_volume(site: str, seed: int, voxel_um: float):
    """The calibration table's starting volume (``study_volume``): None where the run builds its own phantom."""
    return study_volume(site, CALIBRATION_EDGE_MM, voxel_um, seed)


@functools.lru_cache(maxsize=None)
def _calibrated(preset: str, site: str, seed: int, voxel_um: float):
    volume = _study_volume(site, seed, voxel_um)
    if volume is None:
        return site_run(preset, site, seed, voxel_um)
    return bmd_change(preset, site, seed=seed, volume=volume, step_days=10, backend="numpy",
                      measure_every_days=STUDY_SAMPLE_DAYS)


# Below the clinical range on abmd_pct at the lumbar spine at 40 um (20 um phantoms block-averaged),
# measured after coarsen stopped inventing endosteal pores and bone on cut faces is kept:
# MHT +5.07 [5.33, 4.38, 5.50] %/yr (mean in range, seed 2 0.62 below it; the same structure with
# other remodelling seeds gave +4.6 ... +5.1 before the coarsen fix, a draw 2 sigma low), GH +1.96
# [2.13, 1.74, 2.02] over two years (30 um: MHT +5.20, GH +2.31). Since the perforation test walks to the full
# cavity depth (more perforations at both voxel sizes): MHT +5.01 [5.27, 4.32, 5.43], GH +1.87 [2.03, 1.62, 1.97]
# (30 um: MHT +5.11, GH +2.23). GH is in range since a BMU's overfill reaches two cavity depths and
# max_refill was fitted again (2.6 -> 2.4): +3.20 [3.36, 2.88, 3.35] (30 um: +3.67).
# Since one BMU's balance is the same at every voxel size (2026-12-01; max_refill 2.1): MHT +5.10
# [5.41, 4.38, 5.51]; and untreated at 30 um, the same phantom seed 2, loses beyond the range's
# tolerance: -2.45 [-2.11, -3.02, -2.21] (mean in range; before the change -2.27 with seed 2 at
# -2.89; at 40 um seed 2 -2.86). Since a forming BMU's level is read on the previous step's balance
# (2026-12-01; docs/model.md): MHT lumbar 40 um +5.66 [6.02, 4.88, 6.07], untreated lumbar 30 um
# -2.37 [-2.07, -2.96, -2.09]: both in range, no expected miss left.
EXPECTED_MISS: dict[tuple[str, str, float], str] = {}
CASES = [pytest.param(p, s, v, id=f"{p}-{s}-{int(v)}um",
                      marks=[pytest.mark.xfail(reason=EXPECTED_MISS[(p, s, v)], raises=AssertionError, strict=False)]
                      if (p, s, v) in EXPECTED_MISS else [])
         for p in CLINICAL_TARGETS for s in ("lumbar_spine", "femoral_neck") for v in CALIBRATED]


@pytest.mark.parametrize("preset,site,voxel_um", CASES)
def test_annual_bmd_change_lands_in_the_clinical_range(preset, site, voxel_um):
    lo, hi = CLINICAL_TARGETS[preset].range(site)
    got = [_calibrated(preset, site, seed, voxel_um).percent_per_year for seed in SEEDS]
    verdict = CellVerdict.of(lo, hi, SEEDS, got)
    text = ", ".join(f"{g:+.2f}" for g in got)
    assert verdict.in_range, f"{preset} at {site}, {voxel_um:g} µm: mean of [{text}] %/yr not in [{lo}, {hi}]"
    assert not verdict.seeds_far, (f"seeds {verdict.seeds_far} of [{text}] %/yr more than {SEED_NOISE_PCT_PER_YR} "
                                   f"outside [{lo}, {hi}]")


def test_voxel_size_independence_of_annual_change():
    # the same structure (a 20 µm phantom of a 2.88 mm cube) run at 20 µm and, block-averaged,
    # at 40 µm: the engine's rates are in µm and per surface area, so the annual changes
    # agree within 20 %
    from voxelbone.phantom import make_phantom
    from voxelbone.volume import coarsen

    fine, coarse = [], []
    for seed in SEEDS:
        v20 = make_phantom("lumbar_spine", 144, 20.0, seed=seed)
        fine.append(bmd_change("postmenopausal_untreated", seed=seed, volume=v20, backend="numpy",
                               measure_every_days=STUDY_SAMPLE_DAYS).percent_per_year)
        coarse.append(bmd_change("postmenopausal_untreated", seed=seed, volume=coarsen(v20, 2),
                                 backend="numpy", measure_every_days=STUDY_SAMPLE_DAYS).percent_per_year)
    a, b = float(np.mean(fine)), float(np.mean(coarse))
    assert abs(a - b) <= 0.2 * abs(a), f"{a:+.2f} %/yr at 20 µm vs {b:+.2f} at 40 µm (same structure)"


def test_coarsening_keeps_the_cortex_of_the_finer_scan():
    # Block-averaging must not invent pores: a block cut in half by the endosteal envelope is
    # cortex when it holds bone and marrow when it does not. Labelled cortical on every tie,
    # the half-marrow blocks along the endosteal faces became pores (Ct.Po 0.048 -> 0.101,
    # endocortical surface -42 %), so coarsened phantoms turned endocortical surface into
    # canal walls and gained less under MHT than the same structure at 30 µm.
    from voxelbone.phantom import make_phantom
    from voxelbone.remodel.cpu import surface_flags
    from voxelbone.volume import Region, coarsen

    def cortex(vol):
        cort = vol.region == int(Region.CORTICAL)
        _, any_tm = surface_flags(vol.bone, vol.region)
        endo_mm2 = int((cort & (vol.bone >= 0.5) & any_tm).sum()) * vol.voxel_size_um ** 2 / 1e6
        return float((cort & (vol.bone < 0.5)).sum() / cort.sum()), endo_mm2

    for seed in (1, 2):
        fine = make_phantom("lumbar_spine", 96, 20.0, seed=seed)
        (po_f, endo_f), (po_c, endo_c) = cortex(fine), cortex(coarsen(fine, 2))
        assert abs(po_c - po_f) < 0.01, f"seed {seed}: cortical pore fraction {po_f:.3f} at 20 µm, {po_c:.3f} coarsened"
        assert abs(endo_c / endo_f - 1.0) < 0.15, f"seed {seed}: endocortical surface {endo_f:.2f} -> {endo_c:.2f} mm²"


def test_coarse_steps_do_not_change_the_answer():
    # 10-day steps (used by these tests) against 2-day steps, three seeds each
    fine = np.mean([site_run("postmenopausal_untreated", "lumbar_spine", s, 40.0, step_days=2).percent_per_year
                    for s in SEEDS])
    coarse = np.mean([site_run("postmenopausal_untreated", "lumbar_spine", s, 40.0).percent_per_year for s in SEEDS])
    assert abs(fine - coarse) < 0.35, f"2-day steps {fine:+.2f} %/yr vs 10-day steps {coarse:+.2f} %/yr"


def test_calibrate_command_refuses_bad_arguments_before_running(capsys):
    from voxelbone.cli import main

    assert main(["calibrate", "--presets", "trt,no_such_preset"]) == 2
    assert "no clinical target for no_such_preset" in capsys.readouterr().err
    assert main(["calibrate", "--seeds", "1,x"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_a_cell_passes_on_its_mean_with_every_seed_near_the_range():
    ok = CellVerdict.of(-2.5, -1.0, (1, 2, 3), (-0.9, -1.5, -1.6))  # seed 1 0.1 outside: seed noise
    assert ok.in_range and ok.seeds_far == () and ok.ok
    assert ok.interval.n == 3 and ok.interval.low < ok.interval.mean < ok.interval.high
    far = CellVerdict.of(-2.5, -1.0, (1, 2, 3), (-1.2, -1.3, -3.4))  # mean in range, seed 3 0.9 outside
    assert far.in_range and far.seeds_far == (3,) and not far.ok
    out = CellVerdict.of(-2.5, -1.0, (1, 2, 3), (-0.7, -0.8, -0.9))  # every seed near, the mean out
    assert not out.in_range and out.seeds_far == () and not out.ok
    one = CellVerdict.of(-2.5, -1.0, (7,), (-1.5,))
    assert one.ok and np.isnan(one.interval.low)
    with pytest.raises(ValueError, match="one value per seed"):
        CellVerdict.of(-2.5, -1.0, (1, 2), (-1.5,))


def test_calibrate_command_judges_each_cell_on_its_seeds_mean(capsys, monkeypatch):
    """Per-seed rows, then each cell's mean with its 95 % interval; exit 1 only for a failed cell."""
    import voxelbone.calibration as calibration
    from voxelbone.calibration import CalibrationCheck, CalibrationResult
    from voxelbone.cli import main

    def fake(values):
        def checks(presets, sites, seeds, **kw):
            for preset in presets:
                for site in sites:
                    lo, hi = CLINICAL_TARGETS[preset].range(site)
                    for seed, pct in zip(seeds, values[site]):
                        yield CalibrationCheck(CalibrationResult(preset, site, seed, 30.0, 10, pct, np.array([0.0, 1.0]),
                                                                 np.array([0.0, pct]), {}), lo, hi)
        return checks

    lo, hi = CLINICAL_TARGETS["postmenopausal_untreated"].range("lumbar_spine")
    near = [hi + 0.1, (lo + hi) / 2, (lo + hi) / 2]  # one seed just outside: the cell passes
    monkeypatch.setattr(calibration, "calibration_checks", fake({"lumbar_spine": near}))
    assert main(["calibrate", "--presets", "postmenopausal_untreated", "--sites", "lumbar_spine"]) == 0
    out = capsys.readouterr().out
    assert "mean of 3 seeds" in out and "(95 % interval): in range" in out and "OUT OF RANGE" not in out, out
    assert CellVerdict.of(lo, hi, (1, 2, 3), near).interval.format() in out
    far = [hi + 1.0, (lo + hi) / 2, (lo + hi) / 2]
    monkeypatch.setattr(calibration, "calibration_checks", fake({"lumbar_spine": far}))
    assert main(["calibrate", "--presets", "postmenopausal_untreated", "--sites", "lumbar_spine"]) == 1
    assert "seeds 1 more than" in capsys.readouterr().out
    monkeypatch.setattr(calibration, "calibration_checks", fake({"lumbar_spine": [hi + 0.3]}))
    assert main(["calibrate", "--presets", "postmenopausal_untreated", "--sites", "lumbar_spine", "--seeds", "4"]) == 1
    out = capsys.readouterr().out
    assert "one seed" in out and "no interval" in out and "OUT OF RANGE" in out, out


@pytest.mark.parametrize("args, message", [
    (["--seeds", "1,2,1"], "seed 1 given more than once"),
    (["--sites", "lumbar_spine,mars"], "unknown site 'mars'"),
    (["--size", "24"], "too small for site lumbar_spine"),
    (["--presets", "premenopausal"], "no clinical target for premenopausal"),
])
def test_calibrate_refuses_bad_input_before_its_table(capsys, monkeypatch, args, message):
    """A repeated seed would enter a cell's interval as two replicates; every refusal comes
    before the table's header and before any run."""
    import voxelbone.calibration as calibration
    from voxelbone.cli import main

    def no_run(*a, **kw):
        raise AssertionError("a run started")

    monkeypatch.setattr(calibration, "bmd_change", no_run)
    assert main(["calibrate", "--presets", "postmenopausal_untreated", *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "preset" not in captured.out, (captured.out, captured.err)
