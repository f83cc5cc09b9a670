"""The calibration table and the invariance matrix: built from their recorded studies, with intervals.

Fast: nothing here simulates. The study records (``benchmarks/calibration_table.json``,
``benchmarks/invariance_matrix.json``) are written by ``benchmarks/calibration_table.py`` and
``benchmarks/invariance_matrix.py``; the README's and the docs' tables must be what the
records say.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from voxelbone.calibration import (
    CLINICAL_TARGETS,
    STUDY_COMPARTMENTS,
    StudyCell,
    calibration_cells,
    calibration_markdown,
    invariance_cells,
    invariance_markdown,
    mechanics_calibration_markdown,
    provenance_text,
    replace_between_markers,
    run_study,
    study_volume,
)
from voxelbone.remodel.params import MODEL_REVISION, model_revision

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _between(text: str, name: str) -> str:
    return text.split(f"<!-- {name}:start -->\n", 1)[1].split(f"\n<!-- {name}:end -->", 1)[0]


def _record(values: dict[str, list[float]]) -> dict:
    """A study record whose every cell of the calibration table has these abmd_pct values per seed."""
    cells = {}
    for c in calibration_cells():
        v = values.get(c.preset, [1.0, 1.0, 1.0])
        cells[c.key] = {"seeds": list(range(1, len(v) + 1)), "change_pct_per_yr": {"abmd_pct": v,
                        "tb_vbmd_mg_cm3": v, "bv_tv": v}, "date": "d", "git_commit": "c", "model": MODEL_REVISION}
    return {"cells": cells, "machine": "m"}


def test_readme_and_docs_hold_the_recorded_calibration_table():
    script = _script("calibration_table")
    record = json.loads((ROOT / "benchmarks" / "calibration_table.json").read_text(encoding="utf-8"))
    want = calibration_markdown(record) + "\n\n" + script.caption(record)
    for page in script.PAGES:
        assert _between(page.read_text(encoding="utf-8"), script.MARKER) == want, f"{page.name}: regenerate with " \
            "python benchmarks/calibration_table.py --from-record"
    # every preset of the clinical table at both sites and both calibrated voxel sizes, 3 seeds each
    assert {(c["preset"], c["site"], c["voxel_size_um"]) for c in record["cells"].values()} == {
        (p, s, v) for p in CLINICAL_TARGETS for s in ("lumbar_spine", "femoral_neck") for v in (30.0, 40.0)}
    assert all(len(c["change_pct_per_yr"]["abmd_pct"]) == 3 for c in record["cells"].values())


def test_provenance_says_which_cells_ran_past_their_last_day():
    """A cell recorded before the last step was cut at a run's end ran whole steps past it (a
    year in 10-day steps: 370 days for 365); the caption says so, and not of a cell run since."""
    old = {"years": 1.0, "step_days": 10, "date": "d", "git_commit": "c"}
    gh = {**old, "years": 2.0}  # 730 days: whole steps, nothing past its end
    record = {"cells": {"a": old, "b": dict(old), "g": gh}, "machine": "m"}
    assert "2 of these cells ran 370 days for their 365" in provenance_text(record)
    assert "ran" not in provenance_text(record, ["g"])
    record["cells"]["b"]["simulated_days"] = 365
    text = provenance_text(record)
    assert "1 of these cells ran 370 days for their 365" in text, text


def test_calibration_table_shows_interval_range_and_resolution():
    # MHT: mean +6 inside +5..+7 at the lumbar spine, interval excludes zero; TRT: mean +1,
    # interval [-3.97, +5.97] includes zero -> unresolved, and outside +4..+8
    text = calibration_markdown(_record({"mht_estradiol_progesterone": [5.0, 6.0, 7.0], "trt": [-1.0, 1.0, 3.0]}))
    mht = next(line for line in text.splitlines() if line.startswith("| mht_estradiol_progesterone | lumbar spine | 30"))
    trt = next(line for line in text.splitlines() if line.startswith("| trt | lumbar spine | 30"))
    assert mht.endswith("| +6.00 [+3.52, +8.48] | +5 … +7 | yes | yes |"), mht
    assert trt.endswith("| +1.00 [-3.97, +5.97] | +4 … +8 | no | no |"), trt
    gh = next(line for line in text.splitlines() if line.startswith("| gh_peptide_sermorelin"))
    assert gh.startswith("| gh_peptide_sermorelin (2 yr) |")  # GH is evaluated over two years


def test_invariance_page_marks_cells_not_run_and_judges_measured_ones():
    cells = invariance_cells(["trt"], edges_mm=(1.92, 3.84), voxel_sizes_um=(40.0,))
    record = {"cells": {c.key: {"change_pct_per_yr": {"abmd_pct": [4.0, 4.2, 4.4], "tb_vbmd_mg_cm3": [8.0] * 3,
                                                       "bv_tv": v}, "date": "d", "git_commit": "c",
                                "compartments": STUDY_COMPARTMENTS, "model": MODEL_REVISION}
                        for c, v in zip(cells, ([2.0] * 3, [4.0] * 3))}, "machine": "m"}
    full = invariance_cells(["trt"], edges_mm=(1.92, 3.84, 7.68), voxel_sizes_um=(40.0,))
    text = invariance_markdown(record, full, "CMD")
    assert "| trt | 7.68 mm | 40 µm | not run here | not run here | not run here |" in text
    assert "`CMD`" in text
    # BV/TV +2 and +4 %/yr: 1.0 from their mean +3, tolerance max(0.5, 0.6) -> disagree;
    # abmd_pct +4.2 at both -> agree
    assert "| trt | BV/TV | 2 of 3 | +3.00 | 1.00 (±0.60) | disagree |" in text
    assert "| trt | `abmd_pct` | 2 of 3 | +4.20 | 0.00 (±0.84) | agree |" in text


def test_invariance_page_does_not_take_a_cell_recorded_with_other_seeds():
    cell = invariance_cells(["trt"], edges_mm=(1.92,), voxel_sizes_um=(40.0,))[0]
    assert len(cell.seeds) == 24
    values = {m: [1.0, 2.0, 3.0] for m in ("abmd_pct", "tb_vbmd_mg_cm3", "bv_tv")}
    old = {"cells": {cell.key: {"seeds": [1, 2, 3], "date": "d", "git_commit": "c", "change_pct_per_yr": values,
                                "compartments": STUDY_COMPARTMENTS, "model": MODEL_REVISION}}}
    text = invariance_markdown(old, [cell], "CMD")
    assert "| trt | 1.92 mm | 40 µm | not run here | not run here | not run here |" in text
    assert "seeds per cell: 24 at 1.92 mm" in text
    same = invariance_markdown(old, [StudyCell(cell.preset, cell.site, cell.edge_mm, cell.voxel_size_um,
                                               (1, 2, 3), 1.0)], "CMD")
    assert "| trt | 1.92 mm | 40 µm | +2.00 [" in same


def test_a_cell_measured_in_the_day0_compartments_is_not_taken():
    """Tb.vBMD and BV/TV of a cell recorded before studies contoured the compartments at each
    sample (no ``compartments`` field) are another measure: shown "not run here", run again."""
    cell = StudyCell("trt", "lumbar_spine", 1.92, 40.0, (1, 2), 1.0)
    values = {m: [1.0, 2.0] for m in ("abmd_pct", "tb_vbmd_mg_cm3", "bv_tv")}
    labelled = {"cells": {cell.key: {"seeds": [1, 2], "date": "d", "git_commit": "c", "change_pct_per_yr": values}}}
    assert "| trt | 1.92 mm | 40 µm | not run here | not run here | not run here |" in invariance_markdown(
        labelled, [cell], "CMD")
    assert "another compartment measure" in invariance_markdown(labelled, [cell], "CMD")
    whole = {"cells": {cell.key: {**labelled["cells"][cell.key], "compartments": "contoured"}}}  # no VOI margin
    assert "| trt | 1.92 mm | 40 µm | not run here | not run here | not run here |" in invariance_markdown(
        whole, [cell], "CMD")
    contoured = {"cells": {cell.key: {**labelled["cells"][cell.key], "compartments": STUDY_COMPARTMENTS, "model": MODEL_REVISION}}}
    assert "| trt | 1.92 mm | 40 µm | +1.50 [" in invariance_markdown(contoured, [cell], "CMD")


def test_a_cell_run_on_another_model_revision_is_not_taken():
    """A cell recorded before the model last changed (``model`` missing or another
    ``MODEL_REVISION``) is shown "not run here" / "earlier model" and run again, never mixed in."""
    cell = StudyCell("trt", "lumbar_spine", 1.92, 40.0, (1, 2), 1.0)
    values = {m: [1.0, 2.0] for m in ("abmd_pct", "tb_vbmd_mg_cm3", "bv_tv")}
    base = {"seeds": [1, 2], "date": "d", "git_commit": "c", "change_pct_per_yr": values,
            "compartments": STUDY_COMPARTMENTS}
    for stale in ({}, {"model": "an earlier model"}):
        record = {"cells": {cell.key: {**base, **stale}}}
        text = invariance_markdown(record, [cell], "CMD")
        assert "| trt | 1.92 mm | 40 µm | not run here | not run here | not run here |" in text
        assert "another model revision" in text
        assert "| earlier model |" in calibration_markdown(record, [cell])
    current = {"cells": {cell.key: {**base, "model": MODEL_REVISION}}}
    assert "| trt | 1.92 mm | 40 µm | +1.50 [" in invariance_markdown(current, [cell], "CMD")
    assert "| +1.50 [" in calibration_markdown(current, [cell])


def test_full_invariance_matrix_is_the_issue_s():
    cells = invariance_cells()
    assert {c.preset for c in cells} == {*CLINICAL_TARGETS, "teriparatide", "hyperparathyroidism",
                                         "glucocorticoid_excess"}
    assert {(c.edge_mm, c.voxel_size_um) for c in cells} == {(e, v) for e in (1.92, 3.84, 7.68) for v in (20, 30, 40)}
    # at least three seeds everywhere; more on the smaller cubes, whose seed spread is wider
    assert all(c.years_run == 1.0 for c in cells)
    n_seeds = {c.edge_mm: len(c.seeds) for c in cells}
    assert n_seeds == {1.92: 24, 3.84: 9, 7.68: 3}
    assert all(c.seeds == tuple(range(1, len(c.seeds) + 1)) for c in cells)
    assert {c.seeds for c in invariance_cells(seeds=(4, 5, 6))} == {(4, 5, 6)}
    assert StudyCell("trt", "lumbar_spine", 7.68, 20.0).size == 384


def test_mechanics_page_holds_the_recorded_table_with_mechanics_on():
    script = _script("calibration_table")
    off = json.loads((ROOT / "benchmarks" / "calibration_table.json").read_text(encoding="utf-8"))
    on = json.loads((ROOT / "benchmarks" / "calibration_table_mechanics.json").read_text(encoding="utf-8"))
    want = (mechanics_calibration_markdown(off, on, 28) + "\n\n"
            + script.caption(on, "python benchmarks/calibration_table.py --fe-every-days 28"))
    assert _between(script.MECHANICS_PAGE.read_text(encoding="utf-8"), script.MECHANICS_MARKER) == want, \
        "regenerate with python benchmarks/calibration_table.py --fe-every-days 28 --from-record"
    assert all(c["fe_every_days"] == 28 and c["seeds"] == [1, 2, 3] for c in on["cells"].values())
    # every 40 µm cell ran with mechanics on; a row not run is a cell missing from the record, a row
    # "earlier model" one recorded before the model last changed (MODEL_REVISION)
    cells = calibration_cells(fe_every_days=28)
    assert {c.key for c in cells if c.voxel_size_um == 40.0} <= set(on["cells"])
    assert want.count("| not run |") == sum(c.key not in on["cells"] for c in cells)
    assert want.count("| earlier model |") == sum(c.key in on["cells"] and on["cells"][c.key].get("model")
                                                  != model_revision(mechanics=True) for c in cells)


def test_mechanics_table_pairs_each_cell_with_its_mechanics_off_seeds():
    off = _record({"postmenopausal_untreated": [-1.0, -2.0, -3.0]})
    on_cells = calibration_cells(fe_every_days=28)
    assert all(c.key.endswith("|fe28d") for c in on_cells)
    assert {c.key for c in on_cells}.isdisjoint(off["cells"])  # the two studies never share a record key
    on = {"cells": {c.key: {"seeds": [3, 1, 2], "change_pct_per_yr": {"abmd_pct": [-3.2, -1.6, -2.4]},
                            "model": model_revision(mechanics=True)} for c in on_cells
                 if c.preset == "postmenopausal_untreated"}}
    for cell in off["cells"].values():
        cell["seeds"] = [1, 2, 3]
    table = mechanics_calibration_markdown(off, on, 28).splitlines()
    rows = [r for r in table if r.startswith("| postmenopausal_untreated | lumbar spine | 30 µm")]
    assert len(rows) == 1
    cols = [c.strip() for c in rows[0].split("|")[1:-1]]
    # seed order differs between the records: pairs by seed, so on − off is -0.6, -0.4, -0.2
    assert cols[3] == "-2.00 [-4.48, +0.48]" and cols[4].startswith("-2.40 [")
    assert cols[5].startswith("-0.40 [-0.90, +0.10]")
    assert cols[6] == "-2.5 … -1" and cols[7] == "yes"
    assert sum("not run" in r for r in table) == len(on_cells) - 4  # the other presets: no mechanics run
    # a mechanics-on cell run on an earlier model is not paired with mechanics-off seeds of this one
    lumbar_30 = next(c.key for c in on_cells if c.preset == "postmenopausal_untreated"
                     and c.site == "lumbar_spine" and c.voxel_size_um == 30.0)
    on["cells"][lumbar_30]["model"] = "an earlier model"
    stale = mechanics_calibration_markdown(off, on, 28)
    # its off column still shows (the off cell is of this model), the pairing does not
    assert stale.count("| earlier model |") == 1 and stale.count("-2.00 [-4.48, +0.48]") == 4
    assert stale.count("-0.40 [-0.90, +0.10]") == 3


def test_study_refuses_a_negative_solve_interval():
    with pytest.raises(ValueError, match=r"cell trt\|lumbar_spine: fe_every_days must be a whole number"):
        run_study([StudyCell("trt", "lumbar_spine", 1.92, 40.0, fe_every_days=-28)], n_workers=1)


def test_markers_are_replaced_once_and_missing_ones_refused():
    text = "a\n<!-- t:start -->\nold\n<!-- t:end -->\nb"
    assert replace_between_markers(text, "t", "new") == "a\n<!-- t:start -->\nnew\n<!-- t:end -->\nb"
    with pytest.raises(ValueError, match="expected one"):
        replace_between_markers("no markers", "t", "x")
    with pytest.raises(ValueError, match="expected one"):
        replace_between_markers("<!-- t:end --> <!-- t:start -->", "t", "x")


def test_study_refuses_bad_cells_before_running_and_reuses_recorded_ones():
    with pytest.raises(ValueError, match="whole number"):
        run_study([StudyCell("trt", "lumbar_spine", 2.0, 30.0)], n_workers=1)
    with pytest.raises(ValueError, match="no volume recipe"):
        study_volume("lumbar_spine", 1.92, 25.0, 1)
    with pytest.raises(ValueError, match="repeat"):
        run_study([StudyCell("trt", "lumbar_spine", 1.92, 40.0)] * 2)
    # every cell already recorded with the same seeds: nothing runs (no worker is started)
    cell = StudyCell("trt", "lumbar_spine", 1.92, 40.0, (1, 2))
    old = {"cells": {cell.key: {"seeds": [1, 2], "change_pct_per_yr": {"abmd_pct": [1.0, 2.0]},
                                "compartments": STUDY_COMPARTMENTS, "model": MODEL_REVISION}}, "wall_s": 5.0}
    out = run_study([cell], n_workers=1, record=old)
    assert out["cells"] == old["cells"] and out["wall_s"] == pytest.approx(5.0, abs=1.0)


def test_a_verdict_is_settled_only_when_the_seeds_separate_it_from_the_tolerance_band():
    from voxelbone.calibration import verdict_resolved
    from voxelbone.intervals import Interval

    inside, crossing = Interval(-3.5, -3.9, -3.1, 24), Interval(-3.5, -4.7, -2.3, 3)
    outside, nan = Interval(-1.0, -1.5, -0.5, 24), Interval(-3.8, float("nan"), float("nan"), 1)
    assert verdict_resolved([inside, inside], -3.8, 0.75, True)  # band -4.55 … -3.05
    assert not verdict_resolved([inside, crossing], -3.8, 0.75, True)
    assert verdict_resolved([inside, outside], -3.8, 0.75, False)
    assert not verdict_resolved([inside, Interval(-2.98, -3.9, -2.06, 24)], -3.8, 0.75, False)  # a miss in its spread
    assert not verdict_resolved([nan, nan], -3.8, 0.75, True) and not verdict_resolved([nan], -3.8, 0.75, False)


def test_invariance_page_holds_the_recorded_matrix():
    script = _script("invariance_matrix")
    record = json.loads((ROOT / "benchmarks" / "invariance_matrix.json").read_text(encoding="utf-8"))
    want = invariance_markdown(record, invariance_cells(), script.COMMAND)
    assert _between(script.PAGE.read_text(encoding="utf-8"), script.MARKER) == want, \
        "regenerate with python benchmarks/invariance_matrix.py --from-record"


@pytest.mark.parametrize("resume", [False, True])
def test_mechanics_study_reuses_its_record_only_when_resuming(tmp_path, monkeypatch, resume):
    """A record of an earlier model must not stand in for a new run: its cells are kept only
    with ``--resume`` (an interrupted run of the same model)."""
    script = _script("calibration_table")
    record = tmp_path / "mech.json"
    record.write_text(json.dumps({"cells": {"x": {}}, "wall_s": 1.0}), encoding="utf-8")
    seen = {}

    def fake_run_study(cells, *, n_workers, record=None, progress=None, checkpoint=None):
        seen["record"] = record
        raise SystemExit(0)  # stop before any page is written

    monkeypatch.setattr(script, "run_study", fake_run_study)
    args = ["--fe-every-days", "28", "--record", str(record)] + (["--resume"] if resume else [])
    with pytest.raises(SystemExit):
        script.main(args)
    assert (seen["record"] is not None) == resume


def test_mechanics_study_runs_only_the_voxel_sizes_asked(tmp_path, monkeypatch, capsys):
    script = _script("calibration_table")
    seen = {}

    def fake_run_study(cells, *, n_workers, record=None, progress=None, checkpoint=None):
        seen["cells"] = cells
        raise SystemExit(0)

    monkeypatch.setattr(script, "run_study", fake_run_study)
    with pytest.raises(SystemExit):
        script.main(["--fe-every-days", "28", "--voxels", "40", "--record", str(tmp_path / "m.json")])
    assert seen["cells"] and {c.voxel_size_um for c in seen["cells"]} == {40.0}
    assert {c.preset for c in seen["cells"]} == set(CLINICAL_TARGETS)
    with pytest.raises(SystemExit):
        script.main(["--fe-every-days", "28", "--voxels", "30", "--presets", "gh_peptide_sermorelin,trt",
                     "--record", str(tmp_path / "m.json")])
    assert {(c.preset, c.voxel_size_um) for c in seen["cells"]} == {("gh_peptide_sermorelin", 30.0), ("trt", 30.0)}
    for bad, message in ((["--fe-every-days", "28", "--voxels", "25"], "25 µm"),
                         (["--fe-every-days", "28", "--presets", "gh"], "gh: the calibration table has"),
                         (["--presets", "trt"], "--presets needs --fe-every-days"),
                         (["--fe-every-days", "28", "--voxels", "forty"], "numbers in µm"),
                         (["--voxels", "40"], "needs --fe-every-days")):
        with pytest.raises(SystemExit) as err:
            script.main(bad)
        assert err.value.code == 2 and message in capsys.readouterr().err, bad


def test_captions_name_each_cell_s_machine():
    """A record filled piece by piece on two machines names both, each with its commit; a
    cell from before cells named their machine takes the record's."""
    from voxelbone.calibration import provenance_text

    record = {"machine": "Machine B", "cells": {
        "a": {"date": "2026-11-30", "git_commit": "aaaaaaaaaaaaaaaa", "machine": "Machine A"},
        "b": {"date": "2026-12-01", "git_commit": "bbbbbbbbbbbbbbbb"},
        "c": {"date": "2026-12-01", "git_commit": "bbbbbbbbbbbbbbbb", "machine": "Machine B"}}}
    assert provenance_text(record) == ("2026-11-30 at commit `aaaaaaaaaaaa` on Machine A; "
                                       "2026-12-01 at commit `bbbbbbbbbbbb` on Machine B")
    assert provenance_text(record, ["b"]) == "2026-12-01 at commit `bbbbbbbbbbbb` on Machine B"
    script = _script("calibration_table")
    text = script.caption({**record, "n_workers": 2, "wall_s": 60.0})
    assert "on Machine A; 2026-12-01" in text and "2 worker processes: 1.0 min" in text
    # a run's cells carry their machine (a tenth of a year on the smallest cube)
    # and a cell recorded in the day-0 compartments (no "compartments" field) is run again
    cell = StudyCell("trt", "lumbar_spine", 1.92, 40.0, (1,), years=0.1)
    labelled = {"cells": {cell.key: {"seeds": [1], "change_pct_per_yr": {"abmd_pct": [99.0]}}}, "wall_s": 0.0}
    out = run_study([cell], n_workers=1, record=labelled)
    assert out["cells"][cell.key]["compartments"] == STUDY_COMPARTMENTS
    assert out["cells"][cell.key]["model"] == MODEL_REVISION
    assert out["cells"][cell.key]["change_pct_per_yr"]["abmd_pct"] != [99.0]
    assert out["cells"][cell.key]["machine"] == out["machine"] != ""


