"""What load-driven remodelling must produce without being fitted (issue: mechanics, point 4).

Small volumes and few seeds: a lattice of vertical rods (carrying the z load) and
horizontal rods (carrying almost nothing), and the lumbar phantom on a coarse grid.
Random keys are shared between the runs compared (same seed: paired comparisons).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from test_mechanostat import LOSS, _run, lattice

from voxelbone.intervals import paired_interval
from voxelbone.metrics.anisotropy import mean_intercept_length
from voxelbone.phantom import make_phantom
from voxelbone.remodel.mechanostat import Mechanostat
from voxelbone.remodel.state import RemodelingRates
from voxelbone.scenario import Period, Scenario
from voxelbone.simulate import simulate


@pytest.fixture(autouse=True)
def one_solver_thread():
    """The solver's Numba threads wait on each other on a loaded machine: one keeps these tests fast."""
    n = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(n)


#: The seeds over which a mean claim is made (each run of the 30³ lattice takes about a second).
#: Twelve: one seed's load-driven rise of DA scatters by about 0.013 (seeds 1-24), so four
#: seeds left the mean a standard error of 0.0065 and did not resolve it.
OVER_SEEDS = tuple(range(1, 13))


def _da(bone: np.ndarray) -> float:
    """Degree of anisotropy, MIL, Scanco convention (λ_max/λ_min of the fabric, 1 = isotropic)."""
    return mean_intercept_length(bone >= 0.5).da_ratio


@pytest.fixture(scope="module")
def untreated_loss():
    """A year of untreated-like loss (BMU deficit 10 %, fast turnover) on the lattice, blind and load-driven."""
    n = numba.get_num_threads()
    numba.set_num_threads(1)
    vol, vert, hor = lattice(30, 10, 3)  # 400 µm spacing: the signal's 100 µm reach stays on one rod
    runs = {}
    for seed in OVER_SEEDS:
        for on in (False, True):
            b = _run(vol, Mechanostat() if on else None, 1.0, LOSS, fe_every_days=60, seed=seed)
            runs[seed, on] = dict(vert=float(b[vert].sum() / vol.bone[vert].sum()),
                                  hor=float(b[hor].sum() / vol.bone[hor].sum()),
                                  bv=float(b.sum() / vol.bone.sum()), da=_da(b))
    numba.set_num_threads(n)
    return _da(vol.bone), runs


@pytest.mark.parametrize("seed", [1, 2])
def test_untreated_loss_with_load_takes_the_horizontal_struts_and_raises_anisotropy(untreated_loss, seed):
    da0, runs = untreated_loss
    off, on = runs[seed, False], runs[seed, True]
    assert da0 == pytest.approx(1.0, abs=0.01)  # the lattice starts isotropic
    # load-driven BMUs take the unloaded horizontal struts first (paired with blind BMUs: the
    # lattice's own geometry makes the rods differ a little even without load)
    assert on["vert"] - on["hor"] > off["vert"] - off["hor"] + 0.03
    assert on["hor"] < off["hor"] - 0.01
    # ... so the structure turns towards the load axis (MIL sees a strut only once it is cut)
    assert on["da"] > off["da"] and on["da"] > da0 + 0.03


def test_anisotropy_rises_more_with_load_than_without_over_seeds(untreated_loss):
    # Measured (load-driven minus blind MIL DA, model revision 2026-12-03b, 2026-12-04): seeds 1-4
    # +0.018, +0.019, -0.006, +0.001, mean +0.008 [-0.011, +0.028] -- four seeds do not resolve it
    # (this was a strict expected failure, "mean of seeds 1-4 above 0.01", not traced); seeds 5-24,
    # run once as a held-out sample, +0.017 [+0.011, +0.023], 19 of 20 above zero; seeds 1-12
    # +0.0165 [+0.0082, +0.0248]. MIL sees a rod only once it is cut, and a 30³ lattice has 18
    # horizontal rods, so one seed's DA turns on a few cuts; the rise is resolved over twelve.
    _, runs = untreated_loss
    gain = paired_interval([runs[s, False]["da"] for s in OVER_SEEDS], [runs[s, True]["da"] for s in OVER_SEEDS])
    assert gain.low > 0.0, f"load-driven minus blind DA over seeds {OVER_SEEDS[0]}-{OVER_SEEDS[-1]}: {gain.format('+.4f')}"
    assert gain.mean > 0.01


@pytest.mark.parametrize("seed", [1, 2])
def test_loaded_vertical_struts_keep_their_thickness_better_than_horizontal_ones(untreated_loss, seed):
    _, runs = untreated_loss
    off, on = runs[seed, False], runs[seed, True]
    # rod thickness ∝ sqrt(bone per rod length): the vertical rods keep more of it under load
    assert np.sqrt(on["vert"]) - np.sqrt(on["hor"]) > 0.03
    assert on["vert"] > off["vert"]
    # the same hormones: the mechanostat moves bone, it does not make the loss disappear
    assert on["bv"] == pytest.approx(off["bv"], abs=0.04)


def test_loaded_vertical_struts_keep_more_bone_than_blind_ones_over_seeds(untreated_loss):
    # Measured (vertical rods' bone kept, load-driven minus blind, seeds 1-4): +0.004, +0.016,
    # +0.023, +0.026 on model revision 2026-12-03 (a cavity opened at the bone surface);
    # +0.006, +0.028, +0.018, +0.032 before, with each BMU refilling at its seed's factor
    # (mechanostat revision 2026-12-02); +0.026, +0.038, +0.042, +0.039 while each voxel refilled
    # at its own. Seeds 1-2 alone (+0.010) sit at the bound: the claim is made over several seeds
    # (seeds 1-12 on revision 2026-12-03b: mean +0.029; held-out seeds 5-24 +0.034).
    _, runs = untreated_loss
    assert np.mean([runs[s, True]["vert"] - runs[s, False]["vert"] for s in OVER_SEEDS]) > 0.01


