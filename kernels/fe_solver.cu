// voxelbone — matrix-free voxel micro-FE operators (voxelbone.mechanics; CPU twin in
// voxelbone/mechanics/cpu.py, same contract and the same order of arithmetic).
//
// Layout: a node grid (NZ, NY, NX) = (nz+1, ny+1, nx+1); vectors are float64, node-major,
// three components per node in array-axis order; element moduli float64, zero-padded by
// one element on every side, shape (nz+2, ny+2, nx+2), so node (k, j, i) finds its 8
// elements at padded (k+oz, j+oy, i+ox), o in {0,1}^3; masks uint8 per dof (1 = free);
// kb = unit-cube element stiffness as (8, 8, 3, 3) blocks, local corner b = 4 bz + 2 by + bx.
//
// Every kernel loops (grid-stride) over a list of active nodes and writes only that node's
// entries (gather form): no two threads write the same address, no atomics.
//
// Index arithmetic in vb_idx (vb_common.cuh): 32-bit when the launch was specialised with
// VB_INDEX32=1 (voxelbone.mechanics.gpu.fe_defines: every dof index 3 n + 2, padded element
// index and grid stride below 2^31), so a node's (k, j, i) comes from 32-bit divisions.
// Sizes and node lists stay 64-bit in the signatures (one launch contract for both).
// Arithmetic: no contraction (--fmad=false), the Numba twin's order of operations, so the
// device gives the twin's bits.
#include "vb_common.cuh"

// The one element loop of vb_fe_apply and vb_fe_diag (cpu.py: _node_row, same order of
// arithmetic): a_out = sum_e E_e * K^[a(n,e), :] u_e (three components) at node n, or with
// diag_only the diagonal sum_e E_e * K^[a,a] (before scaling and masking).
__device__ __forceinline__ void vb_fe_node_row(const double* __restrict__ x, const double* __restrict__ emod,
                                               const double* __restrict__ kb, vb_idx n, vb_idx NY, vb_idx NX,
                                               bool diag_only, double* a_out) {
    const vb_idx sy = NX, sz = NY * NX;
    const vb_idx k = n / sz, j = (n / sy) % NY, i = n % NX;
    const vb_idx ey = NX + 1, ez = (NY + 1) * (NX + 1);  // padded element strides
    double a0 = 0.0, a1 = 0.0, a2 = 0.0;
    for (int oz = 0; oz < 2; ++oz)
        for (int oy = 0; oy < 2; ++oy)
            for (int ox = 0; ox < 2; ++ox) {
                const double e = emod[(k + oz) * ez + (j + oy) * ey + (i + ox)];
                const int a = (1 - oz) * 4 + (1 - oy) * 2 + (1 - ox);
                if (diag_only) {
                    const double* kk = kb + (a * 8 + a) * 9;
                    a0 += e * kk[0];
                    a1 += e * kk[4];
                    a2 += e * kk[8];
                    continue;
                }
                if (e == 0.0) continue;
                const vb_idx base = n + (oz - 1) * sz + (oy - 1) * sy + (ox - 1);
                double s0 = 0.0, s1 = 0.0, s2 = 0.0;
                for (int b = 0; b < 8; ++b) {
                    const vb_idx m = base + (b >> 2) * sz + ((b >> 1) & 1) * sy + (b & 1);
                    const double u0 = x[3 * m], u1 = x[3 * m + 1], u2 = x[3 * m + 2];
                    const double* kk = kb + (a * 8 + b) * 9;
                    s0 += kk[0] * u0 + kk[1] * u1 + kk[2] * u2;
                    s1 += kk[3] * u0 + kk[4] * u1 + kk[5] * u2;
                    s2 += kk[6] * u0 + kk[7] * u1 + kk[8] * u2;
                }
                a0 += e * s0;
                a1 += e * s1;
                a2 += e * s2;
            }
    a_out[0] = a0;
    a_out[1] = a1;
    a_out[2] = a2;
}

