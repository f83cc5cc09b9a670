// voxelbone — grid host build: runs the kernels of this folder on CPU threads with their
// real launch configuration (force-included with -include host_grid.h; never seen by NVRTC).
//
//  * Blocks are taken by a pool of std::threads in a chosen order (forward, reverse,
//    shuffled); blockIdx/threadIdx/blockDim/gridDim are thread_local.
//  * A block's threads are fibers (ucontext) of one worker: kernels that use
//    __syncthreads, __shared__ or warp intrinsics run with every thread of the block
//    alive at once, switching at each barrier; a warp is 32 consecutive threads that meet
//    at every shuffle. Kernels without them (decided per source file) run their threads
//    as plain calls, one after the other, which is one legal schedule.
//  * Atomics are GCC __atomic builtins (relaxed, as CUDA's), float/double by CAS loops.
//  * Built with -fsanitize=thread every kernel runs as fibers that ThreadSanitizer sees
//    as threads (switching without synchronisation), so a race between two threads of
//    one block is reported as well as one between blocks on different workers.
//  * FTZ/DAZ (the device's -ftz=true for float32) is set per worker when asked.
#pragma once
#define VB_HOST_GRID 1

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <sys/mman.h>
#include <xmmintrin.h>

#include <algorithm>
#include <atomic>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
// shared memory: one copy per worker thread, i.e. per running block (fibers share it)
#define __shared__ static thread_local

struct vb_dim3 { unsigned int x, y, z; };
inline thread_local vb_dim3 threadIdx = {0u, 0u, 0u};
inline thread_local vb_dim3 blockIdx = {0u, 0u, 0u};
inline thread_local vb_dim3 blockDim = {1u, 1u, 1u};
inline thread_local vb_dim3 gridDim = {1u, 1u, 1u};
static const int warpSize = 32;

#if defined(__SANITIZE_THREAD__)
#define VBH_TSAN 1
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
}
// The runtime's own bookkeeping (fiber states, barrier counters, warp slots) is written
// with ThreadSanitizer ignoring the accesses: only the kernels' memory is checked.
#define VBH_QUIET_BEGIN() __tsan_ignore_thread_begin()
#define VBH_QUIET_END() __tsan_ignore_thread_end()
#else
#define VBH_TSAN 0
#define VBH_QUIET_BEGIN() ((void)0)
#define VBH_QUIET_END() ((void)0)
#endif

