"""Seeded synthetic bone: an irregular plate-and-rod trabecular network inside a cortical shell.

The structure is defined in micrometres, independent of the grid, and rasterised with
partial-volume bone fractions (``bone = clamp(0.5 + signed_distance / voxel, 0, 1)``), so
the same seed gives the same bone at any voxel size over the same field of view.

Geometry (z is the bone's long axis): the cube is a section through the periphery of the
bone, as a biopsy through the cortex would be —

* the periosteal surface is an arc of a circle of the bone's radius (vertebral body
  ~17 mm, femoral neck ~15 mm) near the low-y face; beyond it is :attr:`Region.OUTSIDE`;
* the cortex is a band of thickness Ct.Th inside it, pierced by z-aligned Haversian
  canals whose number is set by the target cortical porosity;
* beyond the endosteal surface, the trabecular bone (``structure``):

  - ``"network"`` (default): an irregular network of rods and plates built on the Voronoi
    tessellation of randomly perturbed seed points, as in BoneBox's Voronoi trabecular
    phantom (Cao Q, Xu X, Kamona N, Li Q; US FDA, github.com/DIDSR/BoneBox,
    ``TrabeculaeVoronoi``) and the cellular-solid model of trabecular bone of Vajjhala,
    Kraynik & Gibson (2000). The seed grid is stretched along z, the main load axis, so
    cells are elongated and their walls and edges lean towards z (DA). Voronoi edges are
    rods whose radius grows with their alignment to z (horizontal struts thinner than
    vertical rods: Mosekilde 1988), each with a log-normal spread truncated below at the
    thinnest trabecula of adult vertebrae (``min_radius_um``); near-vertical
    Voronoi faces are plates, added in random order until the trabecular BV/TV reaches its
    target. No two cells are alike and nothing repeats (no peak in the power spectrum).
  - ``"lattice"``: the earlier jittered lattice whose edges are rods (vertical rods thicker
    than horizontal struts) and some of whose vertical faces are plates; periodic, kept for
    tests that need a regular structure.

  Either is a plate-and-rod network in the sense of Stauber & Müller (2006) and Liu et al.
  (2008), fused to the endocortical surface, with loose pieces removed so the bone is one
  connected structure.

References
----------
Hildebrand T et al. (1999) J Bone Miner Res 14:1167. Vajjhala S, Kraynik AM, Gibson LJ
(2000) J Biomech Eng 122:511. Mosekilde L (1988) Bone 9:247. Stauber M, Müller R (2006) Bone
38:475. Liu XS et al. (2008) J Bone Miner Res 23:223. Burghardt AJ et al. (2010) J Bone
Miner Res 25:983.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import Voronoi
from scipy.special import ndtr, ndtri

from .sites import SiteSpec, get_site
from .volume import BoneVolume, Region

__all__ = ["NETWORK", "STRUCTURES", "check_phantom_fits", "make_phantom"]

#: Trabecular structures :func:`make_phantom` can build.
STRUCTURES = ("network", "lattice")

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


# ----------------------------------------------------------------------------- irregular network
@numba.njit(cache=True, inline="always")
def _box_range(lo: float, hi: float, v: float, n: int) -> tuple[int, int]:
    return max(int(math.floor(lo / v - 0.5)), 0), min(int(math.ceil(hi / v - 0.5)) + 1, n)


@numba.njit(cache=True)
def _paint_rods(sd: np.ndarray, v: float, a: np.ndarray, b: np.ndarray, radius: np.ndarray) -> None:  # pragma: no cover - compiled
    """Max-accumulate the signed distance (µm, > 0 inside) of capsules a→b of the given radii."""
    nz, ny, nx = sd.shape
    for e in range(a.shape[0]):
        r = radius[e]
        pad = r + 2.0 * v
        z0, z1 = _box_range(min(a[e, 0], b[e, 0]) - pad, max(a[e, 0], b[e, 0]) + pad, v, nz)
        y0, y1 = _box_range(min(a[e, 1], b[e, 1]) - pad, max(a[e, 1], b[e, 1]) + pad, v, ny)
        x0, x1 = _box_range(min(a[e, 2], b[e, 2]) - pad, max(a[e, 2], b[e, 2]) + pad, v, nx)
        d0, d1, d2 = b[e, 0] - a[e, 0], b[e, 1] - a[e, 1], b[e, 2] - a[e, 2]
        ll = max(d0 * d0 + d1 * d1 + d2 * d2, 1e-12)
        for i in range(z0, z1):
            pz = (i + 0.5) * v - a[e, 0]
            for j in range(y0, y1):
                py = (j + 0.5) * v - a[e, 1]
                for k in range(x0, x1):
                    px = (k + 0.5) * v - a[e, 2]
                    t = min(max((pz * d0 + py * d1 + px * d2) / ll, 0.0), 1.0)
                    qz, qy, qx = pz - t * d0, py - t * d1, px - t * d2
                    s = r - math.sqrt(qz * qz + qy * qy + qx * qx)
                    if s > sd[i, j, k]:
                        sd[i, j, k] = s


@numba.njit(cache=True, inline="always")
def _triangle_distance_scalar(p0: float, p1: float, p2: float, t: np.ndarray) -> float:  # pragma: no cover - compiled
    """Distance from a point to the triangle t (3×3: vertices × zyx); Ericson (2005) §5.1.5."""
    a0, a1, a2 = t[0, 0], t[0, 1], t[0, 2]
    ab0, ab1, ab2 = t[1, 0] - a0, t[1, 1] - a1, t[1, 2] - a2
    ac0, ac1, ac2 = t[2, 0] - a0, t[2, 1] - a1, t[2, 2] - a2
    ap0, ap1, ap2 = p0 - a0, p1 - a1, p2 - a2
    d1 = ab0 * ap0 + ab1 * ap1 + ab2 * ap2
    d2 = ac0 * ap0 + ac1 * ap1 + ac2 * ap2
    u = 0.0
    w = 0.0
    if d1 <= 0.0 and d2 <= 0.0:
        pass
    else:
        bp0, bp1, bp2 = p0 - t[1, 0], p1 - t[1, 1], p2 - t[1, 2]
        d3 = ab0 * bp0 + ab1 * bp1 + ab2 * bp2
        d4 = ac0 * bp0 + ac1 * bp1 + ac2 * bp2
        cp0, cp1, cp2 = p0 - t[2, 0], p1 - t[2, 1], p2 - t[2, 2]
        d5 = ab0 * cp0 + ab1 * cp1 + ab2 * cp2
        d6 = ac0 * cp0 + ac1 * cp1 + ac2 * cp2
        vc = d1 * d4 - d3 * d2
        vb = d5 * d2 - d1 * d6
        va = d3 * d6 - d5 * d4
        if d3 >= 0.0 and d4 <= d3:
            u, w = 1.0, 0.0
        elif vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0:
            u, w = d1 / (d1 - d3), 0.0
        elif d6 >= 0.0 and d5 <= d6:
            u, w = 0.0, 1.0
        elif vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0:
            u, w = 0.0, d2 / (d2 - d6)
        elif va <= 0.0 and (d4 - d3) >= 0.0 and (d5 - d6) >= 0.0:
            w = (d4 - d3) / ((d4 - d3) + (d5 - d6))
            u = 1.0 - w
        else:
            den = 1.0 / (va + vb + vc)
            u, w = vb * den, vc * den
    q0 = ap0 - u * ab0 - w * ac0
    q1 = ap1 - u * ab1 - w * ac1
    q2 = ap2 - u * ab2 - w * ac2
    return math.sqrt(q0 * q0 + q1 * q1 + q2 * q2)


@numba.njit(cache=True)
def _paint_plates(sd: np.ndarray, v: float, tri: np.ndarray, first: np.ndarray, half: np.ndarray, normal: np.ndarray,
                  order: np.ndarray, counted: np.ndarray, have: int, want: int) -> tuple[int, int]:  # pragma: no cover
    """Add plates (triangle fans ``tri[first[p]:first[p+1]]``, half-thickness ``half[p]``) in ``order``.

    Stops once ``have`` — bone voxels (sd ≥ 0) in the counted (y, x) columns — reaches
    ``want``. Voxels farther than one voxel outside the plate's slab are skipped (their bone
    fraction is 0 whatever the distance). Returns (have, plates added).
    """
    nz, ny, nx = sd.shape
    used = 0
    for q in range(order.shape[0]):
        if have >= want:
            break
        p = order[q]
        h = half[p]
        pad = h + 2.0 * v
        lo = np.empty(3)
        hi = np.empty(3)
        for c in range(3):
            lo[c] = tri[first[p]:first[p + 1], :, c].min() - pad
            hi[c] = tri[first[p]:first[p + 1], :, c].max() + pad
        z0, z1 = _box_range(lo[0], hi[0], v, nz)
        y0, y1 = _box_range(lo[1], hi[1], v, ny)
        x0, x1 = _box_range(lo[2], hi[2], v, nx)
        for i in range(z0, z1):
            pz = (i + 0.5) * v
            for j in range(y0, y1):
                py = (j + 0.5) * v
                for k in range(x0, x1):
                    px = (k + 0.5) * v
                    c0 = tri[first[p], 0]
                    dn = (pz - c0[0]) * normal[p, 0] + (py - c0[1]) * normal[p, 1] + (px - c0[2]) * normal[p, 2]
                    if abs(dn) > h + v:
                        continue
                    dmin = 1e30
                    for m in range(first[p], first[p + 1]):
                        dmin = min(dmin, _triangle_distance_scalar(pz, py, px, tri[m]))
                    s = h - dmin
                    if s > sd[i, j, k]:
                        if sd[i, j, k] < 0.0 and s >= 0.0 and counted[j, k]:
                            have += 1
                        sd[i, j, k] = s
        used += 1
    return have, used


def _ordered_polygon(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vertices of a planar convex polygon in cyclic order, and its unit normal."""
    c = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - c)
    e1, e2, normal = vt[0], vt[1], vt[2]
    ang = np.arctan2((pts - c) @ e2, (pts - c) @ e1)
    return np.argsort(ang), normal


