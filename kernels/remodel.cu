// voxelbone — the remodeling step: activation, cavity claim, excavation/refill/mineralisation.
//
// One step of length dt days runs three kernels in order (voxelbone/remodel/gpu.py):
//   vb_activate  surface voxels start BMUs with a per-step probability (counter-based draw)
//   vb_claim     each new BMU claims the voxels of its cavity (atomicMin of a 64-bit code:
//                the lowest seed index wins a contested voxel, whatever the thread order)
//   vb_update    per voxel: take a new claim, excavate on schedule, refill from the cavity
//                floor during formation, release at the end, mineralise.
// Per voxel a BMU stores u (height above the cavity floor in units of the local column
// depth, 0..1 + the overfill's reach, steps of 1/127.5, 16 bits) and k (the local column
// depth in voxels, 1/8-voxel steps).
// voxelbone/remodel/cpu.py is the NumPy twin of every rule here, operation for operation,
// so both give bit-identical volumes for the same seed (compiled with --fmad=false).
#include "vb_common.cuh"

#define VB_FLAG_PERFORATED 1u
#define VB_FLAG_OSTEONAL 2u
#define VB_FLAG_RESORBED 4u
#define VB_FLAG_OVERFILL 8u   // marrow voxel above the opening: formed into by a positive balance
#define VB_CLAIM_NONE 0xFFFFFFFFFFFFFFFFULL
// Claim code layout, high to low (NumPy twin: state.CLAIM_*): seed index (35 bits: the lowest
// seed wins), flags (4), share of the cavity (8), height u (9, so u <= 4), column depth k (8).
#define VB_CLAIM_SEED_SHIFT 29
#define VB_CLAIM_FLAGS_SHIFT 25
#define VB_CLAIM_FLAGS_MASK 15ULL
#define VB_CLAIM_FRAC_SHIFT 17
#define VB_CLAIM_U_SHIFT 8
#define VB_CLAIM_U_MASK 511ULL
#define VB_CLAIM_K_MASK 255ULL
#define VB_CLAIM_FRAC_STEPS 255  // steps per unit of the cavity share (state.CLAIM_FRAC_STEPS)
#define VB_CLAIM_U_STEPS 127.5f  // steps per voxel of the column height u (state.CLAIM_U_STEPS)
#define VB_MIN_COLUMN_DEPTH 0.125f  // smallest stored column depth (state.MIN_COLUMN_DEPTH)
#define VB_MAX_COLUMN_DEPTH 31.875f  // deepest stored column depth, 255 steps (state.MAX_COLUMN_DEPTH)
#define VB_MIN_FILL_RAMP 0.001f  // a flatter fill ramp refills nothing (state.MIN_FILL_RAMP)
#define VB_STREAM_ACTIVATION 1ULL
#define VB_STREAM_CAVITY_SIZE 2ULL
#define VB_STREAM_CAVITY_SHAPE 3ULL

// Counters (unsigned long long[8]).
#define VB_C_HEMI 0
#define VB_C_OSTEONAL 1
#define VB_C_PERFORATED 2
#define VB_C_SEED_OVERFLOW 4

struct vb_grid { vb_i64 nz, ny, nx; };

__device__ __forceinline__ vb_i64 vb_index(const vb_grid g, vb_i64 z, vb_i64 y, vb_i64 x) {
    return (z * g.ny + y) * g.nx + x;
}

// Neighbour k of 6 in the fixed order (-z, +z, -y, +y, -x, +x).
__device__ __forceinline__ void vb_neighbour(int k, int* dz, int* dy, int* dx) {
    *dz = (k == 0) ? -1 : ((k == 1) ? 1 : 0);
    *dy = (k == 2) ? -1 : ((k == 3) ? 1 : 0);
    *dx = (k == 4) ? -1 : ((k == 5) ? 1 : 0);
}

// Face neighbour k (0..5, vb_neighbour's order) of (z, y, x): its coordinates, and whether it
// lies inside the grid.
__device__ __forceinline__ bool vb_face_neighbour(const vb_grid g, int k, vb_i64 z, vb_i64 y, vb_i64 x, vb_i64* zz,
                                                  vb_i64* yy, vb_i64* xx) {
    int dz, dy, dx;
    vb_neighbour(k, &dz, &dy, &dx);
    *zz = z + dz;
    *yy = y + dy;
    *xx = x + dx;
    return *zz >= 0 && *zz < g.nz && *yy >= 0 && *yy < g.ny && *xx >= 0 && *xx < g.nx;
}

// Surface type of a bone voxel: 0 none, 1 hemi-osteonal (trabecular / endocortical),
// 2 osteonal (cortical voxel whose marrow neighbours are all intracortical pores).
// *first receives the first marrow neighbour (0..5) in the fixed order.
__device__ __forceinline__ int vb_surface_type(const float* __restrict__ bone, const unsigned char* __restrict__ region,
                                               const vb_grid g, vb_i64 z, vb_i64 y, vb_i64 x, int* first) {
    int any = 0, trabecular_marrow = 0;
    *first = -1;
    for (int k = 0; k < 6; ++k) {
        vb_i64 zz, yy, xx;
        if (!vb_face_neighbour(g, k, z, y, x, &zz, &yy, &xx)) continue;
        vb_i64 j = vb_index(g, zz, yy, xx);
        if (bone[j] < 0.5f && region[j] != VB_OUTSIDE) {
            if (!any) *first = k;
            any = 1;
            if (region[j] != VB_CORTICAL) trabecular_marrow = 1;
        }
    }
    if (!any) return 0;
    vb_i64 i = vb_index(g, z, y, x);
    return (region[i] == VB_CORTICAL && !trabecular_marrow) ? 2 : 1;
}

