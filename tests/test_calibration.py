"""The clinical table (model.md §3) and the behaviours that must emerge without being fitted.

The table is calibrated on ``abmd_pct``, the site's DXA-equivalent areal BMD change (the
trabecular and cortical compartments' relative mineral changes, weighted by the site's DXA
shares), not on the cube's mean BMD, which moves with the cube's cortex share.
Runs are small and coarse where that does not change the answer: 10-day steps (shown
equivalent to 2-day steps below) and masked sums of the mineral field only.
The default voxel size (30 µm phantoms, 128³ = 3.84 mm) and a coarser one (40 µm: 20 µm
phantoms of the same 3.84 mm cube block-averaged ×2, so the structure is the same one a
20 µm scan would hold) are both checked, each with three seeds: the mean of the seeds must
land in the clinical range and every seed within ``SEED_NOISE_PCT_PER_YR`` of it (``CellVerdict``) (a 3.84 mm cube holds
a few hundred BMUs a year; seed-to-seed spread measured ±0.3-0.4 %/yr). Emergent behaviours
are checked on cheaper 40 µm phantoms (96³).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from voxelbone.calibration import (CALIBRATED_VOXEL_SIZES_UM, CALIBRATION_EDGE_MM, CALIBRATION_SEEDS, CLINICAL_TARGETS,
                                   SEED_NOISE_PCT_PER_YR, STUDY_SAMPLE_DAYS, CellVerdict, bmd_change, study_volume)

ROOT = Path(__file__).resolve().parents[1]
SEEDS = CALIBRATION_SEEDS
CALIBRATED = CALIBRATED_VOXEL_SIZES_UM


def _edge_voxels(voxel_um: float) -> int:
    """Edge in voxels of the calibration cube (``CALIBRATION_EDGE_MM``) at ``voxel_um``: 128 at 30 µm, 96 at 40 µm."""
    return round(CALIBRATION_EDGE_MM * 1000.0 / voxel_um)


@functools.lru_cache(maxsize=None)
def _study_volume(site: str, seed: int, voxel_um: float):
    """The calibration table's starting volume (``study_volume``): None where the run builds its own phantom."""
    return study_volume(site, CALIBRATION_EDGE_MM, voxel_um, seed)


@functools.lru_cache(maxsize=None)
def _calibrated(preset: str, site: str, seed: int, voxel_um: float):
    volume = _study_volume(site, seed, voxel_um)
    if volume is None:
        return _run(preset, site, seed, voxel_um)
    return bmd_change(preset, site, seed=seed, volume=volume, step_days=10, backend="numpy",
                      measure_every_days=STUDY_SAMPLE_DAYS)


@functools.lru_cache(maxsize=None)
def _run(preset: str, site: str, seed: int, voxel_um: float, step_days: int = 10, years: float | None = None,
         every: int | None = STUDY_SAMPLE_DAYS):
    """A run on the site's phantom; ``every``: its sample interval (default day 0 and the end only:
    each sample contours the compartments; None samples every 30 days, for a time course)."""
    return bmd_change(preset, site, seed=seed, size=_edge_voxels(voxel_um), voxel_size_um=voxel_um,
                      step_days=step_days, years=years, backend="numpy", measure_every_days=every)


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
    fine = np.mean([_run("postmenopausal_untreated", "lumbar_spine", s, 40.0, step_days=2).percent_per_year
                    for s in SEEDS])
    coarse = np.mean([_run("postmenopausal_untreated", "lumbar_spine", s, 40.0).percent_per_year for s in SEEDS])
    assert abs(fine - coarse) < 0.35, f"2-day steps {fine:+.2f} %/yr vs 10-day steps {coarse:+.2f} %/yr"


# ----------------------------------------------------------------------------- emergent
def test_gh_therapy_dips_before_it_gains():
    for seed in SEEDS:
        r = _run("gh_peptide_sermorelin", "lumbar_spine", seed, 40.0, every=None)
        first = r.years <= 0.5
        assert r.abmd_pct[first].min() < 0.0, "no early dip (turnover rises first)"
        assert r.abmd_pct[-1] > 0.0, "no gain after two years"


