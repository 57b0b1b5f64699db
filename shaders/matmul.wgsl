// Batched, strided matrix multiply with a fused epilogue:
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
@group(0) @binding(4) var<uniform> p: GemmParams;

struct Bases { a: u32, b: u32, c: u32 }

fn bases(z: u32) -> Bases {
    let zo = z / p.heads;
    let zi = z % p.heads;
    return Bases(
        p.a_off + zo * p.a_zo + zi * p.a_zi,
        p.b_off + zo * p.b_zo + zi * p.b_zi,
        p.c_off + zo * p.c_zo + zi * p.c_zi,
    );
}

// Tiled kernel: a 64 x 64 tile of C per workgroup of 16 x 16 threads, 4 x 4 outputs per thread,
// K in steps of 16 through workgroup memory (8 KiB, inside WebGPU's 16 KiB default).
const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> a_tile: array<f32, 1024>; // [BK][BM]: a thread reads 4 rows of one k at stride 16
var<workgroup> b_tile: array<f32, 1024>; // [BK][BN]

@compute @workgroup_size(16, 16, 1)
fn gemm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let base = bases(wid.z);
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var i = 0u; i < 4u; i++) {
            let idx = li + i * 256u;
            // A: k fastest (A is row-major in every use, so these loads are contiguous).
            let am = idx / BK;
            let ak = idx % BK;
            var av = 0.0;
            if (m0 + am < p.m && k0 + ak < p.k) {
                av = f32(a[base.a + (m0 + am) * p.a_rs + (k0 + ak) * p.a_ks]);
            }
            a_tile[ak * BM + am] = av;
            // B: n fastest.
            let bk = idx / BN;
            let bn = idx % BN;
            var bv = 0.0;
            if (k0 + bk < p.k && n0 + bn < p.n) {
                bv = f32(b[base.b + (k0 + bk) * p.b_ks + (n0 + bn) * p.b_ns]);
            }
            b_tile[bk * BN + bn] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var ar: array<f32, 4>;
            var br: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                ar[i] = a_tile[kk * BM + lid.y + 16u * i];
                br[i] = b_tile[kk * BN + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i][j] = fma(ar[i], br[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let row = m0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = n0 + lid.x + 16u * j;
            if (row < p.m && col < p.n) {
                store(base.c, row, col, acc[i][j]);
            }
        }
    }
}

// The textbook kernel, one thread per output: the baseline the tiled kernel is measured against.
@compute @workgroup_size(16, 16, 1)
fn gemm_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.y;
    let col = gid.x;
    if (row >= p.m || col >= p.n) {
        return;
    }
    let base = bases(gid.z);
    var acc = 0.0;
    for (var k = 0u; k < p.k; k++) {
        acc = fma(f32(a[base.a + row * p.a_rs + k * p.a_ks]), f32(b[base.b + k * p.b_ks + col * p.b_ns]), acc);
    }
    store(base.c, row, col, acc);
}