def _voronoi_network(rng: np.random.Generator, fov_um: float, p: dict[str, Any]) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Edges and faces of the Voronoi tessellation of a perturbed seed grid covering the cube.

    Returns the rod ends a, b (µm, z-y-x), each rod's |cos| to the z axis, and the candidate
    plates as (polygon vertices in cyclic order, unit normal).
    """
    step = np.array([p["cell_um"] * p["z_stretch"], p["cell_um"], p["cell_um"]])
    counts = np.ceil(fov_um / step).astype(int) + 5
    origin = -2.5 * step + rng.uniform(0.0, 1.0, 3) * step
    idx = np.stack(np.meshgrid(*[np.arange(c) for c in counts], indexing="ij"), axis=-1).reshape(-1, 3)
    seeds = origin + idx * step + rng.uniform(-p["jitter"], p["jitter"], idx.shape) * step
    vor = Voronoi(seeds)
    verts = vor.vertices
    margin = 0.75 * step
    inside = np.all((verts > -margin) & (verts < fov_um + margin), axis=1)
    edges: set[tuple[int, int]] = set()
    faces = []
    for ridge in vor.ridge_vertices:
        r = np.asarray(ridge)
        if r.size < 3 or np.any(r < 0) or not np.all(inside[r]):
            continue
        order, normal = _ordered_polygon(verts[r])
        r = r[order]
        faces.append((verts[r], normal))
        for u, w in zip(r, np.roll(r, -1)):
            edges.add((int(min(u, w)), int(max(u, w))))
    e = np.array(sorted(edges), dtype=np.int64).reshape(-1, 2)
    a, b = verts[e[:, 0]], verts[e[:, 1]]
    length = np.maximum(np.linalg.norm(b - a, axis=1), 1e-9)
    cos_z = np.abs(b[:, 0] - a[:, 0]) / length
    return a, b, cos_z, faces


def _network_sd(rng: np.random.Generator, shape: tuple[int, int, int], v: float, p: dict[str, Any],
                counted: np.ndarray, want: int) -> tuple[np.ndarray, dict[str, float]]:
    """Signed distance (µm, > 0 in bone) of the irregular rod-and-plate network, and its census.

    Rods first; then plates, in random order, until ``want`` bone voxels lie in the
    ``counted`` (y, x) columns (the trabecular compartment). The census gives the number of
    rods and plates and the mean diameters of near-vertical (|cos| to z ≥ 0.8) and
    near-horizontal (< 0.5) rods, the diameter of the thinnest rod and the mean thickness of
    the plates, in µm.
    """
    fov = shape[0] * v
    a, b, cos_z, faces = _voronoi_network(rng, fov, p)
    keep = (cos_z >= 0.5) | (rng.uniform(size=cos_z.size) >= p["drop_horizontal"])
    a, b, cos_z = a[keep], b[keep], cos_z[keep]
    # radius from horizontal (scale × rod radius) to vertical (rod radius) with the rod's z alignment
    hs = p["horizontal_radius_scale"]
    # each rod's radius is log-normal about that median, truncated below at the thinnest
    # trabecula adult vertebrae show (drawn by inverse CDF: one uniform per rod)
    median = p["rod_radius_um"] * (hs + (1.0 - hs) * cos_z**2)
    floor = ndtr(np.log(p["min_radius_um"] / median) / p["radius_spread"])
    radius = median * np.exp(p["radius_spread"] * ndtri(floor + (1.0 - floor) * rng.uniform(size=cos_z.size)))
    sd = np.full(shape, -1e9, dtype=np.float32)
    _paint_rods(sd, float(v), np.ascontiguousarray(a), np.ascontiguousarray(b), radius)
    # near-vertical faces first, in random order; the others (drawn from a child stream, so
    # the main stream is the same whether or not they are needed) only if those cannot reach BV/TV
    upright = np.array([abs(n[0]) < p["plate_max_nz"] for _, n in faces], dtype=bool)
    plates = [f for (f, _), u in zip(faces, upright) if u] + [f for (f, _), u in zip(faces, upright) if not u]
    normals = np.array([n for (_, n), u in zip(faces, upright) if u] + [n for (_, n), u in zip(faces, upright) if not u],
                       dtype=np.float64).reshape(-1, 3)
    n_up, n_rest = int(upright.sum()), int((~upright).sum())
    extra = rng.spawn(1)[0]
    half = p["plate_half_thickness_um"] * np.exp(np.concatenate([rng.normal(0.0, p["plate_spread"], n_up),
                                                                  extra.normal(0.0, p["plate_spread"], n_rest)]))
    order = np.concatenate([rng.permutation(n_up), n_up + extra.permutation(n_rest)]).astype(np.int64)
    if plates:
        tris, first = [], [0]
        for poly in plates:  # fan from the centroid
            c = poly.mean(axis=0)
            nxt = np.roll(poly, -1, axis=0)
            tris.append(np.stack([np.broadcast_to(c, poly.shape), poly, nxt], axis=1))
            first.append(first[-1] + len(poly))
        have = int(((sd >= 0) & counted[None]).sum())
        _, used = _paint_plates(sd, float(v), np.concatenate(tris), np.asarray(first, np.int64), half, normals, order,
                                counted, have, int(want))
    else:
        used = 0
    vert, horiz = cos_z >= 0.8, cos_z < 0.5
    census = dict(rods=int(cos_z.size), plates=int(used),
                  vertical_rod_diameter_um=float(2 * radius[vert].mean()) if vert.any() else float("nan"),
                  horizontal_rod_diameter_um=float(2 * radius[horiz].mean()) if horiz.any() else float("nan"),
                  thinnest_rod_diameter_um=float(2 * radius.min()) if radius.size else float("nan"),
                  plate_thickness_um=float(2 * half[order[:used]].mean()) if used else float("nan"))
    return sd, census


#: Generator parameters of the irregular network, per site (µm, fractions); the targets of
#: :mod:`voxelbone.sites` scale them (Tb.Th the radii, Tb.Sp the cell size).
NETWORK: dict[str, dict[str, float]] = {
    # Rod-like older-adult vertebra (Hildebrand 1999: SMI ~2, Conn.D 2-6 /mm³): near-vertical
    # rods ~110 µm across, near-horizontal struts ~73 µm (Mosekilde 1988 Bone 9:247: the
    # horizontal trabeculae of vertebrae are thinner and lost first; adult ones are rarely
    # thinner than ~70 µm, so the radius distribution is truncated at 65 µm across: every
    # strut is wider than a cavity (~50 µm) is deep, so while formation balances resorption a
    # cavity seldom cuts one), every Voronoi edge kept (each rod closes a loop, so a cut rod lowers Conn.D
    # rather than freeing a dangling branch), and plates ~134 µm thick on faces within
    # |n_z| < 0.4 of vertical, added until BV/TV reaches its target; one cavity seldom
    # perforates them, while deeper untreated loss cuts struts: Conn.D falls. Measured (seed
    # 1 at 20 µm, 1-2 at 30 µm, 3 at 40 µm): BV/TV 0.11, Tb.Th 143-161 ± 27-36 µm, Tb.Sp
    # 918-955 µm, Conn.D 3.5-4.1 /mm³, SMI 2.2-2.45, DA (MIL ratio) 1.9-2.1 along z.
    "lumbar_spine": dict(cell_um=960.0, z_stretch=1.3, jitter=0.35, rod_radius_um=57.0,
                         horizontal_radius_scale=0.35, radius_spread=0.25, min_radius_um=32.5, plate_half_thickness_um=67.0,
                         plate_spread=0.1,
                         plate_max_nz=0.4, drop_horizontal=0.0),
    # Denser femoral neck trabeculae with more and thicker plates, on faces of any orientation
    # but the near-horizontal. Measured (seed 1 at 20 µm, 1-2 at 30 µm, 3 at 40 µm; the
    # cases of tests/test_phantom.py): BV/TV 0.20, Tb.Th 185-195 ± 40-49 µm, Tb.Sp
    # 684-711 µm, Tb.N 1.11-1.15 /mm (as 1/(Tb.Th + Tb.Sp); below the 1.3-1.8 /mm of
    # model.md §5), Conn.D 4.9-6.0 /mm³, SMI 1.9-2.1 (more rod-like
    # than femoral bone, SMI ~0.5-1.5 in Hildebrand 1999's femoral head), DA (MIL ratio)
    # 1.3-1.6; contoured cortex Ct.Th 822-838 µm, Ct.Po 0.070-0.079.
    "femoral_neck": dict(cell_um=760.0, z_stretch=1.3, jitter=0.35, rod_radius_um=70.0,
                         horizontal_radius_scale=0.8, radius_spread=0.25, min_radius_um=35.0, plate_half_thickness_um=80.0, plate_spread=0.2,
                         plate_max_nz=0.8, drop_horizontal=0.3),
}


@dataclass(frozen=True)
class _Plan:
    """What a phantom is built from, once its arguments are checked: grid, generator parameters, targets."""

    n: int
    v: float
    lat: dict[str, Any]
    cell_key: str
    fov: float
    margin: float
    radius: float
    bv_tv: float
    ct_th: float
    ct_po: float
    targets: dict[str, float]


def _plan(site: str, size: int | None, voxel_size_um: float | None, seed: int, structure: str,
          overrides: dict[str, float]) -> _Plan:
    """Check :func:`make_phantom`'s arguments and work out its parameters (no volume is made)."""
    overrides = dict(overrides)
    spec: SiteSpec = get_site(site)
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer))):
        raise ValueError(f"size must be a whole number of voxels, got {size!r}")
    n = int(spec.default_size if size is None else size)
    v = float(spec.default_voxel_size_um if voxel_size_um is None else voxel_size_um)
    if n < 16:
        raise ValueError(f"size must be at least 16 voxels, got {n}")
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"voxel_size_um must be a positive number of micrometres, got {voxel_size_um!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if structure not in STRUCTURES:
        raise ValueError(f"unknown structure {structure!r}; choose one of {', '.join(STRUCTURES)}")
    lat = dict(spec.lattice)
    if structure == "network":
        cortex_keys = ("ct_th_scale", "shell_margin", "bone_radius_mm", "canal_radius_um")
        lat = {k: lat[k] for k in cortex_keys} | dict(NETWORK.get(site, NETWORK["lumbar_spine"]))
    targets = {k: float(overrides.pop(k, getattr(spec, k))) for k in _TARGETS}
    unknown = sorted(set(overrides) - set(lat))
    if unknown:
        raise ValueError(f"unknown phantom parameter(s) {', '.join(unknown)} for structure {structure!r}; "
                         f"targets: {', '.join(_TARGETS)}; generator parameters: {', '.join(sorted(lat))}")
    lat.update(overrides)
    for k, (lo, hi) in _TARGET_RANGE.items():
        if not lo <= targets[k] <= hi:
            raise ValueError(f"target {k}={targets[k]:g} is outside the supported range [{lo:g}, {hi:g}]")
    # targets scale the generator: thickness → rod/plate size, separation → cell size (spacing)
    th_scale = targets["tb_th_um"] / spec.tb_th_um
    lat["rod_radius_um"] *= th_scale
    if "min_radius_um" in lat:
        lat["min_radius_um"] *= th_scale
    lat["plate_half_thickness_um"] *= th_scale
    cell_key = "cell_um" if structure == "network" else "spacing_um"
    lat[cell_key] *= targets["tb_sp_um"] / spec.tb_sp_um
    bv_tv = targets["bv_tv"]
    ct_th = targets["ct_th_um"] * lat["ct_th_scale"]
    ct_po = targets["ct_po"]

    fov = n * v
    # The cube is a section through the periphery of the bone: the periosteal surface is an
    # arc of a circle of the bone's radius (vertebral body ~17 mm, femoral neck ~15 mm) near
    # the low-y face, the cortex a band of thickness Ct.Th inside it, trabecular bone beyond.
    radius = lat["bone_radius_mm"] * 1000.0
    margin = lat["shell_margin"] * fov
    if fov - margin - ct_th < lat[cell_key] or fov - margin - ct_th < 8 * v:
        raise ValueError(
            f"a {n}³ grid of {v:g} µm voxels ({fov / 1000:.2f} mm) is too small for site {site} "
            f"(cortex {ct_th:g} µm, trabecular cell {lat[cell_key]:g} µm); use a larger size"
        )
    return _Plan(n, v, lat, cell_key, fov, margin, radius, bv_tv, ct_th, ct_po, targets)


