"""Reading and writing micro-CT volumes: NumPy (.npy/.npz), TIFF stacks, NIfTI.

:func:`load_volume` turns a scan into a :class:`~voxelbone.volume.BoneVolume`:

* binary images (0/1, bool) are bone masks;
* fractional images in [0, 1] are bone fractions;
* grey-value images (any other range) are segmented with Otsu's threshold and the bone
  fraction taken as the linearly rescaled grey value around it (partial volume kept),
  the mineral from the grey value above the threshold when no calibration is given;
* region labels come from the file (``region`` in an .npz) or are computed from the bone
  (:func:`~voxelbone.metrics.segment_compartments`).

The voxel size comes from the file where the format stores it (NIfTI header, TIFF
resolution tags in µm or ImageJ ``spacing``, ``voxel_size_um`` in an .npz) or must be
given. Anisotropic voxels are rejected with a hint to resample (:func:`resample_isotropic`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .volume import BONE_THRESHOLD, BoneVolume

__all__ = ["load_volume", "read_image", "resample_isotropic", "save_volume"]

MIN_VOXEL_UM = 1.0
MAX_VOXEL_UM = 200.0


def _tiff(path: Path) -> tuple[np.ndarray, tuple[float, ...] | None]:
    import tifffile  # noqa: PLC0415

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
        if not files:
            raise FileNotFoundError(f"no .tif/.tiff files in the folder {path}")
        data = np.stack([tifffile.imread(f) for f in files])
        first = files[0]
    else:
        data = tifffile.imread(path)
        first = path
    spacing = None
    with tifffile.TiffFile(first) as tif:
        page = tif.pages[0]
        ij = tif.imagej_metadata or {}
        tags = page.tags
        unit = str(ij.get("unit", "")).lower()
        if "XResolution" in tags and tags["XResolution"].value[0]:
            num, den = tags["XResolution"].value
            px = den / num  # units per pixel
            scale = {"micron": 1.0, "um": 1.0, "µm": 1.0, "\\u00b5m": 1.0, "mm": 1000.0}.get(unit)
            if scale is not None:
                z = float(ij.get("spacing", px)) * scale
                spacing = (z, px * scale, px * scale)
    return data, spacing


def read_image(path: str | os.PathLike[str]) -> tuple[np.ndarray, tuple[float, float, float] | None, dict[str, Any]]:
    """Read an image file into a 3-D array (z, y, x) with its voxel size when stored.

    Returns
    -------
    (array, spacing_um or None, extras)
        ``extras`` holds further arrays of an .npz (e.g. ``region``, ``mineral``).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file or folder: {p}")
    name = p.name.lower()
    extras: dict[str, Any] = {}
    spacing: tuple[float, ...] | None = None
    if name.endswith(".npy"):
        data = np.load(p, allow_pickle=False)
    elif name.endswith(".npz"):
        with np.load(p, allow_pickle=False) as z:
            keys = list(z.keys())
            key = "bone" if "bone" in keys else "image" if "image" in keys else keys[0]
            data = z[key]
            extras = {k: z[k] for k in keys if k != key}
        if "voxel_size_um" in extras:
            v = float(extras.pop("voxel_size_um"))
            spacing = (v, v, v)
    elif name.endswith((".nii", ".nii.gz")):
        import nibabel as nib  # noqa: PLC0415

        img = nib.load(str(p))
        data = np.asarray(img.dataobj)
        zooms = img.header.get_zooms()[:3]
        units = img.header.get_xyzt_units()[0] or "mm"
        scale = {"mm": 1000.0, "micron": 1.0, "meter": 1e6}.get(units, 1000.0)
        # NIfTI is (x, y, z): the volume here is (z, y, x)
        data = np.ascontiguousarray(np.transpose(data[..., 0] if data.ndim == 4 else data, (2, 1, 0)))
        spacing = tuple(float(zooms[i]) * scale for i in (2, 1, 0))
    elif p.is_dir() or name.endswith((".tif", ".tiff")):
        data, spacing = _tiff(p)
    else:
        raise ValueError(f"unknown micro-CT format of {p.name}: use .npy, .npz, .tif/.tiff (or a folder of "
                         "TIFF slices), .nii or .nii.gz")
    if data.ndim != 3:
        raise ValueError(f"{p.name}: expected a 3-D image, got shape {data.shape}")
    return data, (tuple(spacing) if spacing else None), extras  # type: ignore[return-value]


