// Fused attention for blocks whose probabilities nobody reads: per (image, head, query)
//   O[b, i, h] = softmax_j(Q[b, i, h] . K[b, j, h] * scale (+ log size[b, j])) . V[b, j, h]
// with an online softmax over blocks of KB keys, so no N x N matrix is written. Q, K and V are read
// in place from the qkv rows [B, N, 3D]; O goes head by head into [B, N, D]. Keys past an image's
// valid count (masked rows after threshold pruning) take no part, as in softmax.wgsl, and the
// queries past it are not computed.
//
// Each invocation owns one query; the invocations of a workgroup share (image, head), so every K
// and V value is uniform across the workgroup (one load, broadcast on CPU adapters). This file is
// a template: the host sets DH4 = head dim / 4 (it must be a multiple of 4); as written, DH4 = 16.
// `AttentionParams` is generated from src/gpu/kernels/attention.rs.

const DH4: u32 = 16u;
const WG: u32 = 32u;
const KB: u32 = 4u; // keys per online-softmax step (4 measured best on llvmpipe; 8 and 16 slower)

@group(0) @binding(0) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> sizes: array<f32>;
@group(0) @binding(2) var<storage, read> counts: array<u32>;
alias T_out = f32; // f16 where the host stores the context as halves
@group(0) @binding(3) var<storage, read_write> out: array<vec4<T_out>>;
@group(0) @binding(4) var<uniform> p: AttentionParams;

@compute @workgroup_size(WG, 1, 1)
fn attention(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let b = wid.z;
    let h = wid.y;
    let query = wid.x * WG + li;
    let i = min(query, p.n - 1u);
    let row4 = 3u * p.d / 4u;              // vec4s per qkv row
    let img = b * p.n * row4;
    let head = h * DH4;
    var valid = p.n;
    if (p.masked == 1u) {
        valid = clamp(counts[b], 1u, p.n);
    }
    if (query >= valid) {
        return; // a masked query: nothing reads its row
    }
    var q: array<vec4<f32>, DH4>;
    let qbase = img + i * row4 + head;
    for (var t = 0u; t < DH4; t++) {
        q[t] = qkv[qbase + t] * p.scale;
    }
    var acc: array<vec4<f32>, DH4>;
    var m = NEG;
    var l = 0.0;
    let kofs = img + p.d / 4u + head;
    let vofs = img + 2u * p.d / 4u + head;
    for (var j0 = 0u; j0 < valid; j0 += KB) {
        var s: array<f32, KB>;
        var mb = m;
        for (var u = 0u; u < KB; u++) {
            let j = min(j0 + u, valid - 1u);
            let kb = kofs + j * row4;
            var dot4 = vec4<f32>(0.0);
            for (var t = 0u; t < DH4; t++) {
                dot4 = fma(q[t], qkv[kb + t], dot4);
            }
            var x = dot4.x + dot4.y + dot4.z + dot4.w;
            if (p.log_size == 1u) {
                x += log(sizes[b * p.n + j]);
            }
            if (j0 + u >= valid) {
                x = NEG;
            }
            s[u] = x;
            mb = max(mb, x);
        }
        let corr = exp(m - mb);
        l *= corr;
        for (var t = 0u; t < DH4; t++) {
            acc[t] *= corr;
        }
        for (var u = 0u; u < KB; u++) {
            let e = exp(s[u] - mb);
            l += e;
            let vb = vofs + min(j0 + u, valid - 1u) * row4;
            for (var t = 0u; t < DH4; t++) {
                acc[t] = fma(vec4<f32>(e), qkv[vb + t], acc[t]);
            }
        }
        m = mb;
    }
    if (query < p.n) {
        let inv = 1.0 / l;
        let obase = (b * p.n + i) * (p.d / 4u) + head;
        for (var t = 0u; t < DH4; t++) {
            out[obase + t] = vec4<T_out>(acc[t] * inv);
        }
    }
}
