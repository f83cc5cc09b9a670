// voxelbone — exact local thickness (Hildebrand & Rüegsegger 1997) on the device, the same
// algorithm as voxelbone/metrics/thickness.py (Numba), in integer arithmetic on both:
//   1. vb_ridge_flags: from the squared Euclidean distance map k (voxel units, exact
//      integers), keep the centres whose discrete ball {p : |p - c|^2 <= k} is not contained
//      in a 26-neighbour's ball. Containment is a table lookup: table[(c - 1) * (k_max + 1) + k]
//      is the smallest squared radius a neighbour at offset class c (|d|^2 = 1, 2, 3) needs
//      to hold the ball (voxelbone.metrics.thickness.ball_containment_table);
//   2. vb_insert_balls: every kept centre writes its diameter 2*sqrt(k) into each mask voxel
//      of its ball, keeping the largest; diameters are positive floats, so their bit
//      patterns order as integers and atomicMax on the int view keeps the largest. One
//      warp per ball (several balls per block, so a small ball never leaves a block
//      idle); the lanes walk a small ball's bounding cube, or a large ball's slabs one
//      at a time, with x fastest, so a warp's loads and stores hit consecutive voxels. The pre-check that skips voxels already
//      holding a larger diameter is a relaxed atomic load, not a plain read racing with
//      the atomicMax of other warps.
#include "vb_common.cuh"

// floor(sqrt(v)) for 0 <= v < 2^52: the double square root is correctly rounded.
__device__ __forceinline__ vb_i64 vb_isqrt(vb_i64 v) { return (vb_i64)sqrt((double)v); }

extern "C" __global__ void vb_ridge_flags(const int* __restrict__ k2, const int* __restrict__ table, vb_i64 k_max,
                                          vb_i64 nz, vb_i64 ny, vb_i64 nx, unsigned char* __restrict__ keep) {
    const vb_i64 n = nz * ny * nx;
    const vb_idx nxi = (vb_idx)nx, nyi = (vb_idx)ny;
    for (vb_idx i = vb_tid(); i < (vb_idx)n; i += vb_stride()) {
        const int k = k2[i];
        unsigned char flag = 0;
        if (k > 0) {
            const vb_idx x = i % nxi, y = (i / nxi) % nyi, z = i / (nxi * nyi);
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
    const vb_i64 warps_per_block = (vb_i64)(blockDim.x >> 5);
    const vb_i64 first = (vb_i64)blockIdx.x * warps_per_block + (vb_i64)(threadIdx.x >> 5);
    const vb_i64 step = (vb_i64)gridDim.x * warps_per_block;
    const int lane = (int)(threadIdx.x & 31u);
    for (vb_i64 i = first; i < n_centres; i += step) {
        const int k = ck[i];
        const int bits = __float_as_int(2.0f * (float)sqrt((double)k));
        const int r = (int)vb_isqrt(k);
        const int side = 2 * r + 1;
        // small balls: the lanes walk the whole bounding cube (one or a few passes);
        // large balls: one z slab at a time, over the square that holds the slab's disc
        const int small = side <= 15;
        const int slabs = small ? 1 : side;
        for (int s = 0; s < slabs; ++s) {
            const int ez_slab = s - r;
            const int rs = small ? r : (int)vb_isqrt(k - ez_slab * ez_slab);
            const int ss = 2 * rs + 1;
            const int count = small ? side * side * side : ss * ss;   // fits: r < 23170 voxels
            for (int t = lane; t < count; t += 32) {
                const int ex = t % ss - rs, ey = (t / ss) % ss - rs;
                const int ez = small ? t / (ss * ss) - r : ez_slab;
                if ((vb_i64)ez * ez + (vb_i64)ey * ey + (vb_i64)ex * ex > (vb_i64)k) continue;
                const vb_i64 z = cz[i] + ez, y = cy[i] + ey, x = cx[i] + ex;
                if (z < 0 || z >= nz || y < 0 || y >= ny || x < 0 || x >= nx) continue;
                const vb_i64 j = (z * ny + y) * nx + x;
                if (mask[j] && vb_load_relaxed(&out_bits[j]) < bits) atomicMax(&out_bits[j], bits);
            }
        }
    }
}