extern "C" __global__ void vb_fe_apply(const double* __restrict__ x, double* __restrict__ y,
                                       const double* __restrict__ emod, const vb_i64* __restrict__ nodes,
                                       vb_i64 n_active, const unsigned char* __restrict__ mask,
                                       const double* __restrict__ kb, double scale, vb_i64 NZ, vb_i64 NY, vb_i64 NX) {
    const vb_idx na = (vb_idx)n_active, ny = (vb_idx)NY, nx = (vb_idx)NX;
    for (vb_idx t = vb_tid(); t < na; t += vb_stride()) {
        const vb_idx n = (vb_idx)nodes[t];
        double a[3];
        vb_fe_node_row(x, emod, kb, n, ny, nx, false, a);
        y[3 * n] = scale * a[0] * (double)mask[3 * n];
        y[3 * n + 1] = scale * a[1] * (double)mask[3 * n + 1];
        y[3 * n + 2] = scale * a[2] * (double)mask[3 * n + 2];
    }
}

extern "C" __global__ void vb_fe_diag(double* __restrict__ out, const double* __restrict__ emod,
                                      const vb_i64* __restrict__ nodes, vb_i64 n_active,
                                      const double* __restrict__ kb, double scale, vb_i64 NZ, vb_i64 NY, vb_i64 NX) {
    const vb_idx na = (vb_idx)n_active, ny = (vb_idx)NY, nx = (vb_idx)NX;
    for (vb_idx t = vb_tid(); t < na; t += vb_stride()) {
        const vb_idx n = (vb_idx)nodes[t];
        double d[3];
        vb_fe_node_row(out, emod, kb, n, ny, nx, true, d);
        out[3 * n] = scale * d[0];
        out[3 * n + 1] = scale * d[1];
        out[3 * n + 2] = scale * d[2];
    }
}

__device__ __forceinline__ double vb_fe_w(int d) { return d == 0 ? 1.0 : 0.5; }

// Fine node (k, j, i) = (2K+dz, 2J+dy, 2I+dx), d in {-1,0,1}^3, of the 3x3x3 around coarse node
// (K, J, I), and its full-weighting weight w (1/2 per axis off the coarse point); false outside
// the fine grid. The body of the one child loop of vb_fe_restrict and vb_fe_galerkin_coarse
// (cpu.py: _child).
__device__ __forceinline__ bool vb_fe_child(int dz, int dy, int dx, vb_idx K, vb_idx J, vb_idx I, vb_idx zf,
                                            vb_idx yf, vb_idx xf, vb_idx* k, vb_idx* j, vb_idx* i, double* w) {
    *k = 2 * K + dz;
    *j = 2 * J + dy;
    *i = 2 * I + dx;
    if (*k < 0 || *k >= zf || *j < 0 || *j >= yf || *i < 0 || *i >= xf) return false;
    *w = vb_fe_w(dz) * vb_fe_w(dy) * vb_fe_w(dx);
    return true;
}

// Coarse parent c (0 or 1) of fine node k along one axis, -1 if none (cpu.py: _parent_axis):
// even k the coincident coarse node (weight 1) and no second, odd k its two neighbours (1/2
// each) in increasing order; one at or past nc (the coarse node count) is none.
__device__ __forceinline__ vb_idx vb_fe_parent_axis(int c, vb_idx k, vb_idx nc, double* w) {
    const int odd = (int)(k & 1);
    const vb_idx m = (k >> 1) + c;
    if (c > odd || m >= nc) return -1;
    *w = 1.0 - 0.5 * odd;
    return m;
}

// Coarse parent (cz, cy, cx), c in {0,1}^3, of fine node (k, j, i), with its trilinear weight w;
// false where there is no such parent. The body of the one parent loop of vb_fe_prolong_add and
// vb_fe_galerkin_coarse (cpu.py: _parent).
__device__ __forceinline__ bool vb_fe_parent(int cz, int cy, int cx, vb_idx k, vb_idx j, vb_idx i, vb_idx zc,
                                             vb_idx yc, vb_idx xc, vb_idx* K, vb_idx* J, vb_idx* I, double* w) {
    double wz = 0.0, wy = 0.0, wx = 0.0;
    *K = vb_fe_parent_axis(cz, k, zc, &wz);
    *J = vb_fe_parent_axis(cy, j, yc, &wy);
    *I = vb_fe_parent_axis(cx, i, xc, &wx);
    if (*K < 0 || *J < 0 || *I < 0) return false;
    *w = wz * wy * wx;
    return true;
}

