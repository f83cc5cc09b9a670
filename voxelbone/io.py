"""Reading and writing micro-CT volumes.

:func:`load_volume` turns a scan into a :class:`~voxelbone.volume.BoneVolume` and records
how in a :class:`ScanInfo` (``volume.meta["scan"]``, plain data for ``run.json``).

Formats (the voxel size comes from the header where the format stores one):

=====================  ==========================================  =====================
format                 files                                       read with
=====================  ==========================================  =====================
NumPy                  ``.npy``; ``.npz`` (``bone``/``image``,       NumPy
                       ``region``, ``mineral``, ``voxel_size_um``)
TIFF                   ``.tif``/``.tiff`` stack or a folder of       tifffile
                       slices (resolution tags in µm/mm, ImageJ
                       ``spacing``)
NIfTI                  ``.nii``, ``.nii.gz``                         nibabel
NRRD                   ``.nrrd``, ``.nhdr`` (spacing in mm)          ITK
MetaImage              ``.mha``, ``.mhd`` (spacing in mm)            ITK
Scanco                 ``.aim`` (AIM v020 and v030), ``.isq``,       ITK + itk-ioscanco
                       ``.rsq``; VMS names such as ``X.AIM;1``
DICOM                  a folder of one series (``.dcm`` or files     pydicom
                       with the ``DICM`` marker)
=====================  ==========================================  =====================

ITK and pydicom are the optional extra ``voxelbone[scans]``, imported only for the
formats that need them. Scanco's reader (itk-ioscanco ≥ 1.0) reads the AIM versions
020/030 (char, short, int, float voxels and the run-length/bit-packed segmented AIMs),
ISQ/RSQ raw scans and RAD; it returns calibrated short images in Hounsfield units, which
this module turns back to the linear attenuation µ = (HU + 1000) µ_water / 1000.

Grey values become bone and mineral:

* binary images (0/1, bool) are bone masks; fractional images in [0, 1] bone fractions;
* a density calibration in the header (Scanco: ``Density: slope``/``intercept`` in
  mg HA/cm³ per 1/cm with ``Mu_Scaling``) maps grey values to mineral density; the voxel's
  mineral is its density over :data:`~voxelbone.volume.TMD_MAX_MG_CM3` (so the BMD proxy
  is the scanner's mean density), and bone and marrow are told apart by Otsu's threshold
  on the density (or ``threshold`` in mg HA/cm³);
* other grey values are segmented with Otsu's threshold, the mineral taken relative to the
  median bone grey value (no calibration).

Either way the bone fraction is the grey value rescaled linearly around the threshold
(partial volume kept: the threshold is the 0.5 iso-level).

Compartments (``compartments=``): ``"auto"`` contours the bone and, when it has no
periosteal shell (a box or cored cylinder cut inside trabecular bone), makes the field of
view all trabecular; ``"trabecular"`` does so without contouring; a path reads labels
(0 outside, 1 trabecular, 2 cortical) from a file of the image's shape
(:func:`voxelbone.volume.choose_compartments`).

Voxel sizes of 5–100 µm load; outside 10–40 µm a :class:`ScanWarning` says what is less
accurate there (:mod:`voxelbone.voxel_sizes`). Anisotropic voxels are refused with a pointer
to :func:`resample_isotropic`.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .volume import (BONE_THRESHOLD, COMPARTMENT_CHOICES, TMD_MAX_MG_CM3, BoneVolume, Region, choose_compartments,
                     field_of_view)
from .voxel_sizes import MAX_VOXEL_UM, MIN_VOXEL_UM, voxel_size_caveat

__all__ = ["ScanInfo", "ScanWarning", "load_volume", "read_image", "resample_isotropic", "save_volume"]

SCANS_EXTRA = "pip install 'voxelbone[scans]'"


class ScanWarning(UserWarning):
    """A scan loads, but something about it makes the results less accurate or overrides its header."""


@dataclass(frozen=True)
class ScanInfo:
    """How a scan was read: its provenance, kept in ``volume.meta["scan"]`` (as a dict).

    Attributes
    ----------
    path : str
        The file or folder read.
    format : str
        ``npy``, ``npz``, ``tiff``, ``nifti``, ``nrrd``, ``metaimage``, ``scanco-aim``,
        ``scanco-isq``, ``dicom``.
    shape : tuple of int
        Grid (z, y, x).
    voxel_size_um : float
        The voxel edge used.
    voxel_size_source : str
        ``header`` or ``argument``.
    header_spacing_um : tuple of float or None
        Voxel size (z, y, x) the file stores, µm.
    calibration : str
        ``scanner`` (density calibration of the header), ``otsu`` (grey values, no
        calibration), ``binary`` or ``fraction`` (already segmented).
    calibration_detail : str
        The mapping in words (slope, intercept, mu_scaling, threshold).
    density_slope_mg_cm3, density_intercept_mg_cm3 : float or None
        mg HA/cm³ = grey × slope + intercept, for ``scanner``.
    threshold : float or None
        Bone/marrow threshold used (mg HA/cm³ for ``scanner``, grey value for ``otsu``).
    compartments : str
        How the compartments were chosen (:func:`~voxelbone.volume.choose_compartments`).
    bv_tv : float
        Bone voxels over the trabecular and cortical compartments, at load.
    warnings : tuple of str
        The :class:`ScanWarning` messages issued while loading.
    """

    path: str
    format: str
    shape: tuple[int, int, int]
    voxel_size_um: float
    voxel_size_source: str
    header_spacing_um: tuple[float, float, float] | None
    calibration: str
    calibration_detail: str
    density_slope_mg_cm3: float | None = None
    density_intercept_mg_cm3: float | None = None
    threshold: float | None = None
    compartments: str = ""
    bv_tv: float = float("nan")
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        d["header_spacing_um"] = list(self.header_spacing_um) if self.header_spacing_um else None
        d["warnings"] = list(self.warnings)
        return d


@dataclass
class _Calibration:
    """Grey value → mineral density, mg HA/cm³ = grey × slope + intercept."""

    slope_mg_cm3: float
    intercept_mg_cm3: float
    detail: str


@dataclass
class _Raw:
    data: np.ndarray
    spacing_um: tuple[float, ...] | None
    format: str
    extras: dict[str, Any] = field(default_factory=dict)
    calibration: _Calibration | None = None


def _tiff(path: Path) -> tuple[np.ndarray, tuple[float, ...] | None]:
    import tifffile  # noqa: PLC0415

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
        if not files:
            raise FileNotFoundError(f"no .tif/.tiff files in the folder {path}")
        slices = [tifffile.imread(f) for f in files]
        shapes = {s.shape for s in slices}
        if len(shapes) > 1:
            raise ValueError(f"{path}: the TIFF slices differ in shape {sorted(shapes)}")
        data = np.stack(slices)
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


def _import_itk(what: str) -> Any:
    try:
        import itk  # noqa: PLC0415
    except ImportError:
        raise ModuleNotFoundError(f"reading {what} needs ITK: {SCANS_EXTRA}") from None
    return itk


def _itk_read(p: Path, fmt: str) -> tuple[np.ndarray, tuple[float, ...], Any]:
    """Read with an explicit ITK ImageIO (itk-ioscanco's factory claims files of other formats)."""
    itk = _import_itk({"nrrd": "NRRD", "metaimage": "MetaImage (.mha/.mhd)"}.get(fmt, "Scanco AIM/ISQ"))
    if fmt == "nrrd":
        io = itk.NrrdImageIO.New()
    elif fmt == "metaimage":
        io = itk.MetaImageIO.New()
    else:
        if not hasattr(itk, "ScancoImageIO"):
            raise ModuleNotFoundError(f"reading Scanco AIM/ISQ files needs itk-ioscanco: {SCANS_EXTRA}")
        io = itk.ScancoImageIO.New()
    try:
        img = itk.imread(str(p), imageio=io)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        msg = " ".join(str(exc).split())
        cut = msg.find("ITK ERROR")
        raise ValueError(f"{p.name}: cannot read it as {fmt.upper()} (corrupt or truncated header or data?): "
                         f"{msg[cut:] if cut >= 0 else msg}") from None
    data = np.asarray(itk.array_from_image(img)).copy()
    spacing = tuple(float(s) * 1000.0 for s in reversed(tuple(img.GetSpacing())))  # mm (x, y, z) -> µm (z, y, x)
    if data.ndim == 4 or img.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{p.name}: a multi-component image ({img.GetNumberOfComponentsPerPixel()} values per "
                         "voxel); give a single grey value per voxel")
    return data, spacing, img


def _scanco_calibration(p: Path, img: Any) -> _Calibration | None:
    """The density calibration of a Scanco header, as a map of the grey values ITK returned."""
    md = img.GetMetaDataDictionary()

    def get(key: str, default: Any) -> Any:
        return md[key] if md.HasKey(key) else default

    slope = float(get("RescaleSlope", 1.0))
    intercept = float(get("RescaleIntercept", 0.0))
    units = str(get("RescaleUnits", "")).strip()
    mu_scaling = float(get("MuScaling", 1.0))
    mu_water = float(get("MuWater", 0.0))
    calibrated = not (slope == 1.0 and intercept == 0.0)
    if not calibrated:
        return None
    if not np.isfinite(slope) or slope == 0.0:
        raise ValueError(f"{p.name}: the density calibration's slope ('Density: slope' / RescaleSlope) is {slope:g}; "
                         "a zero slope maps every grey value to one density. Fix the header or pass the grey "
                         "values without the calibration (e.g. as .npy with --voxel-size-um)")
    if units and not ("mg" in units.lower() and "ha" in units.lower()):
        return None  # a calibration to another unit (1/cm, HU): not a mineral density
    if mu_scaling > 1.0 and mu_water > 0.0:
        # itk-ioscanco ≥ 1.0 returned HU = raw * 1000 / (mu_water * mu_scaling) - 1000: µ = (HU + 1000) µ_w / 1000
        per_grey = slope * mu_water / 1000.0
        offset = slope * mu_water + intercept
        how = (f"Scanco header: mg HA/cm³ = {slope:g} × µ + {intercept:g}, µ = raw / {mu_scaling:g} 1/cm "
               f"(read as HU with µ_water {mu_water:g} 1/cm)")
    else:
        scale = mu_scaling if mu_scaling > 0 else 1.0
        per_grey = slope / scale
        offset = intercept
        how = f"Scanco header: mg HA/cm³ = {slope:g} × raw / {scale:g} + {intercept:g}"
    return _Calibration(per_grey, offset, how)


def _is_dicom(f: Path) -> bool:
    if f.suffix.lower() == ".dcm":
        return True
    try:
        with open(f, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _dicom(p: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    try:
        import pydicom  # noqa: PLC0415
    except ImportError:
        raise ModuleNotFoundError(f"reading DICOM needs pydicom: {SCANS_EXTRA}") from None
    from pydicom.errors import InvalidDicomError  # noqa: PLC0415

    files = [f for f in sorted(p.iterdir()) if f.is_file() and _is_dicom(f)] if p.is_dir() else [p]
    slices = []
    for f in files:
        try:
            ds = pydicom.dcmread(f)
            arr = ds.pixel_array.astype(np.float32)
        except (InvalidDicomError, AttributeError, ValueError, OSError, EOFError) as exc:
            raise ValueError(f"{f.name}: cannot read it as DICOM (corrupt or truncated?): {exc}") from None
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        for key in ("PixelSpacing", "ImagePositionPatient"):
            if key not in ds:
                raise ValueError(f"{f.name}: the DICOM field {key} is missing; the voxel size cannot be known")
        slices.append((ds, arr * slope + intercept))
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for ds, _ in slices}
    if len(series) > 1:
        raise ValueError(f"{p.name}: the folder holds {len(series)} DICOM series; give a folder of one series")
    ds0 = slices[0][0]
    if len(slices) == 1:
        frames = slices[0][1]
        if frames.ndim == 2:
            raise ValueError(f"{p.name}: a single 2-D DICOM slice; give the folder of the whole series (3-D)")
        thickness = float(getattr(ds0, "SpacingBetweenSlices", getattr(ds0, "SliceThickness", 0)) or 0)
        row, col = (float(v) for v in ds0.PixelSpacing)
        return frames, (thickness * 1000.0, row * 1000.0, col * 1000.0)
    orient = np.array([float(v) for v in getattr(ds0, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0])])
    normal = np.cross(orient[:3], orient[3:])
    pos = np.array([float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])) for ds, _ in slices])
    order = np.argsort(pos)
    gaps = np.diff(pos[order])
    if gaps.size and (gaps.min() <= 0 or gaps.max() - gaps.min() > 1e-3 * max(gaps.max(), 1e-9)):
        raise ValueError(f"{p.name}: the DICOM slices are not evenly spaced (gaps {gaps.min():g}–{gaps.max():g} mm) "
                         "or repeat a position")
    shapes = {slices[i][1].shape for i in order}
    if len(shapes) > 1:
        raise ValueError(f"{p.name}: the DICOM slices differ in shape {sorted(shapes)}")
    data = np.stack([slices[i][1] for i in order])
    row, col = (float(v) for v in ds0.PixelSpacing)
    return data, (float(gaps.mean()) * 1000.0, row * 1000.0, col * 1000.0)


