"""Results folders: atomic files, chunked snapshots read lazily, sweep folders from other versions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voxelbone.phantom import make_phantom
from voxelbone.results import atomic_write, load_snapshot, open_snapshot, save_snapshot


def test_large_snapshots_go_to_chunked_zarr_and_open_lazily(tmp_path):
    vol = make_phantom("lumbar_spine", 96, 30.0, seed=1)
    path = save_snapshot(vol, tmp_path / "day_00030", 30, zarr_threshold_bytes=1000)
    assert path.suffix == ".zarr"
    snap = open_snapshot(path)
    assert not isinstance(snap["bone"], np.ndarray)  # lazy: nothing read yet
    assert snap["bone"].chunks == (64, 64, 64)
    np.testing.assert_array_equal(np.asarray(snap["bone"][10:20, :5, 3]), vol.bone[10:20, :5, 3])
    back = load_snapshot(path, step=2)  # downsampled while reading
    assert back.shape == (48, 48, 48) and back.voxel_size_um == 60.0 and back.meta["day"] == 30
    small = save_snapshot(vol, tmp_path / "day_00000", 0)
    assert small.suffix == ".npz"
    np.testing.assert_array_equal(load_snapshot(small).bone, vol.bone)


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    p = tmp_path / "metrics.csv"
    p.write_text("old")

    def boom(fh):
        fh.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(p, boom)
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["metrics.csv"]  # no temporary left behind


def test_sweep_folder_from_another_version_is_refused(tmp_path):
    from voxelbone.sweep import Sweep, run_sweep

    (tmp_path / "sweep.json").write_text(json.dumps({"voxelbone_version": "0.0.1"}))
    with pytest.raises(ValueError, match="0.0.1"):
        run_sweep(Sweep({"site": "lumbar_spine", "years": 0.05, "size": 48}, {"seed": [1]}, "t"), tmp_path)
