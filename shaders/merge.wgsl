// ToMe's size-weighted merge, computed from the destination side (WGSL has no float atomics): every
// surviving destination row sums itself and the merged sources that chose it, weighted by size.

struct MergeParams {
    total: u32, // batch * n_out * d
    n_in: u32,
    n_out: u32,
    d: u32,
    prefix: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;

@group(0) @binding(0) var<storage, read> m_x: array<f32>;
@group(0) @binding(1) var<storage, read> m_src: array<u32>;      // [B, n_out]: input row of each output row
@group(0) @binding(2) var<storage, read> m_flags: array<u32>;    // [B, n_in]: 0 = merged away
@group(0) @binding(3) var<storage, read> m_dst: array<u32>;      // [B, n_in]: each source's best destination
@group(0) @binding(4) var<storage, read> m_size_in: array<f32>;  // [B, n_in]
@group(0) @binding(5) var<storage, read_write> m_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> m_size_out: array<f32>; // [B, n_out]
@group(0) @binding(7) var<uniform> mp: MergeParams;

@compute @workgroup_size(256, 1, 1)
fn tome_merge(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let e = (wid.x + wid.y * nwg.x) * WG + lane;
    if (e >= mp.total) {
        return;
    }
    let row = e / mp.d; // b * n_out + r
    let col = e % mp.d;
    let b = row / mp.n_out;
    let t = m_src[row];
    if (t == NONE) {
        // Padding: a zero row of size 1, so its log-size bias is 0.
        m_out[e] = 0.0;
        if (col == 0u) {
            m_size_out[row] = 1.0;
        }
        return;
    }
    let at = b * mp.n_in;
    var size = m_size_in[at + t];
    var acc = size * m_x[(at + t) * mp.d + col];
    // Only destinations (odd patch positions) receive merges.
    if (t >= mp.prefix && ((t - mp.prefix) & 1u) == 1u) {
        for (var a = mp.prefix; a < mp.n_in; a += 2u) {
            if (m_flags[at + a] == 0u && m_dst[at + a] == t) {
                let sa = m_size_in[at + a];
                acc += sa * m_x[(at + a) * mp.d + col];
                size += sa;
            }
        }
    }
    m_out[e] = acc / size;
    if (col == 0u) {
        m_size_out[row] = size;
    }
}