def _format_of(p: Path) -> str:
    name = p.name.lower().split(";")[0]  # Scanco's VMS names: C0001234.AIM;1
    if p.is_dir():
        entries = [f for f in p.iterdir() if f.is_file()]
        if any(f.suffix.lower() in (".tif", ".tiff") for f in entries):
            return "tiff"
        if any(_is_dicom(f) for f in entries):
            return "dicom"
        raise FileNotFoundError(f"the folder {p} holds neither TIFF slices nor a DICOM series")
    for fmt, suffixes in (("npy", (".npy",)), ("npz", (".npz",)), ("nifti", (".nii", ".nii.gz")),
                          ("tiff", (".tif", ".tiff")), ("nrrd", (".nrrd", ".nhdr")), ("metaimage", (".mha", ".mhd")),
                          ("scanco-aim", (".aim",)), ("scanco-isq", (".isq", ".rsq", ".rad")), ("dicom", (".dcm",))):
        if name.endswith(suffixes):
            return fmt
    raise ValueError(f"unknown micro-CT format of {p.name}: use .npy, .npz, .tif/.tiff (or a folder of TIFF slices), "
                     ".nii/.nii.gz, .nrrd, .mha/.mhd, Scanco .aim/.isq, or a folder of one DICOM series")


def _read(path: str | os.PathLike[str]) -> _Raw:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file or folder: {p}")
    fmt = _format_of(p)
    extras: dict[str, Any] = {}
    spacing: tuple[float, ...] | None = None
    calibration = None
    if fmt == "npy":
        try:
            data = np.load(p, allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:
            raise ValueError(f"{p.name}: cannot read it as .npy (corrupt header or truncated data?): {exc}") from None
    elif fmt == "npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.keys())
                key = "bone" if "bone" in keys else "image" if "image" in keys else keys[0]
                data = z[key]
                extras = {k: z[k] for k in keys if k != key}
        except (ValueError, EOFError, OSError, KeyError, IndexError) as exc:
            raise ValueError(f"{p.name}: cannot read it as .npz (corrupt or truncated?): {exc}") from None
        if "voxel_size_um" in extras:
            v = float(extras.pop("voxel_size_um"))
            spacing = (v, v, v)
    elif fmt == "nifti":
        import nibabel as nib  # noqa: PLC0415

        try:
            img = nib.load(str(p))
            data = np.asarray(img.dataobj)
        except Exception as exc:  # nibabel raises several kinds on a bad header or short data
            raise ValueError(f"{p.name}: cannot read it as NIfTI (corrupt header or truncated data?): {exc}") from None
        zooms = img.header.get_zooms()[:3]
        units = img.header.get_xyzt_units()[0] or "mm"
        scale = {"mm": 1000.0, "micron": 1.0, "meter": 1e6}.get(units, 1000.0)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim == 3:  # NIfTI is (x, y, z): the volume here is (z, y, x)
            data = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
            spacing = tuple(float(zooms[i]) * scale for i in (2, 1, 0))
    elif fmt == "tiff":
        data, spacing = _tiff(p)
    elif fmt == "dicom":
        data, spacing = _dicom(p)
    else:
        data, spacing, img = _itk_read(p, fmt)
        if fmt.startswith("scanco"):
            calibration = _scanco_calibration(p, img)
    if data.ndim != 3:
        raise ValueError(f"{p.name}: expected a 3-D image, got {data.ndim}-D with shape {data.shape}")
    if min(data.shape) < 2:
        raise ValueError(f"{p.name}: expected a 3-D image, got shape {data.shape} (a single slice)")
    if spacing is not None and not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"{p.name}: the header's voxel size {spacing} µm is not positive; pass voxel_size_um")
    if spacing is not None:  # headers store float32 mm: 29.99999933 µm is 30 µm
        spacing = tuple(round(float(v), 4) for v in spacing)
    return _Raw(data, tuple(spacing) if spacing else None, fmt, extras, calibration)


