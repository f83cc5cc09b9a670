"""Marching-cubes surface area, cube by cube, identical on the CPU and in CUDA.

Each cube of 2×2×2 samples is cut by the iso-surface of the field. Where it crosses an
edge, the crossing is linearly interpolated; the crossings are joined into closed polygons
face by face. A face whose diagonal corners are inside (the ambiguous face of Lorensen &
Cline's case table) is resolved by the asymptotic decider: the bilinear interpolant's saddle
value tells whether the inside corners connect across the face (Nielson & Hamann 1991), and
the neighbouring cube sharing that face decides the same way, so the surface has no holes.
Each polygon is fanned from the mean of its vertices into triangles whose areas are summed.
No mesh is built: the area is a sum over cubes, which is what makes it cheap on a GPU
(``kernels/metrics_surface.cu``, launched by :func:`voxelbone.metrics.gpu.surface_area_gpu`)
and parallel on the CPU (:func:`surface_area_voxels`, Numba, the same arithmetic in double).

The polygons of every (corner configuration, ambiguous-face decisions) pair are tabulated
once (:func:`polygon_table`): 256 × 64 rows of up to 16 edge numbers, each polygon's
edges in order followed by ``-1``, then ``-2`` for unused slots.

Against scikit-image's ``marching_cubes`` (Lewiner et al. 2003, which also resolves the
ambiguities inside a cube): spheres agree within 0.2 %, phantoms within 0.1 %, thin random
structures are 0.4–1.3 % lower (no interior tunnels here).

References
----------
Lorensen WE, Cline HE (1987). Marching cubes. Comput Graph 21:163–169.
Nielson GM, Hamann B (1991). The asymptotic decider. Proc IEEE Visualization '91, 83–91.
"""

from __future__ import annotations

import functools
from typing import Any

import numba
import numpy as np

__all__ = ["CORNER_OFFSETS", "EDGE_CORNERS", "FACE_CORNERS", "polygon_table", "surface_area_voxels"]

#: Corner ``c`` of a cube sits at offset (c >> 2 & 1, c >> 1 & 1, c & 1) in (z, y, x).
CORNER_OFFSETS = np.array([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)], dtype=np.int64)
_BIT = (4, 2, 1)  # corner-index bit of an offset along z, y, x


def _edges() -> np.ndarray:
    out = []
    for axis in range(3):
        u, v = (a for a in range(3) if a != axis)
        for o1 in (0, 1):
            for o0 in (0, 1):
                c = o0 * _BIT[u] + o1 * _BIT[v]
                out.append((c, c + _BIT[axis]))
    return np.array(out, dtype=np.int64)


def _faces() -> np.ndarray:
    out = []
    for axis in range(3):
        u, v = (a for a in range(3) if a != axis)
        for side in (0, 1):
            b = side * _BIT[axis]
            out.append((b, b + _BIT[u], b + _BIT[u] + _BIT[v], b + _BIT[v]))  # in cyclic order
    return np.array(out, dtype=np.int64)


#: The 12 edges as (corner, corner): 0–3 along z, 4–7 along y, 8–11 along x.
EDGE_CORNERS = _edges()
#: The 6 faces as 4 corners in cyclic order: z = 0, z = 1, y = 0, y = 1, x = 0, x = 1.
FACE_CORNERS = _faces()
_EDGE_OF = {frozenset((int(a), int(b))): e for e, (a, b) in enumerate(EDGE_CORNERS)}


def _polygons(config: int, connected: int) -> list[list[int]]:
    """Closed polygons (edge numbers in order) of a cube; bit j of ``connected``: face j's inside corners join."""
    inside = [(config >> c) & 1 for c in range(8)]
    links: dict[int, list[int]] = {}

    def join(a: int, b: int) -> None:
        links.setdefault(a, []).append(b)
        links.setdefault(b, []).append(a)

    for j, corners in enumerate(FACE_CORNERS):
        side = [_EDGE_OF[frozenset((int(corners[k]), int(corners[(k + 1) % 4])))] for k in range(4)]
        s = [inside[int(c)] for c in corners]
        crossed = [k for k in range(4) if s[k] != s[(k + 1) % 4]]
        if len(crossed) == 2:
            join(side[crossed[0]], side[crossed[1]])
        elif len(crossed) == 4:  # ambiguous face: cut off the corners that do not connect
            cut = 0 if (connected >> j) & 1 else 1
            for k in range(4):
                if s[k] == cut:
                    join(side[(k - 1) % 4], side[k])
    polygons, seen = [], set()
    for start in sorted(links):
        if start in seen:
            continue
        poly, prev, cur = [start], -1, start
        seen.add(start)
        while True:
            a, b = links[cur]
            nxt = a if a != prev else b
            if nxt == start:
                break
            poly.append(nxt)
            seen.add(nxt)
            prev, cur = cur, nxt
        polygons.append(poly)
    return polygons


@functools.cache
def polygon_table() -> np.ndarray:
    """Polygon table indexed by ``config | connected << 8`` (16384 × 16, int8; see module notes).

    ``config`` has bit ``c`` set when corner ``c`` is inside (value above the iso-level);
    ``connected`` has bit ``j`` set when face ``j`` is ambiguous and its inside corners join.
    """
    table = np.full((256 * 64, 16), -2, dtype=np.int8)
    for config in range(256):
        for connected in range(64):
            row: list[int] = []
            for poly in _polygons(config, connected):
                row += poly + [-1]
            table[config | connected << 8, : len(row)] = row
    table.setflags(write=False)
    return table


