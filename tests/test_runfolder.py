"""The run folder's owner: its layout, the run's state, checkpoints; progress lines; the step timer."""

from __future__ import annotations

import ast
import io
import re
import time
from pathlib import Path

import numpy as np
import pytest

from voxelbone.backend import StepTimer, get_backend
from voxelbone.progress import LineProgress, progress_bar
from voxelbone.runfolder import RunFolder, RunState, StudyFolder
from voxelbone.scenario import Period, Scenario

PACKAGE = Path(__file__).resolve().parents[1] / "voxelbone"
OWNER = PACKAGE / "runfolder.py"

#: a string literal without whitespace naming a file or folder of a results folder is a path
LAYOUT = re.compile(r"(?:^|/)(metrics\.csv|run\.json|scenario\.toml|hormones\.csv|activity\.csv|checkpoint(?:\.npz)?"
                    r"|error\.txt|snapshots|plots|renders|runs|images|report\.html|sweep\.(?:csv|parquet|json|toml)"
                    r"|summary\.csv|replicates\.json|rve\.json|rep_"
                    r"|day_)(?:/|$)")

SCENARIO = Scenario(name="t", site="lumbar_spine", periods=(Period("postmenopausal_untreated", 0.1),), size=48, seed=3)


def layout_literals(path: Path) -> list[tuple[int, str]]:
    """``(line, literal)`` of the string constants in ``path`` that spell a results-folder path."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))  # docstrings describe the layout; they do not build paths
        if isinstance(node, ast.Dict):
            skip.update(id(k) for k in node.keys if k is not None)  # keys of a record, not paths
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
            and not re.search(r"\s", node.value) and LAYOUT.search(node.value)]


def test_only_the_owner_spells_the_folder_layout():
    found = {str(p.relative_to(PACKAGE)): hits for p in sorted(PACKAGE.rglob("*.py"))
             if p != OWNER and (hits := layout_literals(p))}
    assert not found, f"results-folder paths spelled outside voxelbone/runfolder.py (ask RunFolder): {found}"
    assert len(layout_literals(OWNER)) >= 12  # the scan does see the literals where they belong


def test_layout_scan_catches_a_path_literal(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text('"""Writes metrics.csv."""\nrows = load(out / "metrics.csv")\nsnap = f"{out}/snapshots/day_{d:05d}"\n'
                   'meta = {"runs": 1}\n')
    assert sorted(v for _, v in layout_literals(bad)) == ["/snapshots/day_", "metrics.csv"]


def test_run_state_follows_the_folder(tmp_path):
    be = get_backend("numpy")
    folder = RunFolder(tmp_path / "run")
    assert folder.state() is RunState.EMPTY
    folder.create()
    folder.write_status(RunState.RUNNING, scenario=SCENARIO, backend=be, timings={"setup": 1.0})
    assert folder.state() is RunState.RUNNING  # running, nothing to resume yet
    arrays = {"bone": np.arange(8, dtype=np.float32).reshape(2, 2, 2)}
    folder.write_checkpoint(arrays, next_step=7, scenario=SCENARIO, engine={"k": 1})
    assert folder.state() is RunState.INTERRUPTED
    ck = folder.read_checkpoint(SCENARIO)
    assert ck.next_step == 7 and ck.engine == {"k": 1}
    np.testing.assert_array_equal(ck.arrays["bone"], arrays["bone"])
    with pytest.raises(ValueError, match="scenario differs"):
        folder.read_checkpoint(SCENARIO.with_overrides(seed=4))
    folder.write_status(RunState.FAILED, scenario=SCENARIO, backend=be, timings={}, error="boom")
    assert folder.state() is RunState.INTERRUPTED  # a checkpoint is still a resume point
    folder.remove_checkpoint()
    assert folder.state() is RunState.FAILED
    folder.write_status(RunState.COMPLETED, scenario=SCENARIO, backend=be, timings={"setup": 1.0}, day=37)
    assert folder.state() is RunState.COMPLETED
    assert not folder.holds(SCENARIO)  # no metrics table yet
    folder.metrics_table().append({"day": 0, "bv_tv": 0.2})
    assert folder.holds(SCENARIO) and not folder.holds(SCENARIO.with_overrides(seed=4))
    folder.update_info(figure_errors={"change": "RuntimeError: x"}, timings_s={"figures": 2.0})
    info = folder.info()
    assert info["figure_errors"] == {"change": "RuntimeError: x"} and info["timings_s"] == {"setup": 1.0, "figures": 2.0}
    assert folder.recorded_scenario() == SCENARIO
    with pytest.raises(ValueError, match="completed run"):
        folder.read_checkpoint(SCENARIO)
    (tmp_path / "run" / folder.run_json.name).write_text("{not json")
    assert folder.state() is RunState.EMPTY


def test_metrics_table_resumes_and_widens(tmp_path):
    folder = RunFolder(tmp_path)
    table = folder.metrics_table()
    for day in (0, 10, 20):
        table.append({"day": day, "bv_tv": 0.1 + day})
    table.append({"day": 30, "bv_tv": 0.5, "extra": 1.0})  # a new column rewrites the header
    assert [r["extra"] for r in folder.read_metrics()] == ["", "", "", 1.0]
    again = folder.metrics_table(resume_day=10)  # a resumed run drops rows after its checkpoint
    assert [r["day"] for r in again.rows] == [0.0, 10.0]
    assert [r["day"] for r in folder.read_metrics()] == [0.0, 10.0]


def test_study_folder_holds_run_folders(tmp_path):
    study = StudyFolder(tmp_path)
    assert study.run("a").path.parent == study.runs_dir
    assert study.states(["a", "b"]) == {"a": RunState.EMPTY, "b": RunState.EMPTY}


def test_progress_without_a_terminal_is_a_line_every_five_percent():
    stream = io.StringIO()  # not a TTY
    bar = progress_bar(400, desc="x 1 yr", stream=stream)
    assert isinstance(bar, LineProgress)
    for k in range(400):
        if k == 199:  # as in the loop: the metrics of a step, then the step counted
            bar.set_postfix_str("BV/TV 0.2")
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert len(lines) == 20 and lines[-1].startswith("x 1 yr: 100% (400/400 steps")
    assert "BV/TV 0.2" in lines[9] and "BV/TV" not in lines[8]


def test_progress_line_every_n_seconds_when_steps_are_slow():
    stream = io.StringIO()
    bar = LineProgress(10_000, stream=stream, every_s=0.05)
    bar.update(1)
    time.sleep(0.06)
    bar.update(1)
    assert len(stream.getvalue().splitlines()) == 1  # no 5 % mark passed: the time limit wrote it
    bar.close()  # an unfinished run ends with a line saying where it stopped
    assert stream.getvalue().splitlines()[-1].endswith("(2/10000 steps, 0 s)")


def test_step_timer_counts_only_the_timed_regions():
    timer = StepTimer(get_backend("numpy"))
    for _ in range(3):
        with timer:
            time.sleep(0.02)
        time.sleep(0.03)  # not a step: not counted
    assert 0.06 <= timer.total_s() < 0.085
    with pytest.raises(RuntimeError, match="without start"):
        timer.stop()


def test_input_scan_provenance_survives_status_writes(tmp_path):
    from voxelbone.backend import get_backend
    from voxelbone.runfolder import RunFolder, RunState
    from voxelbone.scenario import Scenario

    folder = RunFolder(tmp_path / "r")
    folder.create()
    sc, be = Scenario(), get_backend("numpy")
    folder.write_status(RunState.RUNNING, scenario=sc, backend=be, timings={})
    folder.update_info(input_scan={"format": "aim", "calibration": "scanco"})
    folder.write_status(RunState.COMPLETED, scenario=sc, backend=be, timings={}, day=1)
    info = folder.info()
    assert info["status"] == "completed"
    assert info["input_scan"] == {"format": "aim", "calibration": "scanco"}


def test_run_json_keeps_what_the_sample_makes_less_certain(tmp_path):
    """The command's warnings (voxel size, sample below a metric's representative volume) went
    to the terminal only; a run folder read later now says them too."""
    from voxelbone.rve import rve_warnings
    from voxelbone.simulate import simulate
    from voxelbone.voxel_sizes import VoxelSizeWarning

    with pytest.warns(VoxelSizeWarning, match="61 µm is coarser"):
        sc = Scenario(name="coarse", size=48, voxel_size_um=61.0, periods=(Period("postmenopausal_untreated", 0.02),),
                      step_days=2)
    folder = RunFolder(tmp_path / "r")
    simulate(sc, folder.path, backend="numpy", progress=False, render=False)
    caveats = folder.info()["caveats"]
    assert caveats[0].startswith("voxel size 61 µm is coarser than the 10-40 µm the model is calibrated for")
    assert caveats[1:] == rve_warnings(sc) and any("Conn.D" in c for c in caveats), caveats
    assert folder.state() is RunState.COMPLETED  # kept through the status writes


def _files(path: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _run_in_state(path: Path, state: RunState, scenario: Scenario = SCENARIO) -> RunFolder:
    folder = RunFolder(path)
    folder.create()
    written = RunState.RUNNING if state is RunState.INTERRUPTED else state
    folder.write_status(written, scenario=scenario, backend=get_backend("numpy"), timings={}, day=36)
    if state is RunState.INTERRUPTED:
        folder.write_checkpoint({"bone": np.zeros((2, 2, 2), np.float32)}, next_step=7, scenario=scenario, engine={})
    if state is RunState.COMPLETED:
        folder.metrics_table().append({"day": 0, "bv_tv": 0.2})
    assert folder.state() is state
    return folder


@pytest.mark.parametrize("state", [RunState.RUNNING, RunState.INTERRUPTED, RunState.COMPLETED, RunState.FAILED])
def test_a_folder_holding_another_scenarios_run_is_refused_in_every_state(tmp_path, state):
    folder = _run_in_state(tmp_path / "run", state)
    before = _files(folder.path)
    folder.refuse_other_scenario(SCENARIO)  # the same scenario may be continued or run again
    RunFolder(tmp_path / "new").refuse_other_scenario(SCENARIO.with_overrides(seed=4))  # nothing there
    with pytest.raises(ValueError, match=rf"holds an? {state.value} run of another scenario \(seed: 3 there, 4 now\)"):
        folder.refuse_other_scenario(SCENARIO.with_overrides(seed=4))
    assert _files(folder.path) == before
    folder.run_json.write_text('{"status": "completed"}')  # a run.json without its scenario
    with pytest.raises(ValueError, match="does not describe a scenario"):
        folder.refuse_other_scenario(SCENARIO)


def test_run_and_compare_leave_another_scenarios_run_as_it_is(tmp_path, capsys):
    from voxelbone.cli import main
    from voxelbone.report import compare
    from voxelbone.simulate import simulate

    folder = _run_in_state(tmp_path / "run", RunState.COMPLETED)
    before = _files(folder.path)
    with pytest.raises(ValueError, match="another scenario"):
        simulate(SCENARIO.with_overrides(seed=4), folder.path, backend="numpy", progress=False)
    assert main(["run", "--size", "48", "--seed", "3", "--years", "0.2", "--out", str(folder.path), "--quiet"]) == 2
    assert "another scenario" in capsys.readouterr().err
    assert _files(folder.path) == before
    # a comparison checks every preset's folder before its first run
    study = StudyFolder(tmp_path / "cmp")
    other = _run_in_state(study.run("mht_estradiol_progesterone").path, RunState.COMPLETED)
    before = _files(study.path)
    with pytest.raises(ValueError, match="mht_estradiol_progesterone holds a completed run of another scenario"):
        compare(["postmenopausal_untreated", "mht_estradiol_progesterone"], study.path, years=0.1, size=48,
                backend="numpy", progress=False, render=False)
    assert _files(study.path) == before and other.state() is RunState.COMPLETED
    # a step longer than a remodelling phase is refused before the folder exists
    with pytest.raises(ValueError, match="longer than the shortest remodeling phase"):
        simulate(SCENARIO.with_overrides(step_days=60), tmp_path / "long_step", backend="numpy", progress=False)
    assert not (tmp_path / "long_step").exists()


def test_compare_names_a_preset_files_runs_by_its_stem_not_its_path(tmp_path):
    """A preset given as a file path made the comparison create its run folder *at that path*
    (``runs/`` joined with an absolute path is the path): a traceback, NotADirectoryError."""
    import shutil

    from voxelbone.report import compare

    mine = tmp_path / "presets" / "my_menopause.toml"
    mine.parent.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "samples" / "early_postmenopause.toml", mine)
    before = mine.read_bytes()
    study = StudyFolder(tmp_path / "cmp")
    compare(["premenopausal", str(mine)], study.path, years=0.02, size=48, step_days=5, backend="numpy",
            progress=False, render=False)
    assert sorted(p.name for p in study.runs_dir.iterdir()) == ["my_menopause", "premenopausal"]
    assert study.run("my_menopause").state() is RunState.COMPLETED
    assert study.run("my_menopause").recorded_scenario().periods[0].preset == str(mine)
    assert mine.read_bytes() == before and sorted(p.name for p in mine.parent.iterdir()) == ["my_menopause.toml"]
    report = (study.path / "report.html").read_text()
    assert "my_menopause" in report and "starting from the site&#x27;s phantom, 48³ at 30 µm" in report
    other = tmp_path / "trt.toml"
    shutil.copy(mine, other)
    with pytest.raises(ValueError, match=r"share the name trt: each preset's runs and report column are named by it"):
        compare(["trt", str(other)], tmp_path / "clash", years=0.02, size=48, backend="numpy", progress=False,
                render=False)
    assert not (tmp_path / "clash").exists()


def test_compare_starts_every_preset_from_the_same_scan(tmp_path, capsys):
    """Researchers compare therapies on their own micro-CT; compare had no --input."""
    from voxelbone.cli import main
    from voxelbone.io import save_volume
    from voxelbone.phantom import make_phantom

    scan = save_volume(make_phantom("lumbar_spine", 48, 40.0, seed=7), tmp_path / "scan.npz")
    out = tmp_path / "cmp"
    assert main(["compare", "premenopausal", "postmenopausal_untreated", "--input", str(scan), "--years", "0.02",
                 "--step-days", "5", "--no-render", "--quiet", "--out", str(out)]) == 0, capsys.readouterr().err
    study = StudyFolder(out)
    read = []  # day 0 differs by preset (the spin-up leaves each its turnover's remodelling space); the scan does not
    for name in ("premenopausal", "postmenopausal_untreated"):
        folder = study.run(name)
        assert folder.recorded_scenario().input == str(scan) and folder.info()["input_scan"]["format"] == "npz"
        read.append(folder.info()["input_scan"]["bv_tv"])
    assert read[0] == read[1] > 0.05
    assert "starting from the scan scan.npz (40 µm voxels)" in (out / "report.html").read_text()
    assert main(["compare", "premenopausal", "trt", "--input", str(scan), "--size", "48", "--out",
                 str(tmp_path / "c2")]) == 2
    assert "size=48 is the edge of a phantom" in capsys.readouterr().err


def test_a_run_of_the_same_scenario_runs_again_in_its_folder(tmp_path, capsys):
    """``make demo`` twice: the scenario read back from ``run.json`` equals the command line's."""
    from voxelbone.cli import main

    args = ["run", "--size", "48", "--years", "0.02", "--out", str(tmp_path / "run"), "--quiet", "--no-render"]
    folder = RunFolder(tmp_path / "run")
    assert main(args) == 0
    first = folder.metrics_csv.read_bytes()
    assert main(args) == 0, capsys.readouterr().err
    assert folder.metrics_csv.read_bytes() == first and folder.state() is RunState.COMPLETED
    assert main([*args[:-2], "--seed", "9", *args[-2:]]) == 2  # another seed is another scenario
    assert "seed: 0 there, 9 now" in capsys.readouterr().err
