// LayerNorm over the last dimension: y = (x - mean) / sqrt(var + eps) * gamma + beta.
// Rows are addressed as (group, row-in-group) so the classifier can normalise only the CLS
// (and distillation) rows of each image: row r is at off + (r / group) * group_stride + (r % group) * row_stride.
// After threshold pruning (live_map = 1) only the live rows are normalised, packed: live[0] of the
// rows are live and row r stands for row live[1 + r] (see gemm_common.wgsl); masked rows are not
// read by anything.

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
alias T_y = f32; // f16 where the host stores the normalised rows as halves
@group(0) @binding(3) var<storage, read_write> y: array<T_y>;
@group(0) @binding(4) var<storage, read> live: array<u32>;
@group(0) @binding(5) var<uniform> p: LayerNormParams;

const WG: u32 = 32u; // few barrier rounds (costly on CPU adapters); the subgroup variant sets one subgroup

@compute @workgroup_size(WG, 1, 1)
fn layernorm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    var r = wid.x + wid.y * nwg.x;
    if (r >= p.rows) {
        return;
    }
    if (p.live_map == 1u) {
        // Uniform: r comes from the workgroup id and `live` is read-only.
        if (r >= live[0]) {
            return;
        }
        r = min(live[1u + r], p.rows - 1u);
    }
    let src = p.in_off + (r / p.group) * p.in_gs + (r % p.group) * p.in_rs;
    let dst = p.out_off + (r / p.group) * p.out_gs + (r % p.group) * p.out_rs;
    var s = 0.0;
    for (var j = lane; j < p.d; j += WG) {
        s += x[src + j];
    }
    let mean = reduce_sum(lane, s) / f32(p.d);
    // Two passes (mean, then variance) for accuracy on rows with a large mean.
    var q = 0.0;
    for (var j = lane; j < p.d; j += WG) {
        let t = x[src + j] - mean;
        q += t * t;
    }
    let rstd = inverseSqrt(reduce_sum(lane, q) / f32(p.d) + p.eps);
    for (var j = lane; j < p.d; j += WG) {
        y[dst + j] = T_y((x[src + j] - mean) * rstd * gamma[j] + beta[j]);
    }
}
