"""Seeded synthetic bone: a plate-and-rod trabecular network inside a cortical shell.

The structure is defined in micrometres, independent of the grid, and rasterised with
partial-volume bone fractions (``bone = clamp(0.5 + signed_distance / voxel, 0, 1)``), so
the same seed gives the same bone at any voxel size over the same field of view.

Geometry (z is the bone's long axis): the cube is a section through the periphery of the
bone, as a biopsy through the cortex would be —

* the periosteal surface is an arc of a circle of the bone's radius (vertebral body
  ~17 mm, femoral neck ~15 mm) near the low-y face; beyond it is :attr:`Region.OUTSIDE`;
* the cortex is a band of thickness Ct.Th inside it, pierced by z-aligned Haversian
  canals whose number is set by the target cortical porosity;
* beyond the endosteal surface, a jittered lattice whose edges are rods (vertical rods
  thicker than horizontal struts, some struts missing) and some of whose vertical faces are
  plates — a plate-and-rod network in the sense of Stauber & Müller (2006) and Liu et al.
  (2008), fused to the endocortical surface, with loose pieces removed so the bone is one
  connected structure.

References
----------
Hildebrand T et al. (1999) J Bone Miner Res 14:1167. Stauber M, Müller R (2006) Bone
38:475. Liu XS et al. (2008) J Bone Miner Res 23:223. Burghardt AJ et al. (2010) J Bone
Miner Res 25:983.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .sites import SiteSpec, get_site
from .volume import BoneVolume, Region

__all__ = ["make_phantom"]

_SITE_SALT = {"lumbar_spine": 11, "femoral_neck": 23}
_TARGETS = ("bv_tv", "tb_th_um", "tb_sp_um", "ct_th_um", "ct_po")
_TARGET_RANGE = {"bv_tv": (0.03, 0.45), "tb_th_um": (50.0, 400.0), "tb_sp_um": (250.0, 2000.0),
                 "ct_th_um": (100.0, 3000.0), "ct_po": (0.0, 0.4)}


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def _triangle_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    n = np.cross(b - a, c - a)
    nn = float(np.linalg.norm(n))
    if nn < 1e-9:
        return np.minimum(_segment_distance(p, a, b), _segment_distance(p, a, c))
    n = n / nn
    d_plane = (p - a) @ n
    q = p - d_plane[:, None] * n
    # barycentric coordinates of the projection
    v0, v1, v2 = b - a, c - a, q - a
    d00, d01, d11 = v0 @ v0, v0 @ v1, v1 @ v1
    d20, d21 = v2 @ v0, v2 @ v1
    den = d00 * d11 - d01 * d01
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    inside = (v >= 0) & (w >= 0) & (v + w <= 1)
    edge = np.minimum(np.minimum(_segment_distance(p, a, b), _segment_distance(p, b, c)), _segment_distance(p, c, a))
    return np.where(inside, np.abs(d_plane), edge)


class _Raster:
    """Accumulates the maximum signed distance (µm, positive inside) of elements on a grid."""

    def __init__(self, shape: tuple[int, int, int], voxel_um: float) -> None:
        self.shape = shape
        self.v = voxel_um
        self.sd = np.full(shape, -1e9, dtype=np.float32)

    def _box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray] | None:
        # lo/hi in µm as (z, y, x); voxel centres at (i + 0.5) v
        i0 = np.maximum(np.floor(lo / self.v - 0.5).astype(int), 0)
        i1 = np.minimum(np.ceil(hi / self.v - 0.5).astype(int) + 1, self.shape)
        if np.any(i1 <= i0):
            return None
        axes = [(np.arange(a, b) + 0.5) * self.v for a, b in zip(i0, i1)]
        zz, yy, xx = np.meshgrid(*axes, indexing="ij")
        pts = np.stack([zz.ravel(), yy.ravel(), xx.ravel()], axis=1)
        return tuple(slice(a, b) for a, b in zip(i0, i1)), pts

    def add_rod(self, a: np.ndarray, b: np.ndarray, radius: float) -> None:
        pad = radius + 2 * self.v
        box = self._box(np.minimum(a, b) - pad, np.maximum(a, b) + pad)
        if box is None:
            return
        sl, pts = box
        sd = (radius - _segment_distance(pts, a, b)).astype(np.float32).reshape(self.sd[sl].shape)
        np.maximum(self.sd[sl], sd, out=self.sd[sl])

    def add_plate(self, corners: list[np.ndarray], half_thickness: float) -> None:
        pad = half_thickness + 2 * self.v
        arr = np.array(corners)
        box = self._box(arr.min(axis=0) - pad, arr.max(axis=0) + pad)
        if box is None:
            return
        sl, pts = box
        a, b, c, d = corners
        dist = np.minimum(_triangle_distance(pts, a, b, c), _triangle_distance(pts, a, c, d))
        sd = (half_thickness - dist).astype(np.float32).reshape(self.sd[sl].shape)
        np.maximum(self.sd[sl], sd, out=self.sd[sl])


def _lattice(rng: np.random.Generator, fov_um: float, lat: dict[str, Any]) -> tuple[np.ndarray, dict[tuple[int, int, int], int]]:
    s = lat["spacing_um"]
    sz = s * lat["z_stretch"]
    nxy = int(math.ceil(fov_um / s)) + 2
    nz = int(math.ceil(fov_um / sz)) + 2
    origin = np.array([-sz, -s, -s]) + rng.uniform(0, 1, 3) * np.array([sz, s, s])
    nodes = {}
    coords = []
    for k in range(nz):
        for j in range(nxy):
            for i in range(nxy):
                base = origin + np.array([k * sz, j * s, i * s])
                jit = rng.uniform(-lat["jitter"], lat["jitter"], 3) * np.array([sz, s, s])
                nodes[(k, j, i)] = len(coords)
                coords.append(base + jit)
    return np.array(coords), nodes


def make_phantom(
    site: str = "lumbar_spine",
    size: int | None = None,
    voxel_size_um: float | None = None,
    seed: int = 0,
    **overrides: float,
) -> BoneVolume:
    """Generate a synthetic bone sample of an anatomical site.

    Parameters
    ----------
    site : str
        ``"lumbar_spine"`` or ``"femoral_neck"`` (see :data:`voxelbone.sites.SITES`).
    size : int, optional
        Edge of the cubic grid in voxels (default: the site's default).
    voxel_size_um : float, optional
        Voxel edge in µm (default: the site's default). For the same field of view at
        another voxel size, scale ``size`` inversely: the structure is the same.
    seed : int
        Random seed; the same seed gives the same volume bit for bit.
    **overrides : float
        Target morphometry replacing the site's (``bv_tv``, ``tb_th_um``, ``tb_sp_um``,
        ``ct_th_um``, ``ct_po``), or generator parameters (``spacing_um``, ``jitter``,
        ``drop_horizontal``, ...). Thickness targets scale rods and plates, the separation
        target scales the lattice spacing, and plates are added in random order until the
        trabecular BV/TV reaches its target.

    Returns
    -------
    BoneVolume
        Bone fractions, mineral content, region labels (outside / trabecular / cortical).

    Raises
    ------
    ValueError
        For an unknown site or parameter, or a grid too small to hold the site.
    """
    spec: SiteSpec = get_site(site)
    n = int(spec.default_size if size is None else size)
    v = float(spec.default_voxel_size_um if voxel_size_um is None else voxel_size_um)
    if n < 16:
        raise ValueError(f"size must be at least 16 voxels, got {n}")
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"voxel_size_um must be a positive number of micrometres, got {voxel_size_um!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    lat = dict(spec.lattice)
    targets = {k: float(overrides.pop(k, getattr(spec, k))) for k in _TARGETS}
    unknown = sorted(set(overrides) - set(lat))
    if unknown:
        raise ValueError(f"unknown phantom parameter(s) {', '.join(unknown)}; "
                         f"targets: {', '.join(_TARGETS)}; generator parameters: {', '.join(sorted(lat))}")
    lat.update(overrides)
    for k, (lo, hi) in _TARGET_RANGE.items():
        if not lo <= targets[k] <= hi:
            raise ValueError(f"target {k}={targets[k]:g} is outside the supported range [{lo:g}, {hi:g}]")
    # targets scale the generator: thickness → rod/plate size, separation → lattice spacing
    th_scale = targets["tb_th_um"] / spec.tb_th_um
    lat["rod_radius_um"] *= th_scale
    lat["plate_half_thickness_um"] *= th_scale
    lat["spacing_um"] *= targets["tb_sp_um"] / spec.tb_sp_um
    bv_tv = targets["bv_tv"]
    ct_th = targets["ct_th_um"] * lat["ct_th_scale"]
    ct_po = targets["ct_po"]

    fov = n * v
    # The cube is a section through the periphery of the bone: the periosteal surface is an
    # arc of a circle of the bone's radius (vertebral body ~17 mm, femoral neck ~15 mm) near
    # the low-y face, the cortex a band of thickness Ct.Th inside it, trabecular bone beyond.
    radius = lat["bone_radius_mm"] * 1000.0
    margin = lat["shell_margin"] * fov
    if fov - margin - ct_th < lat["spacing_um"] or fov - margin - ct_th < 8 * v:
        raise ValueError(
            f"a {n}³ grid of {v:g} µm voxels ({fov / 1000:.2f} mm) is too small for site {site} "
            f"(cortex {ct_th:g} µm, trabecular spacing {lat['spacing_um']:g} µm); use a larger size"
        )
    rng = np.random.default_rng([int(seed), _SITE_SALT.get(site, 0)])
    shape = (n, n, n)
    yy, xx = np.meshgrid((np.arange(n) + 0.5) * v, (np.arange(n) + 0.5) * v, indexing="ij")
    cy0, cx0 = margin + radius, fov / 2.0          # centre of the bone's cross-section (outside the cube)
    rho = np.hypot(yy - cy0, xx - cx0)
    r_endo = radius - ct_th
    sd_peri = (radius - rho).astype(np.float32)    # > 0 inside the periosteum
    sd_endo = (rho - r_endo).astype(np.float32)    # > 0 outside the endosteal surface

    # --- cortex with Haversian canals (2-D in the xy plane; canals run along z) ---
    sd_cortex = np.minimum(sd_peri, sd_endo)
    in_cortex = (sd_peri >= 0) & (sd_endo >= 0)
    area = float(in_cortex.sum()) * v * v
    r_lo, r_hi = lat["canal_radius_um"]
    mean_r2 = (r_hi**3 - r_lo**3) / (3 * (r_hi - r_lo))
    n_canals = int(round(ct_po * area / (np.pi * mean_r2)))
    canal_sd = np.full((n, n), 1e9, dtype=np.float32)
    placed = 0
    while placed < n_canals:
        cy, cx = rng.uniform(0.0, fov, 2)
        r = rng.uniform(r_lo, r_hi)
        rc = np.hypot(cy - cy0, cx - cx0)
        if rc > radius - r or rc < r_endo + r:
            continue
        canal_sd = np.minimum(canal_sd, (np.hypot(yy - cy, xx - cx) - r).astype(np.float32))
        placed += 1
    sd_cortex = np.minimum(sd_cortex, canal_sd)
    region2d = np.where(sd_peri < 0, Region.OUTSIDE, np.where(sd_endo >= 0, Region.CORTICAL, Region.TRABECULAR)).astype(np.uint8)

    # --- trabecular lattice: rods first, then plates until the target BV/TV ---
    coords, nodes = _lattice(rng, fov, lat)
    raster = _Raster(shape, v)
    r_rod = lat["rod_radius_um"]
    r_h = r_rod * lat["horizontal_radius_scale"]
    plates = []
    for (k, j, i), a in nodes.items():
        for dk, dj, di in ((1, 0, 0), (0, 1, 0), (0, 0, 1)):
            b = nodes.get((k + dk, j + dj, i + di))
            if b is None:
                continue
            vertical = dk == 1
            if not vertical and rng.uniform() < lat["drop_horizontal"]:
                continue
            rad = (r_rod if vertical else r_h) * float(np.exp(rng.normal(0.0, 0.15)))
            raster.add_rod(coords[a], coords[b], rad)
        for dj, di in ((1, 0), (0, 1)):  # vertical faces are plate candidates
            quad = [nodes.get(q) for q in ((k, j, i), (k, j + dj, i + di), (k + 1, j + dj, i + di), (k + 1, j, i))]
            if None not in quad:
                plates.append(([coords[q] for q in quad], lat["plate_half_thickness_um"] * float(np.exp(rng.normal(0.0, 0.10)))))
    # the network is clipped to the marrow space, where it fuses with the endocortical surface
    clip = (-sd_endo + 1.5 * v)[None, :, :]
    trab = np.broadcast_to(region2d == Region.TRABECULAR, shape)
    n_trab = max(int(trab.sum()), 1)

    def bone_count(sl: tuple[slice, ...]) -> int:
        sd_box = np.maximum(np.minimum(raster.sd[sl], clip[:, sl[1], sl[2]]), sd_cortex[None, sl[1], sl[2]])
        return int(((sd_box >= 0) & trab[sl]).sum())

    total = bone_count((slice(None),) * 3)
    for idx in rng.permutation(len(plates)):
        if total / n_trab >= bv_tv:
            break
        corners, ht = plates[idx]
        arr = np.array(corners)
        pad = ht + 2 * v
        box = raster._box(arr.min(axis=0) - pad, arr.max(axis=0) + pad)
        if box is None:
            continue
        sl = box[0]
        before = bone_count(sl)
        raster.add_plate(corners, ht)
        total += bone_count(sl) - before
    sd_trab = np.minimum(raster.sd, clip)

    sd = np.maximum(sd_trab, sd_cortex[None, :, :])
    bone = np.clip(0.5 + sd / v, 0.0, 1.0).astype(np.float32)
    region = np.broadcast_to(region2d, shape).copy()
    bone[region == Region.OUTSIDE] = 0.0

    # --- one connected structure: keep the component holding the cortex ---
    labels, count = ndi.label(bone >= 0.5, structure=np.ones((3, 3, 3), bool))
    if count > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        keep = labels == int(np.argmax(sizes))
        keep = ndi.binary_dilation(keep, structure=np.ones((3, 3, 3), bool))
        bone[~keep] = 0.0

    # --- mineral: mature, slightly heterogeneous; interstitial cortex more mineralised ---
    noise = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=max(100.0 / v, 1.0))
    noise /= max(float(noise.std()), 1e-6)
    degree = np.where(region == Region.CORTICAL, 0.90, 0.86).astype(np.float32) + 0.02 * noise
    mineral = bone * np.clip(degree, 0.6, 1.0).astype(np.float32)

    meta = {
        "generator": "voxelbone.phantom.make_phantom",
        "site": site,
        "seed": int(seed),
        "size": n,
        "voxel_size_um": v,
        "field_of_view_mm": fov / 1000.0,
        "bone_radius_um": radius,
        "cortex_area_mm2": area / 1e6,
        "canals": n_canals,
        "targets": targets,
        "parameters": lat,
    }
    return BoneVolume(bone, mineral, region, v, site=site, meta=meta)
