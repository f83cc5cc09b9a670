"""Every CUDA kernel compiles with NVRTC (no GPU needed) as CuPy compiles it, fits an SM, and
builds for the host grid."""

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


@pytest.mark.parametrize("name", kernel_names())
def test_grid_host_build_of_every_kernel_file(name):
    from voxelbone.kernels import host_kernel_params, kernel_entry_points

    for kernel in kernel_entry_points(name):
        assert host_kernel_params(name, kernel), f"{kernel} has no parameters?"


# ---------------------------------------------------------------------------------------
# the source string CuPy compiles: headers inline, kernels named by specialisation
# ---------------------------------------------------------------------------------------
def test_headers_are_inlined_so_a_header_change_changes_the_cache_key(monkeypatch, tmp_path):
    import shutil

    import voxelbone.kernels as K

    before = K.specialised_source("remodel")
    assert '#include "' not in before and "vb_mix64" in before  # vb_common.cuh's text is in the string
    dst = tmp_path / "kernels"
    shutil.copytree(K.kernel_dir(), dst)
    common = dst / "vb_common.cuh"
    common.write_text(common.read_text().replace("0xBF58476D1CE4E5B9ULL", "0xBF58476D1CE4E5BBULL"))
    monkeypatch.setattr(K, "kernel_dir", lambda: dst)
    after = K.specialised_source("remodel")
    assert after != before  # CuPy hashes this string (and the options): the cache key moves
    assert K.kernel_source("remodel") == (dst / "remodel.cu").read_text()  # the .cu alone did not change


def test_kernels_are_named_by_their_specialisation():
    from voxelbone.kernels import index_defines, specialisation_suffix, specialised_source

    assert index_defines(2**31 - 1) == (("VB_INDEX32", 1),) and index_defines(2**31) == (("VB_INDEX32", 0),)
    assert specialisation_suffix(index_defines(10)) == "_i32" and specialisation_suffix(()) == "_i64"
    src = specialised_source("remodel", index_defines(10))
    assert 'extern "C" __global__ void vb_update_i32(' in src and "vb_update(" not in src


def test_fe_defines_switch_to_64bit_indices_past_2_31_dofs():
    """The FE kernels index dofs (3 per node): 32-bit up to ~800³ elements, 64-bit beyond."""
    from voxelbone.mechanics.gpu import fe_defines

    assert fe_defines((800, 800, 800)) == (("VB_INDEX32", 1),)  # 1.54e9 dofs + one grid stride
    assert fe_defines((900, 900, 900)) == (("VB_INDEX32", 0),)  # 2.19e9 dofs
    assert fe_defines((2, 3, 4)) == (("VB_INDEX32", 1),)
    with pytest.raises(ValueError, match="three positive"):
        fe_defines((0, 4, 4))


# ---------------------------------------------------------------------------------------
# compiled as CuPy compiles: -ftz=true, an sm_90 cubin, ptxas -v
# ---------------------------------------------------------------------------------------
REGISTERS_PER_SM = 65536  # sm_90


def _block_sizes() -> dict[str, int]:
    """Threads per block of every kernel's launch (voxelbone/*/gpu.py)."""
    from voxelbone.mechanics import gpu as feg
    from voxelbone.metrics import gpu as mg
    from voxelbone.remodel import gpu as rg

    shape = (64, 64, 64)
    return {
        "vb_activate": rg._THREADS, "vb_update": rg._THREADS, "vb_claim": rg._CLAIM_THREADS, "vb_model": rg._THREADS,
        "vb_euler8": mg.euler_launch(shape).threads, "vb_ridge_flags": mg.ridge_launch(shape).threads,
        "vb_insert_balls": mg.balls_launch(100, shape).threads, "vb_surface_area": mg.surface_launch(shape).threads,
        "vb_uniform_fill": 1024,  # no device launch yet: hold it to the largest block
        **{kernel: feg._BLOCK for kernel in feg.FE_KERNELS},
    }


