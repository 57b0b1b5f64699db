// Row softmax in place: the attention probabilities P[b, h, i, :] stay in their buffer for token scoring.

struct Params {
    rows: u32,
    cols: u32,
    off: u32,
    row_stride: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

const WG: u32 = 128u;
var<workgroup> red: array<f32, WG>;

fn reduce_max(lane: u32, v: f32) -> f32 {
    red[lane] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            red[lane] = max(red[lane], red[lane + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(lane: u32, v: f32) -> f32 {
    red[lane] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            red[lane] += red[lane + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// One workgroup per row; rows beyond 65535 spill into the y dimension of the dispatch.
@compute @workgroup_size(128, 1, 1)
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
    var m = -3.0e38;
    for (var j = lane; j < p.cols; j += WG) {
        m = max(m, x[base + j]);
    }
    m = reduce_max(lane, m);
    var s = 0.0;
    for (var j = lane; j < p.cols; j += WG) {
        let e = exp(x[base + j] - m);
        x[base + j] = e;
        s += e;
    }
    s = reduce_sum(lane, s);
    let inv = 1.0 / s;
    for (var j = lane; j < p.cols; j += WG) {
        x[base + j] *= inv;
    }
}
