// voxelbone — Euler characteristic of a binary volume (26-connected bone, 6-connected
// background) by counting 2x2x2 configurations at every corner point of the grid.
//
// The volume is treated as zero-padded: corner points run over (nz+1)(ny+1)(nx+1), and
// each point's configuration index has bit 4z+2y+x set when voxel (cz-1+z, cy-1+y,
// cx-1+x) is bone. The table `lut8` (256 entries, contribution x8, from
// voxelbone.metrics.connectivity.euler_lut) turns configurations into chi. Each thread
// sums its points; the block reduces the sums (warp shuffles, then one shared slot per
// warp) and adds its total with a single 64-bit atomic: one atomic per block, not per
// thread. Launch with blockDim.x a multiple of 32 (full warps), at most 1024.
#include "vb_common.cuh"

__device__ __forceinline__ int vb_voxel_at(const unsigned char* __restrict__ mask, vb_idx nz, vb_idx ny, vb_idx nx,
                                           vb_idx z, vb_idx y, vb_idx x) {
    if (z < 0 || y < 0 || x < 0 || z >= nz || y >= ny || x >= nx) return 0;
    return mask[(z * ny + y) * nx + x] != 0;
}

// Configuration index of corner point (cz, cy, cx), 0 <= c <= n.
__device__ __forceinline__ int vb_euler_config(const unsigned char* __restrict__ mask, vb_idx nz, vb_idx ny, vb_idx nx,
                                               vb_idx cz, vb_idx cy, vb_idx cx) {
    int cfg = 0;
    for (int dz = 0; dz < 2; ++dz)
        for (int dy = 0; dy < 2; ++dy)
            for (int dx = 0; dx < 2; ++dx)
                cfg |= vb_voxel_at(mask, nz, ny, nx, cz - 1 + dz, cy - 1 + dy, cx - 1 + dx) << (4 * dz + 2 * dy + dx);
    return cfg;
}

__device__ __forceinline__ long long vb_warp_sum(long long v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

extern "C" __global__ void vb_euler8(const unsigned char* __restrict__ mask, vb_i64 nz, vb_i64 ny, vb_i64 nx,
                                     const int* __restrict__ lut8, unsigned long long* __restrict__ total) {
    __shared__ long long warp_sums[32];
    const vb_idx z_n = (vb_idx)nz, y_n = (vb_idx)ny, x_n = (vb_idx)nx;
    const vb_idx py = y_n + 1, px = x_n + 1;
    const vb_idx n = (z_n + 1) * py * px;
    long long acc = 0;
    for (vb_idx i = vb_tid(); i < n; i += vb_stride()) {
        const vb_idx cx = i % px;
        const vb_idx cy = (i / px) % py;
        const vb_idx cz = i / (px * py);
        const int cfg = vb_euler_config(mask, z_n, y_n, x_n, cz, cy, cx);
        if (cfg != 0) acc += lut8[cfg];
    }
    const int lane = (int)(threadIdx.x & 31u), warp = (int)(threadIdx.x >> 5);
    acc = vb_warp_sum(acc);
    if (lane == 0) warp_sums[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        const int warps = (int)((blockDim.x + 31u) >> 5);
        acc = vb_warp_sum(lane < warps ? warp_sums[lane] : 0LL);
        // two's complement: adding the unsigned image of a negative sum subtracts it
        if (lane == 0 && acc != 0) atomicAdd(total, (unsigned long long)acc);
    }
}