def device_build_problems(name: str, defines) -> list[str]:
    """What a device would suffer from in kernels/<name>.cu: spills, fma contraction, too many registers."""
    from voxelbone.kernels import compile_as_cupy, kernel_entry_points, parse_ptxas_log, specialisation_suffix

    ptx, cubin = compile_as_cupy(name, defines, arch="sm_90")
    problems = []
    if cubin.cubin is None or not cubin.cubin.startswith(b"\x7fELF"):
        problems.append(f"{name}: no sm_90 cubin")
    if "fma." in (ptx.ptx or ""):
        problems.append(f"{name}: fused multiply-add in the PTX (bit-identity with NumPy promised)")
    resources = parse_ptxas_log(cubin.log)
    blocks = _block_sizes()
    suffix = specialisation_suffix(defines)
    for kernel in kernel_entry_points(name):
        r = resources.get(kernel + suffix)
        if r is None:
            problems.append(f"{kernel}: no ptxas report")
            continue
        if r.spill_stores_bytes or r.spill_loads_bytes:
            problems.append(f"{kernel}: register spills ({r.spill_stores_bytes} B stores, {r.spill_loads_bytes} B loads)")
        if r.registers * blocks[kernel] > REGISTERS_PER_SM:
            problems.append(f"{kernel}: {r.registers} registers x {blocks[kernel]} threads exceed an SM")
    return problems


@pytest.mark.parametrize("index32", [1, 0], ids=["i32", "i64"])
@pytest.mark.parametrize("name", kernel_names())
def test_compiled_as_cupy_for_sm90_fits_the_device(name, index32):
    assert device_build_problems(name, (("VB_INDEX32", index32),)) == []


def test_surface_kernel_frame_is_small():
    from voxelbone.kernels import compile_as_cupy, parse_ptxas_log

    _, cubin = compile_as_cupy("metrics_surface", (("VB_INDEX32", 1),))
    assert parse_ptxas_log(cubin.log)["vb_surface_area_i32"].stack_frame_bytes <= 128


def test_device_checks_catch_fma_and_register_pressure(monkeypatch):
    import voxelbone.kernels as K

    monkeypatch.setattr(K, "NVRTC_OPTIONS", ("--std=c++17", "--fmad=true"))
    assert any("fused multiply-add" in p for p in device_build_problems("remodel", (("VB_INDEX32", 1),)))
    monkeypatch.setattr(K, "NVRTC_OPTIONS", ("--std=c++17", "--fmad=false", "--maxrregcount=16"))
    problems = device_build_problems("metrics_surface", (("VB_INDEX32", 1),))
    assert any("register spills" in p for p in problems)


def _div64_per_kernel(name: str, index32: int) -> dict[str, int]:
    import re

    from voxelbone.kernels import compile_as_cupy

    ptx, _ = compile_as_cupy(name, (("VB_INDEX32", index32),))
    parts = re.split(r"\.entry (\w+)", ptx.ptx)
    return {fn: len(re.findall(r"\b(?:div|rem)\.[su]64\b", body)) for fn, body in zip(parts[1::2], parts[2::2])}


@pytest.mark.parametrize("name", kernel_names())
def test_32bit_specialisation_has_no_64bit_division_in_grid_loops(name):
    """The VB_INDEX32 build divides in 32 bits (64-bit div/rem are long software sequences)."""
    counts32, counts64 = _div64_per_kernel(name, 1), _div64_per_kernel(name, 0)
    for fn, count in counts32.items():
        # vb_claim splits one seed index per block iteration (not per voxel): 3 allowed
        assert count <= (3 if fn.startswith("vb_claim") else 0), f"{fn}: {count} 64-bit div/rem"
    # the 64-bit path (kept for volumes past 2^31 voxels) does divide in 64 bits: the check can fail
    assert sum(counts64.values()) > sum(counts32.values())