// Mechanical modulation (voxelbone/remodel/mechanostat.py): a per-voxel factor on the
// activation probability (vb_activate) and on the refill level (vb_update) from the local
// mechanical signal; a null pointer (mechanics off) leaves the value untouched, so runs
// without mechanics are bit-identical to the engine without this feature.
__device__ __forceinline__ float vb_mech_scale(float v, const float* __restrict__ mod, vb_idx i) {
    return mod ? v * mod[i] : v;
}

extern "C" __global__ void vb_activate(const float* __restrict__ bone, const unsigned char* __restrict__ region,
                                       const short* __restrict__ bmu_day, vb_i64 nz, vb_i64 ny, vb_i64 nx,
                                       vb_u64 seed, vb_u64 step, float p_hemi, float p_osteonal,
                                       vb_i64* __restrict__ seeds, unsigned int* __restrict__ seed_count,
                                       unsigned int capacity, const float* __restrict__ act_mod) {
    const vb_grid g = {nz, ny, nx};
    const vb_idx n = (vb_idx)(nz * ny * nx), nxi = (vb_idx)nx, nyi = (vb_idx)ny;
    for (vb_idx i = vb_tid(); i < n; i += vb_stride()) {
        if (region[i] == VB_OUTSIDE || bmu_day[i] >= 0 || bone[i] < 0.5f) continue;
        vb_idx x = i % nxi, y = (i / nxi) % nyi, z = i / (nxi * nyi);
        int first;
        int type = vb_surface_type(bone, region, g, z, y, x, &first);
        if (type == 0) continue;
        float p = (type == 2) ? p_osteonal : p_hemi;
        p = vb_mech_scale(p, act_mod, i);
        if (vb_uniform(seed, step, VB_STREAM_ACTIVATION, (vb_u64)i) < p) {
            unsigned int k = atomicAdd(seed_count, 1u);
            if (k < capacity) seeds[k] = i;
        }
    }
}

// Geometry of one BMU, in voxel units (voxel centres at integer coordinates).
struct vb_cavity {
    int osteonal;
    float cz, cy, cx;      // the surface point above the seed
    float nz_, ny_, nx_;   // unit normal pointing into the marrow
    float a, b;            // depth and lateral semi-axes
    vb_i64 ez, ey, ex;     // half-extent of the bounding box
    int perforated;
    float bz;              // pore-wall (osteonal) cavity: semi-axis along z
    int cortical;          // seeded in the cortex (endocortical or pore wall): claims carry VB_FLAG_OSTEONAL
};

__device__ __forceinline__ float vb_bone_at(const float* __restrict__ bone, const vb_grid g, vb_i64 z, vb_i64 y, vb_i64 x) {
    return bone[vb_index(g, z, y, x)];
}

__device__ __forceinline__ float vb_grad_axis(const float* __restrict__ bone, const vb_grid g,
                                              vb_i64 z, vb_i64 y, vb_i64 x, int axis) {
    vb_i64 n = (axis == 0) ? g.nz : ((axis == 1) ? g.ny : g.nx);
    vb_i64 c = (axis == 0) ? z : ((axis == 1) ? y : x);
    vb_i64 lo = (c > 0) ? c - 1 : c;
    vb_i64 hi = (c < n - 1) ? c + 1 : c;
    if (hi == lo) return 0.0f;
    float bl = vb_bone_at(bone, g, axis == 0 ? lo : z, axis == 1 ? lo : y, axis == 2 ? lo : x);
    float bh = vb_bone_at(bone, g, axis == 0 ? hi : z, axis == 1 ? hi : y, axis == 2 ? hi : x);
    return (bh - bl) / (float)(hi - lo);
}

// --- intracortical BMUs on pore walls (cortex remodeling; NumPy twin: cpu.make_wall_cavity) ---
// A tunnelling BMU re-excavating a canal erodes its wall to the erosion depth and refills it
// to the cortical balance, so each cycle widens the canal by the deficit: a half-spheroid of
// depth E.De along the wall normal taken in the xy plane (canals run along z), lateral
// semi-axis `lateral_um` around the canal and `osteon_half_length_um` along it. A cavity
// that reaches another pore or the marrow through the wall is a perforation (not refilled):
// neighbouring canals coalesce and canals near the endosteum open into the marrow.

