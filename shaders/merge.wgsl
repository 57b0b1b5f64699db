// Size-weighted merging, computed from the destination side (WGSL has no float atomics): every
// surviving row t sums itself and the removed rows a that chose it (flags[a] == 0, dst[a] == t),
// weighted by their sizes, and carries the summed size. The merge plan (which rows were removed,
// and where each one goes) comes from the policy: ToMe's bipartite matching, or a match of every
// removed token to its most similar kept one. A spread plan (Token Transforming) gives every
// removed row `spread` destinations with a weight each (`dst` and `weight` are [B, n_in, spread]):
// a removed row then gives each destination that weight times its size, so the sizes still sum to
// the tokens the image started with. A plain merge is a spread of 1 with weight 1.
//
// One workgroup per output row: one invocation lists the (row, slot) pairs that merge into it (in
// order, into workgroup memory: usually none or a few; a row's destinations are distinct, so at
// most one slot per row), then every invocation sums them over its strided set of columns.

const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> m_x: array<f32>;
@group(0) @binding(1) var<storage, read> m_src: array<u32>;      // [B, n_out]: input row of each output row
@group(0) @binding(2) var<storage, read> m_flags: array<u32>;    // [B, n_in]: 0 = removed
@group(0) @binding(3) var<storage, read> m_dst: array<u32>;      // [B, n_in, spread]: where each removed row goes
@group(0) @binding(4) var<storage, read> m_weight: array<f32>;   // [B, n_in, spread] if weighted
@group(0) @binding(5) var<storage, read> m_size_in: array<f32>;  // [B, n_in]
@group(0) @binding(6) var<storage, read_write> m_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> m_size_out: array<f32>; // [B, n_out]
@group(0) @binding(8) var<uniform> mp: MergeParams;

var<workgroup> wg_row: u32;        // the output row's input row
var<workgroup> wg_count: u32;      // rows merging into it
var<workgroup> wg_size: f32;       // its new size
var<workgroup> wg_sources: array<u32, MAX_TOKENS>; // a * spread + slot

// What removed row a's slot gives: its weight times its size.
fn given(at: u32, slot: u32) -> f32 {
    let a = slot / mp.spread;
    var w = 1.0;
    if (mp.weighted == 1u) {
        w = m_weight[at * mp.spread + slot];
    }
    return w * m_size_in[at + a];
}

@compute @workgroup_size(64, 1, 1)
fn merge_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = wid.x + wid.y * nwg.x; // b * n_out + r
    if (row >= mp.batch * mp.n_out) {
        return;
    }
    let b = row / mp.n_out;
    let at = b * mp.n_in;
    if (lane == 0u) {
        let t = m_src[row];
        var count = 0u;
        var size = 1.0;
        if (t != NONE) {
            // Prefix rows are never removed, so the scan starts after them.
            size = m_size_in[at + t];
            for (var a = mp.prefix; a < mp.n_in; a++) {
                if (m_flags[at + a] != 0u) {
                    continue;
                }
                for (var j = 0u; j < mp.spread; j++) {
                    let slot = a * mp.spread + j;
                    if (m_dst[at * mp.spread + slot] == t) {
                        wg_sources[count] = slot;
                        count += 1u;
                        size += given(at, slot);
                    }
                }
            }
        }
        wg_row = t;
        wg_count = count;
        wg_size = size;
    }
    let count = workgroupUniformLoad(&wg_count);
    let t = wg_row;
    let size = wg_size;
    if (t == NONE) {
        // Padding: a zero row of size 1, so its log-size bias is 0.
        for (var c = lane; c < mp.d; c += WG) {
            m_out[row * mp.d + c] = 0.0;
        }
    } else {
        for (var c = lane; c < mp.d; c += WG) {
            var acc = m_size_in[at + t] * m_x[(at + t) * mp.d + c];
            for (var i = 0u; i < count; i++) {
                let slot = wg_sources[i];
                let a = slot / mp.spread;
                acc += given(at, slot) * m_x[(at + a) * mp.d + c];
            }
            m_out[row * mp.d + c] = acc / size;
        }
    }
    if (lane == 0u) {
        m_size_out[row] = size;
    }
}