def test_captions_say_when_a_record_was_made_with_uncommitted_changes():
    from voxelbone.calibration import commit_text

    assert commit_text("0123456789abcdef") == "commit `0123456789ab`"
    assert commit_text("0123456789abcdef-dirty") == "commit `0123456789ab` with uncommitted changes"
    assert commit_text(None) == "commit `unknown`"
    cell = invariance_cells(["trt"], edges_mm=(1.92,), voxel_sizes_um=(40.0,), seeds=(1, 2))[0]
    record = {"cells": {cell.key: {"seeds": [1, 2], "date": "2026-12-01", "git_commit": "0123456789abcdef-dirty",
                                   "compartments": STUDY_COMPARTMENTS, "model": MODEL_REVISION,
                                   "change_pct_per_yr": {m: [1.0, 2.0] for m in ("abmd_pct", "tb_vbmd_mg_cm3",
                                                                               "bv_tv")}}}}
    text = invariance_markdown(record, [cell], "cmd")
    assert "2026-12-01 at commit `0123456789ab` with uncommitted changes" in text


def test_near_cortex_trace_refuses_a_record_it_would_overwrite_and_a_repeated_seed(tmp_path, capsys):
    script = _script("near_cortex_trace")
    kept = tmp_path / "trace.json"
    kept.write_text("{}")
    for argv, message in ((["--json", str(kept)], "exists"), (["--seeds", "3", "3"], "twice")):
        with pytest.raises(SystemExit) as exc:
            script.main(argv)
        assert exc.value.code == 2 and message in capsys.readouterr().err
    assert kept.read_text() == "{}"


