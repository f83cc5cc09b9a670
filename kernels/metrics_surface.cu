// voxelbone — area of the iso-surface of a float field, summed cube by cube (marching
// cubes without building a mesh). The same arithmetic, in double, as the CPU twin
// voxelbone/metrics/marching_cubes.py (_cube_area); its tables come from there too:
//   table        (16384 x 16, int8) polygons per (corner configuration | face decisions << 8):
//                edge numbers of each polygon in order, -1 after each polygon, -2 unused;
//   edge_corners (12 x 2) the corners an edge joins; face_corners (6 x 4) a face's corners
//                in cyclic order. Corner c sits at offset (c>>2 &1, c>>1 &1, c &1) in (z, y, x).
// Ambiguous faces are resolved by the asymptotic decider (the saddle of the bilinear
// interpolant); each polygon is fanned from the mean of its vertices. With `use_within`
// a triangle counts only when the voxel nearest its centroid is set in `within`.
// Each thread sums its cubes and writes one partial sum (no atomics: the host adds the
// partials in a fixed order, so the result does not depend on scheduling).
#include "vb_common.cuh"

__device__ __forceinline__ vb_i64 vb_clamp_index(double c, vb_i64 n) {
    vb_i64 i = (vb_i64)floor(c + 0.5);
    return i < 0 ? 0 : (i > n - 1 ? n - 1 : i);
}

// Coordinate k (0 z, 1 y, 2 x) of the iso-point on edge e, from the edge's parameter t.
__device__ __forceinline__ double vb_edge_point(const int* __restrict__ edge_corners, const double* t, int e, int k) {
    const int ca = edge_corners[2 * e], cb = edge_corners[2 * e + 1];
    const int sh = 2 - k;
    const int oa = (ca >> sh) & 1, ob = (cb >> sh) & 1;
    return (double)oa + t[e] * (double)(ob - oa);
}

// The local frame is kept small (8 float corner values and 12 edge parameters, 128 bytes,
// instead of 8 + 36 doubles): the points are recomputed from t when used, by the same
// expression, so the arithmetic (and the result) is that of the CPU twin.
__device__ double vb_cube_area(const float* __restrict__ f, vb_i64 nz, vb_i64 ny, vb_i64 nx,
                               vb_i64 z, vb_i64 y, vb_i64 x, double iso,
                               const signed char* __restrict__ table, const unsigned char* __restrict__ within,
                               int use_within, const int* __restrict__ edge_corners,
                               const int* __restrict__ face_corners) {
    float v[8];
    int config = 0;
    for (int c = 0; c < 8; ++c) {
        v[c] = f[((z + ((c >> 2) & 1)) * ny + (y + ((c >> 1) & 1))) * nx + (x + (c & 1))];
        if ((double)v[c] > iso) config |= 1 << c;
    }
    if (config == 0 || config == 255) return 0.0;
    int connected = 0;
    for (int j = 0; j < 6; ++j) {
        const double a = v[face_corners[4 * j]], b = v[face_corners[4 * j + 1]];
        const double c = v[face_corners[4 * j + 2]], d = v[face_corners[4 * j + 3]];
        if ((a > iso) == (c > iso) && (b > iso) == (d > iso) && (a > iso) != (b > iso)) {
            if ((a * c - b * d) / (a + c - b - d) > iso) connected |= 1 << j;  // saddle inside: inside corners join
        }
    }
    double t[12];
    for (int e = 0; e < 12; ++e) {
        const double va = v[edge_corners[2 * e]], vb = v[edge_corners[2 * e + 1]];
        t[e] = ((va > iso) != (vb > iso)) ? (iso - va) / (vb - va) : 0.0;
    }
    const signed char* row = table + (vb_i64)(config | (connected << 8)) * 16;
    double area = 0.0;
    int i = 0;
    while (i < 16 && row[i] != -2) {
        const int first = i;
        while (row[i] >= 0) ++i;
        const int m = i - first;
        double gz = 0.0, gy = 0.0, gx = 0.0;
        for (int q = first; q < i; ++q) {
            gz += vb_edge_point(edge_corners, t, row[q], 0);
            gy += vb_edge_point(edge_corners, t, row[q], 1);
            gx += vb_edge_point(edge_corners, t, row[q], 2);
        }
        gz /= m;
        gy /= m;
        gx /= m;
        for (int q = 0; q < m; ++q) {
            const int p = row[first + q], r = row[first + (q + 1) % m];
            const double pz = vb_edge_point(edge_corners, t, p, 0), py = vb_edge_point(edge_corners, t, p, 1),
                         px = vb_edge_point(edge_corners, t, p, 2);
            const double rz = vb_edge_point(edge_corners, t, r, 0), ry = vb_edge_point(edge_corners, t, r, 1),
                         rx = vb_edge_point(edge_corners, t, r, 2);
            const double az = pz - gz, ay = py - gy, ax = px - gx;
            const double bz = rz - gz, by = ry - gy, bx = rx - gx;
            const double cz = ay * bx - ax * by, cy = ax * bz - az * bx, cx = az * by - ay * bz;
            if (use_within) {
                const vb_i64 tz = vb_clamp_index((double)z + (pz + rz + gz) / 3.0, nz);
                const vb_i64 ty = vb_clamp_index((double)y + (py + ry + gy) / 3.0, ny);
                const vb_i64 tx = vb_clamp_index((double)x + (px + rx + gx) / 3.0, nx);
                if (within[(tz * ny + ty) * nx + tx] == 0) continue;
            }
            area += 0.5 * sqrt(cz * cz + cy * cy + cx * cx);
        }
        ++i;
    }
    return area;
}

extern "C" __global__ void vb_surface_area(const float* __restrict__ f, vb_i64 nz, vb_i64 ny, vb_i64 nx, double iso,
                                           const signed char* __restrict__ table,
                                           const unsigned char* __restrict__ within, int use_within,
                                           const int* __restrict__ edge_corners,
                                           const int* __restrict__ face_corners, double* __restrict__ partial) {
    const vb_i64 cz = nz - 1, cy = ny - 1, cx = nx - 1;
    const vb_i64 n = (cz > 0 && cy > 0 && cx > 0) ? cz * cy * cx : 0;
    double acc = 0.0;
    const vb_idx cxi = (vb_idx)cx, cyi = (vb_idx)cy;
    for (vb_idx i = vb_tid(); i < (vb_idx)n; i += vb_stride()) {
        const vb_idx x = i % cxi;
        const vb_idx y = (i / cxi) % cyi;
        const vb_idx z = i / (cxi * cyi);
        acc += vb_cube_area(f, nz, ny, nx, z, y, x, iso, table, within, use_within, edge_corners, face_corners);
    }
    partial[vb_tid()] = acc;
}
