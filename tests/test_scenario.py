"""Scenario files: round trip, validation naming the field and line, period chaining."""

from __future__ import annotations

import pytest

from voxelbone.scenario import Period, Scenario, load_scenario, scenario_to_toml


def test_round_trip_through_toml(tmp_path):
    s = Scenario(name="chain", periods=(Period("postmenopausal_untreated", 2), Period("mht_estradiol_progesterone", 5)),
                 size=64, voxel_size_um=25.0, seed=3, snapshot_every_days=365)
    f = tmp_path / "s.toml"
    f.write_text(scenario_to_toml(s))
    assert load_scenario(f) == s
    assert s.years == 7 and s.days == round(7 * 365.25)


def test_period_at_follows_the_chain():
    s = Scenario(periods=(Period("a", 1), Period("b", 2)))
    assert s.period_at(0).preset == "a"
    assert s.period_at(365).preset == "a"
    assert s.period_at(366).preset == "b"
    assert s.period_at(10_000).preset == "b"


@pytest.mark.parametrize(
    "text,match",
    [
        ('site = "lumbar_spine"\ncolour = "red"\n', r"unknown field\(s\) colour"),
        ('step_days = 0\n', "step_days must be a positive"),
        ('voxel_size_um = -2\n', "voxel_size_um must be a positive"),
        ('[[period]]\npreset = "trt"\nyears = -1\n', "years must be a positive"),
        ('[[period]]\npreset = "trt"\n', "must have exactly 'preset' and 'years'"),
        ('site = "lumbar_spine\n', "not valid TOML"),
    ],
)
def test_malformed_files_are_explained(tmp_path, text, match):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_scenario(f)


def test_unknown_field_names_the_line(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('name = "x"\nseed = 1\n\ncolour = "red"\n')
    with pytest.raises(ValueError, match=r"line 4"):
        load_scenario(f)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="scenario file not found"):
        load_scenario("/nonexistent/scenario.toml")


def test_voxel_size_outside_micro_ct_range_warns():
    import warnings

    from voxelbone.voxel_sizes import VoxelSizeWarning

    with pytest.warns(VoxelSizeWarning, match="voxel size 50 µm is coarser than the 10-40 µm .* 2.0-4.0 voxels across"):
        Scenario(voxel_size_um=50.0)
    with pytest.warns(VoxelSizeWarning, match="voxel size 8 µm is finer than the 10-40 µm"):
        Scenario(voxel_size_um=8.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Scenario(voxel_size_um=40.0)
        Scenario(voxel_size_um=61.0, input="scan.aim")  # the scan's loader warns, with the header's value beside it
    for bad in (4.0, 500.0):
        with pytest.raises(ValueError, match="outside what the model supports \\(5–100 µm; it is calibrated at 10–40 µm\\)"):
            Scenario(voxel_size_um=bad)


def test_an_unknown_site_is_refused_with_the_known_ones(tmp_path, capsys):
    """It was found only when the run started (after the banner; with --input, inside the run)."""
    from voxelbone.cli import main

    with pytest.raises(ValueError, match="unknown site 'tibia'; known sites: lumbar_spine, femoral_neck"):
        Scenario(site="tibia")
    assert main(["run", "--input", "scan.npy", "--site", "tibia", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr()
    assert "unknown site 'tibia'" in err.err and "voxelbone 0." not in err.err + err.out


def test_the_command_line_records_its_files_as_absolute_paths(tmp_path, monkeypatch):
    """``run.json`` says to reproduce a run with its ``scenario.toml``; a relative ``--input``
    recorded as given made that fail from any other folder."""
    from voxelbone.cli import build_parser, scenario_from_args

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["run", "--input", "scans/a.npy", "--compartments", "labels.npy"])
    s = scenario_from_args(args)
    assert s.input == str(tmp_path / "scans" / "a.npy") and s.compartments == str(tmp_path / "labels.npy")
    args = build_parser().parse_args(["run", "--input", "a.npy", "--compartments", "trabecular"])
    assert scenario_from_args(args).compartments == "trabecular"


def test_a_phantom_edge_with_an_input_scan_is_refused(tmp_path, capsys):
    """--size with --input was ignored while run.json recorded it (size 96 beside a 48³ scan)."""
    from voxelbone.cli import main

    with pytest.raises(ValueError, match="size=96 is the edge of a phantom; a run from input 'scan.npy' keeps the scan's shape"):
        Scenario(size=96, input="scan.npy")
    Scenario(input="scan.npy", voxel_size_um=30.0, site="femoral_neck")  # the site's rates and the voxel size apply
    assert main(["run", "--input", "scan.npy", "--size", "96", "--out", str(tmp_path / "r")]) == 2
    assert "size=96 is the edge of a phantom" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_preset_files_are_found_beside_the_scenario(monkeypatch, tmp_path):
    from pathlib import Path

    from voxelbone.scenario import load_scenario

    monkeypatch.chdir(tmp_path)  # somewhere else
    root = Path(__file__).resolve().parents[1]
    s = load_scenario(root / "samples" / "menopause_then_mht.toml")
    assert Path(s.periods[0].preset).is_file()
    assert [p.years for p in s.periods] == [2, 5, 2]


def test_the_scan_and_region_file_of_a_scenario_are_found_beside_it(monkeypatch, tmp_path):
    """As its preset files are: ``input = "scan.npy"`` in study/run.toml is study/scan.npy,
    wherever the command runs (it was looked up in the working folder only)."""
    from pathlib import Path

    study = tmp_path / "study"
    study.mkdir()
    (study / "scan.npy").write_bytes(b"")
    (study / "regions.npy").write_bytes(b"")
    (study / "run.toml").write_text('input = "scan.npy"\ncompartments = "regions.npy"\n'
                                    '[[period]]\npreset = "trt"\nyears = 1\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    s = load_scenario(study / "run.toml")
    assert Path(s.input) == study / "scan.npy" and Path(s.compartments) == study / "regions.npy"
    (elsewhere / "scan.npy").write_bytes(b"")  # a file of that name where the command runs too
    assert Path(load_scenario(study / "run.toml").input) == study / "scan.npy"  # the scenario's own comes first
    (study / "scan.npy").unlink()
    assert load_scenario(study / "run.toml").input == "scan.npy"  # else where the command runs
    (study / "run.toml").write_text('input = "scan.npy"\ncompartments = "trabecular"\n'
                                    '[[period]]\npreset = "trt"\nyears = 1\n')
    assert load_scenario(study / "run.toml").compartments == "trabecular"


def test_every_sample_file_loads():
    from pathlib import Path

    from voxelbone.presets import course_for_periods, load_preset
    from voxelbone.scenario import load_scenario
    from voxelbone.sweep import load_sweep

    samples = Path(__file__).resolve().parents[1] / "samples"
    for f in sorted(samples.glob("*.toml")):
        text = f.read_text()
        if "[grid]" in text:
            assert load_sweep(f).runs()
        elif "[[period]]" in text:
            s = load_scenario(f)
            course_for_periods([(p.preset, p.years) for p in s.periods])
        else:
            assert load_preset(f).references