def test_an_interrupted_study_continues_from_its_checkpoint(monkeypatch):
    """Each finished volume is checkpointed; a study given that checkpoint runs only the seeds
    still missing and gives the record the uninterrupted study gives."""
    import voxelbone.runfolder

    # a clean commit, as in CI (a working tree with uncommitted changes never reuses a checkpoint)
    monkeypatch.setattr(voxelbone.runfolder, "git_commit", lambda: "0123456789abcdef")
    cell = StudyCell("trt", "lumbar_spine", 1.92, 40.0, (1, 2), years=0.1)
    checkpoints, lines = [], []
    full = run_study([cell], n_workers=1, checkpoint=lambda r: checkpoints.append(json.loads(json.dumps(r))))
    assert len(checkpoints) == 2 and "pending" not in full
    first = checkpoints[0]
    assert cell.key not in first["cells"] and len(first["pending"][cell.key]["finished"]) == 1
    assert checkpoints[1]["cells"] == full["cells"] and "pending" not in checkpoints[1]
    resumed = run_study([cell], n_workers=1, record=first, progress=lines.append)
    assert len(lines) == 1, "only the missing seed runs again"
    assert resumed["cells"][cell.key]["change_pct_per_yr"] == full["cells"][cell.key]["change_pct_per_yr"]
    assert "pending" not in resumed


