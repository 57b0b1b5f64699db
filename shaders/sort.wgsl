// Ranking rows of one image by a score, by the whole workgroup (the including file defines WG):
// a bitonic sort by (score desc, position asc) in workgroup memory. Used by select.wgsl and by
// pagerank.wgsl's combine_heads, which ranks the scores it has just combined.

var<workgroup> key: array<f32, MAX_TOKENS>;
var<workgroup> idx: array<u32, MAX_TOKENS>;

// Whether (ka, ia) ranks before (kb, ib).
fn before(ka: f32, ia: u32, kb: f32, ib: u32) -> bool {
    return ka > kb || (ka == kb && ia < ib);
}

// Load row i's key for a sort of the first n rows padded to m (a power of two): prefix rows rank
// first, padding last.
fn load_key(i: u32, n: u32, prefix: u32, score: f32) {
    if (i < n) {
        key[i] = select(score, HIGHEST, i < prefix);
        idx[i] = i;
    } else {
        key[i] = LOWEST;
        idx[i] = NONE;
    }
}

// Bitonic sort of key[0..m) / idx[0..m) by (key desc, index asc), in place, by the whole workgroup.
fn sort_desc(lane: u32, m: u32) {
    workgroupBarrier();
    for (var k = 2u; k <= m; k <<= 1u) {
        for (var j = k >> 1u; j > 0u; j >>= 1u) {
            for (var i = lane; i < m; i += WG) {
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
}