// rc = mask_c * P^T rf (full weighting) at the active coarse nodes.
extern "C" __global__ void vb_fe_restrict(const double* __restrict__ rf, double* __restrict__ rc,
                                          const vb_i64* __restrict__ nodes_c, vb_i64 n_active,
                                          const unsigned char* __restrict__ mask_c, vb_i64 NZf, vb_i64 NYf,
                                          vb_i64 NXf, vb_i64 NZc, vb_i64 NYc, vb_i64 NXc) {
    const vb_idx na = (vb_idx)n_active, zf = (vb_idx)NZf, yf = (vb_idx)NYf, xf = (vb_idx)NXf;
    const vb_idx yc = (vb_idx)NYc, xc = (vb_idx)NXc;
    for (vb_idx t = vb_tid(); t < na; t += vb_stride()) {
        const vb_idx n = (vb_idx)nodes_c[t];
        const vb_idx K = n / (yc * xc), J = (n / xc) % yc, I = n % xc;
        double s0 = 0.0, s1 = 0.0, s2 = 0.0;
        for (int dz = -1; dz <= 1; ++dz)
            for (int dy = -1; dy <= 1; ++dy)
                for (int dx = -1; dx <= 1; ++dx) {
                    vb_idx k, j, i;
                    double w;
                    if (!vb_fe_child(dz, dy, dx, K, J, I, zf, yf, xf, &k, &j, &i, &w)) continue;
                    const vb_idx m = (k * yf + j) * xf + i;
                    s0 += w * rf[3 * m];
                    s1 += w * rf[3 * m + 1];
                    s2 += w * rf[3 * m + 2];
                }
        rc[3 * n] = s0 * (double)mask_c[3 * n];
        rc[3 * n + 1] = s1 * (double)mask_c[3 * n + 1];
        rc[3 * n + 2] = s2 * (double)mask_c[3 * n + 2];
    }
}

// xf += mask_f * P ec (trilinear interpolation) at the active fine nodes.
extern "C" __global__ void vb_fe_prolong_add(const double* __restrict__ ec, double* __restrict__ xf,
                                             const vb_i64* __restrict__ nodes_f, vb_i64 n_active,
                                             const unsigned char* __restrict__ mask_f, vb_i64 NZf, vb_i64 NYf,
                                             vb_i64 NXf, vb_i64 NZc, vb_i64 NYc, vb_i64 NXc) {
    const vb_idx na = (vb_idx)n_active, yf = (vb_idx)NYf, xf_ = (vb_idx)NXf;
    const vb_idx zc = (vb_idx)NZc, yc = (vb_idx)NYc, xc = (vb_idx)NXc;
    for (vb_idx t = vb_tid(); t < na; t += vb_stride()) {
        const vb_idx n = (vb_idx)nodes_f[t];
        const vb_idx k = n / (yf * xf_), j = (n / xf_) % yf, i = n % xf_;
        double s0 = 0.0, s1 = 0.0, s2 = 0.0;
        for (int cz = 0; cz < 2; ++cz)
            for (int cy = 0; cy < 2; ++cy)
                for (int cx = 0; cx < 2; ++cx) {
                    vb_idx K, J, I;
                    double w;
                    if (!vb_fe_parent(cz, cy, cx, k, j, i, zc, yc, xc, &K, &J, &I, &w)) continue;
                    const vb_idx m = (K * yc + J) * xc + I;
                    s0 += w * ec[3 * m];
                    s1 += w * ec[3 * m + 1];
                    s2 += w * ec[3 * m + 2];
                }
        xf[3 * n] += s0 * (double)mask_f[3 * n];
        xf[3 * n + 1] += s1 * (double)mask_f[3 * n + 1];
        xf[3 * n + 2] += s2 * (double)mask_f[3 * n + 2];
    }
}

