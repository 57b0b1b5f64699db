// Tiled GEMM for GPUs, with matmul.wgsl's contract:
//   C[z][m, n] = epilogue(alpha * sum_k A[z][m, k] * B[z][k, n])
// A workgroup of 16 x 16 invocations computes a BM x BN tile of C. K advances BK at a time through
// workgroup memory; while one slice is multiplied, the next is already loading into registers.
// Each invocation accumulates one 4x4 block of C in a mat4x4 (64x64 per workgroup) or, with WIDE,
// 2 x 2 such blocks 64 rows and 64 columns apart (128x128 per workgroup). The accumulators are plain
// values, never arrays indexed at run time, which some drivers keep in memory instead of registers.
//
// Every invocation loads 4 values of A and 4 of B per slice. Which loads are neighbours follows the
// strides: along k where A's rows are contiguous (every linear layer), along m otherwise; along n
// for B where its rows are contiguous (weights, V), along k for the transposed keys of Q.K^T. So
// consecutive invocations read consecutive addresses in every use.
//
// This file is a template: the host rewrites the `WIDE`, `BM`, `BN` and `BK` lines for the 128x128
// tile (gemm_tiled_source in src/gpu/kernels/gemm.rs). With gemm_common.wgsl appended it is a
// complete shader as written (64x64).

const WIDE: bool = false;
const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u; // BM * BK = BK * BN = 1024: 4 values of each per invocation and slice
const AS: u32 = BM + 4u; // row stride of the A tile: the pad spreads its transposed stores over banks

alias T_a = f32;
alias T_b = f32;
alias T_c = f32; // the host may set any of T_a, T_b, T_c to f16 (storage only: sums stay f32)
@group(0) @binding(0) var<storage, read> a: array<T_a>;
@group(0) @binding(1) var<storage, read> b: array<T_b>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<T_c>;
@group(0) @binding(4) var<storage, read> live: array<u32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<uniform> p: GemmParams;

var<workgroup> a_tile: array<vec4<f32>, BK * AS / 4u>; // [k][m]
var<workgroup> b_tile: array<vec4<f32>, BK * BN / 4u>; // [k][n]

// (m, k) inside the A slice of the e-th value an invocation group loads.
fn a_pos(e: u32) -> vec2<u32> {
    if (p.a_ks == 1u) {
        return vec2<u32>(e / BK, e % BK);
    }
    return vec2<u32>(e % BM, e / BM);
}

// (k, n) inside the B slice.
fn b_pos(e: u32) -> vec2<u32> {
    if (p.b_ns == 1u) {
        return vec2<u32>(e / BN, e % BN);
    }
    return vec2<u32>(e % BK, e / BK);
}

fn load_a(base: u32, m0: u32, k0: u32, kend: u32, e: u32) -> f32 {
    let mk = a_pos(e);
    let m = m0 + mk.x;
    let k = k0 + mk.y;
    if (m < p.m && k < kend) {
        return f32(a[base + data_row(m) * p.a_rs + k * p.a_ks]);
    }
    return 0.0;
}

fn load_b(base: u32, n0: u32, k0: u32, kend: u32, e: u32) -> f32 {
    let kn = b_pos(e);
    let k = k0 + kn.x;
    let n = n0 + kn.y;
    if (k < kend && n < p.n) {
        return f32(b[base + k * p.b_ks + n * p.b_ns]);
    }
    return 0.0;
}

fn put_a(e: u32, v: f32) {
    let mk = a_pos(e);
    a_tile[mk.y * (AS / 4u) + mk.x / 4u][mk.x % 4u] = v;
}

fn put_b(e: u32, v: f32) {
    let kn = b_pos(e);
    b_tile[kn.x * (BN / 4u) + kn.y / 4u][kn.y % 4u] = v;
}

// c + (rows a) x (columns b): column r of the matrix is row r of the 4x4 block.
fn fma_block(c: mat4x4<f32>, a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(
        fma(vec4<f32>(a.x), b, c[0]),
        fma(vec4<f32>(a.y), b, c[1]),
        fma(vec4<f32>(a.z), b, c[2]),
        fma(vec4<f32>(a.w), b, c[3]),
    );
}

// `sum` and `sq`: the row's sums of x and x^2 (NORM).
fn store_row(z: u32, c_base: u32, row: u32, col: u32, v: vec4<f32>, sum: f32, sq: f32) {
    if (row < p.m && row_live(z, row)) {
        let r = data_row(row);
        for (var e = 0u; e < 4u; e++) {
            if (col + e < n_end(z)) {
                store_normed(c_base, r, col + e, v[e], sum, sq);
            }
        }
    }
}

