"""`voxelbone bench`: the JSON record's structure and that every number is positive and finite."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest


def _positive_finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_bench_record_structure(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "voxelbone.cli", "bench", "--sizes", "48", "--repeats", "2",
                           "--backend", "numpy", "--json", str(out)], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "VOXELBONE_BACKEND": "numpy"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "remodel.step" in proc.stdout and "simulated years per second" in proc.stdout
    rec = json.loads(out.read_text())
    env = rec["environment"]
    for key in ("date", "voxelbone_version", "python", "numpy", "cpu", "platform"):
        assert env.get(key), key
    ms = rec["measurements"]
    names = {m["case"] for m in ms}
    assert {"remodel.step", "tb_th.local_thickness", "tb_sp.local_thickness", "euler", "morphometry",
            "scenario.pm_0.25yr"} <= names
    ran = [m for m in ms if not m["skipped"]]
    assert len(ran) >= 10
    for m in ran:
        for k in ("median_s", "min_s", "max_s"):
            assert _positive_finite(m[k]), (m["case"], k, m[k])
        assert m["min_s"] <= m["median_s"] <= m["max_s"]
        assert m["repeats"] >= 1
        assert m["peak_host_bytes"] is None or _positive_finite(m["peak_host_bytes"])
    # ours beside the reference library, in the same run
    for case in ("tb_th.local_thickness", "tb_sp.local_thickness"):
        by_impl = {m["impl"]: m for m in ran if m["case"] == case}
        assert set(by_impl) == {"voxelbone", "porespy", "localthickness"}
        ours = by_impl["voxelbone"]
        assert ours["reference"] in {"porespy", "localthickness"} and _positive_finite(ours["ratio_to_reference"])
        # each map's error against the exact map: porespy's "dt" method runs low on random
        # structures, localthickness a little high
        assert ours["error_label"] == "mean vs exact"
        assert by_impl["porespy"]["error"] < -0.03 < 0.0 < by_impl["localthickness"]["error"] < 0.1
    scen = [m for m in ran if m["case"].startswith("scenario")][0]
    assert _positive_finite(scen["extra"]["years_per_second"])
    for m in ms:
        if m["skipped"]:
            assert isinstance(m["skipped"], str) and m["skipped"]
    # two records compare
    cmp = subprocess.run([sys.executable, "-m", "voxelbone.cli", "bench", "--compare", str(out), str(out)],
                         capture_output=True, text=True, timeout=120)
    assert cmp.returncode == 0 and "1.00" in cmp.stdout


def test_bench_rejects_bad_sizes(capsys):
    from voxelbone.cli import main

    assert main(["bench", "--sizes", "12x"]) == 2
    assert "--sizes" in capsys.readouterr().err


def test_bench_refuses_an_unknown_case_and_its_help_names_every_group(capsys):
    """A misspelt --cases ran nothing and printed an empty table with status 0."""
    from voxelbone.bench_cases import CASES
    from voxelbone.cli import build_parser, main

    assert main(["bench", "--cases", "eulr,metrics", "--sizes", "32"]) == 2
    err = capsys.readouterr().err
    assert "unknown bench case or group 'eulr'; groups: kernels, metrics, scenario, transfer, mechanics" in err, err
    assert "cases: remodel.step" in err and "fe.constrained" in err
    bench = build_parser()._subparsers._group_actions[0].choices["bench"]
    text = " ".join(bench.format_help().split())
    assert all(group in text for group in {g for g, _ in CASES}), text


@pytest.mark.gpu
def test_bench_gpu_floor_ratios(tmp_path):
    from voxelbone.bench_cases import run_bench

    ms, env = run_bench([64], ["cupy"], groups=["kernels", "transfer"], repeats=3)
    assert env["device_copy_bandwidth_bytes_per_s"] > 1e10
    h2d = [m for m in ms if m.case == "transfer.h2d"][0]
    assert h2d.ok and h2d.extra["achieved_gb_per_s"] > 1.0
    for case in ("remodel.step", "remodel.activate", "remodel.update"):
        m = [m for m in ms if m.case == case][0]
        assert m.ok and m.ratio_to_floor is not None and m.ratio_to_floor > 0.5, case


def test_bench_refuses_contradictory_arguments(tmp_path, capsys):
    from voxelbone.cli import main

    rec = tmp_path / "r.json"
    rec.write_text("{}")
    assert main(["bench", "--compare", str(rec), str(rec), "--sizes", "64"]) == 2
    assert "--compare" in capsys.readouterr().err


def test_an_existing_record_is_kept(tmp_path, capsys):
    """``--json`` onto an existing record (a GPU's numbers, measured once) replaced it after the run."""
    from voxelbone.cli import main

    rec = tmp_path / "gpu.json"
    rec.write_text('{"measurements": []}')
    assert main(["bench", "--cases", "euler", "--sizes", "32", "--json", str(rec)]) == 2
    assert f"--json {rec} exists and is kept" in capsys.readouterr().err
    np_file = tmp_path / "m.npy"
    np.save(np_file, np.ones((8, 8, 8), np.uint8))
    assert main(["stiffness", str(np_file), "--voxel-size-um", "30", "--json", str(rec)]) == 2
    assert "exists and is kept" in capsys.readouterr().err
    assert rec.read_text() == '{"measurements": []}'


def test_benchmark_scripts_call_the_command_line(tmp_path):
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_transfer.py"
    out = tmp_path / "t.json"
    proc = subprocess.run([sys.executable, str(script), "--backend", "numpy", "--sizes", "48", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = json.loads(out.read_text())
    assert rec["sizes"] == [48] and rec["environment"]["voxelbone_version"]


def test_default_year_case_times_the_default_scenario_only_at_its_size():
    from voxelbone.backend import get_backend
    from voxelbone.bench import measure
    from voxelbone.bench_cases import CASES

    case = dict((c.name, c) for _, c in CASES)["scenario.default_1yr"]
    m = measure(case, get_backend("numpy"), 64, repeats=1)
    assert not m.ok and "128³" in m.skipped and "--sizes 128,160" in m.skipped
