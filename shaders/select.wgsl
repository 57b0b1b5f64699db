// Token selection: which rows of each image survive a pruning step, as 0/1 flags in row order.
// Prefix rows (CLS, distillation) are always kept.

const WG: u32 = 256u;

// ---- select_topk: one workgroup per image; a bitonic sort of (score desc, position asc) over the
// token count padded to a power of two, then the first `keep` rows are flagged ----
@group(0) @binding(0) var<storage, read> tk_score: array<f32>;
@group(0) @binding(1) var<storage, read_write> tk_flags: array<u32>;
@group(0) @binding(2) var<uniform> tp: TopkParams;

var<workgroup> key: array<f32, MAX_TOKENS>;
var<workgroup> idx: array<u32, MAX_TOKENS>;

// Whether (ka, ia) ranks before (kb, ib).
fn before(ka: f32, ia: u32, kb: f32, ib: u32) -> bool {
    return ka > kb || (ka == kb && ia < ib);
}

@compute @workgroup_size(256, 1, 1)
fn select_topk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let b = wid.x;
    let n = tp.n;
    for (var i = lane; i < tp.m; i += WG) {
        if (i < n) {
            key[i] = select(tk_score[b * n + i], HIGHEST, i < tp.prefix);
            idx[i] = i;
        } else {
            key[i] = LOWEST;
            idx[i] = NONE;
        }
    }
    workgroupBarrier();
    for (var k = 2u; k <= tp.m; k <<= 1u) {
        for (var j = k >> 1u; j > 0u; j >>= 1u) {
            for (var i = lane; i < tp.m; i += WG) {
                let l = i ^ j;
                if (l > i) {
                    let ki = key[i];
                    let ii = idx[i];
                    let kl = key[l];
                    let il = idx[l];
                    // Ranked order inside ascending sub-sequences, reversed inside descending ones.
                    let first = (i & k) == 0u;
                    if ((first && before(kl, il, ki, ii)) || (!first && before(ki, ii, kl, il))) {
                        key[i] = kl;
                        idx[i] = il;
                        key[l] = ki;
                        idx[l] = ii;
                    }
                }
            }
            workgroupBarrier();
        }
    }
    for (var r = lane; r < n; r += WG) {
        tk_flags[b * n + idx[r]] = select(0u, 1u, r < tp.keep);
    }
}

// ---- select_threshold: keep patch rows with c * s >= theta (c = valid rows); if none passes, the
// best-scoring one ----
@group(0) @binding(0) var<storage, read> th_score: array<f32>;
@group(0) @binding(1) var<storage, read> th_counts: array<u32>;
@group(0) @binding(2) var<storage, read_write> th_flags: array<u32>;
@group(0) @binding(3) var<uniform> thp: ThresholdParams;

var<workgroup> red_n: array<u32, WG>;
var<workgroup> red_k: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;

@compute @workgroup_size(256, 1, 1)
fn select_threshold(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let b = wid.x;
    let n = thp.n;
    var c = n;
    if (thp.masked == 1u) {
        c = min(th_counts[b], n);
    }
    var passed = 0u;
    var bk = LOWEST;
    var bi = NONE;
    for (var i = thp.prefix + lane; i < c; i += WG) {
        let s = th_score[b * n + i];
        if (f32(c) * s >= thp.theta) {
            passed += 1u;
        }
        if (before(s, i, bk, bi)) {
            bk = s;
            bi = i;
        }
    }
    red_n[lane] = passed;
    red_k[lane] = bk;
    red_i[lane] = bi;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
        if (lane < st) {
            red_n[lane] += red_n[lane + st];
            if (before(red_k[lane + st], red_i[lane + st], red_k[lane], red_i[lane])) {
                red_k[lane] = red_k[lane + st];
                red_i[lane] = red_i[lane + st];
            }
        }
        workgroupBarrier();
    }
    let none_passed = red_n[0] == 0u;
    let best = red_i[0];
    for (var i = lane; i < n; i += WG) {
        var keep = i < thp.prefix;
        if (!keep && i < c) {
            keep = f32(c) * th_score[b * n + i] >= thp.theta || (none_passed && i == best);
        }
        th_flags[b * n + i] = select(0u, 1u, keep);
    }
}