@numba.njit(cache=True, inline="always")
def _cube_area(f: np.ndarray, z: int, y: int, x: int, iso: float, table: np.ndarray, within: np.ndarray,
               use_within: bool, edge_corners: np.ndarray, face_corners: np.ndarray,
               offsets: np.ndarray, v: np.ndarray, pts: np.ndarray) -> float:  # pragma: no cover - compiled
    """Area of the iso-surface in cube (z, y, x) (``vb_cube_area`` in kernels/metrics_surface.cu)."""
    nz, ny, nx = f.shape
    config = 0
    for c in range(8):
        v[c] = np.float64(f[z + offsets[c, 0], y + offsets[c, 1], x + offsets[c, 2]])
        if v[c] > iso:
            config |= 1 << c
    if config == 0 or config == 255:
        return 0.0
    connected = 0
    for j in range(6):
        a = v[face_corners[j, 0]]
        b = v[face_corners[j, 1]]
        c_ = v[face_corners[j, 2]]
        d = v[face_corners[j, 3]]
        if (a > iso) == (c_ > iso) and (b > iso) == (d > iso) and (a > iso) != (b > iso):
            if (a * c_ - b * d) / (a + c_ - b - d) > iso:  # the bilinear saddle is inside: inside corners join
                connected |= 1 << j
    for e in range(12):
        ca = edge_corners[e, 0]
        cb = edge_corners[e, 1]
        if (v[ca] > iso) != (v[cb] > iso):
            t = (iso - v[ca]) / (v[cb] - v[ca])
            for k in range(3):
                pts[e, k] = offsets[ca, k] + t * (offsets[cb, k] - offsets[ca, k])
    row = config | (connected << 8)
    area = 0.0
    i = 0
    while i < 16 and table[row, i] != -2:
        first = i
        while table[row, i] >= 0:
            i += 1
        m = i - first
        gz = 0.0
        gy = 0.0
        gx = 0.0
        for q in range(first, i):
            gz += pts[table[row, q], 0]
            gy += pts[table[row, q], 1]
            gx += pts[table[row, q], 2]
        gz /= m
        gy /= m
        gx /= m
        for q in range(m):
            p = table[row, first + q]
            r = table[row, first + (q + 1) % m]
            az = pts[p, 0] - gz
            ay = pts[p, 1] - gy
            ax = pts[p, 2] - gx
            bz = pts[r, 0] - gz
            by = pts[r, 1] - gy
            bx = pts[r, 2] - gx
            cz = ay * bx - ax * by
            cy = ax * bz - az * bx
            cx = az * by - ay * bz
            if use_within:  # keep the triangle if the voxel nearest its centroid is in the VOI
                tz = min(max(int(np.floor(z + (pts[p, 0] + pts[r, 0] + gz) / 3.0 + 0.5)), 0), nz - 1)
                ty = min(max(int(np.floor(y + (pts[p, 1] + pts[r, 1] + gy) / 3.0 + 0.5)), 0), ny - 1)
                tx = min(max(int(np.floor(x + (pts[p, 2] + pts[r, 2] + gx) / 3.0 + 0.5)), 0), nx - 1)
                if within[tz, ty, tx] == 0:
                    continue
            area += 0.5 * np.sqrt(cz * cz + cy * cy + cx * cx)
        i += 1
    return area


@numba.njit(parallel=True, cache=True)
def _area_planes(f: np.ndarray, iso: float, table: np.ndarray, within: np.ndarray, use_within: bool,
                 edge_corners: np.ndarray, face_corners: np.ndarray, offsets: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    nz, ny, nx = f.shape
    out = np.zeros(max(nz - 1, 0), dtype=np.float64)
    for z in numba.prange(nz - 1):
        v = np.empty(8, dtype=np.float64)
        pts = np.zeros((12, 3), dtype=np.float64)
        s = 0.0
        for y in range(ny - 1):
            for x in range(nx - 1):
                s += _cube_area(f, z, y, x, iso, table, within, use_within, edge_corners, face_corners, offsets, v, pts)
        out[z] = s
    return out


def surface_area_voxels(field: np.ndarray, level: float = 0.5, within: np.ndarray | None = None) -> float:
    """Area of the iso-surface of a NumPy field, in voxel faces (squared voxel edges).

    Parameters
    ----------
    field : numpy.ndarray, 3-D
        Sampled field; cubes span neighbouring samples (the surface is open at the grid border).
    level : float
        Iso-level; samples above it are inside.
    within : numpy.ndarray of bool, optional
        Count a triangle only when the sample nearest its centroid is set.

    Returns
    -------
    float
        Area in voxel units².
    """
    f = np.ascontiguousarray(field, dtype=np.float32)
    if f.ndim != 3:
        raise ValueError(f"field must be 3-D, got shape {f.shape}")
    w = np.zeros((1, 1, 1), np.uint8) if within is None else np.ascontiguousarray(within, dtype=np.uint8)
    if within is not None and w.shape != f.shape:
        raise ValueError(f"within has shape {w.shape} but the field has {f.shape}; pass a VOI mask of the field's shape")
    planes = _area_planes(f, float(level), polygon_table(), w, within is not None, EDGE_CORNERS, FACE_CORNERS,
                          CORNER_OFFSETS)
    return float(planes.sum())


def kernel_tables(xp: Any) -> tuple[Any, Any, Any]:
    """Table, edge corners and face corners as int arrays of module ``xp`` (kernel arguments)."""
    return (xp.asarray(polygon_table()), xp.asarray(EDGE_CORNERS.astype(np.int32)),
            xp.asarray(FACE_CORNERS.astype(np.int32)))
