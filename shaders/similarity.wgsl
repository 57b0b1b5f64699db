// Token similarity on key vectors: each source token finds its most similar destination token by
// cosine similarity. ToMe splits sources/destinations by position parity on head-averaged keys;
// Zero-TPrune's similarity stage splits by a flag (the important half) on full key rows; PiToMe
// and protected ToMe give every row a role. PiToMe's energy scores how crowded a token's
// neighbourhood is.

const WG: u32 = 64u;

fn item(wid: vec3<u32>, nwg: vec3<u32>, lane: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lane;
}

// ---- head_mean_keys: metric[b, t, e] = 1/H sum_h K[b, t, h * dh + e] (ToMe's metric), reading
// the keys through their view: token t of image b starts at off + b * img_stride + t * row_stride.
// Output rows are out_width = dh rounded up to a multiple of 4, zero past dh, so that the matching
// kernels read them as vec4s; with one head this packs any view into that layout. ----
@group(0) @binding(0) var<storage, read> mk_keys: array<f32>;
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
    let dh = mp.width / mp.heads;
    let row = e / mp.out_width; // b * n + t
    let col = e % mp.out_width;
    if (col >= dh) {
        mk_out[e] = 0.0;
        return;
    }
    let base = mp.off + (row / mp.n) * mp.img_stride + (row % mp.n) * mp.row_stride + col;
    var s = 0.0;
    for (var h = 0u; h < mp.heads; h++) {
        s += mk_keys[base + h * dh];
    }
    mk_out[e] = s / f32(mp.heads);
}

// ---- best_match: one workgroup of BM_WG per (image, row), 6304 invocations for DeiT-Tiny's 197
// rows at batch 1. A source row's workgroup measures the row once (lane 0) and its lanes split the
// image's destinations: under parity on unmasked rows destination j is row prefix + 1 + 2j;
// otherwise the workgroup first lists the destination rows in workgroup memory (through an atomic
// counter, in no particular order). Rows past an image's valid count (masked rows) take no part.
// Each lane keeps its best cosine, ties to the lowest row, then lane 0 keeps the best of the
// lanes' by the same rule: the destination a serial scan keeping the first
// strictly greater cosine finds. A cosine sums over the features in one fixed order whichever lane
// computes it, so it is the same number in every lane and every run. The workgroup of a row that
// is not a source writes the row's "no match" and stops. On llvmpipe a workgroup's SIMD chunks
// switch at every barrier: 32 lanes (four chunks of 8) and two or three barriers, lane 0 reducing
// alone, cost less there than 64 lanes or a reduction tree. The features are read as vec4s: width,
// offset and strides are multiples of 4 (the launcher checks), in the units of the view, f32
// values. ----
@group(0) @binding(0) var<storage, read> bm_feat: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> bm_flags: array<u32>;
@group(0) @binding(2) var<storage, read> bm_counts: array<u32>;
@group(0) @binding(3) var<storage, read_write> bm_keep_score: array<f32>;
@group(0) @binding(4) var<storage, read_write> bm_dst: array<u32>;
@group(0) @binding(5) var<uniform> bp: MatchParams;

const BM_WG: u32 = 32u;

var<workgroup> bm_list: array<u32, MAX_TOKENS>;
var<workgroup> bm_count: atomic<u32>;
var<workgroup> bm_na: f32;
var<workgroup> bm_best: array<f32, BM_WG>;
var<workgroup> bm_best_t: array<u32, BM_WG>;

// The workgroup's index in a grid that spills into y past 65535 workgroups.
fn group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// 0: neither (prefix, masked rows), 1: source, 2: destination.
fn role(b: u32, t: u32) -> u32 {
    if (t < bp.prefix || (bp.masked == 1u && t >= bm_counts[b])) {
        return 0u;
    }
    if (bp.mode == 0u) {
        return select(1u, 2u, ((t - bp.prefix) & 1u) == 1u);
    }
    let f = bm_flags[b * bp.n + t];
    if (bp.mode == 1u) {
        return select(1u, 2u, f != 0u);
    }
    // mode 2: the buffer holds the roles.
    return select(0u, f, f == 1u || f == 2u);
}