def read_image(path: str | os.PathLike[str]) -> tuple[np.ndarray, tuple[float, float, float] | None, dict[str, Any]]:
    """Read an image file into a 3-D array (z, y, x) with its voxel size when stored.

    Returns
    -------
    (array, spacing_um or None, extras)
        ``spacing_um`` is (z, y, x) in µm; ``extras`` holds further arrays of an .npz
        (e.g. ``region``, ``mineral``).
    """
    raw = _read(path)
    return raw.data, raw.spacing_um, raw.extras  # type: ignore[return-value]


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
                site: str | None = None, compartments: str | os.PathLike[str] = "auto") -> BoneVolume:
    """Load a micro-CT scan as a :class:`BoneVolume`; ``volume.meta["scan"]`` says how (:class:`ScanInfo`).

    Parameters
    ----------
    path
        A file or folder in one of the formats of this module's table (NumPy, TIFF,
        NIfTI, NRRD, MetaImage, Scanco AIM/ISQ, a DICOM series).
    voxel_size_um
        Voxel edge in µm, 5–100; required when the file does not store it. It overrides
        the header's, with a :class:`ScanWarning` stating both.
    threshold
        Bone/marrow threshold: mg HA/cm³ when the header has a density calibration, else
        a grey value (default: Otsu's threshold).
    site
        Anatomical site for the remodeling rates (default: the scenario's).
    compartments
        ``"auto"`` (default), ``"trabecular"``, or a file of region labels (0 outside,
        1 trabecular, 2 cortical) of the image's shape; an .npz's own ``region`` array is
        used under ``"auto"`` (see :func:`voxelbone.volume.choose_compartments`).

    Warns
    -----
    ScanWarning
        A voxel size outside 10–40 µm (what is less accurate there); a voxel size given
        that differs from the header's.

    Raises
    ------
    FileNotFoundError, ModuleNotFoundError, ValueError
        Missing file; a format whose reader is not installed (the extra to install is
        named); unknown format, corrupt or truncated file, not 3-D, NaN values, missing or
        implausible voxel size, anisotropic voxels, a zero calibration slope, a region file
        of another shape or with other labels, a cortex without a periosteal shell, an
        image without bone. Each message names the file and the field.
    """
    raw = _read(path)
    name = Path(path).name
    issued: list[str] = []

    def warn(msg: str) -> None:
        issued.append(msg)
        warnings.warn(msg, ScanWarning, stacklevel=3)

    spacing = raw.spacing_um
    if spacing is not None and max(spacing) - min(spacing) > 1e-3 * max(spacing):
        raise ValueError(f"{name} has anisotropic voxels {tuple(round(s, 3) for s in spacing)} µm (z, y, x); "
                         "resample to cubic voxels first (voxelbone.io.resample_isotropic)")
    if voxel_size_um is None:
        if spacing is None:
            raise ValueError(f"{name} does not store its voxel size: pass voxel_size_um (e.g. --voxel-size-um 30)")
        voxel_size_um, source = float(spacing[0]), "header"
    else:
        voxel_size_um, source = float(voxel_size_um), "argument"
        if spacing is not None and abs(voxel_size_um - spacing[0]) > 1e-3 * spacing[0]:
            warn(f"{name}: voxel_size_um {voxel_size_um:g} µm given overrides the header's {spacing[0]:g} µm")
    if not (np.isfinite(voxel_size_um) and MIN_VOXEL_UM <= voxel_size_um <= MAX_VOXEL_UM):
        raise ValueError(f"{name}: voxel_size_um {voxel_size_um:g} is outside the range the model accepts, "
                         f"{MIN_VOXEL_UM:g}-{MAX_VOXEL_UM:g} µm (is it in mm?)")
    caveat = voxel_size_caveat(voxel_size_um)
    if caveat:
        warn(f"{name}: {caveat}")
    data = raw.data
    if data.dtype.kind not in "biuf":
        raise ValueError(f"{name}: unsupported data type {data.dtype}")
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise ValueError(f"{name}: the image contains NaN or infinite values")
    region_file = None
    choice = "auto"
    if isinstance(compartments, str) and compartments in COMPARTMENT_CHOICES:
        choice = compartments
    else:
        region_file = Path(compartments)
        if not region_file.exists():
            raise ValueError(f"compartments must be 'auto', 'trabecular' or a region file; there is no file {region_file}")
        try:
            region_file_data = _read(region_file).data
        except ValueError as exc:
            raise ValueError(f"region file {region_file.name}: {exc}") from None
        if region_file_data.shape != data.shape:
            raise ValueError(f"region file {region_file.name}: shape {region_file_data.shape} does not match the "
                             f"image {name}'s {data.shape} (z, y, x)")

    d = data.astype(np.float32)
    cal = raw.calibration
    slope = intercept = used_t = None
    if cal is not None:
        rho = d * np.float32(cal.slope_mg_cm3) + np.float32(cal.intercept_mg_cm3)
        used_t, fov = _threshold(rho, threshold)
        bone, width, fg = _partial_volume(rho, used_t, fov)
        if fg < MIN_BONE_DENSITY_MG_CM3:
            raise ValueError(f"{name}: no bone found: the densest class has a median of {fg:.0f} mg HA/cm³, below "
                             f"bone tissue (≥ {MIN_BONE_DENSITY_MG_CM3:g}); is this a scan of bone?")
        mineral = np.clip(rho / np.float32(TMD_MAX_MG_CM3), 0.0, None)
        kind, slope, intercept = "scanner", cal.slope_mg_cm3, cal.intercept_mg_cm3
        detail = f"{cal.detail}; bone/marrow threshold {used_t:.0f} mg HA/cm³ ({'given' if threshold is not None else 'Otsu'})"
    elif data.dtype == bool or (float(d.min()) >= 0.0 and float(d.max()) <= 1.0):
        bone, mineral = d, None
        kind = "binary" if np.isin(d, (0.0, 1.0)).all() else "fraction"
        detail = "already segmented: " + ("a binary bone mask" if kind == "binary" else "bone fractions in [0, 1]")
    else:
        if float(d.min()) == float(d.max()):
            raise ValueError(f"{name}: no bone found: every voxel has the grey value {float(d.min()):g}")
        used_t, fov = _threshold(d, threshold)
        bone, width, fg = _partial_volume(d, used_t, fov)
        bg = fg - width
        mineral = np.clip((d - bg) / width, 0, 1.5) * 0.9  # relative to the median bone grey value
        kind = "otsu"
        detail = (f"no calibration in the header: bone/marrow threshold {used_t:g} grey ({'given' if threshold is not None else 'Otsu'}); "
                  "mineral relative to the median bone grey value (0.9 of fully mineralised)")
    mask = bone >= BONE_THRESHOLD
    if not mask.any():
        raise ValueError(f"{name}: no bone found (no voxel at or above the bone threshold)")
    extras_region = raw.extras.get("region")
    if region_file is not None:
        region, how = choose_compartments(mask, voxel_size_um, "given", region=region_file_data,
                                          source=f"region file {region_file.name}")
    elif extras_region is not None and choice == "auto":
        region, how = choose_compartments(mask, voxel_size_um, "given", region=extras_region,
                                          source=f"{name} (its 'region' array)")
    else:
        region, how = choose_compartments(mask, voxel_size_um, choice)
    if "mineral" in raw.extras:
        mineral = np.asarray(raw.extras["mineral"], np.float32)
        if mineral.shape != bone.shape:
            raise ValueError(f"{name}: its 'mineral' array {mineral.shape} and image {bone.shape} differ in shape")
    trab = region == Region.TRABECULAR
    bv_tv = float((mask & trab).sum() / trab.sum()) if trab.any() else float("nan")
    info = ScanInfo(path=str(path), format=raw.format, shape=tuple(int(n) for n in data.shape),  # type: ignore[arg-type]
                    voxel_size_um=float(voxel_size_um), voxel_size_source=source,
                    header_spacing_um=tuple(float(s) for s in spacing) if spacing else None,  # type: ignore[arg-type]
                    calibration=kind, calibration_detail=detail, density_slope_mg_cm3=slope,
                    density_intercept_mg_cm3=intercept, threshold=used_t, compartments=how, bv_tv=bv_tv,
                    warnings=tuple(issued))
    meta = {"source": str(path), "scan": info.as_dict()}
    if mineral is None:
        return BoneVolume.from_mask(bone, voxel_size_um, region=region, site=site, meta=meta)
    return BoneVolume(bone, np.minimum(np.clip(mineral, 0, 1), bone), region, voxel_size_um, site=site, meta=meta)