// Index of the voxel whose centre is nearest the point (z, y, x) in voxel units, or -1 when it
// lies outside the grid or outside the sample (NumPy twin: cpu._sample_voxel).
__device__ __forceinline__ vb_i64 vb_sample_voxel(const unsigned char* __restrict__ region, const vb_grid g,
                                                  float pz, float py, float px) {
    vb_i64 iz = (vb_i64)floorf(pz + 0.5f);
    vb_i64 iy = (vb_i64)floorf(py + 0.5f);
    vb_i64 ix = (vb_i64)floorf(px + 0.5f);
    if (iz < 0 || iz >= g.nz || iy < 0 || iy >= g.ny || ix < 0 || ix >= g.nx) return -1;
    vb_i64 j = vb_index(g, iz, iy, ix);
    return region[j] == VB_OUTSIDE ? -1 : j;
}

// March into the bone along -n to the full cavity depth a (voxels): leaving the bone again
// means the cavity reaches the far surface of its trabecula or wall, a perforation. Samples
// every half voxel and a last one at exactly a, so the decision does not depend on the voxel
// size (NumPy twin: cpu._perforates).
__device__ __forceinline__ int vb_perforates(const float* __restrict__ bone, const unsigned char* __restrict__ region,
                                             const vb_grid g, float cz, float cy, float cx,
                                             float nz_, float ny_, float nx_, float a) {
    int entered = 0;
    int kmax = (int)ceilf(2.0f * a);
    for (int k = 1; k <= kmax; ++k) {
        float s = fminf(0.5f * (float)k, a);
        vb_i64 j = vb_sample_voxel(region, g, cz - s * nz_, cy - s * ny_, cx - s * nx_);
        if (j < 0) break;
        if (bone[j] >= 0.5f) {
            entered = 1;
        } else if (entered) {
            return 1;
        }
    }
    return 0;
}

__device__ __forceinline__ vb_cavity vb_make_wall_cavity(const float* __restrict__ bone,
                                                         const unsigned char* __restrict__ region, const vb_grid g,
                                                         vb_i64 z, vb_i64 y, vb_i64 x, int fdz, int fdy, int fdx,
                                                         float j1, float j2, float voxel_um, float depth_um,
                                                         float lateral_um, float osteon_half_length_um) {
    vb_cavity c;
    c.osteonal = 1;
    c.cortical = 1;
    float gy = vb_grad_axis(bone, g, z, y, x, 1);
    float gx = vb_grad_axis(bone, g, z, y, x, 2);
    float norm2 = gy * gy + gx * gx;
    c.a = depth_um * j1 / voxel_um;
    c.b = lateral_um * j2 / voxel_um;
    if (norm2 < 1e-6f) {   // no in-plane gradient (the end of a canal): the first pore neighbour, round cavity
        c.nz_ = (float)fdz; c.ny_ = (float)fdy; c.nx_ = (float)fdx;
        c.bz = c.b;
    } else {
        float inv = 1.0f / sqrtf(norm2);
        c.nz_ = 0.0f; c.ny_ = -gy * inv; c.nx_ = -gx * inv;
        c.bz = osteon_half_length_um * j2 / voxel_um;
    }
    float off = vb_bone_at(bone, g, z, y, x) - 0.5f;
    c.cz = (float)z + off * c.nz_;
    c.cy = (float)y + off * c.ny_;
    c.cx = (float)x + off * c.nx_;
    vb_i64 e = (vb_i64)ceilf(fmaxf(c.a, c.b) + 1.0f);
    c.ey = e; c.ex = e;
    c.ez = (vb_i64)ceilf(fmaxf(c.a, c.bz) + 1.0f);
    c.perforated = vb_perforates(bone, region, g, c.cz, c.cy, c.cx, c.nz_, c.ny_, c.nx_, c.a);
    return c;
}

// The opening test of a half-spheroid cavity (hemi-osteonal and pore-wall; NumPy twin:
// cpu._opening_claim): depth w of offset (dz, dy, dx) from the cavity centre below the opening,
// along the inward normal, and its squared distance rho2 from the cavity axis. Below the
// opening only bone (b > 0) is claimed; above it (w <= -1/2) marrow (b < 1/2) is claimed as an
// overfill voxel (*extra = VB_FLAG_OVERFILL) within the overfill's reach (w > -1/2 - over * a):
// a voxel of bone >= 1/2 there is another structure's, left to its own BMUs. false: the voxel
// is not claimed.
__device__ __forceinline__ bool vb_opening_claim(const vb_cavity c, float dz, float dy, float dx, float over,
                                                 float b, float* w_out, float* rho2_out, unsigned int* extra) {
    float w = -((dz * c.nz_ + dy * c.ny_) + dx * c.nx_);
    if (w <= -0.5f) {
        if (!(over > 0.0f) || w <= -0.5f - over * c.a || b >= 0.5f) return false;
        *extra = VB_FLAG_OVERFILL;
    } else if (!(b > 0.0f)) {
        return false;
    }
    float d2 = (dz * dz + dy * dy) + dx * dx;
    *w_out = w;
    *rho2_out = fmaxf(d2 - w * w, 0.0f);
    return true;
}

// Height above the cavity floor at which u saturates: one cavity depth above the old surface
// (level 2), or the top of the overfill's reach when that is higher.
__device__ __forceinline__ float vb_u_max(float over) {
    return fmaxf(2.0f, 1.0f + over);
}