fn store_block(z: u32, c_base: u32, row: u32, col: u32, blk: mat4x4<f32>, sum: vec4<f32>, sq: vec4<f32>) {
    store_row(z, c_base, row, col, blk[0], sum.x, sq.x);
    store_row(z, c_base, row + 1u, col, blk[1], sum.y, sq.y);
    store_row(z, c_base, row + 2u, col, blk[2], sum.z, sq.z);
    store_row(z, c_base, row + 3u, col, blk[3], sum.w, sq.w);
}

@compute @workgroup_size(16, 16, 1)
fn gemm_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let base = bases(wid.z);
    // Packed live rows put the row tiles along x (see tile_ids in gemm_common.wgsl).
    let tiles = tile_ids(wid);
    let m0 = tiles.y * BM;
    let n0 = tiles.x * BN;
    if (!rows_live(wid.z, m0) || n0 >= n_end(wid.z)) {
        return; // masked rows or keys only (uniform: the whole workgroup leaves)
    }
    let kend = k_end(wid.z);
    var ra = vec4<f32>(
        load_a(base.a, m0, 0u, kend, li),
        load_a(base.a, m0, 0u, kend, li + 256u),
        load_a(base.a, m0, 0u, kend, li + 512u),
        load_a(base.a, m0, 0u, kend, li + 768u),
    );
    var rb = vec4<f32>(
        load_b(base.b, n0, 0u, kend, li),
        load_b(base.b, n0, 0u, kend, li + 256u),
        load_b(base.b, n0, 0u, kend, li + 512u),
        load_b(base.b, n0, 0u, kend, li + 768u),
    );
    var c00 = mat4x4<f32>();
    var c01 = mat4x4<f32>();
    var c10 = mat4x4<f32>();
    var c11 = mat4x4<f32>();
    // NORM: the sums of x and x^2 of this invocation's 4 rows (and the 4 rows 64 below, WIDE).
    var sum0 = vec4<f32>();
    var sq0 = vec4<f32>();
    var sum1 = vec4<f32>();
    var sq1 = vec4<f32>();
    for (var k0 = 0u; k0 < kend; k0 += BK) {
        put_a(li, ra.x);
        put_a(li + 256u, ra.y);
        put_a(li + 512u, ra.z);
        put_a(li + 768u, ra.w);
        put_b(li, rb.x);
        put_b(li + 256u, rb.y);
        put_b(li + 512u, rb.z);
        put_b(li + 768u, rb.w);
        workgroupBarrier();
        let k1 = k0 + BK;
        if (k1 < kend) {
            ra = vec4<f32>(
                load_a(base.a, m0, k1, kend, li),
                load_a(base.a, m0, k1, kend, li + 256u),
                load_a(base.a, m0, k1, kend, li + 512u),
                load_a(base.a, m0, k1, kend, li + 768u),
            );
            rb = vec4<f32>(
                load_b(base.b, n0, k1, kend, li),
                load_b(base.b, n0, k1, kend, li + 256u),
                load_b(base.b, n0, k1, kend, li + 512u),
                load_b(base.b, n0, k1, kend, li + 768u),
            );
        }
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = a_tile[kk * (AS / 4u) + lid.y];
            let b0 = b_tile[kk * (BN / 4u) + lid.x];
            c00 = fma_block(c00, a0, b0);
            if NORM {
                sum0 += a0;
                sq0 = fma(a0, a0, sq0);
            }
            if WIDE {
                let a1 = a_tile[kk * (AS / 4u) + 16u + lid.y];
                if NORM {
                    sum1 += a1;
                    sq1 = fma(a1, a1, sq1);
                }
                let b1 = b_tile[kk * (BN / 4u) + 16u + lid.x];
                c01 = fma_block(c01, a0, b1);
                c10 = fma_block(c10, a1, b0);
                c11 = fma_block(c11, a1, b1);
            }
        }
        workgroupBarrier();
    }
    let row = m0 + 4u * lid.y;
    let col = n0 + 4u * lid.x;
    store_block(wid.z, base.c, row, col, c00, sum0, sq0);
    if WIDE {
        store_block(wid.z, base.c, row, col + 64u, c01, sum0, sq0);
        store_block(wid.z, base.c, row + 64u, col, c10, sum1, sq1);
        store_block(wid.z, base.c, row + 64u, col + 64u, c11, sum1, sq1);
    }
}
