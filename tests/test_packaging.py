"""The wheel ships the CUDA sources and the package finds them from an installed wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest


@pytest.mark.slow
def test_wheel_contains_kernels(tmp_path):
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(root)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("voxelbone-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    sources = sorted(p.name for p in (root / "kernels").glob("*.cu"))
    for s in sources:
        assert f"voxelbone/_kernels/{s}" in names
    assert "voxelbone/_kernels/vb_common.cuh" in names
    # an installed wheel (no source tree beside it) finds its kernels
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = "import voxelbone.kernels as k; print(k.kernel_dir()); print(len(k.kernel_names()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "_kernels" in out.stdout and out.stdout.split()[-1] == str(len(sources))
