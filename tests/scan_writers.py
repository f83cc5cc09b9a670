"""Writers of synthetic micro-CT files in the formats of the field, for the loader's tests.

Scanco AIM (version 020) and ISQ files are written byte by byte as ITK's Scanco reader
(``itk-ioscanco``, KitwareMedical/ITKIOScanco ``itkScancoImageIO.cxx``) parses them: the
AIM pre-header (20 bytes), image structure (140 bytes) and processing log (``key  value``
lines: ``Mu_Scaling``, ``Density: slope``, ``Density: intercept``, ``Density: unit``), then
the raw voxels; the ISQ 512-byte header (``CTDATA-HEADER_V1``, dimensions in pixels and µm,
``mu_scaling``), an extended header with a ``Calibration`` block (density slope and
intercept as VAX-ordered doubles) and the int16 voxels. NRRD and MHA/MHD are written by
ITK, DICOM series by pydicom (one file per slice with its position and pixel spacing).

Arrays are (z, y, x) here; every writer stores x fastest, as the formats do.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

__all__ = ["cored_cylinder", "grey_scan", "trabecular_roi", "write_aim", "write_dicom_series", "write_isq", "write_itk"]


def trabecular_roi(n: int, sigma_vox: float, bv_tv: float = 0.29, seed: int = 0) -> np.ndarray:
    """A box cut inside trabecular bone: a smoothed random field above its (1 - BV/TV) quantile.

    Irregular, connected struts and nodes about ``2.7 * sigma_vox`` voxels thick (BV/TV
    0.29, σ 5.5 voxels: mean local thickness about 15 voxels); the bone meets every face
    of the box and has no cortex.
    """
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    f = ndi.gaussian_filter(rng.standard_normal((n, n, n)), sigma_vox, mode="wrap")
    return f >= np.quantile(f, 1.0 - bv_tv)


def cored_cylinder(mask: np.ndarray, margin_vox: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The mask cut to a z-aligned cylinder inscribed in the box; returns (mask, cylinder)."""
    nz, ny, nx = mask.shape
    yy, xx = np.ogrid[:ny, :nx]
    r = min(ny, nx) / 2 - margin_vox
    cyl = ((yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2) <= r * r
    cyl3 = np.broadcast_to(cyl, mask.shape)
    return mask & cyl3, cyl3.copy()


def grey_scan(mask: np.ndarray, *, bone: float = 1000.0, marrow: float = 0.0, blur_vox: float = 1.0,
              noise: float = 40.0, seed: int = 0, outside: np.ndarray | None = None,
              outside_value: float = -300.0) -> np.ndarray:
    """A scan of a bone mask as micro-CT sees it: partial volume (blur), noise, empty corners.

    Values are densities (mg HA/cm³ when written with a calibration): bone tissue
    ``bone``, marrow ``marrow`` (water-like, 0 on a hydroxyapatite calibration); voxels of ``outside`` (e.g. the corners of a cored
    cylinder) hold ``outside_value`` (air / mounting medium below marrow).
    """
    from scipy import ndimage as ndi

    d = np.where(mask, bone, marrow).astype(np.float32)
    if outside is not None:
        d[outside] = outside_value
    d = ndi.gaussian_filter(d, blur_vox) if blur_vox > 0 else d
    return d + np.random.default_rng(seed).normal(0.0, noise, d.shape).astype(np.float32)


def _scanco_float(value: float) -> bytes:
    """A float as Scanco stores it (VAX F: 4x the IEEE value, 16-bit words swapped)."""
    i = struct.unpack("<I", struct.pack("<f", 4.0 * value))[0]
    return bytes([(i >> 16) & 0xFF, (i >> 24) & 0xFF, i & 0xFF, (i >> 8) & 0xFF])


def _scanco_double(value: float) -> bytes:
    """A double as Scanco stores it (VAX G ordering of the words, 4x the IEEE value)."""
    bits = struct.unpack("<Q", struct.pack("<d", 4.0 * value))[0]
    out = b""
    for word in (bits >> 32, bits & 0xFFFFFFFF):
        out += bytes([(word >> 16) & 0xFF, (word >> 24) & 0xFF, word & 0xFF, (word >> 8) & 0xFF])
    return out


def _i32(v: int) -> bytes:
    return struct.pack("<i", int(v))


def write_aim(path: str | Path, data: np.ndarray, voxel_size_um: tuple[float, float, float] | float, *,
              mu_scaling: int | None = None, density_slope: float | None = None,
              density_intercept: float | None = None, density_unit: str = "mg HA/ccm") -> Path:
    """Write an AIM (version 020) file of int16 (or uint8) voxels with an optional calibration.

    ``voxel_size_um`` is one edge or (z, y, x); the calibration lines are written only
    when given (``mu_scaling``, ``density_slope``, ``density_intercept``).
    """
    a = np.asarray(data)
    dtype_code = {np.dtype(np.int16): 0x00020002, np.dtype(np.uint8): 0x00160001}[a.dtype]
    vz, vy, vx = (voxel_size_um,) * 3 if np.isscalar(voxel_size_um) else voxel_size_um  # type: ignore[misc]
    log_lines = ["! synthetic scan written by the voxelbone tests", "Scanner ID                    0"]
    if mu_scaling is not None:
        log_lines.append(f"Mu_Scaling                    {int(mu_scaling)}")
    if density_slope is not None:
        log_lines.append(f"Density: unit                 {density_unit}")
        log_lines.append(f"Density: slope                {density_slope:.8e}")
    if density_intercept is not None:
        log_lines.append(f"Density: intercept            {density_intercept:.8e}")
    log = ("\n".join(log_lines) + "\n").encode() + b"\0"
    struct_block = bytearray(140)
    nz, ny, nx = a.shape
    values = [0, 0, 0, nx, ny, nz] + [0] * 15  # position, dimension, then offsets etc.
    body = _i32(dtype_code) + b"".join(_i32(v) for v in values)
    body += _scanco_float(vx / 1000.0) + _scanco_float(vy / 1000.0) + _scanco_float(vz / 1000.0)
    struct_block[20:20 + len(body)] = body
    pre = _i32(20) + _i32(140) + _i32(len(log)) + _i32(a.nbytes) + _i32(0)
    p = Path(path)
    p.write_bytes(pre + bytes(struct_block) + log + np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes())
    return p


def write_isq(path: str | Path, data: np.ndarray, voxel_size_um: tuple[float, float, float] | float, *,
              mu_scaling: int = 4096, density_slope: float | None = None, density_intercept: float = 0.0,
              density_unit: str = "mg HA/ccm") -> Path:
    """Write an ISQ file of int16 voxels; with ``density_slope`` an extended header holds the calibration."""
    a = np.ascontiguousarray(np.asarray(data, dtype="<i2"))
    nz, ny, nx = a.shape
    vz, vy, vx = (voxel_size_um,) * 3 if np.isscalar(voxel_size_um) else voxel_size_um  # type: ignore[misc]
    calibrated = density_slope is not None
    data_offset = 3 if calibrated else 0  # header blocks of 512 bytes after the first
    h = bytearray(512)
    h[0:16] = b"CTDATA-HEADER_V1"
    fields = [3, a.nbytes, a.nbytes // 512, 1, 2801]  # type, bytes, blocks, patient, scanner id
    h[16:36] = b"".join(_i32(v) for v in fields)
    # date (8 bytes) left 0; dimensions in pixels then µm (x, y, z)
    dims = [nx, ny, nz, round(nx * vx), round(ny * vy), round(nz * vz)]
    h[44:68] = b"".join(_i32(v) for v in dims)
    rest = [round(vz), round(vz), 0, int(a.min()), int(a.max()), mu_scaling, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    h[68:128] = b"".join(_i32(v) for v in rest)
    h[128:168] = b"synthetic".ljust(40, b" ")
    h[508:512] = _i32(data_offset)
    header = bytes(h)
    if calibrated:
        ext = bytearray(512)
        ext[8:24] = b"Calibration     "
        ext[24:28] = _i32(2)  # two 512-byte blocks
        cal = bytearray(1024)
        cal[28:28 + 20] = b"synthetic phantom".ljust(20, b" ")
        cal[632:636] = _i32(2)
        cal[648:664] = density_unit.encode().ljust(16, b" ")
        cal[664:672] = _scanco_double(float(density_slope))  # type: ignore[arg-type]
        cal[672:680] = _scanco_double(float(density_intercept))
        cal[688:696] = _scanco_double(0.24)
        header += bytes(ext) + bytes(cal)
    p = Path(path)
    p.write_bytes(header + a.tobytes())
    return p


def write_itk(path: str | Path, data: np.ndarray, voxel_size_um: tuple[float, float, float] | float) -> Path:
    """Write NRRD (``.nrrd``) or MetaImage (``.mha``, ``.mhd`` + ``.raw``) with ITK, spacing in mm."""
    import itk

    vz, vy, vx = (voxel_size_um,) * 3 if np.isscalar(voxel_size_um) else voxel_size_um  # type: ignore[misc]
    arr = np.ascontiguousarray(data)  # kept alive while ITK reads its buffer
    img = itk.image_from_array(arr)
    img.SetSpacing([vx / 1000.0, vy / 1000.0, vz / 1000.0])
    p = Path(path)
    io = itk.NrrdImageIO.New() if p.suffix.lower() in (".nrrd", ".nhdr") else itk.MetaImageIO.New()
    itk.imwrite(img, str(p), imageio=io)
    del arr
    return p


def write_dicom_series(folder: str | Path, data: np.ndarray, voxel_size_um: tuple[float, float, float] | float, *,
                       rescale_slope: float = 1.0, rescale_intercept: float = 0.0) -> Path:
    """Write a DICOM CT series (one file per z-slice, shuffled names) with pydicom."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    a = np.asarray(data, dtype=np.int16)
    vz, vy, vx = (voxel_size_um,) * 3 if np.isscalar(voxel_size_um) else voxel_size_um  # type: ignore[misc]
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    series, study = generate_uid(), generate_uid()
    order = np.random.default_rng(0).permutation(a.shape[0])  # file names not in slice order
    for k, z in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(out / f"IM{k:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality = "CT"
        ds.InstanceNumber = int(z) + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(z) * vz / 1000.0]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [vy / 1000.0, vx / 1000.0]  # row spacing (y), column spacing (x), mm
        ds.SliceThickness = vz / 1000.0
        ds.Rows, ds.Columns = a.shape[1], a.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = rescale_slope, rescale_intercept
        ds.PixelData = np.ascontiguousarray(a[z]).astype("<i2").tobytes()
        ds.save_as(out / f"IM{k:04d}.dcm", enforce_file_format=True)
    return out
