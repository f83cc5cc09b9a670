"""Behaviours that must emerge from the model without being fitted (model.md §3).

Untreated loss after menopause is fastest in the first years and slows later; it thins and
perforates trabeculae, opens the cortex and lowers Conn.D; GH therapy dips before it gains;
intermittent PTH builds and continuous PTH removes; over-suppressed estradiol on TRT costs
bone; balanced premenopausal bone holds steady. Runs on 40 µm phantoms of the calibration cube
(96³, ``study_runs.site_run``) unless a test says otherwise; three seeds.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from study_runs import EARLY_POSTMENOPAUSE, site_run
from voxelbone.calibration import CALIBRATION_SEEDS as SEEDS
from voxelbone.calibration import bmd_change

#: Samples of the multi-year time courses read at whole years: every 90 days. Measuring does not
#: change the run (the same end, bit for bit); it halves a 6-year run's time against 30-day
#: samples, and moves the loss read at years 2, 4 and 6 by 0.02 points (seed 1: -9.05 -> -9.03 %
#: in years 0-2, -3.06 -> -3.05 % in years 4-6).
SEASONAL_DAYS = 90

def test_gh_therapy_dips_before_it_gains():
    for seed in SEEDS:
        r = site_run("gh_peptide_sermorelin", "lumbar_spine", seed, 40.0, every=None)
        first = r.years <= 0.5
        assert r.abmd_pct[first].min() < 0.0, "no early dip (turnover rises first)"
        assert r.abmd_pct[-1] > 0.0, "no gain after two years"


def test_over_suppressed_estradiol_on_trt_costs_bone():
    for site in ("lumbar_spine", "femoral_neck"):
        normal = np.mean([site_run("trt", site, s, 40.0).percent_per_year for s in SEEDS])
        excess = np.mean([site_run("trt_anastrozole_excess", site, s, 40.0).percent_per_year for s in SEEDS])
        assert excess < normal - 1.0, f"{site}: TRT {normal:+.2f} vs TRT + excess anastrozole {excess:+.2f} %/yr"


def test_intermittent_pth_builds_continuous_pth_removes():
    for seed in SEEDS:
        tpd = site_run("teriparatide", "lumbar_spine", seed, 40.0).percent_per_year
        hpt = site_run("hyperparathyroidism", "lumbar_spine", seed, 40.0).percent_per_year
        assert tpd > 1.0, f"teriparatide {tpd:+.2f} %/yr"
        assert hpt < -0.5, f"continuous PTH {hpt:+.2f} %/yr"


def test_untreated_loss_is_fastest_in_the_first_years_after_menopause():
    # SWAN (Greendale et al. 2012 JBMR 27:111): loss is fastest around the final menstrual
    # period and slows later. Here it comes from the remodelling transient (estradiol falls,
    # activation rises and opens remodelling space) and the cell layer's feedback, with no
    # time profile imposed. A 2.56 mm cube, five years from menopause: measured aBMD loss
    # (%/yr) year 0-1 / 1-2 / 4-5, seeds 2-4: 2.9/4.4/0.9, 3.4/5.4/1.0, 3.0/4.4/1.2 (before
    # bone cut by the cube's faces was kept, whole branches left as "fragments": seed 4 lost
    # 48 % of its trabecular bone in year 4-5).
    preset = EARLY_POSTMENOPAUSE
    for seed in (2, 3, 4):
        r = bmd_change(preset, "lumbar_spine", seed=seed, years=5.0, size=64, voxel_size_um=40.0, step_days=10,
                       backend="numpy", measure_every_days=SEASONAL_DAYS)
        yrs = np.arange(6.0)
        for name, v in (("aBMD", 100.0 + r.abmd_pct), ("BV/TV", r.series["bv_tv"])):
            at = np.interp(yrs, r.years, v)
            loss = 100.0 * (1.0 - at[1:] / at[:-1])
            text = ", ".join(f"{x:.2f}" for x in loss)
            assert (loss > 0).all(), f"seed {seed}: {name} not lost every year ({text} %/yr)"
            assert loss[0] > loss[4] and loss[1] > 1.5 * loss[4], f"seed {seed}: {name} loss by year {text} %/yr"


def test_loss_slows_after_the_first_postmenopausal_years():
    preset = EARLY_POSTMENOPAUSE
    for seed in (1, 2):
        r = site_run(preset, "lumbar_spine", seed, 40.0, years=6.0, every=SEASONAL_DAYS)
        b, t = 100.0 + r.abmd_pct, r.years  # the site's areal BMD, % of day 0
        early = np.interp(2.0, t, b) / b[0] - 1.0
        late = np.interp(6.0, t, b) / np.interp(4.0, t, b) - 1.0
        assert early < 0 and late < 0
        assert abs(late) < 0.75 * abs(early), f"years 0-2 {100 * early:+.2f} %, years 4-6 {100 * late:+.2f} %"


def test_balanced_premenopausal_bone_holds_steady():
    for seed in SEEDS:
        pct = site_run("premenopausal", "lumbar_spine", seed, 40.0).percent_per_year
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

    sc = Scenario(name="pm", site="lumbar_spine", periods=(Period(EARLY_POSTMENOPAUSE, 3.0),),
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
# so the fall is judged on the mean of the seeds (and below on each seed). Measured (96³,
# 40 µm, four years): last/first 0.57, 0.82, 0.70 on model revision 2026-12-03b (mean 0.70);
# 0.49, 1.05, 0.72 before 2026-12-03 (mean 0.75); before 2026-12-01 3.99 -> 2.36,
# 3.57 -> 3.26, 3.11 -> 2.40 /mm³ (mean ratio 0.76). Before
# bone on the cube's cut faces was kept, seed 2 reached 2.93 only by losing a 0.26 mm³ branch
# that left the cube through a cut face, removed as a "fragment".
CONN_D_RUNS = (("postmenopausal_untreated", 4.0, 0.85), (EARLY_POSTMENOPAUSE, 3.0, 0.9))


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
                    reason=("plate perforation holds Conn.D up for the first years from menopause (last/first "
                            "0.96, 0.92, 1.04 on model revision 2026-12-03b; seeds 2, 3 rose before)"),
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
# (2026-12-01). From then seed 2 (3.84 mm at 40 µm) went 3.34 -> 2.75 -> 2.95 -> 2.29 -> 3.63
# -> 3.51 /mm³ at day 0 and years 1-4 (ratio 1.05; seeds 1, 3: 0.49, 0.72; BV/TV 0.099 -> 0.090):
# the jump in year 4 was about 75 handles in the 57 mm³ cube, the plate perforation described
# above, and this test was a (non-strict) expected failure. Since a cavity opens at the bone
# surface (model revision 2026-12-03; measured again on 2026-12-03b, 2026-12-04) every seed
# falls: last/first 0.57, 0.82, 0.70 (the early-postmenopause case above: 0.96, 0.92, 1.04,
# mean 0.97, still an expected failure).
def test_untreated_loss_lowers_conn_d_on_every_seed():
    ratios = _conn_d_ratios(*CONN_D_RUNS[0][:2])
    text = ", ".join(f"{r:.2f}" for r in ratios)
    assert max(ratios) < 1.0, f"Conn.D rose on a seed (last/first: {text})"


