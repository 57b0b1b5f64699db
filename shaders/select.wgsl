// Token selection: which rows of each image survive a pruning step, as 0/1 flags in row order.
// Prefix rows (CLS, distillation) are always kept.

const WG: u32 = 256u;

// The ranking sort (key, idx, before, load_key, sort_desc) is sort.wgsl, shared with
// pagerank.wgsl's combine_heads.

// ---- select_topk: one workgroup per image; sort by (score desc, position asc) over the token
// count padded to a power of two, then flag the first `keep` rows ----
@group(0) @binding(0) var<storage, read> tk_score: array<f32>;
@group(0) @binding(1) var<storage, read_write> tk_flags: array<u32>;
@group(0) @binding(2) var<uniform> tp: TopkParams;

@compute @workgroup_size(256, 1, 1)
fn select_topk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let b = wid.x;
    let n = tp.n;
    for (var i = lane; i < tp.m; i += WG) {
        load_key(i, n, tp.prefix, tk_score[b * n + min(i, n - 1u)]);
    }
    sort_desc(lane, tp.m);
    for (var r = lane; r < n; r += WG) {
        tk_flags[b * n + idx[r]] = select(0u, 1u, r < tp.keep);
    }
}

// ---- received_topk: score.wgsl's received attention, s[i] = 1/(H c) sum_h sum_{j<c} P_h[j, i]
// (c valid rows; rows past it score NEG), summed in the same order, computed by the image's
// workgroup straight into the sort's keys, then select_topk's flags: the scores only feed the
// selection, so one dispatch does both. With `half`, the count kept is the prefix and half the
// image's valid patch rows, rounded up (Zero-TPrune's important half) ----
@group(0) @binding(0) var<storage, read> rt_probs: array<f32>;
@group(0) @binding(1) var<storage, read> rt_counts: array<u32>;
@group(0) @binding(2) var<storage, read_write> rt_flags: array<u32>;
@group(0) @binding(3) var<uniform> rtp: ReceivedTopkParams;

@compute @workgroup_size(256, 1, 1)
fn received_topk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let b = wid.x;
    let n = rtp.n;
    var c = n;
    if (rtp.masked == 1u) {
        c = min(rt_counts[b], n);
    }
    for (var i = lane; i < rtp.m; i += WG) {
        var score = NEG;
        if (i < c) {
            var s = 0.0;
            for (var h = 0u; h < rtp.heads; h++) {
                let base = (b * rtp.heads + h) * n * n + i;
                for (var j = 0u; j < c; j++) {
                    s += rt_probs[base + j * n];
                }
            }
            score = s / f32(rtp.heads * c);
        }
        load_key(i, n, rtp.prefix, score);
    }
    sort_desc(lane, rtp.m);
    var keep = rtp.keep;
    if (rtp.half == 1u) {
        // The important half: the prefix and half the valid patch rows, rounded up.
        keep = rtp.prefix + (max(c, rtp.prefix) - rtp.prefix + 1u) / 2u;
    }
    for (var r = lane; r < n; r += WG) {
        rt_flags[b * n + idx[r]] = select(0u, 1u, r < keep);
    }
}

// ---- split_roles: one workgroup per image; sort the patch rows by (score desc, position asc) and
// give each row a role for a merge match: 1 source, 2 destination, 0 neither (prefix rows: 0).
//   mode 0 (PiToMe): of the patch rows in rank order, the first 2 * count alternate source,
//     destination, source, ...; the rest are neither (protected).
//   mode 1 (ToMe with protection): by position parity (even patch positions are sources, odd ones
//     destinations), except that the first `count` patch rows in rank order are never sources ----
@group(0) @binding(0) var<storage, read> rl_score: array<f32>;
@group(0) @binding(1) var<storage, read_write> rl_roles: array<u32>;
@group(0) @binding(2) var<uniform> rp: RolesParams;

@compute @workgroup_size(256, 1, 1)
fn split_roles(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let b = wid.x;
    let n = rp.n;
    for (var i = lane; i < rp.m; i += WG) {
        load_key(i, n, rp.prefix, rl_score[b * n + min(i, n - 1u)]);
    }
    sort_desc(lane, rp.m);
    for (var r = lane; r < n; r += WG) {
        let row = idx[r];
        var role = 0u;
        if (r >= rp.prefix) {
            let rank = r - rp.prefix;
            if (rp.mode == 0u) {
                if (rank < 2u * rp.count) {
                    role = select(2u, 1u, (rank & 1u) == 0u);
                }
            } else {
                role = select(2u, 1u, ((row - rp.prefix) & 1u) == 0u);
                if (role == 1u && rank < rp.count) {
                    role = 0u;
                }
            }
        }
        rl_roles[b * n + row] = role;
    }
}

// ---- select_threshold: keep patch rows with c * s >= theta (c = valid rows; `per_count` 0: s >=
// theta); if none passes, the best-scoring one ----
@group(0) @binding(0) var<storage, read> th_score: array<f32>;
@group(0) @binding(1) var<storage, read> th_counts: array<u32>;
@group(0) @binding(2) var<storage, read_write> th_flags: array<u32>;
@group(0) @binding(3) var<uniform> thp: ThresholdParams;

// What the threshold compares: the score times the valid rows (received attention, uniform = 1),
// or the score itself.
fn th_value(s: f32, c: u32) -> f32 {
    if (thp.per_count == 1u) {
        return f32(c) * s;
    }
    return s;
}

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
        if (th_value(s, c) >= thp.theta) {
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
            keep = th_value(th_score[b * n + i], c) >= thp.theta || (none_passed && i == best);
        }
        th_flags[b * n + i] = select(0u, 1u, keep);
    }
}