def _lumbar(preset: str, years: float, fe_every_days: int, seed: int = 1, size: int = 48, step_days: int = 10):
    s = Scenario(name="m", size=size, voxel_size_um=40.0, periods=(Period(preset, years),), step_days=step_days,
                 seed=seed, metrics_every_days=fe_every_days or 180, checkpoint_every_days=10**6,
                 fe_every_days=fe_every_days)
    r = simulate(s, None, backend="numpy", progress=False, render=False, measure=lambda v: {"bv": float(v.bone.sum())})
    return r.column("bv") / r.column("bv")[0], r.column("abmd_pct")


@pytest.mark.slow
def test_disuse_loses_bone_faster_than_estrogen_loss_alone():
    # bed rest (balanced hormones, a fifth of the load) against postmenopausal loss at the
    # habitual load, through the whole run (presets, cell layer, spin-up); ~1 min on 2 cores.
    # measured (48³, 40 µm, 0.2 yr): abmd_pct −1.33 vs −0.35 %, bone volume −1.5 vs −0.7 %
    bed = _lumbar("bed_rest", 0.2, 60)
    meno = _lumbar("postmenopausal_untreated", 0.2, 60)
    assert bed[1][-1] < meno[1][-1] - 0.5  # abmd_pct
    assert bed[0][-1] < meno[0][-1] - 0.004  # bone volume


@pytest.mark.slow
def test_balanced_hormones_and_constant_load_keep_bone_volume_for_ten_years():
    # Badilatti et al. 2016: BV/TV within 5 % over 10 simulated years under a constant load.
    # The absolute criterion, through the whole run (presets, cell layer, spin-up): a 64³
    # lumbar cube at 40 µm (a 48³ cube can lose a loose piece of several % by one fragment
    # removal, with or without mechanics), 20-day steps, a solve every 180 days: a minute on
    # 2 idle cores. And paired with blind BMUs of the same seed, over the last two years:
    # the mechanostat adds no drift of its own. Measured: load-driven −1.46 % at 10 years
    # (largest excursion −1.94 %), mean of years 8–10 −1.62 %; blind −0.73 %, −0.79 %; the
    # earlier rule (set points re-fitted on every solve) −4.25 %, −3.99 %.
    bv, _ = _lumbar("premenopausal", 10.0, 180, size=64, step_days=20)
    assert np.all(np.abs(bv - 1.0) <= 0.05), bv
    blind, _ = _lumbar("premenopausal", 10.0, 0, size=64, step_days=20)
    late = slice(-5, None)  # the evaluations from year 8.4 to 10
    assert abs(np.mean(bv[late]) - np.mean(blind[late])) <= 0.02, (bv, blind)


def test_balanced_turnover_and_constant_load_keep_the_bone_of_blind_remodelling():
    # Accelerated homeostasis check (a minute on 2 idle cores): balanced BMUs at 2 activations
    # per year — ten times the premenopausal trabecular rate (0.21 /yr), so two years here are
    # about twenty years of premenopausal turnover — on a 40³ lumbar cube at 40 µm, paired
    # with blind BMUs of the same seed, three seeds. The first year opens the remodelling space
    # (no spin-up); from year 1 to year 3 the load-driven runs must change by the blind runs'
    # change within 2 % of the bone on the mean of the seeds, and no seed by more than 5 %
    # (Badilatti et al. 2016: BV/TV within 5 % in 10 years). Measured (BV change from year 1
    # to 3 minus blind's, %): model revision 2026-12-03b, seeds 1-12: -1.13, -0.61, +3.63, +1.07,
    # -0.42, +0.33, +1.69, -1.98, -0.66, -0.79, +0.03, -0.91 (mean +0.02); revision 2026-12-03,
    # seeds 1-12: -1.04, -0.09, +1.21, +3.45, -0.37, +1.08, +1.52, -2.78, -1.52, -0.51, -0.84, -0.69 (mean -0.05).
    # A seed's difference spreads by about 1.5 %, so a bound of 3 % per seed (this test's until
    # 2026-12-03b) was exceeded by one seed of twelve on each revision. Earlier rules: each voxel
    # refilling at its own factor, with seeds steered below balance reserving no marrow
    # (mechanostat rule until 2026-12-02) +1.77, +1.91, +5.42 (mean +3.03, red here); set points
    # re-fitted on every solve (the earlier rule) -3.7 (seed 1).
    balanced = RemodelingRates(2.0, 2.0, 50.0, 1.0, 1.0)
    steps_per_year = 365 // 5
    diffs = []
    for seed in (1, 2, 3):
        vol = make_phantom("lumbar_spine", size=40, voxel_size_um=40.0, seed=seed)
        change = {}
        for on in (False, True):
            trace: list[float] = []
            _run(vol, Mechanostat() if on else None, 3.0, balanced, fe_every_days=60, seed=seed, trace=trace)
            year = [np.mean(trace[k * steps_per_year - 6:k * steps_per_year]) for k in (1, 3)]  # a month's mean
            change[on] = year[1] / year[0] - 1.0
        diffs.append(change[True] - change[False])
    assert abs(np.mean(diffs)) <= 0.02 and max(abs(d) for d in diffs) <= 0.05, diffs