// Semi-axis along the normal of the cavity as seen from a voxel: above the opening (an overfill
// voxel) the cavity is mirrored outwards, stretched to the overfill's reach when that is
// beyond one cavity depth.
__device__ __forceinline__ float vb_mirror_depth(float a, unsigned int extra, float over) {
    return extra ? a * fmaxf(1.0f, over) : a;
}

// Fraction of the voxel volume below refill level h (normalised depth units).
__device__ __forceinline__ float vb_phi(float h, float u, float k) {
    return vb_clamp01((h - u) * k + 0.5f);
}

// The 64-bit claim code of seed si for a voxel with share frac of the cavity, depth u in the
// wall and wall thickness depth (voxels), quantised; VB_CLAIM_NONE when frac rounds to 0.
__device__ __forceinline__ vb_u64 vb_pack_claim(vb_i64 si, unsigned int flags, float frac, float u, float depth) {
    unsigned int fq = (unsigned int)(frac * (float)VB_CLAIM_FRAC_STEPS + 0.5f);
    if (fq == 0u) return VB_CLAIM_NONE;
    unsigned int uq = (unsigned int)(u * VB_CLAIM_U_STEPS + 0.5f);
    unsigned int kq = (unsigned int)(fminf(depth, VB_MAX_COLUMN_DEPTH) * (1.0f / VB_MIN_COLUMN_DEPTH) + 0.5f);
    // A voxel below the opening whose fill ramp is flat as vb_update reads it (the column height,
    // rounded, so far above its depth that phi(1) = phi(0)) would be dug and never refilled
    // whatever the balance: it is not claimed (NumPy twin: cpu.pack_claims).
    if ((flags & VB_FLAG_OVERFILL) == 0u) {
        float uu = (float)uq * (1.0f / VB_CLAIM_U_STEPS);
        float kk = (float)kq * VB_MIN_COLUMN_DEPTH;
        if (vb_phi(1.0f, uu, kk) - vb_phi(0.0f, uu, kk) < VB_MIN_FILL_RAMP) return VB_CLAIM_NONE;
    }
    return ((vb_u64)si << VB_CLAIM_SEED_SHIFT) | ((vb_u64)flags << VB_CLAIM_FLAGS_SHIFT)
           | ((vb_u64)fq << VB_CLAIM_FRAC_SHIFT) | ((vb_u64)uq << VB_CLAIM_U_SHIFT) | (vb_u64)kq;
}

// Claim code of a pore-wall cavity: the hemi-osteonal rule of vb_claim_code with the
// lateral semi-axis c.bz along z.
__device__ __forceinline__ vb_u64 vb_claim_code_wall(const vb_cavity c, vb_i64 si, vb_i64 qz, vb_i64 qy, vb_i64 qx,
                                                   float over, float b) {
    float dz = (float)qz - c.cz;
    float dy = (float)qy - c.cy;
    float dx = (float)qx - c.cx;
    unsigned int extra = 0u;
    float w, rho2;
    if (!vb_opening_claim(c, dz, dy, dx, over, b, &w, &rho2, &extra)) return VB_CLAIM_NONE;
    float af = vb_mirror_depth(c.a, extra, over);
    float dz2 = dz * dz;
    float wa = w / af;
    float rb2 = fmaxf(rho2 - dz2, 0.0f) / (c.b * c.b) + dz2 / (c.bz * c.bz);
    float s = sqrtf(wa * wa + rb2);
    float frac = vb_clamp01((1.0f - s) * fminf(af, c.b) + 0.5f);
    float wf = c.a * sqrtf(fmaxf(1.0f - rb2, 0.0f));
    float depth = fmaxf(wf, VB_MIN_COLUMN_DEPTH);
    float u = fminf(fmaxf((wf - w) / depth, 0.0f), vb_u_max(over));
    return vb_pack_claim(si, (c.perforated ? VB_FLAG_PERFORATED : 0u) | VB_FLAG_OSTEONAL | extra, frac, u, depth);
}

// Bone of the voxel just outside the seed along the normal n (pointing out of the bone) when
// it is a partial voxel (bone < 1/2) inside the sample, else 0 (NumPy twin: cpu._outer_partial).
__device__ __forceinline__ float vb_outer_partial(const float* __restrict__ bone, const unsigned char* __restrict__ region,
                                                  const vb_grid g, vb_i64 z, vb_i64 y, vb_i64 x, float nz_, float ny_,
                                                  float nx_) {
    vb_i64 o = vb_sample_voxel(region, g, (float)z + nz_, (float)y + ny_, (float)x + nx_);
    if (o < 0) return 0.0f;
    float b = bone[o];
    return b < 0.5f ? b : 0.0f;
}