namespace vbh {

[[noreturn]] inline void fatal(const char* msg) {
    fprintf(stderr, "voxelbone host grid: %s\n", msg);
    fflush(stderr);
    abort();
}

// ---------------------------------------------------------------------------------
// fibers of one block
// ---------------------------------------------------------------------------------
enum { F_READY = 0, F_WAIT_BLOCK = 1, F_WAIT_WARP = 2, F_DONE = 3 };

struct Fiber {
    ucontext_t ctx;
    char* stack = nullptr;
    size_t stack_size = 0;
    void* tsan = nullptr;
    int state = F_READY;
    unsigned wait_gen = 0;
    int lin = 0;          // linear thread index in the block
    vb_dim3 tid{0u, 0u, 0u};
};

struct Block {
    ucontext_t sched;
    void* sched_tsan = nullptr;
    std::vector<Fiber> fibers;
    std::vector<int> order;        // scheduling order of the fibers
    int nthreads = 0;
    Fiber* cur = nullptr;
    unsigned block_gen = 0;
    int block_arrived = 0;
    unsigned warp_gen[32] = {};
    int warp_arrived[32] = {};
    uint64_t warp_slot[32][32] = {};
    int token = 0;                 // happens-before between successive blocks (TSan)
    void (*body)(void*) = nullptr;
    void* ctx = nullptr;
    const char* error = nullptr;
};

inline thread_local Block* tl_block = nullptr;
inline thread_local std::vector<unsigned char>* tl_dynamic_shared = nullptr;

inline void yield_to_scheduler() {
    Block* b = tl_block;
    Fiber* f = b->cur;
#if VBH_TSAN
    __tsan_switch_to_fiber(b->sched_tsan, 1u);
#endif
    swapcontext(&f->ctx, &b->sched);
}

inline void fiber_entry() {
    Block* b = tl_block;
#if VBH_TSAN
    __tsan_acquire(&b->token);
#endif
    b->body(b->ctx);
#if VBH_TSAN
    __tsan_release(&b->token);
#endif
    VBH_QUIET_BEGIN();
    b->cur->state = F_DONE;
    VBH_QUIET_END();
    yield_to_scheduler();
    fatal("a finished fiber was resumed");
}

inline int warp_size_of(const Block* b, int warp) {
    int rest = b->nthreads - 32 * warp;
    return rest < 32 ? rest : 32;
}

// Barrier of the whole block (generation counting); every thread must arrive.
inline void block_barrier() {
    Block* b = tl_block;
    if (!b) fatal("__syncthreads() in a kernel launched without fibers (kernels.py decides per file)");
    Fiber* f = b->cur;
#if VBH_TSAN
    __tsan_release(&b->block_gen);
#endif
    VBH_QUIET_BEGIN();
    f->wait_gen = b->block_gen;
    f->state = F_WAIT_BLOCK;
    if (++b->block_arrived == b->nthreads) {
        b->block_arrived = 0;
        ++b->block_gen;
    }
    VBH_QUIET_END();
    yield_to_scheduler();
#if VBH_TSAN
    __tsan_acquire(&b->block_gen);
#endif
}

// Barrier of one warp. `ordering`: __syncwarp orders memory among the lanes; a shuffle
// only exchanges registers, so it must not hide a race on memory from the sanitizer.
inline void warp_barrier(bool ordering = true) {
    Block* b = tl_block;
    if (!b) fatal("warp intrinsic in a kernel launched without fibers (kernels.py decides per file)");
    Fiber* f = b->cur;
    const int w = f->lin / 32;
#if VBH_TSAN
    if (ordering) __tsan_release(&b->warp_gen[w]);
#endif
    VBH_QUIET_BEGIN();
    f->wait_gen = b->warp_gen[w];
    f->state = F_WAIT_WARP;
    if (++b->warp_arrived[w] == warp_size_of(b, w)) {
        b->warp_arrived[w] = 0;
        ++b->warp_gen[w];
    }
    VBH_QUIET_END();
    yield_to_scheduler();
#if VBH_TSAN
    if (ordering) __tsan_acquire(&b->warp_gen[w]);
#endif
    (void)ordering;
}

// Run every fiber of the block until all are done; a barrier nobody can pass is an error.
inline void schedule(Block* b) {
    for (;;) {
        bool progress = false, all_done = true;
        for (int k : b->order) {
            Fiber* f = &b->fibers[k];
            if (f->state == F_DONE) continue;
            all_done = false;
            if (f->state == F_WAIT_BLOCK && f->wait_gen == b->block_gen) continue;
            if (f->state == F_WAIT_WARP && f->wait_gen == b->warp_gen[f->lin / 32]) continue;
            f->state = F_READY;
            b->cur = f;
            threadIdx = f->tid;
#if VBH_TSAN
            __tsan_switch_to_fiber(f->tsan, 1u);
#endif
            swapcontext(&b->sched, &f->ctx);
            progress = true;
        }
        if (all_done) return;
        if (!progress) {
            b->error = "deadlock: a __syncthreads() or warp intrinsic was not reached by every thread "
                       "of the block (a GPU would hang or give undefined results)";
            return;
        }
    }
}

// ---------------------------------------------------------------------------------
// launch
// ---------------------------------------------------------------------------------
struct Config {
    unsigned grid[3];
    unsigned block[3];
    uint64_t shared_mem;
    int order;          // 0 forward, 1 reverse, 2 shuffled
    uint64_t order_seed;
    int ftz;
    int workers;
};
static_assert(sizeof(Config) == 56, "voxelbone/kernels.py packs vbh::Config as 56 bytes");

inline std::vector<int> permutation(int n, int order, uint64_t seed) {
    std::vector<int> p(n);
    std::iota(p.begin(), p.end(), 0);
    if (order == 1) std::reverse(p.begin(), p.end());
    if (order == 2) {
        std::mt19937_64 rng(seed);
        std::shuffle(p.begin(), p.end(), rng);
    }
    return p;
}

inline vb_dim3 unflatten(uint64_t i, const unsigned d[3]) {
    vb_dim3 r;
    r.x = (unsigned)(i % d[0]);
    r.y = (unsigned)((i / d[0]) % d[1]);
    r.z = (unsigned)(i / ((uint64_t)d[0] * d[1]));
    return r;
}

struct Shared {
    const Config* cfg;
    void (*body)(void*);
    void* ctx;
    bool fibers;
    std::vector<uint64_t> block_order;
    std::atomic<uint64_t> next{0};
    std::atomic<int> failed{0};
    std::string error;
};

inline void worker(Shared* s) {
    VBH_QUIET_BEGIN();  // the worker itself only schedules; kernel code runs in fibers
    const Config& c = *s->cfg;
    // FTZ (bit 15) and DAZ (bit 6) as asked, whatever the calling thread had
    _mm_setcsr(c.ftz ? (_mm_getcsr() | 0x8040u) : (_mm_getcsr() & ~0x8040u));
    blockDim = {c.block[0], c.block[1], c.block[2]};
    gridDim = {c.grid[0], c.grid[1], c.grid[2]};
    const int nthreads = (int)(c.block[0] * c.block[1] * c.block[2]);
    std::vector<unsigned char> dyn(c.shared_mem ? c.shared_mem : 1);
    tl_dynamic_shared = &dyn;
    Block blk;
    blk.nthreads = nthreads;
    blk.body = s->body;
    blk.ctx = s->ctx;
    if (s->fibers) {
        const size_t stack = VBH_TSAN ? (1u << 20) : (256u << 10);
        blk.fibers.resize(nthreads);
        for (int t = 0; t < nthreads; ++t) {
            Fiber& f = blk.fibers[t];
            f.lin = t;
            f.tid = unflatten((uint64_t)t, c.block);
            f.stack_size = stack;
            void* m = mmap(nullptr, stack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (m == MAP_FAILED) fatal("cannot map a fiber stack");
            f.stack = (char*)m;
#if VBH_TSAN
            f.tsan = __tsan_create_fiber(0u);
#endif
        }
#if VBH_TSAN
        blk.sched_tsan = __tsan_get_current_fiber();
#endif
        tl_block = &blk;
    }
    const uint64_t nblocks = s->block_order.size();
    for (;;) {
        if (s->failed.load(std::memory_order_relaxed)) break;
        const uint64_t k = s->next.fetch_add(1, std::memory_order_relaxed);
        if (k >= nblocks) break;
        const uint64_t bid = s->block_order[k];
        blockIdx = unflatten(bid, c.grid);
        blk.order = permutation(nthreads, c.order, c.order_seed * 0x9E3779B97F4A7C15ULL + bid);
        if (!s->fibers) {
            for (int t : blk.order) {
                threadIdx = unflatten((uint64_t)t, c.block);
                s->body(s->ctx);
            }
            continue;
        }
        blk.block_gen = 0;
        blk.block_arrived = 0;
        memset(blk.warp_gen, 0, sizeof blk.warp_gen);
        memset(blk.warp_arrived, 0, sizeof blk.warp_arrived);
        for (Fiber& f : blk.fibers) {
            getcontext(&f.ctx);
            f.ctx.uc_stack.ss_sp = f.stack;
            f.ctx.uc_stack.ss_size = f.stack_size;
            f.ctx.uc_link = nullptr;
            makecontext(&f.ctx, (void (*)())fiber_entry, 0);
            f.state = F_READY;
        }
#if VBH_TSAN
        __tsan_release(&blk.token);  // the launch's inputs happen before the block
#endif
        schedule(&blk);
#if VBH_TSAN
        __tsan_acquire(&blk.token);  // the block happens before the end of the launch
#endif
        if (blk.error) {
            if (!s->failed.exchange(1)) s->error = blk.error;
            break;
        }
    }
    if (s->fibers) {
        for (Fiber& f : blk.fibers) {
#if VBH_TSAN
            __tsan_destroy_fiber(f.tsan);
#endif
            munmap(f.stack, f.stack_size);
        }
        tl_block = nullptr;
    }
    tl_dynamic_shared = nullptr;
    VBH_QUIET_END();
}

// Run body(ctx) for every thread of the grid; 0 on success, else 1 with a message in err.
inline int run_grid(const Config* c, void (*body)(void*), void* ctx, bool fibers, char* err, size_t errlen) {
    Shared s;
    s.cfg = c;
    s.body = body;
    s.ctx = ctx;
    s.fibers = fibers || VBH_TSAN;
    const uint64_t nblocks = (uint64_t)c->grid[0] * c->grid[1] * c->grid[2];
    s.block_order.resize(nblocks);
    std::iota(s.block_order.begin(), s.block_order.end(), (uint64_t)0);
    if (c->order == 1) std::reverse(s.block_order.begin(), s.block_order.end());
    if (c->order == 2) {
        std::mt19937_64 rng(c->order_seed);
        std::shuffle(s.block_order.begin(), s.block_order.end(), rng);
    }
    int nw = c->workers < 1 ? 1 : c->workers;
    if ((uint64_t)nw > nblocks) nw = (int)nblocks;
    std::vector<std::thread> pool;
    for (int w = 0; w < nw; ++w) pool.emplace_back(worker, &s);
    for (auto& t : pool) t.join();
    if (s.failed.load()) {
        snprintf(err, errlen, "%s", s.error.c_str());
        return 1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------
// kernel thunks: unpack argv (pointers to each argument's value) into the call
// ---------------------------------------------------------------------------------
template <class... A>
struct Call {
    void (*k)(A...);
    void** argv;
};

template <class... A, size_t... I>
inline void invoke(const Call<A...>* c, std::index_sequence<I...>) {
    c->k(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(c->argv[I])...);
}

template <class... A>
inline void trampoline(void* p) {
    invoke(static_cast<const Call<A...>*>(p), std::index_sequence_for<A...>{});
}

template <class... A>
inline int launch(void (*k)(A...), const Config* c, void** argv, bool fibers, char* err, size_t errlen) {
    Call<A...> call{k, argv};
    return run_grid(c, &trampoline<A...>, &call, fibers, err, errlen);
}

// Parameter list as the compiler sees it: "p" pointer / "s" scalar, "c" if the pointee
// is const, the kind (i signed, u unsigned, f float, b bool, v void, r record) and the size.
template <class T>
inline void describe_one(std::string& s) {
    using P = std::remove_cv_t<T>;
    using V = std::conditional_t<std::is_pointer_v<P>, std::remove_pointer_t<P>, P>;
    using B = std::remove_cv_t<V>;
    s += std::is_pointer_v<P> ? "p" : "s";
    if (std::is_pointer_v<P> && std::is_const_v<V>) s += "c";
    if constexpr (std::is_void_v<B>) {
        s += "v0";
    } else {
        const char kind = std::is_same_v<B, bool> ? 'b'
                          : std::is_floating_point_v<B> ? 'f'
                          : std::is_integral_v<B> ? (std::is_signed_v<B> ? 'i' : 'u')
                          : 'r';
        s += kind;
        s += std::to_string(sizeof(B));
    }
    s += ";";
}

template <class... A>
inline std::string describe(void (*)(A...)) {
    std::string s;
    (describe_one<A>(s), ...);
    return s;
}

}  // namespace vbh

// ---------------------------------------------------------------------------------
// CUDA built-ins
// ---------------------------------------------------------------------------------
__device__ inline void __syncthreads() { vbh::block_barrier(); }
__device__ inline void __syncwarp(unsigned = 0xffffffffu) { vbh::warp_barrier(); }
__device__ inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

template <class T, class F>
__device__ inline T vbh_exchange(T v, F pick) {
    static_assert(sizeof(T) <= 8, "warp shuffle of more than 8 bytes");
    vbh::Block* b = vbh::tl_block;
    if (!b) vbh::fatal("warp shuffle in a kernel launched without fibers (kernels.py decides per file)");
    const int lin = b->cur->lin, w = lin / 32, lane = lin % 32;
    VBH_QUIET_BEGIN();
    memcpy(&b->warp_slot[w][lane], &v, sizeof(T));
    VBH_QUIET_END();
    vbh::warp_barrier(false);
    const int src = pick(lane);
    T r = v;
    if (src >= 0 && src < vbh::warp_size_of(b, w)) memcpy(&r, &b->warp_slot[w][src], sizeof(T));
    vbh::warp_barrier(false);  // nobody overwrites a slot before every lane has read it
    return r;
}

template <class T>
__device__ inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
    return vbh_exchange(v, [=](int lane) { return (lane % width) + (int)delta < width ? lane + (int)delta : -1; });
}
template <class T>
__device__ inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
    return vbh_exchange(v, [=](int lane) { return (lane % width) >= (int)delta ? lane - (int)delta : -1; });
}
template <class T>
__device__ inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
    return vbh_exchange(v, [=](int lane) {
        const int s = lane ^ mask;
        return (s / width == lane / width) ? s : -1;
    });
}
template <class T>
__device__ inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
    return vbh_exchange(v, [=](int lane) { return (lane / width) * width + (src % width); });
}
__device__ inline unsigned __ballot_sync(unsigned, int pred) {
    vbh::Block* b = vbh::tl_block;
    if (!b) vbh::fatal("__ballot_sync in a kernel launched without fibers (kernels.py decides per file)");
    const int lin = b->cur->lin, w = lin / 32, lane = lin % 32;
    VBH_QUIET_BEGIN();
    b->warp_slot[w][lane] = pred ? 1u : 0u;
    VBH_QUIET_END();
    vbh::warp_barrier(false);
    unsigned r = 0u;
    for (int l = 0; l < vbh::warp_size_of(b, w); ++l) r |= (b->warp_slot[w][l] ? 1u : 0u) << l;
    vbh::warp_barrier(false);
    return r;
}

