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

// y_n = scale * sum_e E_e * K^[a(n,e), :] u_e  (three components), before masking.
__device__ __forceinline__ void vb_fe_node_apply(const double* __restrict__ x, const double* __restrict__ emod,
                                                 const double* __restrict__ kb, vb_idx n, vb_idx NY, vb_idx NX,
                                                 double* a_out) {
    const vb_idx sy = NX, sz = NY * NX;
    const vb_idx k = n / sz, j = (n / sy) % NY, i = n % NX;
    const vb_idx ey = NX + 1, ez = (NY + 1) * (NX + 1);  // padded element strides
    double a0 = 0.0, a1 = 0.0, a2 = 0.0;
    for (int oz = 0; oz < 2; ++oz)
        for (int oy = 0; oy < 2; ++oy)
            for (int ox = 0; ox < 2; ++ox) {
                const double e = emod[(k + oz) * ez + (j + oy) * ey + (i + ox)];
                if (e == 0.0) continue;
                const int a = (1 - oz) * 4 + (1 - oy) * 2 + (1 - ox);
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
        vb_fe_node_apply(x, emod, kb, n, ny, nx, a);
        y[3 * n] = scale * a[0] * (double)mask[3 * n];
        y[3 * n + 1] = scale * a[1] * (double)mask[3 * n + 1];
        y[3 * n + 2] = scale * a[2] * (double)mask[3 * n + 2];
    }
}

extern "C" __global__ void vb_fe_diag(double* __restrict__ out, const double* __restrict__ emod,
                                      const vb_i64* __restrict__ nodes, vb_i64 n_active,
                                      const double* __restrict__ kb, double scale, vb_i64 NZ, vb_i64 NY, vb_i64 NX) {
    const vb_idx na = (vb_idx)n_active, ny = (vb_idx)NY, nx = (vb_idx)NX;
    const vb_idx sz = ny * nx, ey = nx + 1, ez = (ny + 1) * (nx + 1);
    for (vb_idx t = vb_tid(); t < na; t += vb_stride()) {
        const vb_idx n = (vb_idx)nodes[t];
        const vb_idx k = n / sz, j = (n / nx) % ny, i = n % nx;
        double d0 = 0.0, d1 = 0.0, d2 = 0.0;
        for (int oz = 0; oz < 2; ++oz)
            for (int oy = 0; oy < 2; ++oy)
                for (int ox = 0; ox < 2; ++ox) {
                    const double e = emod[(k + oz) * ez + (j + oy) * ey + (i + ox)];
                    const int a = (1 - oz) * 4 + (1 - oy) * 2 + (1 - ox);
                    const double* kk = kb + (a * 8 + a) * 9;
                    d0 += e * kk[0];
                    d1 += e * kk[4];
                    d2 += e * kk[8];
                }
        out[3 * n] = scale * d0;
        out[3 * n + 1] = scale * d1;
        out[3 * n + 2] = scale * d2;
    }
}

__device__ __forceinline__ double vb_fe_w(int d) { return d == 0 ? 1.0 : 0.5; }

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
        for (int dz = -1; dz <= 1; ++dz) {
            const vb_idx k = 2 * K + dz;
            if (k < 0 || k >= zf) continue;
            for (int dy = -1; dy <= 1; ++dy) {
                const vb_idx j = 2 * J + dy;
                if (j < 0 || j >= yf) continue;
                for (int dx = -1; dx <= 1; ++dx) {
                    const vb_idx i = 2 * I + dx;
                    if (i < 0 || i >= xf) continue;
                    const double w = vb_fe_w(dz) * vb_fe_w(dy) * vb_fe_w(dx);
                    const vb_idx m = (k * yf + j) * xf + i;
                    s0 += w * rf[3 * m];
                    s1 += w * rf[3 * m + 1];
                    s2 += w * rf[3 * m + 2];
                }
            }
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
        for (int cz = 0; cz < 2; ++cz) {
            const vb_idx K = (k + cz) / 2;
            if ((k & 1) == 0 && cz == 1) continue;
            const double wz = (k & 1) == 0 ? 1.0 : 0.5;
            if (K >= zc) continue;
            for (int cy = 0; cy < 2; ++cy) {
                const vb_idx J = (j + cy) / 2;
                if ((j & 1) == 0 && cy == 1) continue;
                const double wy = (j & 1) == 0 ? 1.0 : 0.5;
                if (J >= yc) continue;
                for (int cx = 0; cx < 2; ++cx) {
                    const vb_idx I = (i + cx) / 2;
                    if ((i & 1) == 0 && cx == 1) continue;
                    const double wx = (i & 1) == 0 ? 1.0 : 0.5;
                    if (I >= xc) continue;
                    const double w = wz * wy * wx;
                    const vb_idx m = (K * yc + J) * xc + I;
                    s0 += w * ec[3 * m];
                    s1 += w * ec[3 * m + 1];
                    s2 += w * ec[3 * m + 2];
                }
            }
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
