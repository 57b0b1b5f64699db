// Token similarity on key vectors: each source token finds its most similar destination token by
// cosine similarity. ToMe splits sources/destinations by position parity on head-averaged keys;
// Zero-TPrune's similarity stage splits by a flag (the important half) on full key rows.

const WG: u32 = 64u;
const NONE: u32 = 0xffffffffu;
const POS: f32 = 3.0e38;
const NEG: f32 = -3.0e38;

fn item(wid: vec3<u32>, nwg: vec3<u32>, lane: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lane;
}

// ---- head_mean_keys: metric[b, t, e] = 1/H sum_h K[b, t, h * dh + e] (ToMe's metric) ----
struct MeanParams {
    total: u32, // batch * n * dh
    n: u32,
    dim: u32,   // D = heads * dh
    heads: u32,
}

@group(0) @binding(0) var<storage, read> mk_qkv: array<f32>;
@group(0) @binding(1) var<storage, read_write> mk_out: array<f32>;
@group(0) @binding(2) var<uniform> mp: MeanParams;

@compute @workgroup_size(64, 1, 1)
fn head_mean_keys(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let e = item(wid, nwg, lane);
    if (e >= mp.total) {
        return;
    }
    let dh = mp.dim / mp.heads;
    let row = e / dh; // b * n + t
    let col = e % dh;
    let base = row * 3u * mp.dim + mp.dim + col;
    var s = 0.0;
    for (var h = 0u; h < mp.heads; h++) {
        s += mk_qkv[base + h * dh];
    }
    mk_out[e] = s / f32(mp.heads);
}

// ---- best_match: one thread per (image, token) ----
struct MatchParams {
    batch: u32,
    n: u32,
    prefix: u32,
    mode: u32,       // 0: parity (sources t - P even, destinations odd); 1: flags (sources 0, destinations 1)
    width: u32,      // feature values per token
    off: u32,        // first feature of token 0 of image 0
    row_stride: u32, // between tokens
    img_stride: u32, // between images
}

@group(0) @binding(0) var<storage, read> bm_feat: array<f32>;
@group(0) @binding(1) var<storage, read> bm_flags: array<u32>;
@group(0) @binding(2) var<storage, read_write> bm_keep_score: array<f32>;
@group(0) @binding(3) var<storage, read_write> bm_dst: array<u32>;
@group(0) @binding(4) var<uniform> bp: MatchParams;

// 0: neither (prefix), 1: source, 2: destination.
fn role(b: u32, t: u32) -> u32 {
    if (t < bp.prefix) {
        return 0u;
    }
    if (bp.mode == 0u) {
        return select(1u, 2u, ((t - bp.prefix) & 1u) == 1u);
    }
    return select(1u, 2u, bm_flags[b * bp.n + t] != 0u);
}

fn feat_at(b: u32, t: u32) -> u32 {
    return bp.off + b * bp.img_stride + t * bp.row_stride;
}

@compute @workgroup_size(64, 1, 1)
fn best_match(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let e = item(wid, nwg, lane);
    if (e >= bp.batch * bp.n) {
        return;
    }
    let b = e / bp.n;
    let a = e % bp.n;
    if (role(b, a) != 1u) {
        // Not a source: never dropped by this stage.
        bm_keep_score[e] = POS;
        bm_dst[e] = NONE;
        return;
    }
    let fa = feat_at(b, a);
    var na = 0.0;
    for (var k = 0u; k < bp.width; k++) {
        na += bm_feat[fa + k] * bm_feat[fa + k];
    }
    na = max(sqrt(na), 1e-12);
    var best = NEG;
    var best_t = NONE;
    for (var t = bp.prefix; t < bp.n; t++) {
        if (role(b, t) != 2u) {
            continue;
        }
        let ft = feat_at(b, t);
        var dot = 0.0;
        var nt = 0.0;
        for (var k = 0u; k < bp.width; k++) {
            let v = bm_feat[ft + k];
            dot += bm_feat[fa + k] * v;
            nt += v * v;
        }
        let cos = dot / (na * max(sqrt(nt), 1e-12));
        if (cos > best) {
            best = cos;
            best_t = t;
        }
    }
    // The most similar sources go first: keep by -best.
    bm_keep_score[e] = -best;
    bm_dst[e] = best_t;
}