__device__ __forceinline__ vb_cavity vb_make_cavity(const float* __restrict__ bone, const unsigned char* __restrict__ region,
                                                    const vb_grid g, vb_i64 si, vb_u64 seed, vb_u64 step, float voxel_um,
                                                    float depth_um, float lateral_um, float osteon_radius_um,
                                                    float osteon_half_length_um, float canal_radius_um) {
    vb_cavity c;
    vb_i64 x = si % g.nx, y = (si / g.nx) % g.ny, z = si / (g.nx * g.ny);
    int first;
    int type = vb_surface_type(bone, region, g, z, y, x, &first);
    float j1 = 0.8f + 0.4f * vb_uniform(seed, step, VB_STREAM_CAVITY_SIZE, (vb_u64)si);
    float j2 = 0.8f + 0.4f * vb_uniform(seed, step, VB_STREAM_CAVITY_SHAPE, (vb_u64)si);
    int fdz, fdy, fdx;
    vb_neighbour(first < 0 ? 0 : first, &fdz, &fdy, &fdx);
    c.perforated = 0;
    c.bz = 0.0f;
    c.cortical = region[vb_index(g, z, y, x)] == VB_CORTICAL;
    if (type == 2) {
        return vb_make_wall_cavity(bone, region, g, z, y, x, fdz, fdy, fdx, j1, j2, voxel_um, depth_um, lateral_um,
                                   osteon_half_length_um);
    }
    c.osteonal = 0;
    float gz = vb_grad_axis(bone, g, z, y, x, 0);
    float gy = vb_grad_axis(bone, g, z, y, x, 1);
    float gx = vb_grad_axis(bone, g, z, y, x, 2);
    float norm2 = (gz * gz + gy * gy) + gx * gx;
    if (norm2 < 1e-6f) {
        c.nz_ = (float)fdz; c.ny_ = (float)fdy; c.nx_ = (float)fdx;
    } else {
        float inv = 1.0f / sqrtf(norm2);
        c.nz_ = -gz * inv; c.ny_ = -gy * inv; c.nx_ = -gx * inv;
    }
    c.a = depth_um * j1 / voxel_um;
    c.b = lateral_um * j2 / voxel_um;
    // The surface crosses the seed voxel where its bone fraction puts it (sub-voxel), further
    // out by the bone of the partial voxel just outside the seed along the normal: a layer of
    // bone < 1/2 above the seed is bone too, and a plane placed below it makes the cavity cut
    // the flank of a convex trabecula deeper at coarse voxels (vb_outer_partial).
    float off = (vb_bone_at(bone, g, z, y, x) - 0.5f) + vb_outer_partial(bone, region, g, z, y, x, c.nz_, c.ny_, c.nx_);
    c.cz = (float)z + off * c.nz_;
    c.cy = (float)y + off * c.ny_;
    c.cx = (float)x + off * c.nx_;
    vb_i64 e = (vb_i64)ceilf(fmaxf(c.a, c.b) + 1.0f);
    c.ez = e; c.ey = e; c.ex = e;
    // Perforation: the cavity goes through the trabecula.
    c.perforated = vb_perforates(bone, region, g, c.cz, c.cy, c.cx, c.nz_, c.ny_, c.nx_, c.a);
    return c;
}

// Share of a voxel inside a trabecular half-spheroid cavity (semi-axes a along the normal,
// b across it, in voxels) at depth w and squared lateral distance rho2 from its centre: a
// ramp one voxel wide across the cavity wall, from the wall's signed distance
// (s - 1) / |grad s|, s = sqrt((w/a)^2 + rho2/b^2). A ramp in s scaled by min(a, b) would be
// b/a voxels wide at the cavity's rim: on coarse voxels (a ~ 1 voxel) every BMU would own a
// rim of surface voxels several voxels wide, which no new BMU can start from.
__device__ __forceinline__ float vb_spheroid_frac(float w, float rho2, float a, float b) {
    float wa = w / a;
    float rb2 = rho2 / (b * b);
    float s = sqrtf(wa * wa + rb2);
    float g = sqrtf(wa * wa / (a * a) + rb2 / (b * b));
    if (!(g > 1e-6f)) return 1.0f;
    return vb_clamp01(0.5f - (s - 1.0f) * s / g);
}

// Claim code of voxel (qz, qy, qx) for the hemi-osteonal cavity c of seed si; VB_CLAIM_NONE
// when outside (pore-wall cavities: vb_claim_code_wall).
// `over` > 0: how far above the opening, in cavity depths, new bone of a positive balance
// may reach (the cavity mirrored outwards, up to the overfill's reach); marrow voxels there
// (empty or partly bone) are claimed as overfill voxels: never dug, filled into their empty
// part as far as the balance at formation reaches. `b`: the voxel's bone fraction (only bone
// is dug).
__device__ __forceinline__ vb_u64 vb_claim_code(const vb_cavity c, vb_i64 si, vb_i64 qz, vb_i64 qy, vb_i64 qx,
                                              float over, float b) {
    float dz = (float)qz - c.cz;
    float dy = (float)qy - c.cy;
    float dx = (float)qx - c.cx;
    unsigned int extra = 0u;
    float w, rho2;
    if (!vb_opening_claim(c, dz, dy, dx, over, b, &w, &rho2, &extra)) return VB_CLAIM_NONE;
    float rb2 = rho2 / (c.b * c.b);
    float frac = vb_spheroid_frac(w, rho2, vb_mirror_depth(c.a, extra, over), c.b);
    float wf = c.a * sqrtf(fmaxf(1.0f - rb2, 0.0f));  // floor depth below this column
    float depth = fmaxf(wf, VB_MIN_COLUMN_DEPTH);
    float u = fminf(fmaxf((wf - w) / depth, 0.0f), vb_u_max(over));
    unsigned int flags = (c.perforated ? VB_FLAG_PERFORATED : 0u) | extra;
    return vb_pack_claim(si, flags, frac, u, depth);
}

