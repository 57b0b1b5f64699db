// The importance stage of Zero-TPrune: Weighted PageRank on one block's attention, per head, on the
// surviving tokens only (rows renormalised), then the heads combined into one score per token.

const WG: u32 = 64u; // few SIMD chunks per barrier on CPU adapters (llvmpipe); was 256
const PER: u32 = MAX_TOKENS / WG; // tokens owned by each thread

// ---- wpr: one workgroup per (image, head); s <- A'^T s from s = 1/|S| until T steps or L1 change < eps ----
@group(0) @binding(0) var<storage, read> w_probs: array<f32>;
@group(0) @binding(1) var<storage, read> w_alive: array<u32>;
@group(0) @binding(2) var<storage, read_write> w_out: array<f32>;
@group(0) @binding(3) var<uniform> wp: WprParams;

var<workgroup> s: array<f32, MAX_TOKENS>;
var<workgroup> inv_row: array<f32, MAX_TOKENS>;
var<workgroup> stop: u32;

@compute @workgroup_size(64, 1, 1)
fn wpr(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let z = wid.x; // image * heads + head
    let n = wp.n;
    let b = z / wp.heads;
    let base = z * n * n;
    let alive = b * n;

    // 1 / (row sum over surviving columns) for every surviving row; 0 for the others.
    var alive_count = 0.0;
    for (var j = lane; j < n; j += WG) {
        var sum = 0.0;
        let aj = w_alive[alive + j] != 0u;
        if (aj) {
            alive_count += 1.0;
            for (var i = 0u; i < n; i++) {
                if (w_alive[alive + i] != 0u) {
                    sum += w_probs[base + j * n + i];
                }
            }
        }
        inv_row[j] = select(0.0, 1.0 / sum, aj && sum > 0.0);
    }
    let survivors = reduce_sum(lane, alive_count);
    for (var j = lane; j < n; j += WG) {
        s[j] = select(0.0, 1.0 / survivors, w_alive[alive + j] != 0u);
    }
    workgroupBarrier();

    for (var it = 0u; it < wp.iters; it++) {
        var fresh: array<f32, PER>;
        for (var r = 0u; r < PER; r++) {
            let i = lane + r * WG;
            var v = 0.0;
            if (i < n && w_alive[alive + i] != 0u) {
                for (var j = 0u; j < n; j++) {
                    v += w_probs[base + j * n + i] * inv_row[j] * s[j];
                }
            }
            fresh[r] = v;
        }
        workgroupBarrier();
        var delta = 0.0;
        for (var r = 0u; r < PER; r++) {
            let i = lane + r * WG;
            if (i < n) {
                delta += abs(fresh[r] - s[i]);
                s[i] = fresh[r];
            }
        }
        let total = reduce_sum(lane, delta);
        if (lane == 0u) {
            stop = select(0u, 1u, total < wp.eps);
        }
        if (workgroupUniformLoad(&stop) == 1u) {
            break;
        }
    }
    workgroupBarrier();
    for (var i = lane; i < n; i += WG) {
        w_out[z * n + i] = s[i];
    }
}

// ---- combine_heads: one workgroup per image; mean, root-mean-square, or RMS over the heads whose
// variance of |S| * s over the surviving patch tokens lies in [lo, hi] (all heads if none does) ----

@group(0) @binding(0) var<storage, read> c_heads: array<f32>;
@group(0) @binding(1) var<storage, read> c_alive: array<u32>;
@group(0) @binding(2) var<storage, read_write> c_score: array<f32>;
@group(0) @binding(3) var<uniform> cp: CombineParams;

var<workgroup> use_head: array<f32, MAX_HEADS>;

@compute @workgroup_size(64, 1, 1)
fn combine_heads(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let b = wid.x;
    let n = cp.n;
    let heads = min(cp.heads, MAX_HEADS);
    var all_alive = 0.0;
    var patch_alive = 0.0;
    for (var i = lane; i < n; i += WG) {
        if (c_alive[b * n + i] != 0u) {
            all_alive += 1.0;
            if (i >= cp.prefix) {
                patch_alive += 1.0;
            }
        }
    }
    let survivors = reduce_sum(lane, all_alive);
    let patches = max(reduce_sum(lane, patch_alive), 1.0);

    var used = 0.0;
    for (var h = 0u; h < heads; h++) {
        var keep = 1.0;
        if (cp.mode == 2u) {
            let base = (b * cp.heads + h) * n;
            var sum = 0.0;
            for (var i = lane; i < n; i += WG) {
                if (i >= cp.prefix && c_alive[b * n + i] != 0u) {
                    sum += survivors * c_heads[base + i];
                }
            }
            let mean = reduce_sum(lane, sum) / patches;
            var sq = 0.0;
            for (var i = lane; i < n; i += WG) {
                if (i >= cp.prefix && c_alive[b * n + i] != 0u) {
                    let d = survivors * c_heads[base + i] - mean;
                    sq += d * d;
                }
            }
            let variance = reduce_sum(lane, sq) / patches;
            keep = select(0.0, 1.0, variance >= cp.lo && variance <= cp.hi);
        }
        if (lane == 0u) {
            use_head[h] = keep;
        }
        used += keep;
    }
    workgroupBarrier();
    let fallback = used == 0.0;

    for (var i = lane; i < n; i += WG) {
        var out = NEG;
        if (c_alive[b * n + i] != 0u) {
            var acc = 0.0;
            var count = 0.0;
            for (var h = 0u; h < heads; h++) {
                if (fallback || use_head[h] != 0.0) {
                    let v = c_heads[(b * cp.heads + h) * n + i];
                    acc += select(v * v, v, cp.mode == 0u);
                    count += 1.0;
                }
            }
            out = select(sqrt(acc / count), acc / count, cp.mode == 0u);
        }
        c_score[b * n + i] = out;
    }
}