def test_a_checkpoint_stands_in_only_for_the_same_commit_model_and_compartments():
    from voxelbone.calibration import _pending_runs

    cell = StudyCell("trt", "lumbar_spine", 1.92, 40.0, (1, 2))
    run = {"change_pct_per_yr": {"abmd_pct": 1.0}, "wall_s": 1.0}
    good = {"git_commit": "abc", "model": MODEL_REVISION, "compartments": STUDY_COMPARTMENTS, "finished": {"2": run}}
    assert _pending_runs({"pending": {cell.key: good}}, [cell], "abc") == {(cell.key, 2): run}
    for bad in ({"git_commit": "def"}, {"model": "an earlier model"}, {"compartments": "labelled"}):
        assert _pending_runs({"pending": {cell.key: {**good, **bad}}}, [cell], "abc") == {}, bad
    for commit in ("abc-dirty", None):  # uncommitted changes or no git: nothing is taken on trust
        assert _pending_runs({"pending": {cell.key: {**good, "git_commit": commit}}}, [cell], commit) == {}
    assert _pending_runs(None, [cell], "abc") == {}


def test_a_record_is_replaced_only_by_a_complete_one(tmp_path, monkeypatch):
    import voxelbone.results
    from voxelbone.calibration import write_record

    path = tmp_path / "record.json"
    write_record(path, {"cells": {"a": {"seeds": [1]}}, "wall_s": 1.0})
    assert json.loads(path.read_text(encoding="utf-8"))["cells"] == {"a": {"seeds": [1]}}
    with pytest.raises(TypeError):
        write_record(path, {"cells": {"b": object()}})  # cannot be written: the old record stays
    assert json.loads(path.read_text(encoding="utf-8"))["cells"] == {"a": {"seeds": [1]}}

    def disk_full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(voxelbone.results.os, "fsync", disk_full)  # the new file fails after it was written
    with pytest.raises(OSError, match="No space"):
        write_record(path, {"cells": {"c": {"seeds": [2]}}, "wall_s": 2.0})
    assert json.loads(path.read_text(encoding="utf-8"))["cells"] == {"a": {"seeds": [1]}}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]