// One block per seed (grid-stride over seeds), threads over the seed's bounding box.
extern "C" __global__ void vb_claim(const float* __restrict__ bone, const unsigned char* __restrict__ region,
                                    const short* __restrict__ bmu_day, vb_i64 nz, vb_i64 ny, vb_i64 nx,
                                    float voxel_um, vb_u64 seed, vb_u64 step,
                                    const vb_i64* __restrict__ seeds, const unsigned int* __restrict__ seed_count,
                                    unsigned int capacity, float depth_um, float lateral_um,
                                    float osteon_radius_um, float osteon_half_length_um, float canal_radius_um,
                                    float overfill_reach, vb_u64* __restrict__ claim,
                                    vb_u64* __restrict__ counters) {
    const vb_grid g = {nz, ny, nx};
    unsigned int ns = *seed_count;
    // seeds beyond capacity were counted by vb_activate but not stored: record the overflow
    if (blockIdx.x == 0 && threadIdx.x == 0 && ns > capacity) atomicAdd(&counters[VB_C_SEED_OVERFLOW], (vb_u64)(ns - capacity));
    if (ns > capacity) ns = capacity;
    for (vb_i64 s = (vb_i64)blockIdx.x; s < (vb_i64)ns; s += (vb_i64)gridDim.x) {
        vb_i64 si = seeds[s];
        vb_cavity c = vb_make_cavity(bone, region, g, si, seed, step, voxel_um, depth_um, lateral_um,
                                     osteon_radius_um, osteon_half_length_um, canal_radius_um);
        // every cavity reserves the marrow a positive balance may build into, up to the overfill's
        // reach, whatever the balance now: the formation level (vb_update, with the balance at
        // formation and the mechanical factor at the BMU's seed) decides how much of it fills
        if (threadIdx.x == 0) {
            atomicAdd(&counters[c.osteonal ? VB_C_OSTEONAL : VB_C_HEMI], 1ULL);
            if (c.perforated) atomicAdd(&counters[VB_C_PERFORATED], 1ULL);
        }
        vb_i64 x0 = si % nx, y0 = (si / nx) % ny, z0 = si / (nx * ny);
        vb_i64 ycen = c.osteonal ? (vb_i64)c.cy : y0;
        vb_i64 xcen = c.osteonal ? (vb_i64)c.cx : x0;
        vb_idx sz = (vb_idx)(2 * c.ez + 1), sy = (vb_idx)(2 * c.ey + 1), sx = (vb_idx)(2 * c.ex + 1);
        vb_idx box = sz * sy * sx;
        for (vb_idx q = (vb_idx)threadIdx.x; q < box; q += (vb_idx)blockDim.x) {
            vb_i64 qz = z0 - c.ez + q / (sy * sx);
            vb_i64 qy = ycen - c.ey + (q / sx) % sy;
            vb_i64 qx = xcen - c.ex + q % sx;
            if (qz < 0 || qz >= nz || qy < 0 || qy >= ny || qx < 0 || qx >= nx) continue;
            vb_i64 j = vb_index(g, qz, qy, qx);
            if (region[j] == VB_OUTSIDE || bmu_day[j] >= 0) continue;
            vb_u64 code = c.osteonal ? vb_claim_code_wall(c, si, qz, qy, qx, overfill_reach, bone[j])
                                     : vb_claim_code(c, si, qz, qy, qx, overfill_reach, bone[j]);
            if (c.cortical && code != VB_CLAIM_NONE) code |= ((vb_u64)VB_FLAG_OSTEONAL << VB_CLAIM_FLAGS_SHIFT);
            if (code != VB_CLAIM_NONE) atomicMin(&claim[j], code);
        }
    }
}

// Refilled share of what the BMU removed from the voxel at formation level h (may exceed
// 1 at the cavity opening for a positive balance: new bone above the old surface).
__device__ __forceinline__ float vb_fill(float h, float u, float k) {
    float p0 = vb_phi(0.0f, u, k);
    float den = vb_phi(1.0f, u, k) - p0;
    if (den < VB_MIN_FILL_RAMP) return 0.0f;
    return (vb_phi(h, u, k) - p0) / den;
}

// Refill level of a forming voxel: a cortical cavity that broke into a pore is closed again
// only by a positive balance (the breach stays open, and pores coalesce, when resorption
// outpaces formation).
__device__ __forceinline__ float vb_refill(int osteonal, int perforated, float trab, float cort, float perforated_refill) {
    float r_perf = (osteonal && cort >= 1.0f) ? cort : perforated_refill;
    return perforated ? r_perf : (osteonal ? cort : trab);
}

__device__ __forceinline__ float vb_level(float day, float refill, float t_form_start, float t_form) {
    return refill * vb_clamp01((day - t_form_start) / t_form);
}