fn feat_at(b: u32, t: u32) -> u32 {
    return (bp.off + b * bp.img_stride + t * bp.row_stride) / 4u;
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// A row's length (at least 1e-12) from its squares summed per component.
fn length_of(sq: vec4<f32>) -> f32 {
    return max(sqrt(hsum(sq)), 1e-12);
}

// The length of the feature row at f; f and width in vec4s.
fn feat_norm(f: u32, width: u32) -> f32 {
    var n = vec4<f32>(0.0);
    for (var k = 0u; k < width; k++) {
        let v = bm_feat[f + k];
        n += v * v;
    }
    return length_of(n);
}

// Cosine similarity of the feature rows at fa (of length na) and ft.
fn feat_cos(fa: u32, na: f32, ft: u32, width: u32) -> f32 {
    var dot = vec4<f32>(0.0);
    var nt = vec4<f32>(0.0);
    for (var k = 0u; k < width; k++) {
        let v = bm_feat[ft + k];
        dot += bm_feat[fa + k] * v;
        nt += v * v;
    }
    return hsum(dot) / (na * length_of(nt));
}

// Whether (c, t) beats (best, best_t): a higher cosine, or the same at a lower row.
fn better(c: f32, t: u32, best: f32, best_t: u32) -> bool {
    return c > best || (c == best && t < best_t);
}

// What best_match and spread_match start with, in every lane of a source row's workgroup: lane 0
// measures the row at fa (into bm_na); then, when `listed` (the same in every lane), the lanes list
// the image's destination rows into bm_list, in no particular order, and get their count (else 0).
fn measure_and_list(b: u32, fa: u32, w4: u32, lane: u32, listed: bool) -> u32 {
    if (lane == 0u) {
        bm_na = feat_norm(fa, w4);
        atomicStore(&bm_count, 0u);
    }
    workgroupBarrier();
    if (!listed) {
        return 0u;
    }
    for (var t = bp.prefix + lane; t < bp.n; t += BM_WG) {
        if (role(b, t) == 2u) {
            bm_list[atomicAdd(&bm_count, 1u)] = t;
        }
    }
    workgroupBarrier();
    return atomicLoad(&bm_count);
}

@compute @workgroup_size(BM_WG, 1, 1)
fn best_match(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let e = group(wid, nwg);
    if (e >= bp.batch * bp.n) {
        return;
    }
    let b = e / bp.n;
    let a = e % bp.n;
    if (role(b, a) != 1u) {
        // Not a source: never dropped by this stage.
        if (lane == 0u) {
            bm_keep_score[e] = POS;
            bm_dst[e] = NONE;
        }
        return;
    }
    let fa = feat_at(b, a);
    let w4 = bp.width / 4u;
    // Parity's destinations are every other row, unless masked rows cut the list short.
    let listed = bp.mode != 0u || bp.masked == 1u;
    let count = select((bp.n - bp.prefix) / 2u, measure_and_list(b, fa, w4, lane, listed), listed);
    let na = bm_na;
    var best = NEG;
    var best_t = NONE;
    for (var j = lane; j < count; j += BM_WG) {
        var t = bp.prefix + 1u + 2u * j;
        if (listed) {
            t = bm_list[j];
        }
        let cos = feat_cos(fa, na, feat_at(b, t), w4);
        if (better(cos, t, best, best_t)) {
            best = cos;
            best_t = t;
        }
    }
    bm_best[lane] = best;
    bm_best_t[lane] = best_t;
    workgroupBarrier();
    if (lane == 0u) {
        for (var i = 1u; i < BM_WG; i++) {
            if (better(bm_best[i], bm_best_t[i], best, best_t)) {
                best = bm_best[i];
                best_t = bm_best_t[i];
            }
        }
        // The most similar sources go first: keep by -best.
        bm_keep_score[e] = -best;
        bm_dst[e] = best_t;
    }
}

// ---- spread_match (Token Transforming): every source row's `spread` most similar destinations
// (at most MAX_SPREAD), with weights softmax(cos / tau) over them, as [B, n, spread] rows of
// destinations and weights (NONE and 0 past the destinations an image has, and on every row that
// is not a source). The workgroup lists the destinations as best_match does; each lane keeps its
// own best `spread` by best_match's rule (higher cosine, ties to the lower row), and lane 0 merges
// the lanes' lists. The weights are computed once, in lane 0, from the most similar down. ----
@group(0) @binding(3) var<storage, read_write> sm_weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> sm_dst: array<u32>;

const MAX_SPREAD: u32 = 4u;

var<workgroup> sm_best: array<f32, 128>; // BM_WG * MAX_SPREAD
var<workgroup> sm_best_t: array<u32, 128>;

// Insert (c, t) into the descending list (best, best_t) of k entries, if it belongs there.
fn sm_insert(best: ptr<function, array<f32, 4>>, best_t: ptr<function, array<u32, 4>>, k: u32,
             c: f32, t: u32) {
    if (!better(c, t, (*best)[k - 1u], (*best_t)[k - 1u])) {
        return;
    }
    var j = k - 1u;
    while (j > 0u && better(c, t, (*best)[j - 1u], (*best_t)[j - 1u])) {
        (*best)[j] = (*best)[j - 1u];
        (*best_t)[j] = (*best_t)[j - 1u];
        j -= 1u;
    }
    (*best)[j] = c;
    (*best_t)[j] = t;
}

@compute @workgroup_size(BM_WG, 1, 1)
fn spread_match(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let e = group(wid, nwg);
    if (e >= bp.batch * bp.n) {
        return;
    }
    let b = e / bp.n;
    let a = e % bp.n;
    let k = bp.spread;
    if (role(b, a) != 1u) {
        if (lane < k) {
            sm_weight[e * k + lane] = 0.0;
            sm_dst[e * k + lane] = NONE;
        }
        return;
    }
    let fa = feat_at(b, a);
    let w4 = bp.width / 4u;
    let count = measure_and_list(b, fa, w4, lane, true);
    let na = bm_na;
    var best = array<f32, 4>(NEG, NEG, NEG, NEG);
    var best_t = array<u32, 4>(NONE, NONE, NONE, NONE);
    for (var j = lane; j < count; j += BM_WG) {
        let t = bm_list[j];
        sm_insert(&best, &best_t, k, feat_cos(fa, na, feat_at(b, t), w4), t);
    }
    for (var j = 0u; j < k; j++) {
        sm_best[lane * MAX_SPREAD + j] = best[j];
        sm_best_t[lane * MAX_SPREAD + j] = best_t[j];
    }
    workgroupBarrier();
    if (lane == 0u) {
        for (var i = 1u; i < BM_WG; i++) {
            for (var j = 0u; j < k; j++) {
                let t = sm_best_t[i * MAX_SPREAD + j];
                if (t == NONE) {
                    break;
                }
                sm_insert(&best, &best_t, k, sm_best[i * MAX_SPREAD + j], t);
            }
        }
        // softmax(cos / tau) over the destinations found, from the most similar.
        var sum = 0.0;
        var w = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
        for (var j = 0u; j < k; j++) {
            if (best_t[j] != NONE) {
                w[j] = exp((best[j] - best[0]) * bp.inv_tau);
                sum += w[j];
            }
        }
        for (var j = 0u; j < k; j++) {
            sm_weight[e * k + j] = select(0.0, w[j] / sum, sum > 0.0);
            sm_dst[e * k + j] = best_t[j];
        }
    }
}

// ---- energy (PiToMe): for every patch token t, the mean over the patch tokens u (t included) of
// elu(cos(m_t, m_u) - margin), elu(x) = x for x > 0, alpha (e^x - 1) otherwise. Tokens in dense
// clusters of similar tokens score high; prefix rows get NEG. One workgroup of EN_WG per (image,
// tile of EN_TILE consecutive rows), 6400 invocations for DeiT-Tiny's 197 rows at batch 1: lanes
// 0..3 measure the tile's rows, the lanes split the patch tokens u, and each load of u's features
// serves the four rows (u's length is computed once for them). Lane s then sums row s's terms
// over the lanes, in lane order. Sharing the loads matters on llvmpipe, where one row per workgroup
// ran slower than one thread per row; 128 lanes keep a tile's workgroup wide enough for a GPU. The
// features are best_match's binding. ----
@group(0) @binding(1) var<storage, read_write> en_energy: array<f32>;
@group(0) @binding(2) var<uniform> ep: EnergyParams;

// The launcher's grid follows EN_TILE (similarity.rs, ENERGY_TILE).
const EN_TILE: u32 = 4u;
const EN_WG: u32 = 128u;

var<workgroup> en_na: array<f32, EN_TILE>;
var<workgroup> en_sum: array<vec4<f32>, EN_WG>;

fn en_at(b: u32, t: u32) -> u32 {
    return (ep.off + b * ep.img_stride + t * ep.row_stride) / 4u;
}

// Cosine similarities of the four feature rows at f (of lengths na) with the row at ft, each
// summed in feat_cos's order.
fn feat_cos4(f: vec4<u32>, na: vec4<f32>, ft: u32, width: u32) -> vec4<f32> {
    var d0 = vec4<f32>(0.0);
    var d1 = vec4<f32>(0.0);
    var d2 = vec4<f32>(0.0);
    var d3 = vec4<f32>(0.0);
    var nt = vec4<f32>(0.0);
    for (var k = 0u; k < width; k++) {
        let v = bm_feat[ft + k];
        d0 += bm_feat[f.x + k] * v;
        d1 += bm_feat[f.y + k] * v;
        d2 += bm_feat[f.z + k] * v;
        d3 += bm_feat[f.w + k] * v;
        nt += v * v;
    }
    return vec4<f32>(hsum(d0), hsum(d1), hsum(d2), hsum(d3)) / (na * length_of(nt));
}

@compute @workgroup_size(EN_WG, 1, 1)
fn energy(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let tiles = (ep.n + EN_TILE - 1u) / EN_TILE;
    let g = group(wid, nwg);
    if (g >= ep.batch * tiles) {
        return;
    }
    let b = g / tiles;
    let a0 = (g % tiles) * EN_TILE;
    // Rows past the image's last repeat it; their results are not written.
    let last = ep.n - 1u;
    let f = vec4<u32>(
        en_at(b, a0),
        en_at(b, min(a0 + 1u, last)),
        en_at(b, min(a0 + 2u, last)),
        en_at(b, min(a0 + 3u, last)),
    );
    let w4 = ep.width / 4u;
    if (lane < EN_TILE) {
        en_na[lane] = feat_norm(f[lane], w4);
    }
    workgroupBarrier();
    let na = vec4<f32>(en_na[0], en_na[1], en_na[2], en_na[3]);
    var sum = vec4<f32>(0.0);
    for (var t = ep.prefix + lane; t < ep.n; t += EN_WG) {
        let x = feat_cos4(f, na, en_at(b, t), w4) - ep.margin;
        sum += select(ep.alpha * (exp(x) - 1.0), x, x > vec4<f32>(0.0));
    }
    en_sum[lane] = sum;
    workgroupBarrier();
    let a = a0 + lane;
    if (lane < EN_TILE && a < ep.n) {
        if (a < ep.prefix) {
            en_energy[b * ep.n + a] = NEG;
            return;
        }
        var total = 0.0;
        for (var i = 0u; i < EN_WG; i++) {
            total += en_sum[i][lane];
        }
        en_energy[b * ep.n + a] = total / f32(ep.n - ep.prefix);
    }
}
