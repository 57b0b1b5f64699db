// The textbook GEMM, one invocation per output: the baseline every other kernel is measured against
// (and, on some GPUs, faster than a poorly tiled kernel). Batched, strided, with a fused epilogue:
//   C[z][m, n] = epilogue(alpha * sum_k A[z][m, k] * B[z][k, n])
//   epilogue: (+ bias[n]) -> (GELU) -> (+ C[z][m, n], the residual already in C)
// The batch index z = outer * heads + inner, so one kernel serves linear layers (z = 1),
// attention scores Q.K^T and P.V (z = images x heads) through strides alone.
// The epilogue switches and `store` are in gemm_common.wgsl, which the host appends; `GemmParams`
// is generated from its Rust declaration (src/gpu/kernels/gemm.rs).

// A, B and C are stored as T_a, T_b, T_c: f32 as written, f16 where the host says so (sums stay f32).
alias T_a = f32;
alias T_b = f32;
alias T_c = f32;
@group(0) @binding(0) var<storage, read> a: array<T_a>;
@group(0) @binding(1) var<storage, read> b: array<T_b>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<T_c>;
@group(0) @binding(4) var<storage, read> live: array<u32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<uniform> p: GemmParams;

@compute @workgroup_size(16, 16, 1)
fn gemm_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.y;
    let col = gid.x;
    if (row >= p.m || col >= n_end(gid.z) || !row_live(gid.z, row)) {
        return;
    }
    let base = bases(gid.z);
    let r = data_row(row);
    var acc = 0.0;
    var sum = 0.0; // NORM: the row's sums of x and x^2
    var sq = 0.0;
    for (var k = 0u; k < k_end(gid.z); k++) {
        let av = f32(a[base.a + r * p.a_rs + k * p.a_ks]);
        acc = fma(av, f32(b[base.b + k * p.b_ks + col * p.b_ns]), acc);
        if NORM {
            sum += av;
            sq = fma(av, av, sq);
        }
    }
    store_normed(base.c, r, col, acc, sum, sq);
}