// out[e] = 1/2 E_e u_e^T K^ u_e for every element (0 where E_e = 0).
extern "C" __global__ void vb_fe_energy(const double* __restrict__ x, const double* __restrict__ emod,
                                        const double* __restrict__ kb, double* __restrict__ out,
                                        vb_i64 nz, vb_i64 ny, vb_i64 nx) {
    const vb_idx ey = (vb_idx)ny, ex = (vb_idx)nx, n = (vb_idx)(nz * ny * nx);
    const vb_idx NY = ey + 1, NX = ex + 1;
    for (vb_idx t = vb_tid(); t < n; t += vb_stride()) {
        const vb_idx k = t / (ey * ex), j = (t / ex) % ey, i = t % ex;
        const double e = emod[((k + 1) * (ey + 2) + (j + 1)) * (ex + 2) + (i + 1)];
        if (e == 0.0) {
            out[t] = 0.0;
            continue;
        }
        double ue[24];
        for (int b = 0; b < 8; ++b) {
            const vb_idx m = ((k + (b >> 2)) * NY + j + ((b >> 1) & 1)) * NX + i + (b & 1);
            ue[3 * b] = x[3 * m];
            ue[3 * b + 1] = x[3 * m + 1];
            ue[3 * b + 2] = x[3 * m + 2];
        }
        double s = 0.0;
        for (int a = 0; a < 8; ++a)
            for (int c = 0; c < 3; ++c) {
                double r = 0.0;
                for (int b = 0; b < 8; ++b)
                    for (int d = 0; d < 3; ++d) r += kb[((a * 8 + b) * 3 + c) * 3 + d] * ue[3 * b + d];
                s += ue[3 * a + c] * r;
            }
        out[t] = 0.5 * e * s;
    }
}

// ---------------------------------------------------------------- Galerkin coarse levels
// A coarse level's operator: a 27-point node stencil of 3x3 blocks per active node,
// st[(t * 27 + o) * 9 + 3 c + d], o = 9 (dz+1) + 3 (dy+1) + (dx+1). The row offset t * 243
// is formed in 64 bits (st of the first coarse level passes 2^31 entries near 512^3 voxels,
// while every grid index still fits the launch's vb_idx).

// y = mask * (S x) at the active nodes of a stencil level.
extern "C" __global__ void vb_fe_stencil_apply(const double* __restrict__ x, double* __restrict__ y,
                                               const double* __restrict__ st, const vb_i64* __restrict__ nodes,
                                               vb_i64 n_active, const unsigned char* __restrict__ mask,
                                               vb_i64 NZ, vb_i64 NY, vb_i64 NX) {
    const vb_idx na = (vb_idx)n_active, nz_ = (vb_idx)NZ, ny = (vb_idx)NY, nx = (vb_idx)NX;
    const vb_idx sz = ny * nx;
    for (vb_idx t = vb_tid(); t < na; t += vb_stride()) {
        const vb_idx n = (vb_idx)nodes[t];
        const vb_idx k = n / sz, j = (n / nx) % ny, i = n % nx;
        const double* row = st + (vb_i64)t * 243;
        double a0 = 0.0, a1 = 0.0, a2 = 0.0;
        for (int dz = -1; dz <= 1; ++dz) {
            if (k + dz < 0 || k + dz >= nz_) continue;
            for (int dy = -1; dy <= 1; ++dy) {
                if (j + dy < 0 || j + dy >= ny) continue;
                for (int dx = -1; dx <= 1; ++dx) {
                    if (i + dx < 0 || i + dx >= nx) continue;
                    const int o = (dz + 1) * 9 + (dy + 1) * 3 + (dx + 1);
                    const vb_idx m = n + dz * sz + dy * nx + dx;
                    const double u0 = x[3 * m], u1 = x[3 * m + 1], u2 = x[3 * m + 2];
                    const double* s = row + o * 9;
                    a0 += s[0] * u0 + s[1] * u1 + s[2] * u2;
                    a1 += s[3] * u0 + s[4] * u1 + s[5] * u2;
                    a2 += s[6] * u0 + s[7] * u1 + s[8] * u2;
                }
            }
        }
        y[3 * n] = a0 * (double)mask[3 * n];
        y[3 * n + 1] = a1 * (double)mask[3 * n + 1];
        y[3 * n + 2] = a2 * (double)mask[3 * n + 2];
    }
}

