// The importance stage of Zero-TPrune: Weighted PageRank on one block's attention, per head, on the
// surviving tokens only (rows renormalised), then the heads combined into one score per token.

const WG: u32 = 64u; // few SIMD chunks per barrier on CPU adapters (llvmpipe); was 256
const PER: u32 = MAX_TOKENS / WG; // tokens owned by each thread

// ---- wpr: one workgroup per (image, head); s <- A'^T s from s = 1/|S| until T steps or L1 change < eps.
// A' (rows renormalised over the survivors, zero off them) is written once, transposed, to w_norm:
// each iteration then reads row i of A'^T as vec4s, the order a CPU adapter vectorises. ----
@group(0) @binding(0) var<storage, read> w_probs: array<f32>;
@group(0) @binding(1) var<storage, read> w_alive: array<u32>;
@group(0) @binding(2) var<storage, read_write> w_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> w_norm: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> wp: WprParams;

var<workgroup> s: array<vec4<f32>, MAX_TOKENS / 4u>;
var<workgroup> fresh: array<f32, MAX_TOKENS>;
var<workgroup> inv_row: array<f32, MAX_TOKENS>;
var<workgroup> stop: u32;

@compute @workgroup_size(64, 1, 1)
fn wpr(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let z = wid.x; // image * heads + head
    let n = wp.n;
    let q = (n + 3u) / 4u; // vec4s per row of w_norm
    let b = z / wp.heads;
    let base = z * n * n;
    let nbase = z * n * q;
    let alive = b * n;

    // `fresh` holds the survivor mask (1 or 0) until the iterations start.
    var alive_count = 0.0;
    for (var i = lane; i < n; i += WG) {
        let m = select(0.0, 1.0, w_alive[alive + i] != 0u);
        fresh[i] = m;
        alive_count += m;
    }
    workgroupBarrier();
    // 1 / (row sum over surviving columns) for every surviving row; 0 for the others.
    for (var j = lane; j < n; j += WG) {
        var sum = 0.0;
        let row = base + j * n;
        for (var i = 0u; i < n; i++) {
            sum += w_probs[row + i] * fresh[i];
        }
        inv_row[j] = select(0.0, 1.0 / sum, fresh[j] != 0.0 && sum > 0.0);
    }
    let survivors = reduce_sum(lane, alive_count);
    for (var j = lane; j < q * 4u; j += WG) {
        s[j / 4u][j % 4u] = select(0.0, 1.0 / survivors, j < n && w_alive[alive + j] != 0u);
    }
    // w_norm[i, j] = A'[j, i]: zero where i or j is not a survivor, and in the padding j >= n.
    for (var e = lane; e < n * q; e += WG) {
        let i = e % n;
        let j0 = (e / n) * 4u;
        var v = vec4<f32>(0.0);
        if (w_alive[alive + i] != 0u) {
            for (var c = 0u; c < 4u; c++) {
                let j = j0 + c;
                if (j < n) {
                    v[c] = w_probs[base + j * n + i] * inv_row[j];
                }
            }
        }
        w_norm[nbase + e] = v;
    }
    storageBarrier();
    workgroupBarrier();

    for (var it = 0u; it < wp.iters; it++) {
        // Four rows per lane share each load of s; rows past n read row n - 1 and are not kept.
        for (var i0 = lane; i0 < n; i0 += 4u * WG) {
            let i1 = min(i0 + WG, n - 1u);
            let i2 = min(i0 + 2u * WG, n - 1u);
            let i3 = min(i0 + 3u * WG, n - 1u);
            var a0 = vec4<f32>(0.0);
            var a1 = vec4<f32>(0.0);
            var a2 = vec4<f32>(0.0);
            var a3 = vec4<f32>(0.0);
            for (var c = 0u; c < q; c++) {
                let sc = s[c];
                let col = nbase + c * n;
                a0 += w_norm[col + i0] * sc;
                a1 += w_norm[col + i1] * sc;
                a2 += w_norm[col + i2] * sc;
                a3 += w_norm[col + i3] * sc;
            }
            fresh[i0] = (a0.x + a0.y) + (a0.z + a0.w);
            if (i0 + WG < n) {
                fresh[i0 + WG] = (a1.x + a1.y) + (a1.z + a1.w);
            }
            if (i0 + 2u * WG < n) {
                fresh[i0 + 2u * WG] = (a2.x + a2.y) + (a2.z + a2.w);
            }
            if (i0 + 3u * WG < n) {
                fresh[i0 + 3u * WG] = (a3.x + a3.y) + (a3.z + a3.w);
            }
        }
        workgroupBarrier();
        var delta = 0.0;
        for (var i = lane; i < n; i += WG) {
            delta += abs(fresh[i] - s[i / 4u][i % 4u]);
            s[i / 4u][i % 4u] = fresh[i];
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
        w_out[z * n + i] = s[i / 4u][i % 4u];
    }
}

// ---- combine_heads: one workgroup per image; mean, root-mean-square, or RMS over the heads whose
// variance of |S| * s over the surviving patch tokens lies in [lo, hi] (all heads if none does) ----

@group(0) @binding(0) var<storage, read> c_heads: array<f32>;
@group(0) @binding(1) var<storage, read> c_alive: array<u32>;
@group(0) @binding(2) var<storage, read_write> c_score: array<f32>;
@group(0) @binding(3) var<storage, read_write> c_flags: array<u32>;
@group(0) @binding(4) var<uniform> cp: CombineParams;

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
        if (cp.keep > 0u) {
            load_key(i, n, cp.prefix, out);
        }
    }
    // With keep > 0, the top-k selection too (select.wgsl's select_topk, in the same workgroup:
    // the scores only feed it): flag the first `keep` rows by (score desc, position asc).
    if (cp.keep > 0u) {
        for (var i = n + lane; i < cp.m; i += WG) {
            load_key(i, n, cp.prefix, 0.0);
        }
        sort_desc(lane, cp.m);
        for (var r = lane; r < n; r += WG) {
            c_flags[b * n + idx[r]] = select(0u, 1u, r < cp.keep);
        }
    }
}
