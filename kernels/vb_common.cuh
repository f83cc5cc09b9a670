// voxelbone — definitions shared by every kernel.
//
// Compiled two ways:
//   * by NVRTC at run time (CuPy RawModule); voxelbone/kernels.py inlines this header
//     into the source string, so CuPy's cache key (source + options) covers it;
//   * by the host C++ compiler for the CPU tests, with host_grid.h force-included,
//     which runs the real launch grid on CPU threads (fibers per block, so
//     __syncthreads, shared memory and warp shuffles behave as on a device).
// Every per-voxel rule lives in a __device__ function so the host build executes
// exactly the arithmetic the GPU executes.
// No standard headers: NVRTC has none.
#pragma once

typedef unsigned int vb_u32;
typedef unsigned long long vb_u64;
typedef long long vb_i64;

// Region labels (voxelbone.volume.Region).
#define VB_OUTSIDE 0
#define VB_TRABECULAR 1
#define VB_CORTICAL 2

// Index arithmetic: 64-bit by default (volumes pass 2^31 voxels); compiled with
// -DVB_INDEX32=1 when every index of the launch, plus one grid stride, fits in a signed
// 32-bit int (voxelbone.kernels.index_defines decides), so the divisions and modulos
// of the grid-stride loops are 32-bit instead of 64-bit software sequences.
#if defined(VB_INDEX32) && VB_INDEX32
typedef int vb_idx;
#else
typedef long long vb_idx;
#endif

// First index and stride of a 1-D grid-stride loop.
__device__ __forceinline__ vb_idx vb_tid() {
    return (vb_idx)blockIdx.x * (vb_idx)blockDim.x + (vb_idx)threadIdx.x;
}
__device__ __forceinline__ vb_idx vb_stride() {
    return (vb_idx)blockDim.x * (vb_idx)gridDim.x;
}

// Dynamic shared memory: `VB_EXTERN_SHARED(float, buf);` declares `buf` (host build: the
// block's buffer of shared_mem bytes).
#ifdef VB_HOST_GRID
#define VB_EXTERN_SHARED(type, name) type* name = (type*)vbh_dynamic_shared()
#else
#define VB_EXTERN_SHARED(type, name) extern __shared__ type name[]
#endif

// Relaxed atomic load (reads a word other threads update with atomics, without a race).
#ifdef VB_HOST_GRID
__device__ __forceinline__ int vb_load_relaxed(const int* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
#else
__device__ __forceinline__ int vb_load_relaxed(const int* p) {
    int v;
    asm volatile("ld.relaxed.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
#endif

// The rule that keeps the float32 twins bit-identical under flush-to-zero: the device
// runs with -ftz=true (CuPy always passes it), NumPy keeps subnormals. Every quantity
// that decays towards zero (osteoid and mineral after mineralisation, bone, mineral and
// osteoid after a partial excavation) goes through vb_flush, which maps anything below
// VB_TINY to exactly 0 in both twins (voxelbone.remodel.cpu.flush_tiny). VB_TINY = 2^-64
// of a voxel is far below anything measurable and far above FLT_MIN (2^-126): the
// product of a stored value with any coefficient above 2^-62 (all of the model's: step
// factors, fractions >= 1/255) stays normal, so nothing subnormal ever reaches either
// twin's arithmetic (tests/test_kernels_grid.py runs 1120 days against the FTZ build).
#define VB_TINY 5.421010862427522e-20f
__device__ __forceinline__ float vb_flush(float x) {
    return (x < VB_TINY && x > -VB_TINY) ? 0.0f : x;
}

// ---------------------------------------------------------------------------
// Counter-based random numbers: a keyed hash of (seed, step, stream, index).
// SplitMix64's finaliser (Steele, Lea & Flood 2014) as the mixing function.
// voxelbone/rng.py computes the same bits with NumPy.
// ---------------------------------------------------------------------------
__device__ __forceinline__ vb_u64 vb_mix64(vb_u64 z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// 64 random bits for voxel/item `index` at time step `step` in stream `stream`.
__device__ __forceinline__ vb_u64 vb_hash(vb_u64 seed, vb_u64 step, vb_u64 stream, vb_u64 index) {
    vb_u64 k = vb_mix64(seed + 0x9E3779B97F4A7C15ULL);
    k = vb_mix64(k ^ ((step << 8) | (stream & 0xFFULL)));
    return vb_mix64(k ^ (index * 0xD1B54A32D192ED03ULL));
}

// Uniform float in [0, 1) with 24 random bits (exactly representable in float32).
__device__ __forceinline__ float vb_uniform(vb_u64 seed, vb_u64 step, vb_u64 stream, vb_u64 index) {
    return (float)(vb_hash(seed, step, stream, index) >> 40) * (1.0f / 16777216.0f);
}

__device__ __forceinline__ float vb_clamp01(float x) {
    return fminf(fmaxf(x, 0.0f), 1.0f);
}
