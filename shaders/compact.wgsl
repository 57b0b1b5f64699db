// Compaction: a stable prefix sum over the keep flags of each image gives every surviving row its new
// position; rows are gathered into a dense [B, n_out, D] buffer in their original order, and the
// original token index of every survivor is carried along (for pictures and `kept` lists).

const WG: u32 = 256u;
const PER: u32 = MAX_TOKENS / WG; // rows per invocation

// ---- compact: one workgroup per image ----
@group(0) @binding(0) var<storage, read> cp_flags: array<u32>;
@group(0) @binding(1) var<storage, read> cp_orig_in: array<u32>;
@group(0) @binding(2) var<storage, read_write> cp_src: array<u32>;
@group(0) @binding(3) var<storage, read_write> cp_orig_out: array<u32>;
@group(0) @binding(4) var<storage, read_write> cp_count: array<u32>;
@group(0) @binding(5) var<uniform> cp: CompactParams;

var<workgroup> scan: array<u32, WG>;

// scan[lane] = the sum of `mine` over lanes 0..=lane: an inclusive Hillis-Steele scan of the
// per-invocation counts, by the whole workgroup.
fn inclusive_scan(lane: u32, mine: u32) {
    scan[lane] = mine;
    workgroupBarrier();
    for (var off = 1u; off < WG; off <<= 1u) {
        var v = scan[lane];
        if (lane >= off) {
            v += scan[lane - off];
        }
        workgroupBarrier();
        scan[lane] = v;
        workgroupBarrier();
    }
}

@compute @workgroup_size(256, 1, 1)
fn compact(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let b = wid.x;
    let first = lane * PER;
    var mine = 0u;
    for (var r = 0u; r < PER; r++) {
        let i = first + r;
        if (i < cp.n_in && cp_flags[b * cp.n_in + i] != 0u) {
            mine += 1u;
        }
    }
    inclusive_scan(lane, mine);
    let total = min(scan[WG - 1u], cp.n_out);
    var dst = scan[lane] - mine;
    for (var r = 0u; r < PER; r++) {
        let i = first + r;
        if (i < cp.n_in && cp_flags[b * cp.n_in + i] != 0u && dst < cp.n_out) {
            cp_src[b * cp.n_out + dst] = i;
            cp_orig_out[b * cp.n_out + dst] = cp_orig_in[b * cp.n_in + i];
            dst += 1u;
        }
    }
    for (var d = total + lane; d < cp.n_out; d += WG) {
        cp_src[b * cp.n_out + d] = NONE;
        cp_orig_out[b * cp.n_out + d] = NONE;
    }
    if (lane == 0u) {
        cp_count[b] = total;
    }
}

// ---- compact_gather: compact and gather_rows4 in one dispatch (rows of a width that is a multiple
// of 4). Workgroup (chunk, b) redoes image b's scan of the flags (at most MAX_TOKENS flags: cheaper
// than a dispatch boundary) and gathers output rows chunk * CG_ROWS.. of image b, so the gather is
// spread over many workgroups even at batch 1; chunk 0 also writes src, orig_out and count. ----
const CG_ROWS: u32 = 8u;

@group(0) @binding(0) var<storage, read> cg_flags: array<u32>;
@group(0) @binding(1) var<storage, read> cg_orig_in: array<u32>;
@group(0) @binding(2) var<storage, read_write> cg_src: array<u32>;
@group(0) @binding(3) var<storage, read_write> cg_orig_out: array<u32>;
@group(0) @binding(4) var<storage, read_write> cg_count: array<u32>;
@group(0) @binding(5) var<storage, read> cg_x: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> cg_out: array<vec4<f32>>;
@group(0) @binding(7) var<uniform> cg: GatherParams;

var<workgroup> cg_row_src: array<u32, CG_ROWS>;

@compute @workgroup_size(256, 1, 1)
fn compact_gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let b = wid.y;
    let r0 = wid.x * CG_ROWS;
    let first = lane * PER;
    var mine = 0u;
    for (var r = 0u; r < PER; r++) {
        let i = first + r;
        if (i < cg.n_in && cg_flags[b * cg.n_in + i] != 0u) {
            mine += 1u;
        }
    }
    inclusive_scan(lane, mine);
    let total = min(scan[WG - 1u], cg.n_out);
    var dst = scan[lane] - mine;
    for (var r = 0u; r < PER; r++) {
        let i = first + r;
        if (i < cg.n_in && cg_flags[b * cg.n_in + i] != 0u && dst < cg.n_out) {
            if (wid.x == 0u) {
                cg_src[b * cg.n_out + dst] = i;
                cg_orig_out[b * cg.n_out + dst] = cg_orig_in[b * cg.n_in + i];
            }
            if (dst >= r0 && dst < r0 + CG_ROWS) {
                cg_row_src[dst - r0] = i;
            }
            dst += 1u;
        }
    }
    if (wid.x == 0u) {
        for (var d = total + lane; d < cg.n_out; d += WG) {
            cg_src[b * cg.n_out + d] = NONE;
            cg_orig_out[b * cg.n_out + d] = NONE;
        }
        if (lane == 0u) {
            cg_count[b] = total;
        }
    }
    if (lane < CG_ROWS && r0 + lane >= total) {
        cg_row_src[lane] = NONE;
    }
    workgroupBarrier();
    let rows = min(CG_ROWS, cg.n_out - min(r0, cg.n_out));
    for (var e = lane; e < rows * cg.d; e += WG) {
        let j = e / cg.d;
        let src = cg_row_src[j];
        var v = vec4<f32>(0.0);
        if (src != NONE) {
            v = cg_x[(b * cg.n_in + src) * cg.d + e % cg.d];
        }
        cg_out[(b * cg.n_out + r0 + j) * cg.d + e % cg.d] = v;
    }
}