#: Median density (mg HA/cm³) below which a calibrated scan's densest class is not bone tissue.
MIN_BONE_DENSITY_MG_CM3 = 300.0


def _threshold(d: np.ndarray, given: float | None) -> tuple[float, np.ndarray | None]:
    """The bone/marrow threshold and the field of view it was computed in.

    Otsu's threshold of the whole grid first; when the bone it finds does not fill the grid
    seen along z and the voxels beyond are darker than the marrow within (a cored cylinder
    whose empty corners hold air or mounting medium, a third grey level), Otsu's threshold
    again within that field of view.
    """
    if given is not None:
        return float(given), None
    t = _otsu(d)
    fov = field_of_view(d >= t)
    if fov.all():
        return t, None
    marrow = d[fov & (d < t)]
    # only a third, darker class outside (air, medium) moves Otsu's threshold: not marrow around a sparse bone
    if marrow.size < 0.1 * int(fov.sum()) or float(np.median(d[~fov])) >= float(np.median(marrow)):
        return t, None
    return _otsu(d[fov]), fov


def _partial_volume(d: np.ndarray, t: float, within: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    """Bone fraction of grey values rescaled linearly so the threshold is the 0.5 iso-level.

    Returns the fraction, the bone-marrow grey difference (median of each class, within
    the field of view when given) and the median bone grey value.
    """
    inside = np.ones(d.shape, bool) if within is None else within
    below, above = (d < t) & inside, (d >= t) & inside
    bg = float(np.median(d[below])) if below.any() else float(d.min())
    fg = float(np.median(d[above])) if above.any() else float(d.max())
    width = max(fg - bg, 1e-6)
    return np.clip(0.5 + (d - t) / width, 0.0, 1.0).astype(np.float32), width, fg

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
