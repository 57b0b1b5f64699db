// Row softmax in place: the attention probabilities P[b, h, i, :] stay in their buffer for token scoring.
// Token pruning adds two optional key-side terms: ToMe's proportional attention (log of each key's
// token size added to its logit) and masked rows (keys past an image's valid count get probability 0;
// the rows of masked queries are not computed, since nothing reads them).

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> sizes: array<f32>;
@group(0) @binding(2) var<storage, read> counts: array<u32>;
@group(0) @binding(3) var<uniform> p: SoftmaxParams;

const WG: u32 = 32u; // few barrier rounds (costly on CPU adapters); the subgroup variant sets one subgroup

// One workgroup per row; rows beyond 65535 spill into the y dimension of the dispatch.
@compute @workgroup_size(WG, 1, 1)
fn softmax_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let base = p.off + row * p.row_stride;
    let image = row / max(p.rows_per_image, 1u);
    var valid = p.cols;
    if (p.masked == 1u) {
        valid = clamp(counts[image], 1u, p.cols);
        // A masked query (attention is square: query i is row i of its head). Uniform: `row` comes
        // from the workgroup id and `counts` is read-only.
        if ((row % p.rows_per_image) % p.cols >= valid) {
            return;
        }
    }
    var m = NEG;
    for (var j = lane; j < valid; j += WG) {
        var v = x[base + j];
        if (p.log_size == 1u) {
            v += log(sizes[image * p.cols + j]);
            x[base + j] = v;
        }
        m = max(m, v);
    }
    m = reduce_max(lane, m);
    var s = 0.0;
    for (var j = lane; j < p.cols; j += WG) {
        let e = select(0.0, exp(x[base + j] - m), j < valid);
        x[base + j] = e;
        s += e;
    }
    s = reduce_sum(lane, s);
    let inv = 1.0 / s;
    for (var j = lane; j < p.cols; j += WG) {
        x[base + j] *= inv;
    }
}
