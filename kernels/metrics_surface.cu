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

__device__ double vb_cube_area(const float* __restrict__ f, vb_i64 nz, vb_i64 ny, vb_i64 nx,
                               vb_i64 z, vb_i64 y, vb_i64 x, double iso,
                               const signed char* __restrict__ table, const unsigned char* __restrict__ within,
                               int use_within, const int* __restrict__ edge_corners,
                               const int* __restrict__ face_corners) {
    double v[8];
    int config = 0;
    for (int c = 0; c < 8; ++c) {
        v[c] = (double)f[((z + ((c >> 2) & 1)) * ny + (y + ((c >> 1) & 1))) * nx + (x + (c & 1))];
        if (v[c] > iso) config |= 1 << c;
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
    double pts[12][3];
    for (int e = 0; e < 12; ++e) {
        const int ca = edge_corners[2 * e], cb = edge_corners[2 * e + 1];
        if ((v[ca] > iso) != (v[cb] > iso)) {
            const double t = (iso - v[ca]) / (v[cb] - v[ca]);
            const int oa[3] = {(ca >> 2) & 1, (ca >> 1) & 1, ca & 1};
            const int ob[3] = {(cb >> 2) & 1, (cb >> 1) & 1, cb & 1};
            for (int k = 0; k < 3; ++k) pts[e][k] = (double)oa[k] + t * (double)(ob[k] - oa[k]);
        }
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
            gz += pts[row[q]][0];
            gy += pts[row[q]][1];
            gx += pts[row[q]][2];
        }
        gz /= m;
        gy /= m;
        gx /= m;
        for (int q = 0; q < m; ++q) {
            const int p = row[first + q], r = row[first + (q + 1) % m];
            const double az = pts[p][0] - gz, ay = pts[p][1] - gy, ax = pts[p][2] - gx;
            const double bz = pts[r][0] - gz, by = pts[r][1] - gy, bx = pts[r][2] - gx;
            const double cz = ay * bx - ax * by, cy = ax * bz - az * bx, cx = az * by - ay * bz;
            if (use_within) {
                const vb_i64 tz = vb_clamp_index((double)z + (pts[p][0] + pts[r][0] + gz) / 3.0, nz);
                const vb_i64 ty = vb_clamp_index((double)y + (pts[p][1] + pts[r][1] + gy) / 3.0, ny);
                const vb_i64 tx = vb_clamp_index((double)x + (pts[p][2] + pts[r][2] + gx) / 3.0, nx);
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
    for (vb_i64 i = vb_tid(); i < n; i += vb_stride()) {
        const vb_i64 x = i % cx;
        const vb_i64 y = (i / cx) % cy;
        const vb_i64 z = i / (cx * cy);
        acc += vb_cube_area(f, nz, ny, nx, z, y, x, iso, table, within, use_within, edge_corners, face_corners);
    }
    partial[vb_tid()] = acc;
}
