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
//      block per ball, its threads over the ball's rows (launch: 128 threads per block).
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
    // one block per ball (grid-stride over balls), its threads over the ball's (z, y) rows:
    // a marrow ball of radius 30 voxels has ~2800 rows, so large balls no longer serialise
    // on one thread while the rest of its warp idles
    for (vb_i64 i = blockIdx.x; i < n_centres; i += gridDim.x) {
        const vb_i64 k = ck[i];
        const int bits = __float_as_int(2.0f * (float)sqrt((double)k));
        const vb_i64 r = vb_isqrt(k);
        const vb_i64 side = 2 * r + 1;
        for (vb_i64 row = threadIdx.x; row < side * side; row += blockDim.x) {
            const vb_i64 dz = row / side - r, dy = row % side - r;
            const vb_i64 z = cz[i] + dz, y = cy[i] + dy;
            const vb_i64 rem = k - dz * dz - dy * dy;
            if (rem < 0 || z < 0 || z >= nz || y < 0 || y >= ny) continue;
            const vb_i64 rx = vb_isqrt(rem);
            const vb_i64 x0 = cx[i] - rx < 0 ? 0 : cx[i] - rx;
            const vb_i64 x1 = cx[i] + rx > nx - 1 ? nx - 1 : cx[i] + rx;
            for (vb_i64 x = x0; x <= x1; ++x) {
                const vb_i64 j = (z * ny + y) * nx + x;
                if (mask[j] && out_bits[j] < bits) atomicMax(&out_bits[j], bits);
            }
        }
    }
}