def check_phantom_fits(site: str = "lumbar_spine", size: int | None = None, voxel_size_um: float | None = None, *,
                       structure: str = "network") -> None:
    """Raise what :func:`make_phantom` would raise for these arguments, without making the volume.

    Examples
    --------
    >>> check_phantom_fits("lumbar_spine", 128, 30.0)
    >>> check_phantom_fits("lumbar_spine", 24, 30.0)
    Traceback (most recent call last):
    ...
    ValueError: a 24³ grid of 30 µm voxels (0.72 mm) is too small for site lumbar_spine (cortex 300 µm, trabecular cell 960 µm); use a larger size
    """
    _plan(site, size, voxel_size_um, 0, structure, {})


def make_phantom(
    site: str = "lumbar_spine",
    size: int | None = None,
    voxel_size_um: float | None = None,
    seed: int = 0,
    *,
    structure: str = "network",
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
    structure : {"network", "lattice"}
        Trabecular structure: the irregular Voronoi rod-and-plate network (default) or the
        periodic jittered lattice (for tests that need a regular structure).
    **overrides : float
        Target morphometry replacing the site's (``bv_tv``, ``tb_th_um``, ``tb_sp_um``,
        ``ct_th_um``, ``ct_po``), or generator parameters (network: :data:`NETWORK`, e.g.
        ``cell_um``, ``z_stretch``, ``jitter``; lattice: the site's ``lattice``, e.g.
        ``spacing_um``). Thickness targets scale rods and plates, the separation target
        scales the cell size (lattice spacing), and plates are added in random order until
        the trabecular BV/TV reaches its target.

    Returns
    -------
    BoneVolume
        Bone fractions, mineral content, region labels (outside / trabecular / cortical).

    Raises
    ------
    ValueError
        For an unknown site or parameter, or a grid too small to hold the site.
    """
    plan = _plan(site, size, voxel_size_um, seed, structure, overrides)
    n, v, lat, cell_key, fov, margin, radius = plan.n, plan.v, plan.lat, plan.cell_key, plan.fov, plan.margin, plan.radius
    bv_tv, ct_th, ct_po, targets = plan.bv_tv, plan.ct_th, plan.ct_po, plan.targets
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

    # the network is clipped to the marrow space, where it fuses with the endocortical surface
    clip = (-sd_endo + 1.5 * v)[None, :, :]
    if structure == "network":
        trab2d = region2d == Region.TRABECULAR
        want = int(math.ceil(bv_tv * n * int(trab2d.sum())))
        sd_net, census = _network_sd(rng, shape, v, lat, trab2d, want)
        sd_trab = np.minimum(sd_net, clip)
    else:
        sd_trab = _lattice_sd(rng, shape, v, fov, lat, region2d, clip, sd_cortex, bv_tv)
        census = {}
    sd = np.maximum(sd_trab, sd_cortex[None, :, :])
    bone = np.clip(0.5 + sd / v, 0.0, 1.0).astype(np.float32)
    region = np.broadcast_to(region2d, shape).copy()
    bone[region == Region.OUTSIDE] = 0.0
    return _finish(bone, region, rng, v, dict(
        generator="voxelbone.phantom.make_phantom", structure=structure, site=site, seed=int(seed), size=n,
        voxel_size_um=v, field_of_view_mm=fov / 1000.0, bone_radius_um=radius, cortex_area_mm2=area / 1e6,
        canals=n_canals, targets=targets, parameters=lat, elements=census), site)


def _lattice_sd(rng: np.random.Generator, shape: tuple[int, int, int], v: float, fov: float, lat: dict[str, Any],
                region2d: np.ndarray, clip: np.ndarray, sd_cortex: np.ndarray, bv_tv: float) -> np.ndarray:
    """Signed distance of the periodic lattice: rods first, then plates until the target BV/TV."""
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
    return np.minimum(raster.sd, clip)


def _finish(bone: np.ndarray, region: np.ndarray, rng: np.random.Generator, v: float, meta: dict[str, Any],
            site: str) -> BoneVolume:
    """One connected structure, mineral, and the volume."""
    shape = bone.shape
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

    return BoneVolume(bone, mineral, region, v, site=site, meta=meta)
