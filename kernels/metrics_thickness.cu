// voxelbone — exact local thickness (Hildebrand & Rüegsegger 1997) on the device, the same
// algorithm as voxelbone/metrics/thickness.py (Numba), in integer arithmetic on both:
//   1. vb_ridge_flags: from the squared Euclidean distance map k (voxel units, exact
//      integers), keep the centres whose discrete ball {p : |p - c|^2 <= k} is not contained
//      in a 26-neighbour's ball. Containment is a table lookup: table[(c - 1) * (k_max + 1) + k]
//      is the smallest squared radius a neighbour at offset class c (|d|^2 = 1, 2, 3) needs
//      to hold the ball (voxelbone.metrics.thickness.ball_containment_table);
//   2. vb_insert_balls: every kept centre writes its diameter 2*sqrt(k) into each mask voxel
//      of its ball, keeping the largest; diameters are positive floats, so their bit
//      patterns order as integers and atomicMax on the int view keeps the largest.
#include "vb_common.cuh"

// floor(sqrt(v)) for 0 <= v < 2^52: the double square root is correctly rounded.
__device__ __forceinline__ vb_i64 vb_isqrt(vb_i64 v) { return (vb_i64)sqrt((double)v); }

extern "C" __global__ void vb_ridge_flags(const int* __restrict__ k2, const int* __restrict__ table, vb_i64 k_max,
                                          vb_i64 nz, vb_i64 ny, vb_i64 nx, unsigned char* __restrict__ keep) {
    const vb_i64 n = nz * ny * nx;
    for (vb_i64 i = vb_tid(); i < n; i += vb_stride()) {
        const int k = k2[i];
        unsigned char flag = 0;
        if (k > 0) {
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
                        const int c = dz * dz + dy * dy + dx * dx;
                        if (xx < 0 || xx >= nx || c == 0) continue;
                        if (k2[(zz * ny + yy) * nx + xx] >= table[(c - 1) * (k_max + 1) + k]) { contained = 1; break; }
                    }
                }
            }
            flag = contained ? 0 : 1;
        }
        keep[i] = flag;
    }
}

extern "C" __global__ void vb_insert_balls(const long long* __restrict__ cz, const long long* __restrict__ cy,
                                           const long long* __restrict__ cx, const int* __restrict__ ck,
                                           vb_i64 n_centres, const unsigned char* __restrict__ mask,
                                           vb_i64 nz, vb_i64 ny, vb_i64 nx, int* __restrict__ out_bits) {
    for (vb_i64 i = vb_tid(); i < n_centres; i += vb_stride()) {
        const vb_i64 k = ck[i];
        const float diam = 2.0f * (float)sqrt((double)k);
        const int bits = __float_as_int(diam);
        const vb_i64 rz = vb_isqrt(k);
        const vb_i64 z0 = cz[i] - rz < 0 ? 0 : cz[i] - rz;
        const vb_i64 z1 = cz[i] + rz > nz - 1 ? nz - 1 : cz[i] + rz;
        for (vb_i64 z = z0; z <= z1; ++z) {
            const vb_i64 rem = k - (z - cz[i]) * (z - cz[i]);
            const vb_i64 ry = vb_isqrt(rem);
            const vb_i64 y0 = cy[i] - ry < 0 ? 0 : cy[i] - ry;
            const vb_i64 y1 = cy[i] + ry > ny - 1 ? ny - 1 : cy[i] + ry;
            for (vb_i64 y = y0; y <= y1; ++y) {
                const vb_i64 rx = vb_isqrt(rem - (y - cy[i]) * (y - cy[i]));
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
