// voxelbone — host shim: lets the kernels in this folder compile with a C++
// compiler for the CPU tests (force-included with -include host_shim.h).
// One block of one thread: grid-stride loops then visit every item in order,
// and atomics are plain read-modify-writes. Not used by NVRTC.
#pragma once
#include <math.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict

struct vb_dim3 { unsigned int x, y, z; };
static const vb_dim3 threadIdx = {0u, 0u, 0u};
static const vb_dim3 blockIdx = {0u, 0u, 0u};
static const vb_dim3 blockDim = {1u, 1u, 1u};
static const vb_dim3 gridDim = {1u, 1u, 1u};

static inline unsigned int atomicAdd(unsigned int* a, unsigned int v) { unsigned int o = *a; *a = o + v; return o; }
static inline int atomicAdd(int* a, int v) { int o = *a; *a = o + v; return o; }
static inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) { unsigned long long o = *a; *a = o + v; return o; }
static inline float atomicAdd(float* a, float v) { float o = *a; *a = o + v; return o; }
static inline double atomicAdd(double* a, double v) { double o = *a; *a = o + v; return o; }
static inline unsigned int atomicMin(unsigned int* a, unsigned int v) { unsigned int o = *a; if (v < o) *a = v; return o; }
static inline unsigned long long atomicMin(unsigned long long* a, unsigned long long v) { unsigned long long o = *a; if (v < o) *a = v; return o; }
static inline int atomicMax(int* a, int v) { int o = *a; if (v > o) *a = v; return o; }
static inline unsigned int atomicMax(unsigned int* a, unsigned int v) { unsigned int o = *a; if (v > o) *a = v; return o; }
#include <string.h>
static inline int __float_as_int(float f) { int i; memcpy(&i, &f, sizeof i); return i; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, sizeof f); return f; }