extern "C" __global__ void vb_update(float* __restrict__ bone, float* __restrict__ mineral,
                                     float* __restrict__ osteoid, short* __restrict__ bmu_day, unsigned char* __restrict__ bmu_k,
                                     unsigned short* __restrict__ bmu_u, unsigned char* __restrict__ bmu_flags,
                                     float* __restrict__ bmu_amount, unsigned int* __restrict__ bmu_seed,
                                     vb_u64* __restrict__ claim, vb_i64 n, int dt,
                                     float t_resorb, float t_form_start, float t_form, float t_end,
                                     float refill_trab, float refill_cort, float refill_perforated,
                                     float refill_trab_prev, float refill_cort_prev,
                                     float m_mature, float e_primary, float e_secondary, float c_osteoid,
                                     const float* __restrict__ refill_mod) {
    for (vb_idx i = vb_tid(); i < (vb_idx)n; i += vb_stride()) {
        vb_u64 code = claim[i];
        int day = (int)bmu_day[i];
        unsigned int flags = bmu_flags[i];
        float amount = bmu_amount[i];
        if (code != VB_CLAIM_NONE) {
            claim[i] = VB_CLAIM_NONE;
            day = 0;
            bmu_seed[i] = (unsigned int)(code >> VB_CLAIM_SEED_SHIFT);   // the BMU's refill follows its seed
            flags = (unsigned int)((code >> VB_CLAIM_FLAGS_SHIFT) & VB_CLAIM_FLAGS_MASK);
            amount = (float)((code >> VB_CLAIM_FRAC_SHIFT) & (vb_u64)VB_CLAIM_FRAC_STEPS) * (1.0f / (float)VB_CLAIM_FRAC_STEPS);
            bmu_u[i] = (unsigned short)((code >> VB_CLAIM_U_SHIFT) & VB_CLAIM_U_MASK);
            bmu_k[i] = (unsigned char)(code & VB_CLAIM_K_MASK);
            if (flags & VB_FLAG_OVERFILL) {   // never dug: the fill ramp alone sets how much of its empty part forms
                flags |= VB_FLAG_RESORBED;
                amount = 1.0f - bone[i];
            }
        }
        float b = bone[i];
        float m = mineral[i];
        float o = osteoid[i];
        if (day >= 0) {
            float d0 = (float)day;
            float d1 = (float)(day + dt);
            float u = (float)bmu_u[i] * (1.0f / VB_CLAIM_U_STEPS);
            if (!(flags & VB_FLAG_RESORBED)) {
                // each column is eroded from its opening (u = 1) down to its floor (u = 0)
                float t_start = fmaxf(1.0f - u, 0.0f) * t_resorb;
                if (d1 >= t_start) {
                    float frac = amount;
                    float removed = b * frac;
                    b = vb_flush(b - removed);
                    m = vb_flush(m - m * frac);
                    o = vb_flush(o - o * frac);
                    amount = removed;
                    flags |= VB_FLAG_RESORBED;
                }
            }
            if (flags & VB_FLAG_RESORBED) {
                int osteonal = (flags & VB_FLAG_OSTEONAL) != 0;
                int perforated = (flags & VB_FLAG_PERFORATED) != 0;
                // mechanics on: every voxel of a BMU refills at the factor of its seed
                vb_idx s = refill_mod ? (vb_idx)bmu_seed[i] : 0;
                float r = vb_mech_scale(vb_refill(osteonal, perforated, refill_trab, refill_cort, refill_perforated),
                                        refill_mod, s);
                float r_prev = vb_mech_scale(vb_refill(osteonal, perforated, refill_trab_prev, refill_cort_prev,
                                                       refill_perforated), refill_mod, s);
                float k = (float)bmu_k[i] * 0.125f;
                // the level at the start of the step stands on the previous step's balance
                float h0 = vb_level(d0, r_prev, t_form_start, t_form);
                float h1 = vb_level(d1, r, t_form_start, t_form);
                float f0, f1;
                if (flags & VB_FLAG_OVERFILL) {
                    // only what rises above the old surface (level 1), filling the empty voxel
                    float p1 = vb_phi(1.0f, u, k);
                    float den = 1.0f - p1;
                    f0 = den < VB_MIN_FILL_RAMP ? 0.0f : fmaxf(vb_phi(h0, u, k) - p1, 0.0f) / den;
                    f1 = den < VB_MIN_FILL_RAMP ? 0.0f : fmaxf(vb_phi(h1, u, k) - p1, 0.0f) / den;
                } else {
                    f0 = vb_fill(h0, u, k);
                    f1 = vb_fill(h1, u, k);
                }
                // a column whose formation ended before the step forms no more, whatever the balance does
                if (d0 < t_form_start + t_form && f1 > f0) {
                    float nb = fminf(b + amount * (f1 - f0), 1.0f);
                    o = o + (nb - b);   // new bone is laid down as osteoid
                    b = nb;
                }
            }
            if (d1 >= t_end) {
                day = -1;
                flags = 0u;
                amount = 0.0f;
            } else {
                day = day + dt;
            }
            bmu_day[i] = (short)day;
            bmu_flags[i] = (unsigned char)flags;
            bmu_amount[i] = amount;
        }
        // mineralisation, integrated exactly over the step: osteoid o mineralises (primary)
        // with time constant tau_p, mineral approaches the mature degree of the
        // mineralised bone (secondary) with tau_s; see MineralisationLaw.
        if (o > 0.0f || m < m_mature * b) {
            m = m * e_secondary + (m_mature * b) * (1.0f - e_secondary) + c_osteoid * o;
            m = vb_flush(fminf(fmaxf(m, 0.0f), b));
            o = vb_flush(o * e_primary);   // decays geometrically: flushed, never subnormal
        }
        bone[i] = b;
        mineral[i] = m;
        osteoid[i] = o;
    }
}

