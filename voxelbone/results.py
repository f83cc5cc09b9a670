"""File formats of a run's results: atomic writes, CSV tables, volume snapshots.

What goes where in a results folder is :mod:`voxelbone.runfolder`'s business; this module
writes and reads the files it names. Every file is written atomically (temporary name,
then rename), so an interruption never leaves a half-written file under its final name.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .backend import asnumpy
from .volume import BoneVolume

__all__ = [
    "ZARR_THRESHOLD_BYTES",
    "atomic_write",
    "csv_text",
    "load_rows",
    "load_snapshot",
    "open_snapshot",
    "save_snapshot",
    "write_json",
]

#: Snapshots whose arrays exceed this many bytes go to chunked, compressed zarr stores.
ZARR_THRESHOLD_BYTES = 256 * 1024**2
_SNAPSHOT_ARRAYS = ("bone", "mineral", "region")


def atomic_write(path: str | Path, write: Callable[[Any], None]) -> None:
    """Write ``path`` through ``write(fh)`` on a temporary file in the same folder, then rename.

    On any error (a full disk included) the temporary file is removed and ``path`` keeps
    its previous content.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Atomically write ``data`` as indented JSON."""
    atomic_write(path, lambda fh: fh.write(json.dumps(data, indent=2, default=str).encode()))


def csv_text(columns: list[str], rows: list[Mapping[str, Any]]) -> str:
    """CSV text with a header row; missing values are left empty."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a CSV written by voxelbone, numbers parsed as floats (text kept as text)."""
    out = []
    with open(path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k, v in r.items():
                try:
                    row[k] = float(v)
                except (TypeError, ValueError):
                    row[k] = v
            out.append(row)
    return out


# ------------------------------------------------------------------------------------
# snapshots
# ------------------------------------------------------------------------------------
def save_snapshot(volume: BoneVolume, path_stem: str | Path, day: int, *, zarr_threshold_bytes: int = ZARR_THRESHOLD_BYTES) -> Path:
    """Save a volume as ``<stem>.npz`` (compressed) or, above the threshold, ``<stem>.zarr``.

    Returns the path written. Large volumes are copied to the host one array at a time;
    the zarr store is chunked (64³) and compressed (zstd) and written under a temporary
    name, then renamed.
    """
    stem = Path(path_stem)
    nbytes = sum(int(getattr(volume, a).nbytes) for a in _SNAPSHOT_ARRAYS)
    if nbytes <= zarr_threshold_bytes:
        path = stem.with_suffix(".npz")
        arrays = {a: asnumpy(getattr(volume, a)) for a in _SNAPSHOT_ARRAYS}
        arrays.update(voxel_size_um=np.float64(volume.voxel_size_um), day=np.int64(day))
        atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))
        return path
    import zarr  # deferred: optional (the sweep extra), needed only for large volumes  # noqa: PLC0415
    from zarr.codecs import ZstdCodec  # deferred with zarr  # noqa: PLC0415

    path = stem.with_suffix(".zarr")
    tmp = stem.with_name(f".{stem.name}.{os.getpid()}.tmp.zarr")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        group = zarr.open_group(str(tmp), mode="w")
        for a in _SNAPSHOT_ARRAYS:
            src = getattr(volume, a)
            arr = group.create_array(a, shape=src.shape, dtype=str(src.dtype), chunks=(64, 64, 64),
                                     compressors=ZstdCodec(level=3))
            for z0 in range(0, src.shape[0], 64):  # slab by slab: bounded host memory
                arr[z0:z0 + 64] = asnumpy(src[z0:z0 + 64])
        group.attrs.update({"voxel_size_um": float(volume.voxel_size_um), "day": int(day)})
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


def open_snapshot(path: str | Path) -> dict[str, Any]:
    """Open a snapshot without reading it all: zarr arrays stay lazy (slice them to read).

    Returns a dict with ``bone``, ``mineral``, ``region`` (arrays or lazy zarr arrays),
    ``voxel_size_um`` and ``day``.
    """
    p = Path(path)
    if p.suffix == ".zarr":
        import zarr  # deferred: optional (the sweep extra), needed only for .zarr snapshots  # noqa: PLC0415

        g = zarr.open_group(str(p), mode="r")
        out: dict[str, Any] = {a: g[a] for a in _SNAPSHOT_ARRAYS}
        out.update(voxel_size_um=float(g.attrs["voxel_size_um"]), day=int(g.attrs["day"]))
        return out
    with np.load(p) as z:
        out = {a: z[a] for a in _SNAPSHOT_ARRAYS}
        out.update(voxel_size_um=float(z["voxel_size_um"]), day=int(z["day"]))
    return out


def load_snapshot(path: str | Path, *, step: int = 1) -> BoneVolume:
    """Read a snapshot into a :class:`BoneVolume`; ``step > 1`` downsamples while reading."""
    snap = open_snapshot(path)
    sl = (slice(None, None, step),) * 3
    arrays = {a: np.asarray(snap[a][sl]) for a in _SNAPSHOT_ARRAYS}
    return BoneVolume(arrays["bone"], np.minimum(arrays["mineral"], arrays["bone"]), arrays["region"],
                      snap["voxel_size_um"] * step, meta={"day": snap["day"], "source": str(path)})
