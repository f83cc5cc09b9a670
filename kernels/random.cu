// voxelbone — counter-based random numbers on the device (see vb_common.cuh).
#include "vb_common.cuh"

// out[i] = uniform draw for item first + i at (seed, step, stream).
extern "C" __global__ void vb_uniform_fill(vb_u64 seed, vb_u64 step, vb_u64 stream,
                                           vb_u64 first, vb_i64 n, float* __restrict__ out) {
    for (vb_idx i = vb_tid(); i < (vb_idx)n; i += vb_stride()) {
        out[i] = vb_uniform(seed, step, stream, first + (vb_u64)i);
    }
}
