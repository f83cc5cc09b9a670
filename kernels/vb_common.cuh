// voxelbone — definitions shared by every kernel.
//
// Compiled two ways:
//   * by NVRTC at run time (CuPy RawModule), with -I pointing at this folder;
//   * by the host C++ compiler for the CPU tests, with host_shim.h force-included,
//     which maps the CUDA built-ins onto a single sequential "thread".
// Kernels therefore use grid-stride loops only, never __syncthreads or shared
// memory, and every per-voxel rule lives in a __device__ function so the host
// build executes exactly the arithmetic the GPU executes.
// No standard headers: NVRTC has none.
#pragma once

typedef unsigned int vb_u32;
typedef unsigned long long vb_u64;
typedef long long vb_i64;

// Region labels (voxelbone.volume.Region).
#define VB_OUTSIDE 0
#define VB_TRABECULAR 1
#define VB_CORTICAL 2

// First index and stride of a 1-D grid-stride loop (64-bit: volumes pass 2^31 voxels).
__device__ __forceinline__ vb_i64 vb_tid() {
    return (vb_i64)blockIdx.x * (vb_i64)blockDim.x + (vb_i64)threadIdx.x;
}
__device__ __forceinline__ vb_i64 vb_stride() {
    return (vb_i64)blockDim.x * (vb_i64)gridDim.x;
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