def test_over_suppressed_estradiol_on_trt_costs_bone():
    for site in ("lumbar_spine", "femoral_neck"):
        normal = np.mean([_run("trt", site, s, 40.0).percent_per_year for s in SEEDS])
        excess = np.mean([_run("trt_anastrozole_excess", site, s, 40.0).percent_per_year for s in SEEDS])
        assert excess < normal - 1.0, f"{site}: TRT {normal:+.2f} vs TRT + excess anastrozole {excess:+.2f} %/yr"


def test_intermittent_pth_builds_continuous_pth_removes():
    for seed in SEEDS:
        tpd = _run("teriparatide", "lumbar_spine", seed, 40.0).percent_per_year
        hpt = _run("hyperparathyroidism", "lumbar_spine", seed, 40.0).percent_per_year
        assert tpd > 1.0, f"teriparatide {tpd:+.2f} %/yr"
        assert hpt < -0.5, f"continuous PTH {hpt:+.2f} %/yr"


def test_bone_cut_by_the_sample_faces_is_not_a_loose_fragment():
    # A branch of the network that leaves the cube through a face cutting the trabecular
    # compartment is held by the bone beyond the sample; only pieces loose inside go.
    from voxelbone.remodel import Remodeler
    from voxelbone.volume import BoneVolume, Region

    n, v = 32, 40.0
    bone = np.zeros((n, n, n), np.float32)
    region = np.full(bone.shape, Region.TRABECULAR, np.uint8)
    region[:, :, :4] = Region.CORTICAL
    bone[:, :, :4] = 1.0                      # cortex
    bone[14:18, 4:26, 4:26] = 1.0             # plate attached to the cortex
    bone[0:10, 20:24, 28:31] = 1.0            # strut leaving through the cut face z = 0
    bone[24:28, 24:28, 24:28] = 1.0           # a loose 4³ fragment
    r = Remodeler(BoneVolume(bone, bone * np.float32(0.9), region, v))
    r.remove_fragments()
    assert r.stats().fragments_removed == 1
    assert r.state.bone[0:10, 20:24, 28:31].min() == 1.0, "a strut cut by the sample face was removed"
    assert r.state.bone[24:28, 24:28, 24:28].sum() == 0


def test_untreated_loss_is_fastest_in_the_first_years_after_menopause():
    # SWAN (Greendale et al. 2012 JBMR 27:111): loss is fastest around the final menstrual
    # period and slows later. Here it comes from the remodelling transient (estradiol falls,
    # activation rises and opens remodelling space) and the cell layer's feedback, with no
    # time profile imposed. A 2.56 mm cube, five years from menopause: measured aBMD loss
    # (%/yr) year 0-1 / 1-2 / 4-5, seeds 2-4: 2.9/4.4/0.9, 3.4/5.4/1.0, 3.0/4.4/1.2 (before
    # bone cut by the cube's faces was kept, whole branches left as "fragments": seed 4 lost
    # 48 % of its trabecular bone in year 4-5).
    preset = str(ROOT / "samples" / "early_postmenopause.toml")
    for seed in (2, 3, 4):
        r = bmd_change(preset, "lumbar_spine", seed=seed, years=5.0, size=64, voxel_size_um=40.0, step_days=10,
                       backend="numpy")
        yrs = np.arange(6.0)
        for name, v in (("aBMD", 100.0 + r.abmd_pct), ("BV/TV", r.series["bv_tv"])):
            at = np.interp(yrs, r.years, v)
            loss = 100.0 * (1.0 - at[1:] / at[:-1])
            text = ", ".join(f"{x:.2f}" for x in loss)
            assert (loss > 0).all(), f"seed {seed}: {name} not lost every year ({text} %/yr)"
            assert loss[0] > loss[4] and loss[1] > 1.5 * loss[4], f"seed {seed}: {name} loss by year {text} %/yr"