inline void* vbh_dynamic_shared() { return vbh::tl_dynamic_shared->data(); }

// ---------------------------------------------------------------------------------
// atomics (relaxed, as CUDA's device-scope atomics)
// ---------------------------------------------------------------------------------
#define VBH_INT_ATOMICS(T)                                                                         \
    __device__ inline T atomicAdd(T* a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); } \
    __device__ inline T atomicSub(T* a, T v) { return __atomic_fetch_sub(a, v, __ATOMIC_RELAXED); } \
    __device__ inline T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_RELAXED); } \
    __device__ inline T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_RELAXED); }   \
    __device__ inline T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_RELAXED); } \
    __device__ inline T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); } \
    __device__ inline T atomicCAS(T* a, T cmp, T v) {                                                \
        __atomic_compare_exchange_n(a, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);         \
        return cmp;                                                                                 \
    }                                                                                               \
    __device__ inline T atomicMin(T* a, T v) {                                                      \
        T o = __atomic_load_n(a, __ATOMIC_RELAXED);                                                 \
        while (v < o && !__atomic_compare_exchange_n(a, &o, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {} \
        return o;                                                                                   \
    }                                                                                               \
    __device__ inline T atomicMax(T* a, T v) {                                                      \
        T o = __atomic_load_n(a, __ATOMIC_RELAXED);                                                 \
        while (v > o && !__atomic_compare_exchange_n(a, &o, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {} \
        return o;                                                                                   \
    }

VBH_INT_ATOMICS(int)
VBH_INT_ATOMICS(unsigned int)
VBH_INT_ATOMICS(long long)
VBH_INT_ATOMICS(unsigned long long)
#undef VBH_INT_ATOMICS

#define VBH_FLOAT_ATOMIC_ADD(T, U)                                                                 \
    __device__ inline T atomicAdd(T* a, T v) {                                                     \
        U* p = reinterpret_cast<U*>(a);                                                            \
        U o = __atomic_load_n(p, __ATOMIC_RELAXED), n;                                             \
        do {                                                                                       \
            T f, g;                                                                                \
            memcpy(&f, &o, sizeof f);                                                              \
            g = f + v;                                                                             \
            memcpy(&n, &g, sizeof n);                                                              \
        } while (!__atomic_compare_exchange_n(p, &o, n, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)); \
        T r;                                                                                       \
        memcpy(&r, &o, sizeof r);                                                                  \
        return r;                                                                                  \
    }
VBH_FLOAT_ATOMIC_ADD(float, unsigned int)
VBH_FLOAT_ATOMIC_ADD(double, unsigned long long)
#undef VBH_FLOAT_ATOMIC_ADD

__device__ inline int __float_as_int(float f) { int i; memcpy(&i, &f, sizeof i); return i; }
__device__ inline float __int_as_float(int i) { float f; memcpy(&f, &i, sizeof f); return f; }
__device__ inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, sizeof i); return i; }
__device__ inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, sizeof f); return f; }
__device__ inline int __popc(unsigned x) { return __builtin_popcount(x); }
__device__ inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