// ---- gather_rows: out[b, r, :] = x[b, src[b, r], :], zero rows past the image's count ----
@group(0) @binding(0) var<storage, read> g_x: array<f32>;
@group(0) @binding(1) var<storage, read> g_src: array<u32>;
@group(0) @binding(2) var<storage, read_write> g_out: array<f32>;
@group(0) @binding(3) var<uniform> gp: GatherParams;

@compute @workgroup_size(256, 1, 1)
fn gather_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let e = (wid.x + wid.y * nwg.x) * WG + lane;
    if (e >= gp.total) {
        return;
    }
    let row = e / gp.d; // b * n_out + r
    let col = e % gp.d;
    let b = row / gp.n_out;
    let src = g_src[row];
    var v = 0.0;
    if (src != NONE) {
        v = g_x[(b * gp.n_in + src) * gp.d + col];
    }
    g_out[e] = v;
}

// ---- copy: dst[0..total) = src[0..total) (the gathered rows back into the residual stream) ----
@group(0) @binding(0) var<storage, read> c_src: array<f32>;
@group(0) @binding(1) var<storage, read_write> c_dst: array<f32>;
@group(0) @binding(2) var<uniform> cpy: CopyParams;

@compute @workgroup_size(256, 1, 1)
fn copy(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let e = (wid.x + wid.y * nwg.x) * WG + lane;
    if (e < cpy.total) {
        c_dst[e] = c_src[e];
    }
}

// ---- gather_rows4 / copy4: the same on vec4s, when the row width (the length) is a multiple of 4:
// a quarter of the loads, which is what the gather costs on CPU adapters. d and total in vec4s. ----
@group(0) @binding(0) var<storage, read> g4_x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> g4_src: array<u32>;
@group(0) @binding(2) var<storage, read_write> g4_out: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> g4p: GatherParams;

@compute @workgroup_size(256, 1, 1)
fn gather_rows4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let e = (wid.x + wid.y * nwg.x) * WG + lane;
    if (e >= g4p.total) {
        return;
    }
    let row = e / g4p.d;
    let b = row / g4p.n_out;
    let src = g4_src[row];
    var v = vec4<f32>(0.0);
    if (src != NONE) {
        v = g4_x[(b * g4p.n_in + src) * g4p.d + e % g4p.d];
    }
    g4_out[e] = v;
}

@group(0) @binding(0) var<storage, read> c4_src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> c4_dst: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> c4p: CopyParams;

@compute @workgroup_size(256, 1, 1)
fn copy4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let e = (wid.x + wid.y * nwg.x) * WG + lane;
    if (e < c4p.total) {
        c4_dst[e] = c4_src[e];
    }
}

// ---- live_row_map: after threshold pruning, image b keeps its first count[b] of n rows. The live
// rows of the whole batch, packed in order: map[0] = their number, map[1 + r] = the batch row of
// packed row r. Row-wise kernels then run over the packed rows, so masked rows cost nothing
// however they fall between images. ----
@group(0) @binding(0) var<storage, read> lm_count: array<u32>;
@group(0) @binding(1) var<storage, read_write> lm_map: array<u32>;
@group(0) @binding(2) var<uniform> lm: MapParams;

@compute @workgroup_size(256, 1, 1)
fn live_row_map(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let e = (wid.x + wid.y * nwg.x) * WG + lane; // a batch row
    if (e >= lm.batch * lm.n) {
        return;
    }
    let b = e / lm.n;
    let i = e % lm.n;
    // Live rows of the images before this one (a batch holds few images).
    var before = 0u;
    for (var c = 0u; c < b; c++) {
        before += min(lm_count[c], lm.n);
    }
    if (i < min(lm_count[b], lm.n)) {
        lm_map[1u + before + i] = e;
    }
    if (e == 0u) {
        var total = 0u;
        for (var c = 0u; c < lm.batch; c++) {
            total += min(lm_count[c], lm.n);
        }
        lm_map[0] = total;
    }
}
