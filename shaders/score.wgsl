// Token scores from one block's attention probabilities P[B, H, n, n] (rows are queries, each sums
// to 1). One thread per (image, token). Scores are "higher = keep"; prefix rows are forced kept later
// by the selection, so their score here does not matter.

const WG: u32 = 64u;

fn item(wid: vec3<u32>, nwg: vec3<u32>, lane: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lane;
}

// ---- received attention: s[i] = 1/(H c) sum_h sum_{j<c} P_h[j, i] ----
@group(0) @binding(0) var<storage, read> ra_probs: array<f32>;
@group(0) @binding(1) var<storage, read> ra_counts: array<u32>;
@group(0) @binding(2) var<storage, read_write> ra_score: array<f32>;
@group(0) @binding(3) var<uniform> ra: ScoreParams;

@compute @workgroup_size(64, 1, 1)
fn received_attention(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let e = item(wid, nwg, lane);
    if (e >= ra.batch * ra.n) {
        return;
    }
    let n = ra.n;
    let b = e / n;
    let i = e % n;
    var c = n;
    if (ra.masked == 1u) {
        c = min(ra_counts[b], n);
    }
    if (i >= c) {
        ra_score[e] = NEG;
        return;
    }
    var s = 0.0;
    for (var h = 0u; h < ra.heads; h++) {
        let base = (b * ra.heads + h) * n * n + i;
        for (var j = 0u; j < c; j++) {
            s += ra_probs[base + j * n];
        }
    }
    ra_score[e] = s / f32(ra.heads * c);
}

// ---- CLS attention (EViT): s[i] = 1/H sum_h P_h[0, i] ----
@group(0) @binding(0) var<storage, read> ca_probs: array<f32>;
@group(0) @binding(1) var<storage, read_write> ca_score: array<f32>;
@group(0) @binding(2) var<uniform> ca: ScoreParams;

@compute @workgroup_size(64, 1, 1)
fn cls_attention(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let e = item(wid, nwg, lane);
    if (e >= ca.batch * ca.n) {
        return;
    }
    let n = ca.n;
    let b = e / n;
    let i = e % n;
    var s = 0.0;
    for (var h = 0u; h < ca.heads; h++) {
        s += ca_probs[(b * ca.heads + h) * n * n + i];
    }
    ca_score[e] = s / f32(ca.heads);
}

// ---- random: a hash of (seed, step, image, original token index); the baseline ----
@group(0) @binding(0) var<storage, read> rs_orig: array<u32>;
@group(0) @binding(1) var<storage, read_write> rs_score: array<f32>;
@group(0) @binding(2) var<uniform> rs: ScoreParams;

// PCG output permutation (Jarzynski & Olano, "Hash Functions for GPU Rendering").
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

@compute @workgroup_size(64, 1, 1)
fn random_score(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let e = item(wid, nwg, lane);
    if (e >= rs.batch * rs.n) {
        return;
    }
    let b = e / rs.n;
    let h = pcg(rs.seed + pcg(rs.step + pcg(b + pcg(rs_orig[e]))));
    // 24 bits convert to f32 exactly, so ties are only true hash ties.
    rs_score[e] = f32(h >> 8u);
}
