"""Micro-FE: voxelbone's solver beside ParOSol on the same structure, load case and tolerance.

ParOSol (Flaig & Arbenz 2011) is used through its Python wrapper ``parosol-py``, which is
GPL: it is never imported by voxelbone or its tests. This script installs it into a
virtual environment of its own under /tmp (``pip install parosol-py``) and runs it in a
subprocess on the same moduli array (``.npy``), the same constrained axial compression
(ε = −1 %, bottom face fixed, top face fixed laterally and displaced) and the same
relative tolerance; it compares E_app (reaction on the top face / full cross-section / |ε|)
wall time and CPU time (on a shared machine the CPU time is the steadier figure). Both
solvers run as one process on this machine's cores.

    python benchmarks/bench_fe.py --sizes 48,64 --json benchmarks/cpu_fe_DATE.json

Without network access or where the wheel does not install, the ParOSol column is
reported as unavailable and only voxelbone runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voxelbone.bench import environment  # noqa: E402
from voxelbone.mechanics import apparent_modulus, tissue_moduli  # noqa: E402
from voxelbone.mechanics.problem import load_bearing  # noqa: E402
from voxelbone.phantom import make_phantom  # noqa: E402

VENV = Path(tempfile.gettempdir()) / "voxelbone-parosol-venv"

_RUNNER = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import parosol_py as pp
    moduli = np.load(sys.argv[1])
    spacing_mm = float(sys.argv[2]); rtol = float(sys.argv[3])
    t0 = time.perf_counter()
    r = pp.solve(material=moduli, spacing=(spacing_mm,) * 3, array_order="zyx", material_unit="MPa",
                 poisson_ratio=0.3, test_axis="z", strain=-0.01, load_case_type="constrained_axial",
                 tolerance=rtol, outputs=("sed",), mpi_processes=1)
    wall = time.perf_counter() - t0
    mech = r.diagnostics["mechanics"]
    nz, ny, nx = moduli.shape
    area = ny * nx * spacing_mm ** 2
    print(json.dumps({"reaction_n": mech["reaction_force"]["z"],
                      "e_app_mpa": mech["reaction_force"]["z"] / area / -0.01,
                      "iterations": r.summary.run.iterations, "relative_residual": r.summary.run.relative_residual,
                      "solver_s": r.summary.run.overall_time_seconds, "wall_s": wall}))
""")


def parosol_python() -> Path | None:
    """Python of a venv holding parosol-py (created on first use); None if it cannot be installed."""
    py = VENV / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import parosol_py"], capture_output=True).returncode == 0:
        return py
    if subprocess.run([sys.executable, "-m", "venv", str(VENV)], capture_output=True).returncode != 0:
        return None
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "parosol-py"], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"parosol-py could not be installed: {proc.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return py


def run_parosol(py: Path, moduli: np.ndarray, voxel_size_um: float, rtol: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "moduli.npy"
        np.save(path, moduli)
        script = Path(tmp) / "run_parosol.py"
        script.write_text(_RUNNER)
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(os.cpu_count())))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run([str(py), str(script), str(path), str(voxel_size_um * 1e-3), str(rtol)],
                              capture_output=True, text=True, cwd=tmp, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"ParOSol failed: {proc.stderr.strip()[-500:]}")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        # CPU time of the subprocess tree (its solver, reading and writing the HDF5 files included)
        out["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="48,64", help="phantom edges in voxels (comma-separated)")
    ap.add_argument("--voxel-size-um", type=float, default=30.0)
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--no-parosol", action="store_true", help="run voxelbone only")
    ap.add_argument("--json", default=None, help="write the record here")
    args = ap.parse_args(argv)
    env = environment()  # the code that runs: taken before the runs, not after
    py = None if args.no_parosol else parosol_python()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        vol = make_phantom("lumbar_spine", size, args.voxel_size_um, seed=1)
        e = tissue_moduli(vol)
        e = np.where(load_bearing(e > 0), e, 0.0)  # the same system for both solvers (islands removed)
        apparent_modulus(e > 0, rtol=1e-2)  # compile the kernels outside the timing
        t0 = time.perf_counter()
        c0 = time.process_time()
        # moduli as given per voxel: a mask with a plain modulus would lose them, so pass the volume
        r = apparent_modulus(vol, rtol=args.rtol, boundary="constrained")
        import numba  # noqa: PLC0415

        row = {"size": size, "numba_threads": numba.get_num_threads(), "levels": r.levels,
               "bone_elements": r.bone_elements, "voxelbone_e_app_mpa": r.e_app_mpa,
               "voxelbone_s": time.perf_counter() - t0, "voxelbone_cpu_s": time.process_time() - c0,
               "voxelbone_iterations": r.iterations,
               "voxelbone_s_per_iteration": r.solve_s / max(r.iterations, 1),
               "voxelbone_state_bytes_per_voxel": r.state_bytes / size**3}
        if py is not None:
            p = run_parosol(py, e, args.voxel_size_um, args.rtol)
            row.update({f"parosol_{k}": v for k, v in p.items()})
            row["e_app_rel_diff"] = r.e_app_mpa / p["e_app_mpa"] - 1.0
            row["time_ratio_voxelbone_to_parosol"] = row["voxelbone_s"] / p["wall_s"]
            row["cpu_time_ratio_voxelbone_to_parosol"] = row["voxelbone_cpu_s"] / p["cpu_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "rtol": args.rtol, "rows": rows},
                                              indent=2) + "\n")
        print(f"record: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