def test_loss_slows_after_the_first_postmenopausal_years():
    preset = str(ROOT / "samples" / "early_postmenopause.toml")
    for seed in (1, 2):
        r = _run(preset, "lumbar_spine", seed, 40.0, years=6.0, every=None)
        b, t = 100.0 + r.abmd_pct, r.years  # the site's areal BMD, % of day 0
        early = np.interp(2.0, t, b) / b[0] - 1.0
        late = np.interp(6.0, t, b) / np.interp(4.0, t, b) - 1.0
        assert early < 0 and late < 0
        assert abs(late) < 0.75 * abs(early), f"years 0-2 {100 * early:+.2f} %, years 4-6 {100 * late:+.2f} %"


def test_balanced_premenopausal_bone_holds_steady():
    for seed in SEEDS:
        pct = _run("premenopausal", "lumbar_spine", seed, 40.0).percent_per_year
        assert abs(pct) <= 0.5, f"premenopausal drift {pct:+.2f} %/yr"


def test_untreated_loss_thins_perforates_and_opens_the_cortex():
    from voxelbone.metrics.cortical import cortical_metrics
    from voxelbone.simulate import _default_measure, simulate
    from voxelbone.scenario import Period, Scenario

    def measure(vol):
        # beside the metrics (cortex contoured from the bone), the porosity of the starting
        # cortex (the engine's labels, which stay those of the starting volume)
        labelled = cortical_metrics(vol.bone, vol.region, vol.voxel_size_um, resegment=False)
        return {**_default_measure(vol), "ct_po_starting_cortex": labelled.ct_po}

    sc = Scenario(name="pm", site="lumbar_spine", periods=(Period(str(ROOT / "samples" / "early_postmenopause.toml"), 3.0),),
                  size=96, voxel_size_um=40.0, seed=1, step_days=5, metrics_every_days=365)
    rows = simulate(sc, None, progress=False, render=False, backend="numpy", measure=measure).rows
    first, last = rows[0], rows[-1]
    assert last["bv_tv"] < 0.93 * first["bv_tv"]
    assert last["tb_th_um"] < first["tb_th_um"] - 10
    # Pores open within the starting cortex (its porosity rises by 0.02 and more: measured
    # 0.049 -> 0.105; seeds 2, 3: 0.057 -> 0.103, 0.058 -> 0.113). The contoured cortex
    # (the marrow passing only through gaps wider than a Haversian canal) thins and grows
    # porous: Ct.Th 331 -> 322 µm, Ct.Po 0.048 -> 0.065 (seeds 2, 3: 324 -> 318, 337 -> 319 µm;
    # 0.049 -> 0.065, 0.060 -> 0.074). Ct.Po rising is judged over paired seeds in
    # test_cortex_lumbar.py and test_cortex_remodel.py.
    assert last["ct_po_starting_cortex"] > first["ct_po_starting_cortex"] + 0.02
    assert last["ct_th_um"] < first["ct_th_um"] - 5.0
    # perforations and fragment losses are counted apart from thinning
    assert last["engine_perforations"] > first["engine_perforations"]
    assert last["engine_fragments_removed"] > 0 and last["engine_fragment_volume_mm3"] > 0


# The default lumbar phantom is rod-like (thin horizontal struts, Mosekilde 1988 Bone 9:247:
# horizontal trabeculae are thinner and lost first in vertebrae; plates thick enough that one
# cavity seldom perforates them): years after menopause, untreated loss cuts struts faster than
# it perforates plates, so Conn.D falls with BV/TV and Tb.Th. Conn.D in a 3.84 mm cube is below
# its representative volume (a handful of handles: seed 2 went 2.27 -> 3.44 /mm³ in one year),
# so the fall is judged on the mean of the seeds (and, an expected failure below, on each seed). Measured (96³,
# 40 µm, four years): last/first 0.49, 1.05, 0.72 (mean 0.75); before 2026-12-01 3.99 -> 2.36,
# 3.57 -> 3.26, 3.11 -> 2.40 /mm³ (mean ratio 0.76). Before
# bone on the cube's cut faces was kept, seed 2 reached 2.93 only by losing a 0.26 mm³ branch
# that left the cube through a cut face, removed as a "fragment".
CONN_D_RUNS = (("postmenopausal_untreated", 4.0, 0.85), (str(ROOT / "samples" / "early_postmenopause.toml"), 3.0, 0.9))


