"""Every CUDA kernel compiles with NVRTC (no GPU needed) and for the host with the shim."""

from __future__ import annotations

import pytest

from voxelbone.kernels import KernelCompileError, kernel_names, kernel_source, nvrtc_compile


def test_there_are_kernels():
    assert "random" in kernel_names()


@pytest.mark.parametrize("name", kernel_names())
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_kernel_compiles_with_nvrtc(name, arch):
    assert nvrtc_compile(name, arch=arch) > 0


def test_syntax_error_is_reported_with_log():
    broken = kernel_source("random").replace("out[i] =", "out[i] == ;")
    with pytest.raises(KernelCompileError, match="random.cu failed to compile"):
        nvrtc_compile("random", source=broken)


def test_kernels_include_no_standard_headers():
    from voxelbone.kernels import kernel_dir

    for path in list(kernel_dir().glob("*.cu")) + list(kernel_dir().glob("*.cuh")):
        for line in path.read_text().splitlines():
            if line.strip().startswith("#include"):
                assert '"' in line, f"{path.name}: NVRTC has no standard headers: {line.strip()}"


def test_host_build_runs_every_kernel_file(hostlib):
    assert hasattr(hostlib, "vb_uniform_fill")
