// voxelbone — Euler characteristic of a binary volume (26-connected bone, 6-connected
// background) by counting 2x2x2 configurations at every corner point of the grid.
//
// The volume is treated as zero-padded: corner points run over (nz+1)(ny+1)(nx+1), and
// each point's configuration index has bit 4z+2y+x set when voxel (cz-1+z, cy-1+y,
// cx-1+x) is bone. The table `lut8` (256 entries, contribution x8, from
// voxelbone.metrics.connectivity.euler_lut) turns configurations into chi; the sum is
// accumulated per thread and added once with a 64-bit atomic.
#include "vb_common.cuh"

__device__ __forceinline__ int vb_voxel_at(const unsigned char* __restrict__ mask, vb_i64 nz, vb_i64 ny, vb_i64 nx,
                                           vb_i64 z, vb_i64 y, vb_i64 x) {
    if (z < 0 || y < 0 || x < 0 || z >= nz || y >= ny || x >= nx) return 0;
    return mask[(z * ny + y) * nx + x] != 0;
}

// Configuration index of corner point (cz, cy, cx), 0 <= c <= n.
__device__ __forceinline__ int vb_euler_config(const unsigned char* __restrict__ mask, vb_i64 nz, vb_i64 ny, vb_i64 nx,
                                               vb_i64 cz, vb_i64 cy, vb_i64 cx) {
    int cfg = 0;
    for (int dz = 0; dz < 2; ++dz)
        for (int dy = 0; dy < 2; ++dy)
            for (int dx = 0; dx < 2; ++dx)
                cfg |= vb_voxel_at(mask, nz, ny, nx, cz - 1 + dz, cy - 1 + dy, cx - 1 + dx) << (4 * dz + 2 * dy + dx);
    return cfg;
}

extern "C" __global__ void vb_euler8(const unsigned char* __restrict__ mask, vb_i64 nz, vb_i64 ny, vb_i64 nx,
                                     const int* __restrict__ lut8, unsigned long long* __restrict__ total) {
    const vb_i64 pz = nz + 1, py = ny + 1, px = nx + 1;
    const vb_i64 n = pz * py * px;
    long long acc = 0;
    for (vb_i64 i = vb_tid(); i < n; i += vb_stride()) {
        const vb_i64 cx = i % px;
        const vb_i64 cy = (i / px) % py;
        const vb_i64 cz = i / (px * py);
        const int cfg = vb_euler_config(mask, nz, ny, nx, cz, cy, cx);
        if (cfg != 0) acc += lut8[cfg];
    }
    // two's complement: adding the unsigned image of a negative sum subtracts it
    if (acc != 0) atomicAdd(total, (unsigned long long)acc);
}