// st = P^T (M A M) P at the active nodes of the first coarse level, from the fine elements
// (cpu.py: fe_galerkin_fine). gk = W_o^T K^ W_o as (8 o, 8 a, 8 b, 3, 3), wt = W as
// (8 o, 8 p, 8 a). st must be zero on entry.
extern "C" __global__ void vb_fe_galerkin_fine(double* __restrict__ st, const double* __restrict__ emod,
                                               const vb_i64* __restrict__ nodes_c, vb_i64 n_active,
                                               const unsigned char* __restrict__ free_f,
                                               const double* __restrict__ kb, const double* __restrict__ gk,
                                               const double* __restrict__ wt, double scale, vb_i64 NZf, vb_i64 NYf,
                                               vb_i64 NXf, vb_i64 NZc, vb_i64 NYc, vb_i64 NXc) {
    const vb_idx na = (vb_idx)n_active, yf = (vb_idx)NYf, xf = (vb_idx)NXf;
    const vb_idx zc = (vb_idx)NZc, yc = (vb_idx)NYc, xc = (vb_idx)NXc;
    const vb_idx szf = yf * xf, ey = xf + 1, ez = (yf + 1) * (xf + 1);
    for (vb_idx t = vb_tid(); t < na; t += vb_stride()) {
        const vb_idx n = (vb_idx)nodes_c[t];
        const vb_idx K = n / (yc * xc), J = (n / xc) % yc, I = n % xc;
        double* row = st + (vb_i64)t * 243;
        for (int cz = 0; cz < 2; ++cz) {
            const vb_idx Kc = K - 1 + cz;
            if (Kc < 0 || Kc >= zc - 1) continue;
            for (int cy = 0; cy < 2; ++cy) {
                const vb_idx Jc = J - 1 + cy;
                if (Jc < 0 || Jc >= yc - 1) continue;
                for (int cx = 0; cx < 2; ++cx) {
                    const vb_idx Ic = I - 1 + cx;
                    if (Ic < 0 || Ic >= xc - 1) continue;
                    const int a = (1 - cz) * 4 + (1 - cy) * 2 + (1 - cx);
                    for (int o = 0; o < 8; ++o) {
                        const vb_idx kz = 2 * Kc + (o >> 2), jy = 2 * Jc + ((o >> 1) & 1), ix = 2 * Ic + (o & 1);
                        const double e = emod[(kz + 1) * ez + (jy + 1) * ey + (ix + 1)];
                        if (e == 0.0) continue;
                        const double es = e * scale;
                        const vb_idx base = kz * szf + jy * xf + ix;
                        bool whole = true;
                        for (int p = 0; p < 8; ++p) {
                            const vb_idx mp = base + (p >> 2) * szf + ((p >> 1) & 1) * xf + (p & 1);
                            if (free_f[3 * mp] == 0 || free_f[3 * mp + 1] == 0 || free_f[3 * mp + 2] == 0)
                                whole = false;
                        }
                        for (int b = 0; b < 8; ++b) {
                            const int ob = (b >> 2) * 9 + ((b >> 1) & 1) * 3 + (b & 1) + (cz - 1) * 9 + (cy - 1) * 3 +
                                           (cx - 1) + 13;
                            for (int c = 0; c < 3; ++c)
                                for (int d = 0; d < 3; ++d) {
                                    double v;
                                    if (whole) {
                                        v = gk[(((o * 8 + a) * 8 + b) * 3 + c) * 3 + d];
                                    } else {
                                        v = 0.0;
                                        for (int p = 0; p < 8; ++p) {
                                            const vb_idx mp = base + (p >> 2) * szf + ((p >> 1) & 1) * xf + (p & 1);
                                            const double wp = wt[(o * 8 + p) * 8 + a] * (double)free_f[3 * mp + c];
                                            if (wp == 0.0) continue;
                                            double r = 0.0;
                                            for (int q = 0; q < 8; ++q) {
                                                const vb_idx mq = base + (q >> 2) * szf + ((q >> 1) & 1) * xf + (q & 1);
                                                r += kb[((p * 8 + q) * 3 + c) * 3 + d] *
                                                     (wt[(o * 8 + q) * 8 + b] * (double)free_f[3 * mq + d]);
                                            }
                                            v += wp * r;
                                        }
                                    }
                                    row[ob * 9 + c * 3 + d] += es * v;
                                }
                        }
                    }
                }
            }
        }
    }
}

