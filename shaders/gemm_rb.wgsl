// Register-blocked GEMM without workgroup memory or barriers: the same contract as matmul.wgsl's
//   C[z][m, n] = epilogue(alpha * sum_k A[z][m, k] * B[z][k, n]),  epilogue: (+ bias[n]) (GELU) (+ C)
// Each invocation computes TM rows x (4 * TN4) columns of C. The 16 invocations of a workgroup
// take consecutive row blocks of the SAME column block, so every B value a workgroup reads is
// uniform across it (one load, broadcast) and only A is read per invocation: on a CPU-backed
// adapter (llvmpipe: invocations are SIMD lanes, barriers are coroutine switches) this beats
// shared-memory tiling; on a GPU the tiled kernel may win, and the kernel library measures both.
//
// This file is a template: the host rewrites the two `const` lines below (the tile) and may swap the
// A and B load blocks for their vec4 versions (gemm_rb_vec4.wgsl) when a view is aligned for them.
// With gemm_common.wgsl appended (the `GEMM_RB` family) it is a complete shader (TM = 4, TN4 = 1, scalar
// loads), validated like the others. The epilogue switches and `store` come from there, `GemmParams`
// from src/gpu/kernels/gemm.rs.

const TM: u32 = 4u;
const TN4: u32 = 1u;
const WG: u32 = 16u; // invocations per workgroup: 16 x TM rows, so small batches still split into several workgroups

@group(0) @binding(2) var<storage, read> bias: array<f32>;
alias T_c = f32; // the host may set any of T_a, T_b, T_c to f16 (storage only: sums stay f32)
@group(0) @binding(3) var<storage, read_write> c: array<T_c>;
@group(0) @binding(4) var<storage, read> live: array<u32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<uniform> p: GemmParams;

// @a-begin
alias T_a = f32;
@group(0) @binding(0) var<storage, read> a: array<T_a>;
fn la(i: u32) -> f32 { return f32(a[i]); }
// Four values of A at i, i + s, i + 2s, i + 3s (four consecutive k of one row).
fn la4(i: u32, s: u32) -> vec4<f32> { return vec4<f32>(vec4<T_a>(a[i], a[i + s], a[i + 2u * s], a[i + 3u * s])); }
// @a-end

// @b-begin
alias T_b = f32;
@group(0) @binding(1) var<storage, read> b: array<T_b>;
fn lb(i: u32) -> f32 { return f32(b[i]); }
// Four consecutive columns (col4 * 4 ..) of the B row starting at `row`; columns past n are clamped.
fn lb4(row: u32, col4: u32) -> vec4<f32> {
    let c0 = col4 * 4u;
    let last = p.n - 1u;
    return vec4<f32>(vec4<T_b>(
        b[row + min(c0, last) * p.b_ns],
        b[row + min(c0 + 1u, last) * p.b_ns],
        b[row + min(c0 + 2u, last) * p.b_ns],
        b[row + min(c0 + 3u, last) * p.b_ns],
    ));
}
// @b-end

@compute @workgroup_size(WG, 1, 1)
fn gemm_rb(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let zo = wid.z / p.heads;
    let zi = wid.z % p.heads;
    let a_base = p.a_off + zo * p.a_zo + zi * p.a_zi;
    let b_base = p.b_off + zo * p.b_zo + zi * p.b_zi;
    let c_base = p.c_off + zo * p.c_zo + zi * p.c_zi;
    // Packed live rows put the row tiles along x (see tile_ids in gemm_common.wgsl).
    let tiles = tile_ids(wid);
    let col4 = tiles.x * TN4;
    let m0 = (tiles.y * WG + li) * TM;
    let nend = n_end(wid.z);
    let kend = k_end(wid.z);
    if (m0 >= p.m || !rows_live(wid.z, m0) || col4 * 4u >= nend) {
        return; // rows past m, masked rows or keys only: no barriers here, so each invocation may leave
    }
    // Rows past m repeat the last row (valid loads) and are not stored.
    var arow: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        arow[i] = a_base + data_row(min(m0 + i, p.m - 1u)) * p.a_rs;
    }
    var acc: array<array<vec4<f32>, TN4>, TM>;
    var sum: array<vec4<f32>, TM>; // NORM: each row's sums of x and x^2
    var sq: array<vec4<f32>, TM>;
    let k4 = kend & ~3u;
    for (var k = 0u; k < k4; k += 4u) {
        var av: array<vec4<f32>, TM>;
        for (var i = 0u; i < TM; i++) {
            av[i] = la4(arow[i] + k * p.a_ks, p.a_ks);
            if NORM {
                sum[i] += av[i];
                sq[i] = fma(av[i], av[i], sq[i]);
            }
        }
        for (var kk = 0u; kk < 4u; kk++) {
            let brow = b_base + (k + kk) * p.b_ks;
            for (var j = 0u; j < TN4; j++) {
                let bv = lb4(brow, col4 + j);
                for (var i = 0u; i < TM; i++) {
                    acc[i][j] = fma(vec4<f32>(av[i][kk]), bv, acc[i][j]);
                }
            }
        }
    }
    for (var k = k4; k < kend; k++) {
        let brow = b_base + k * p.b_ks;
        for (var i = 0u; i < TM; i++) {
            if NORM {
                let v = la(arow[i] + k * p.a_ks);
                sum[i].x += v;
                sq[i].x = fma(v, v, sq[i].x);
            }
        }
        for (var j = 0u; j < TN4; j++) {
            let bv = lb4(brow, col4 + j);
            for (var i = 0u; i < TM; i++) {
                acc[i][j] = fma(vec4<f32>(la(arow[i] + k * p.a_ks)), bv, acc[i][j]);
            }
        }
    }
    for (var i = 0u; i < TM; i++) {
        let row = m0 + i;
        if (row < p.m && row_live(wid.z, row)) {
            let r = data_row(row);
            let row_sum = dot(sum[i], vec4<f32>(1.0));
            let row_sq = dot(sq[i], vec4<f32>(1.0));
            for (var j = 0u; j < TN4; j++) {
                for (var e = 0u; e < 4u; e++) {
                    let col = (col4 + j) * 4u + e;
                    if (col < nend) {
                        store_normed(c_base, r, col, acc[i][j][e], row_sum, row_sq);
                    }
                }
            }
        }
    }
}