def _otsu(data: np.ndarray) -> float:
    from skimage.filters import threshold_otsu  # noqa: PLC0415

    sample = data.ravel()[:: max(1, data.size // 4_000_000)]
    return float(threshold_otsu(sample))


def resample_isotropic(data: np.ndarray, spacing_um: tuple[float, float, float], voxel_size_um: float | None = None,
                       order: int = 1) -> np.ndarray:
    """Resample an image with anisotropic voxels to cubic voxels.

    Parameters
    ----------
    data
        3-D image (z, y, x).
    spacing_um
        Voxel size along (z, y, x) in µm.
    voxel_size_um
        Target voxel edge (default: the smallest of ``spacing_um``).
    order
        Spline order (1: linear; use 0 for label images).
    """
    from scipy.ndimage import zoom  # noqa: PLC0415

    target = float(voxel_size_um or min(spacing_um))
    factors = [s / target for s in spacing_um]
    return zoom(data.astype(np.float32) if order else data, factors, order=order)


def load_volume(path: str | os.PathLike[str], voxel_size_um: float | None = None, *, threshold: float | None = None,
                site: str | None = None) -> BoneVolume:
    """Load a micro-CT file as a :class:`BoneVolume`.

    Parameters
    ----------
    path
        ``.npy``, ``.npz`` (arrays ``bone`` or ``image``, optional ``region``, ``mineral``,
        ``voxel_size_um``), ``.tif``/``.tiff`` stack or a folder of TIFF slices, ``.nii``/``.nii.gz``.
    voxel_size_um
        Voxel edge in µm; required when the file does not store it, and overrides it.
    threshold
        Grey value of the bone/marrow boundary (default: Otsu's threshold).
    site
        Anatomical site for the remodeling rates (default: the scenario's).

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file, unknown format, not 3-D, NaN values, missing or implausible voxel
        size, anisotropic voxels, an image without bone.
    """
    from .metrics import segment_compartments  # noqa: PLC0415

    data, spacing, extras = read_image(path)
    name = Path(path).name
    if voxel_size_um is None:
        if spacing is None:
            raise ValueError(f"{name} does not store its voxel size: pass voxel_size_um (e.g. --voxel-size-um 30)")
        if max(spacing) - min(spacing) > 1e-3 * max(spacing):
            raise ValueError(f"{name} has anisotropic voxels {tuple(round(s, 3) for s in spacing)} µm (z, y, x); "
                             "resample to cubic voxels first (voxelbone.io.resample_isotropic)")
        voxel_size_um = float(spacing[0])
    if not (MIN_VOXEL_UM <= voxel_size_um <= MAX_VOXEL_UM):
        raise ValueError(f"voxel_size_um {voxel_size_um:g} is outside the micro-CT range "
                         f"{MIN_VOXEL_UM:g}-{MAX_VOXEL_UM:g} µm (is it in mm?)")
    if data.dtype.kind not in "biuf":
        raise ValueError(f"{name}: unsupported data type {data.dtype}")
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise ValueError(f"{name}: the image contains NaN or infinite values")
    d = data.astype(np.float32)
    lo, hi = float(d.min()), float(d.max())
    if data.dtype == bool or (lo >= 0.0 and hi <= 1.0):
        bone = d
        mineral = None
    else:
        t = threshold if threshold is not None else _otsu(d)
        bg = float(np.median(d[d < t])) if np.any(d < t) else lo
        fg = float(np.median(d[d >= t])) if np.any(d >= t) else hi
        width = max(fg - bg, 1e-6)
        # partial volume: grey value rescaled so the threshold maps to the 0.5 iso-level
        bone = np.clip(0.5 + (d - t) / width, 0.0, 1.0)
        mineral = np.clip((d - bg) / width, 0.0, 1.5) * 0.9  # relative to the median bone grey value
    if not np.any(bone >= BONE_THRESHOLD):
        raise ValueError(f"{name}: no bone found (no voxel at or above the threshold)")
    region = extras.get("region")
    if region is None:
        region = segment_compartments(bone >= BONE_THRESHOLD, voxel_size_um)
    elif region.shape != bone.shape:
        raise ValueError(f"{name}: region {region.shape} and image {bone.shape} differ in shape")
    if "mineral" in extras:
        mineral = np.asarray(extras["mineral"], np.float32)
    if mineral is None:
        vol = BoneVolume.from_mask(bone, voxel_size_um, region=region.astype(np.uint8), site=site,
                                   meta={"source": str(path)})
    else:
        vol = BoneVolume(bone, np.minimum(np.clip(mineral, 0, 1) * bone, bone), region.astype(np.uint8),
                         voxel_size_um, site=site, meta={"source": str(path)})
    return vol


def save_volume(volume: BoneVolume, path: str | os.PathLike[str]) -> Path:
    """Write a volume as ``.npz`` (bone, mineral, region, voxel_size_um), ``.tif`` or ``.nii.gz``.

    TIFF and NIfTI hold the bone fraction only (with the voxel size); the write is atomic.
    """
    from .backend import asnumpy  # noqa: PLC0415
    from .results import atomic_write  # noqa: PLC0415

    p = Path(path)
    name = p.name.lower()
    bone = asnumpy(volume.bone).astype(np.float32)
    v = float(volume.voxel_size_um)
    if name.endswith(".npz"):
        atomic_write(p, lambda fh: np.savez_compressed(fh, bone=bone, mineral=asnumpy(volume.mineral),
                                                        region=asnumpy(volume.region), voxel_size_um=np.float64(v)))
    elif name.endswith((".tif", ".tiff")):
        import tifffile  # noqa: PLC0415

        atomic_write(p, lambda fh: tifffile.imwrite(fh, bone, imagej=True, resolution=(1.0 / v, 1.0 / v),
                                                    metadata={"spacing": v, "unit": "um", "axes": "ZYX"}))
    elif name.endswith((".nii", ".nii.gz")):
        import nibabel as nib  # noqa: PLC0415

        img = nib.Nifti1Image(np.transpose(bone, (2, 1, 0)), np.diag([v / 1000.0] * 3 + [1.0]))
        img.header.set_xyzt_units("mm")
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp" + (".nii.gz" if name.endswith(".gz") else ".nii"))
        nib.save(img, str(tmp))
        os.replace(tmp, p)
    else:
        raise ValueError(f"unknown output format {p.name}: use .npz, .tif or .nii.gz")
    return p