// st_c = P^T (M S_f M) P at the active nodes of a coarse level, from the stencil level below
// (cpu.py: fe_galerkin_coarse). index_f: a fine node's row of st_f (-1: inactive). st_c must
// be zero on entry.
extern "C" __global__ void vb_fe_galerkin_coarse(double* __restrict__ st_c, const double* __restrict__ st_f,
                                                 const vb_i64* __restrict__ index_f,
                                                 const vb_i64* __restrict__ nodes_c, vb_i64 n_active,
                                                 const unsigned char* __restrict__ free_f, vb_i64 NZf, vb_i64 NYf,
                                                 vb_i64 NXf, vb_i64 NZc, vb_i64 NYc, vb_i64 NXc) {
    const vb_idx na = (vb_idx)n_active, zf = (vb_idx)NZf, yf = (vb_idx)NYf, xf = (vb_idx)NXf;
    const vb_idx zc = (vb_idx)NZc, yc = (vb_idx)NYc, xc = (vb_idx)NXc;
    for (vb_idx t = vb_tid(); t < na; t += vb_stride()) {
        const vb_idx n = (vb_idx)nodes_c[t];
        const vb_idx K = n / (yc * xc), J = (n / xc) % yc, I = n % xc;
        double* row = st_c + (vb_i64)t * 243;
        for (int dz = -1; dz <= 1; ++dz)
            for (int dy = -1; dy <= 1; ++dy)
                for (int dx = -1; dx <= 1; ++dx) {
                    vb_idx k, j, i;
                    double wi;
                    if (!vb_fe_child(dz, dy, dx, K, J, I, zf, yf, xf, &k, &j, &i, &wi)) continue;
                    const vb_idx fi = (k * yf + j) * xf + i;
                    const vb_i64 tf = index_f[fi];
                    if (tf < 0) continue;
                    const double* frow = st_f + tf * 243;
                    for (int q = 0; q < 27; ++q) {
                        const vb_idx kq = k + (q / 9 - 1), jq = j + ((q / 3) % 3 - 1), iq = i + (q % 3 - 1);
                        if (kq < 0 || kq >= zf || jq < 0 || jq >= yf || iq < 0 || iq >= xf) continue;
                        const vb_idx fj = (kq * yf + jq) * xf + iq;
                        // the coarse nodes that interpolate to fine node fj, and their weights
                        for (int mz = 0; mz < 2; ++mz)
                            for (int my = 0; my < 2; ++my)
                                for (int mx = 0; mx < 2; ++mx) {
                                    vb_idx Mz, My, Mx;
                                    double wm;
                                    if (!vb_fe_parent(mz, my, mx, kq, jq, iq, zc, yc, xc, &Mz, &My, &Mx, &wm)) continue;
                                    const double w = wi * wm;
                                    const int oc = (int)((Mz - K + 1) * 9 + (My - J + 1) * 3 + (Mx - I + 1));
                                    for (int c = 0; c < 3; ++c) {
                                        if (free_f[3 * fi + c] == 0) continue;
                                        for (int d = 0; d < 3; ++d) {
                                            if (free_f[3 * fj + d] == 0) continue;
                                            row[oc * 9 + c * 3 + d] += w * frow[q * 9 + c * 3 + d];
                                        }
                                    }
                                }
                    }
                }
    }
}
