"""Presets, pharmacokinetics, hormone courses and the cell layer."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from voxelbone.biology import REFERENCE_STATE, cell_activity, derivatives, steady_state
from voxelbone.hormones import HormoneState
from voxelbone.pharmacokinetics import Dosing, drug_level, dose_train
from voxelbone.presets import PresetError, course_for_periods, drug_specs, list_presets, load_preset

REQUIRED = ["premenopausal", "postmenopausal_untreated", "mht_estradiol_progesterone", "low_dose_testosterone_women",
            "hypogonadal_untreated", "trt", "trt_anastrozole_excess", "gh_peptide_sermorelin",
            "gh_peptide_ipamorelin_cjc1295", "mht_plus_gh_peptide", "trt_plus_gh_peptide", "glucocorticoid_excess",
            "chronic_inflammation", "teriparatide", "hyperparathyroidism"]
EXTRAPOLATED = {"gh_peptide_ipamorelin_cjc1295", "enclomiphene", "trt_anastrozole_gonadorelin"}


def test_required_presets_exist_with_evidence_and_citations():
    names = {p.name for p in list_presets()}
    assert set(REQUIRED) <= names
    for p in list_presets():
        assert p.evidence in ("clinical", "extrapolated"), p.name
        assert p.references, f"{p.name} cites nothing"
        if p.name in EXTRAPOLATED:
            assert p.evidence == "extrapolated" and p.mechanism, p.name


def test_every_drug_has_pharmacokinetics_with_references():
    for name, spec in drug_specs().items():
        assert spec.absorption_half_life_days > 0 and spec.elimination_half_life_days > 0, name
        assert spec.references, f"{name} cites nothing"


def test_bateman_mean_level_is_exact():
    spec = drug_specs()["testosterone_cypionate"]
    dt = 1.0 / 24
    days = np.arange(0, 200, dt)
    dosing = Dosing("testosterone_cypionate", 140.0, 7.0, "im")
    level = drug_level(spec, dose_train(dosing, days), dt)
    # steady state: the mean over a dosing interval equals level_per_mg_per_day × dose rate
    last = days >= days[-1] - 7.0 * 10
    assert level[last].mean() == pytest.approx(spec.level_per_mg_per_day * 20.0, rel=0.02)
    # the peak after an injection comes after absorption: tmax = ln(ka/ke)/(ka-ke)
    tmax = math.log(spec.ka / spec.ke) / (spec.ka - spec.ke)
    first = level[: int(7 / dt)]
    assert abs(days[np.argmax(first)] - tmax) < 0.3


def test_trt_raises_estradiol_by_aromatisation_and_anastrozole_lowers_it():
    trt = course_for_periods([("trt", 0.25)]).mean(28.0)
    ai = course_for_periods([("trt_anastrozole_excess", 0.25)]).mean(28.0)
    hypo = course_for_periods([("hypogonadal_untreated", 0.25)]).mean(28.0)
    assert trt.testosterone_ng_dl > 2 * hypo.testosterone_ng_dl
    assert trt.estradiol_pg_ml > hypo.estradiol_pg_ml
    assert ai.estradiol_pg_ml < 0.5 * trt.estradiol_pg_ml
    # exogenous testosterone suppresses LH: the endogenous share falls
    c = course_for_periods([("trt", 0.25)])
    assert c.extras["exogenous_testosterone_ng_dl"][-1] > 0


def test_intermittent_and_continuous_pth_courses():
    tpd = course_for_periods([("teriparatide", 0.1)])
    hpt = course_for_periods([("hyperparathyroidism", 0.1)])
    day = tpd.pth_pg_ml[24 * 30: 24 * 31]
    assert day.max() > 2 * np.median(day)  # a daily pulse (peak ~2.5× baseline within hours)
    assert hpt.pth_pg_ml[24 * 30: 24 * 31].std() < 0.05 * hpt.pth_pg_ml.mean()  # continuous


def test_gh_peptides_raise_igf1():
    base = course_for_periods([("gh_peptide_sermorelin", 0.25)])
    assert base.igf1_ng_ml[-1] > 1.8 * base.igf1_ng_ml[0]


def test_chained_periods_switch_levels():
    c = course_for_periods([("postmenopausal_untreated", 0.5), ("mht_estradiol_progesterone", 0.5)])
    d = c.daily_mean()
    assert d.estradiol_pg_ml[100] < 20 and d.estradiol_pg_ml[300] > 50


def test_chained_periods_share_one_menopause_clock():
    """Menopause, two years untreated, then the 'postmenopausal' population: its levels go on
    from two years after menopause (no jump to its own five years), so PTH and IL-6, which
    rise with the years since menopause, are continuous at the switch."""
    two = 2 * 365.25
    c = course_for_periods([("samples/early_postmenopause.toml", 2.0), ("postmenopausal_untreated", 1.0)])
    d = c.daily_mean()
    i = int(two)
    for name in ("pth_pg_ml", "il6_pg_ml"):
        before, after = getattr(d, name)[i - 1], getattr(d, name)[i + 1]
        assert after == pytest.approx(before, rel=2e-3), name
    # the population on its own starts five years after menopause: higher IL-6 than at two years
    alone = course_for_periods([("postmenopausal_untreated", 1.0)]).daily_mean()
    assert alone.il6_pg_ml[1] > 1.05 * d.il6_pg_ml[i + 1]


def test_unknown_preset_and_malformed_file(tmp_path):
    with pytest.raises(PresetError, match="gh_peptide_sermorelin"):
        load_preset("gh_peptide_sermorelim")
    bad = tmp_path / "mine.toml"
    bad.write_text('title = "x"\npopulation = "postmenopausal_woman"\nevidence = "clinical"\nsummary = "x"\n'
                   'references = ["x"]\n\n[[drug]]\nname = "estradiol_oral"\ndose_mg = -1\nevery_days = 1\nroute = "oral"\n')
    with pytest.raises(PresetError, match="dose_mg"):
        load_preset(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text('title = "x"\npopulaton = "postmenopausal_woman"\n')
    with pytest.raises(PresetError, match=r"line 2.*populaton|populaton.*line 2"):
        load_preset(typo)


def test_user_preset_file_works_like_a_builtin():
    p = load_preset("samples/early_postmenopause.toml")
    assert p.population.years_since_menopause == 0.0
    c = p.hormone_course(3 * 365.25)
    d = c.daily_mean()
    assert d.estradiol_pg_ml[0] > 60 and d.estradiol_pg_ml[-1] < 15  # the menopause transition


def test_presets_cli_lists_and_shows(tmp_path, capsys):
    from voxelbone.cli import main

    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "postmenopausal_untreated" in out and "extrapolated" in out
    assert main(["presets", "show", "trt", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "testosterone_cypionate" in out and "estradiol" in out and "mechanical load" not in out
    assert main(["presets", "show", "spaceflight", "--out", str(tmp_path)]) == 0
    assert "mechanical load: 0.1x habitual, acting only with load-driven remodelling on (--fe-every-days 28)" \
        in capsys.readouterr().out
    png = tmp_path / "trt_hormones.png"
    import imageio.v2 as imageio

    img = np.asarray(imageio.imread(png))
    assert img.shape[0] > 200 and (img[..., :3] < 200).any(axis=-1).mean() > 0.01


# ------------------------------------------------------------------ cell layer
def test_steady_state_is_a_fixed_point():
    for state in (REFERENCE_STATE, HormoneState(8.0, 25.0, 130.0, 35.0, 12.0, 2.5, 0.6, 6.0)):
        ss = steady_state(state)
        dx = derivatives(np.array([ss["OBp"], ss["OBa"], ss["OCa"]]), state)
        assert np.max(np.abs(dx)) < 1e-9


def test_ten_years_of_cell_layer_in_well_under_a_second():
    c = course_for_periods([("postmenopausal_untreated", 10.0)])
    cell_activity(c, "lumbar_spine")  # compile
    t0 = time.perf_counter()
    a = cell_activity(c, "lumbar_spine")
    assert time.perf_counter() - t0 < 1.0
    assert a.days.size >= 3650


def test_menopause_raises_turnover_and_erosion_depth_and_turns_the_balance_negative():
    pre = cell_activity(course_for_periods([("premenopausal", 2.0)]), "lumbar_spine")
    early = cell_activity(course_for_periods([("samples/early_postmenopause.toml", 2.0)]), "lumbar_spine")
    assert early.activation_trabecular_per_yr[365] > 1.5 * pre.activation_trabecular_per_yr[365]
    assert early.erosion_depth_um[365] > pre.erosion_depth_um[365] + 3
    assert early.refill_trabecular[365] < 0.95
    assert abs(pre.refill_trabecular[200] - 1.0) < 1e-6


@pytest.mark.parametrize("preset", ["premenopausal", "hypogonadal_untreated", "glucocorticoid_excess"])
def test_untreated_states_start_where_they_stand(preset):
    # the remodeling space before day 0 comes from the population's own circulating levels
    # (aromatised testosterone included); an untreated course must not jump on day 0
    a = cell_activity(course_for_periods([(preset, 0.5)]), "lumbar_spine")
    if preset == "glucocorticoid_excess":
        assert a.activation_trabecular_per_yr[1] != pytest.approx(a.initial_rates.activation_trabecular_per_yr, rel=0.01)
        return
    assert a.activation_trabecular_per_yr[1] == pytest.approx(a.initial_rates.activation_trabecular_per_yr, rel=0.01)
    assert a.refill_trabecular[1] == pytest.approx(a.initial_rates.refill_trabecular, abs=0.01)


def test_presets_command_refuses_a_name_without_show(capsys):
    from voxelbone.cli import main

    assert main(["presets", "list", "trt"]) == 2
    assert "presets show trt" in capsys.readouterr().err
    assert main(["presets", "show"]) == 2
    assert "needs a preset name" in capsys.readouterr().err


# ------------------------------------------------------------------ one definition per fact
def test_cell_outputs_hold_what_their_names_say():
    # at the reference levels, adapted to them, the cell model sits on its steady state:
    # every named output must equal the steady-state quantity of the same name
    from voxelbone.biology import _constant_course
    from voxelbone.sites import get_site

    course = _constant_course(REFERENCE_STATE, days=60.0)
    a = cell_activity(course, "lumbar_spine", adapted=REFERENCE_STATE)
    ss = steady_state(REFERENCE_STATE)
    for name in ("OBp", "OBa", "OCa", "RANKL", "OPG"):
        np.testing.assert_allclose(a.cells[name], ss[name], rtol=1e-9, err_msg=name)
    np.testing.assert_allclose(a.cells["bone_volume_internal"], 1.0, rtol=1e-12)
    np.testing.assert_allclose(a.cells["pth_anabolic_signal"], 0.0, atol=1e-12)
    # oc_flux and oc_apoptosis set Ac.f and E.De: the site's reference rates at the reference state
    rates = get_site("lumbar_spine").remodeling
    np.testing.assert_allclose(a.activation_trabecular_per_yr, rates.activation_trabecular_per_yr, rtol=1e-9)
    np.testing.assert_allclose(a.erosion_depth_um, rates.erosion_depth_um, rtol=1e-9)
    np.testing.assert_allclose(a.refill_trabecular, rates.refill, rtol=1e-9)


def test_cell_state_is_packed_by_name():
    from voxelbone.biology import CELL_STATE, CellState, _pack_state

    values = {name: float(i + 1) for i, name in enumerate(CELL_STATE)}
    x0 = _pack_state(**values)
    assert x0.dtype == np.float64 and x0.shape == (len(CELL_STATE),)
    for name in CELL_STATE:
        assert x0[CellState[name]] == values[name]
    with pytest.raises(ValueError, match="missing.*OCa"):
        _pack_state(**{k: v for k, v in values.items() if k != "OCa"})
    with pytest.raises(ValueError, match="unknown.*OBx"):
        _pack_state(**values, OBx=1.0)


def test_reference_levels_and_site_rates_have_one_home():
    from voxelbone import biology, hormones, sites

    assert biology.HormoneEffects().reference is hormones.REFERENCE_STATE
    assert not [f for f in biology.HormoneEffects.__dataclass_fields__ if f.startswith("ref_")]
    assert not hasattr(biology, "SITE_RATES")
    # the reference is the premenopausal woman's baseline (populations.toml holds her as data)
    from voxelbone.presets import populations

    assert populations()["premenopausal_woman"].baseline == hormones.REFERENCE_STATE
    # the cell layer reads the site's rates from sites.SITES: a changed rate moves Ac.f
    spec = sites.SITES["femoral_neck"]
    course = biology._constant_course(REFERENCE_STATE, days=3.0)
    base = cell_activity(course, "femoral_neck", adapted=REFERENCE_STATE).initial_rates
    assert base.activation_trabecular_per_yr == pytest.approx(spec.remodeling.activation_trabecular_per_yr)
    assert base.activation_cortical_per_yr == pytest.approx(spec.remodeling.activation_cortical_per_yr)
    with pytest.raises(ValueError, match="unknown site 'femur'.*femoral_neck"):
        cell_activity(course, "femur")


def test_toml_errors_of_presets_and_scenarios_name_the_same_line(tmp_path):
    from voxelbone.scenario import load_scenario

    from voxelbone._toml import toml_line

    text = 'title = "x"\n\n[[drug]]\nname = "a"\n\n[[drug]]\nname = "b"\nroute = "im"\n'
    assert [toml_line(text, "drug"), toml_line(text, "name", 1), toml_line(text, "route", 3), toml_line(text, "x")] == [3, 7, 8, None]
    bad = tmp_path / "s.toml"
    bad.write_text('name = "s"\nseed = 1\nsizes = 3\n\n[[period]]\npreset = "premenopausal"\nyears = 1\n')
    with pytest.raises(ValueError, match=r"sizes.*\(line 3\)"):
        load_scenario(bad)