// --- modelling-based formation (intermittent PTH; NumPy twin: cpu.model) -------------------
// Bone laid on quiescent surfaces without prior resorption (Dempster et al. 2001; Lindsay et
// al. 2006). Launched after vb_update only when the rate is positive (a run without it never
// calls this kernel). Every quiescent surface voxel (bone >= 0.5, not owned by a BMU, with a
// free marrow face-neighbour: bone < 0.5 not owned by a BMU, of the trabecular compartment or
// a cortical voxel with a trabecular face-neighbour, i.e. a partial-volume voxel on the
// endocortical boundary, not an intracortical canal) forms
// model_frac of a voxel's volume per step: first into its own empty part (the surface runs
// through it), the rest in equal shares into its free marrow face-neighbours, which gather
// their shares in the fixed neighbour order. New bone is osteoid (mineralised by vb_update
// from the next step). Reads the bone of bone_old (a copy taken before the launch), so no
// thread reads a value another one writes.
__device__ __forceinline__ int vb_model_marrow(const float* __restrict__ bone_old, const unsigned char* __restrict__ region,
                                               const short* __restrict__ bmu_day, const vb_grid g,
                                               vb_i64 z, vb_i64 y, vb_i64 x) {
    const vb_i64 j = vb_index(g, z, y, x);
    if (!(bmu_day[j] < 0 && bone_old[j] < 0.5f)) return 0;
    if (region[j] == VB_TRABECULAR) return 1;
    if (region[j] != VB_CORTICAL) return 0;
    for (int q = 0; q < 6; ++q) {   // a cortical voxel on the endocortical boundary
        vb_i64 zz, yy, xx;
        if (!vb_face_neighbour(g, q, z, y, x, &zz, &yy, &xx)) continue;
        if (region[vb_index(g, zz, yy, xx)] == VB_TRABECULAR) return 1;
    }
    return 0;
}

// Free marrow face-neighbours of voxel (z, y, x).
__device__ __forceinline__ int vb_model_count(const float* __restrict__ bone_old, const unsigned char* __restrict__ region,
                                              const short* __restrict__ bmu_day, const vb_grid g,
                                              vb_i64 z, vb_i64 y, vb_i64 x) {
    int count = 0;
    for (int q = 0; q < 6; ++q) {
        vb_i64 zz, yy, xx;
        if (!vb_face_neighbour(g, q, z, y, x, &zz, &yy, &xx)) continue;
        count += vb_model_marrow(bone_old, region, bmu_day, g, zz, yy, xx);
    }
    return count;
}

extern "C" __global__ void vb_model(float* __restrict__ bone, float* __restrict__ osteoid,
                                    const float* __restrict__ bone_old, const unsigned char* __restrict__ region,
                                    const short* __restrict__ bmu_day, vb_i64 nz, vb_i64 ny, vb_i64 nx,
                                    float model_frac) {
    const vb_grid g = {nz, ny, nx};
    const vb_idx n = (vb_idx)(nz * ny * nx), nxi = (vb_idx)nx, nyi = (vb_idx)ny;
    for (vb_idx i = vb_tid(); i < n; i += vb_stride()) {
        if (region[i] == VB_OUTSIDE || bmu_day[i] >= 0) continue;
        vb_i64 x = i % nxi, y = (i / nxi) % nyi, z = i / (nxi * nyi);
        float acc = 0.0f;
        if (vb_model_marrow(bone_old, region, bmu_day, g, z, y, x)) {
            for (int k = 0; k < 6; ++k) {
                vb_i64 zz, yy, xx;
                if (!vb_face_neighbour(g, k, z, y, x, &zz, &yy, &xx)) continue;
                vb_i64 j = vb_index(g, zz, yy, xx);
                if (region[j] == VB_OUTSIDE || bmu_day[j] >= 0 || !(bone_old[j] >= 0.5f)) continue;
                int count = vb_model_count(bone_old, region, bmu_day, g, zz, yy, xx);   // >= 1: i is one
                float rest = model_frac - fminf(model_frac, 1.0f - bone_old[j]);
                acc = acc + rest / (float)count;
            }
        } else if (bone_old[i] >= 0.5f && vb_model_count(bone_old, region, bmu_day, g, z, y, x) > 0) {
            acc = fminf(model_frac, 1.0f - bone_old[i]);   // a surface voxel fills its own empty part first
        }
        if (acc > 0.0f) {
            float b = bone[i];
            float nb = fminf(b + acc, 1.0f);
            osteoid[i] = osteoid[i] + (nb - b);   // new bone is laid down as osteoid
            bone[i] = nb;
        }
    }
}
