"""Micro-CT files in and out: NumPy, TIFF stacks, NIfTI; grey values, voxel sizes, errors."""

from __future__ import annotations

import numpy as np
import pytest

from voxelbone.io import load_volume, resample_isotropic, save_volume
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
