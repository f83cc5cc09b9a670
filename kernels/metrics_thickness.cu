// voxelbone — exact local thickness (Hildebrand & Rüegsegger 1997) on the device, the same
// algorithm as voxelbone/metrics/thickness.py (Numba):
//   1. vb_ridge_flags: from the Euclidean distance map (voxel units), keep the centres
//      whose ball is not contained in a 26-neighbour's ball (dist[n] >= dist[c] + |n - c|);
//   2. vb_insert_balls: every kept centre writes its diameter 2r into each mask voxel of
//      its ball (dz^2 + dy^2 + dx^2 <= r^2, evaluated exactly as the CPU does), keeping the
//      largest; diameters are positive floats, so their bit patterns order as integers and
//      atomicMax on the int view keeps the largest.
#include "vb_common.cuh"

extern "C" __global__ void vb_ridge_flags(const float* __restrict__ dist, vb_i64 nz, vb_i64 ny, vb_i64 nx,
                                          unsigned char* __restrict__ keep) {
    const vb_i64 n = nz * ny * nx;
    for (vb_i64 i = vb_tid(); i < n; i += vb_stride()) {
        const float r = dist[i];
        unsigned char k = 0;
        if (r > 0.0f) {
            const vb_i64 x = i % nx, y = (i / nx) % ny, z = i / (nx * ny);
            int contained = 0;
            for (int dz = -1; dz <= 1 && !contained; ++dz) {
                const vb_i64 zz = z + dz;
                if (zz < 0 || zz >= nz) continue;
                for (int dy = -1; dy <= 1 && !contained; ++dy) {
                    const vb_i64 yy = y + dy;
                    if (yy < 0 || yy >= ny) continue;
                    for (int dx = -1; dx <= 1; ++dx) {
                        const vb_i64 xx = x + dx;
                        if (xx < 0 || xx >= nx || (dz == 0 && dy == 0 && dx == 0)) continue;
                        const float step = sqrtf((float)(dz * dz + dy * dy + dx * dx));
                        if (dist[(zz * ny + yy) * nx + xx] >= r + step) { contained = 1; break; }
                    }
                }
            }
            k = contained ? 0 : 1;
        }
        keep[i] = k;
    }
}

extern "C" __global__ void vb_insert_balls(const long long* __restrict__ cz, const long long* __restrict__ cy,
                                           const long long* __restrict__ cx, const float* __restrict__ cr,
                                           vb_i64 n_centres, const unsigned char* __restrict__ mask,
                                           vb_i64 nz, vb_i64 ny, vb_i64 nx, int* __restrict__ out_bits) {
    for (vb_i64 i = vb_tid(); i < n_centres; i += vb_stride()) {
        const float r = cr[i];
        const float diam = 2.0f * r;
        const int bits = __float_as_int(diam);
        const vb_i64 rz = (vb_i64)floorf(r);
        const vb_i64 z0 = cz[i] - rz < 0 ? 0 : cz[i] - rz;
        const vb_i64 z1 = cz[i] + rz > nz - 1 ? nz - 1 : cz[i] + rz;
        for (vb_i64 z = z0; z <= z1; ++z) {
            const float dz = (float)(z - cz[i]);
            const float rem = r * r - dz * dz;
            if (rem < 0.0f) continue;
            const vb_i64 ry = (vb_i64)floorf(sqrtf(rem));
            const vb_i64 y0 = cy[i] - ry < 0 ? 0 : cy[i] - ry;
            const vb_i64 y1 = cy[i] + ry > ny - 1 ? ny - 1 : cy[i] + ry;
            for (vb_i64 y = y0; y <= y1; ++y) {
                const float dy = (float)(y - cy[i]);
                const float rem2 = rem - dy * dy;
                if (rem2 < 0.0f) continue;
                const vb_i64 rx = (vb_i64)floorf(sqrtf(rem2));
                const vb_i64 x0 = cx[i] - rx < 0 ? 0 : cx[i] - rx;
                const vb_i64 x1 = cx[i] + rx > nx - 1 ? nx - 1 : cx[i] + rx;
                for (vb_i64 x = x0; x <= x1; ++x) {
                    const vb_i64 j = (z * ny + y) * nx + x;
                    if (mask[j] && out_bits[j] < bits) atomicMax(&out_bits[j], bits);
                }
            }
        }
    }
}