# From menopause on, Conn.D first falls a little (year 0-1: 4.12 -> 4.01, 3.45 -> 3.33, 3.44 ->
# 3.39 /mm³), then rises on seeds 2 and 3 (3.98 and 4.22 at three years) while BV/TV falls
# 16-17 %. The rise is plate perforation, not an artefact: the handles (first Betti number of
# the bone in the Conn.D box) grow by 49 and 59 between years 1 and 3 while the engine counts
# 47 and 35 perforations and the components and enclosed cavities barely move (which would
# lower Conn.D). Estradiol loss raises Ac.f and E.De at once, and the plates of the network
# phantom (~134 µm, thinned to ~120 µm by then) are cut through, each hole a new loop, before
# the struts go; a perforated plate raises connectivity (Odgaard 1997 Bone 20:315; Odgaard &
# Gundersen 1993 Bone 14:173). Seed 2 run on (before the cut-face rule): 4.21 /mm³ at five
# years, 3.90 at six, falling.
# What the rules and this phantom's plates imply, so kept as an expected failure of the
# "Conn.D falls" claim rather than forced; an XPASS is reported, not an error.
CONN_D_CASES = [pytest.param(*CONN_D_RUNS[0], id="postmenopausal_untreated"),
                pytest.param(*CONN_D_RUNS[1], id="early_postmenopause", marks=pytest.mark.xfail(
                    reason="plate perforation raises Conn.D for the first years from menopause (seeds 2, 3)",
                    raises=AssertionError, strict=False))]


@functools.lru_cache(maxsize=None)
def _conn_d_ratios(preset: str, years: float) -> tuple[float, ...]:
    """Conn.D last/first of each seed's run (96³, 40 µm); BV/TV and Tb.Th must fall on every seed."""
    from voxelbone.scenario import Period, Scenario
    from voxelbone.simulate import simulate

    ratios = []
    for seed in SEEDS:
        sc = Scenario(name="pm", site="lumbar_spine", periods=(Period(preset, years),),
                      size=96, voxel_size_um=40.0, seed=seed, step_days=5, metrics_every_days=365)
        rows = simulate(sc, None, progress=False, render=False, backend="numpy").rows
        first, last = rows[0], rows[-1]
        assert last["bv_tv"] < 0.95 * first["bv_tv"], f"seed {seed}"
        assert last["tb_th_um"] < first["tb_th_um"], f"seed {seed}"
        ratios.append(last["conn_d_per_mm3"] / first["conn_d_per_mm3"])
    return tuple(ratios)


@pytest.mark.parametrize("preset,years,ratio", CONN_D_CASES)
def test_untreated_loss_cuts_struts_and_lowers_conn_d(preset, years, ratio):
    ratios = _conn_d_ratios(preset, years)
    text = ", ".join(f"{r:.2f}" for r in ratios)
    assert float(np.mean(ratios)) < ratio, f"Conn.D last/first {text}: mean not below {ratio}"


# Each seed's Conn.D fell too until one BMU's balance was made the same at every voxel size
# (2026-12-01). Since then seed 2 (3.84 mm at 40 µm) goes 3.34 -> 2.75 -> 2.95 -> 2.29 -> 3.63
# -> 3.51 /mm³ at day 0 and years 1-4 (ratio 1.05; seeds 1, 3: 0.49, 0.72; BV/TV 0.099 -> 0.090):
# the jump in year 4 is about 75 handles in the 57 mm³ cube, the plate perforation described
# above, now that shallow cavity rims refill no more than the balance says. Kept as an
# expected failure of the per-seed claim; the mean (above) still falls.
@pytest.mark.xfail(reason="seed 2's Conn.D jumps in year 4 by plate perforation (see the comment above)",
                   raises=AssertionError, strict=False)
def test_untreated_loss_lowers_conn_d_on_every_seed():
    ratios = _conn_d_ratios(*CONN_D_RUNS[0][:2])
    text = ", ".join(f"{r:.2f}" for r in ratios)
    assert max(ratios) < 1.0, f"Conn.D rose on a seed (last/first: {text})"


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
