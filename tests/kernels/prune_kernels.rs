//! Every token-pruning kernel (score, pagerank, similarity, select, compact, merge, and the masked /
//! log-size softmax) against a plain CPU reference on seeded random data, through the public
//! launchers of `Kernels`. The references follow docs/pruning.md (f64 accumulation for floats,
//! f32 where the document says the comparison itself is in f32); integer outputs must match exactly.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use zeroprune::gpu::kernels::AttentionBias;
use zeroprune::gpu::kernels::{
    Features, HeadCombine, MatchSplit, MergeTargets, RoleSplit, ThresholdOn, TokenShape, TopCount,
    MAX_TOKENS as MAX_PRUNE_TOKENS,
};
use zeroprune::gpu::GpuTensor;

use crate::common::{kernels, read, read_u32, rng, run, uniform, upload, upload_u32};

/// Float outputs: the largest error relative to the largest |reference| value of the output.
const TOL: f64 = 1e-5;
/// The score of rows that do not take part (masked or not alive).
const NEG: f32 = -3.0e38;
/// `best_match`'s keep score of rows that are not sources.
const POS: f32 = 3.0e38;
/// "No row" in index outputs.
const NONE: u32 = u32::MAX;
/// Written into every output buffer first, so a position the kernel forgets shows up.
const SENTINEL_U32: u32 = 0x5555_5555;
const SENTINEL_F32: f32 = 123.25;
/// ToMe / Zero-TPrune band of the `band` head combination (the defaults).
const BAND: (f32, f32) = (0.01, 0.7);

// ---------------------------------------------------------------------------------------------
// Harness

/// An output buffer of `len` f32 sentinels.
fn out_f32(len: usize) -> GpuTensor {
    upload(&vec![SENTINEL_F32; len])
}

/// An output buffer of `len` u32 sentinels.
fn out_u32(len: usize) -> GpuTensor {
    upload_u32(&vec![SENTINEL_U32; len])
}

fn shape(batch: usize, n: usize, heads: usize, prefix: usize) -> TokenShape {
    TokenShape {
        batch,
        n,
        heads,
        prefix,
    }
}

/// An expected float: bit-exact (special values, zeros) or close to an f64 reference.
#[derive(Clone, Copy, Debug)]
enum Want {
    Exact(f32),
    Near(f64),
}

/// Exact positions must match bit for bit; near ones within `tol` of the largest |near value|.
/// Returns the relative error.
fn check(what: &str, got: &[f32], want: &[Want], tol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-30f64, |m, w| match w {
        Want::Near(v) => m.max(v.abs()),
        Want::Exact(_) => m,
    });
    let (mut err, mut at) = (0.0f64, usize::MAX);
    for (i, (&g, w)) in got.iter().zip(want).enumerate() {
        match *w {
            Want::Exact(v) => assert_eq!(
                g.to_bits(),
                v.to_bits(),
                "{what}: index {i} is {g}, expected exactly {v}"
            ),
            Want::Near(v) => {
                assert!(g.is_finite(), "{what}: non-finite value {g} at {i}");
                let e = (g as f64 - v).abs();
                if e > err {
                    (err, at) = (e, i);
                }
            }
        }
    }
    let rel = err / scale;
    if at != usize::MAX {
        assert!(
            rel <= tol,
            "{what}: relative error {rel:.3e} > {tol:e} at index {at} (got {}, want {:?})",
            got[at],
            want[at]
        );
    }
    eprintln!("{what}: max relative error {rel:.2e}");
    rel
}

/// Integer outputs must match exactly; the first difference is reported with its (image, row).
fn check_u32(what: &str, got: &[u32], want: &[u32], row: usize) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}: image {} row {}: got {:#x}, want {:#x}",
            i / row.max(1),
            i % row.max(1),
            got[i],
            want[i]
        );
    }
}

/// Row-stochastic attention: `matrices` matrices of `n x n`, each row a softmax of logits uniform
/// in `+-spread` plus `peak` on one random column (the larger `peak`, the slower PageRank mixes).
fn attention(r: &mut StdRng, matrices: usize, n: usize, spread: f64, peak: f64) -> Vec<f32> {
    let mut p = Vec::with_capacity(matrices * n * n);
    for _ in 0..matrices * n {
        let target = r.random_range(0..n);
        let logits: Vec<f64> = (0..n)
            .map(|i| r.random_range(-spread..spread) + if i == target { peak } else { 0.0 })
            .collect();
        let m = logits.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let e: Vec<f64> = logits.iter().map(|&v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        p.extend(e.iter().map(|&v| (v / s) as f32));
    }
    p
}

/// Alive flags `[B, n]`: prefix rows always, patch rows with probability `frac[b]`.
fn alive_flags(r: &mut StdRng, n: usize, prefix: usize, frac: &[f64]) -> Vec<u32> {
    let mut out = Vec::new();
    for &f in frac {
        for i in 0..n {
            out.push((i < prefix || r.random_bool(f)) as u32);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// received attention, CLS attention, random scores

/// `s[i] = 1/(H c) sum_h sum_{j<c} A_h[j, i]` for `i < c`, `-3e38` for the masked rows.
fn received_ref(p: &[f32], s: TokenShape, counts: Option<&[u32]>) -> Vec<Want> {
    let (n, heads) = (s.n, s.heads);
    let mut out = Vec::with_capacity(s.batch * n);
    for b in 0..s.batch {
        let c = counts.map_or(n, |c| (c[b] as usize).min(n));
        for i in 0..n {
            if i >= c {
                out.push(Want::Exact(NEG));
                continue;
            }
            let mut acc = 0.0f64;
            for h in 0..heads {
                let a = &p[(b * heads + h) * n * n..][..n * n];
                for j in 0..c {
                    acc += a[j * n + i] as f64;
                }
            }
            out.push(Want::Near(acc / (heads * c) as f64));
        }
    }
    out
}

async fn received_case(seed: u64, s: TokenShape, counts: Option<&[u32]>) {
    let mut r = rng(seed);
    let p = attention(&mut r, s.batch * s.heads, s.n, 3.0, 2.0);
    let probs = upload(&p);
    let valid = counts.map(upload_u32);
    let score = out_f32(s.batch * s.n);
    run([kernels()
        .received_attention("received", s, &probs, valid.as_ref(), &score)
        .unwrap()]);
    let got = read(&score).await;
    let what = format!(
        "received_attention B{} n{} H{} counts {counts:?}",
        s.batch, s.n, s.heads
    );
    check(&what, &got, &received_ref(&p, s, counts), TOL);
    // The fused score-and-select: the flags select_topk gives on these scores, exactly.
    let keep = (s.prefix + (s.n - s.prefix).div_ceil(2)).min(s.n);
    let (flags, want_flags) = (out_u32(s.batch * s.n), out_u32(s.batch * s.n));
    run([
        kernels()
            .received_topk(
                "received_topk",
                s,
                &probs,
                valid.as_ref(),
                &flags,
                TopCount::Rows(keep),
            )
            .unwrap(),
        kernels()
            .select_topk("topk", s, &score, &want_flags, keep)
            .unwrap(),
    ]);
    assert_eq!(
        read_u32(&flags).await,
        read_u32(&want_flags).await,
        "{what}: received_topk's top-{keep} flags"
    );
    // The important half: the prefix and half of each image's valid patch rows, rounded up, by
    // (score desc, row asc) on the same scores.
    let half = out_u32(s.batch * s.n);
    run([kernels()
        .received_topk(
            "received_half",
            s,
            &probs,
            valid.as_ref(),
            &half,
            TopCount::HalfOfPatches,
        )
        .unwrap()]);
    check_u32(
        &format!("{what}: received_topk's important half"),
        &read_u32(&half).await,
        &half_ref(&got, s, counts),
        s.n,
    );
    if counts.is_none() {
        // Rows sum to 1, so the scores of an image do too.
        for b in 0..s.batch {
            let sum: f64 = got[b * s.n..][..s.n].iter().map(|&v| v as f64).sum();
            assert!((sum - 1.0).abs() < 1e-5, "{what}: image {b} sums to {sum}");
        }
    }
}

/// Flags of the prefix and the `ceil((c - prefix) / 2)` best valid patch rows of each image by
/// (score desc, row asc).
fn half_ref(score: &[f32], s: TokenShape, counts: Option<&[u32]>) -> Vec<u32> {
    let n = s.n;
    let mut flags = vec![0u32; s.batch * n];
    for b in 0..s.batch {
        let c = counts.map_or(n, |c| (c[b] as usize).min(n));
        let sc = &score[b * n..][..n];
        let keep = s.prefix + c.saturating_sub(s.prefix).div_ceil(2);
        let mut rows: Vec<usize> = (s.prefix..c).collect();
        rows.sort_by(|&i, &j| sc[j].total_cmp(&sc[i]).then(i.cmp(&j)));
        for t in (0..s.prefix).chain(rows.into_iter().take(keep - s.prefix)) {
            flags[b * n + t] = 1;
        }
    }
    flags
}

async fn received_attention_unmasked() {
    received_case(100, shape(1, 197, 3, 1), None).await;
    received_case(101, shape(3, 50, 4, 2), None).await;
    received_case(102, shape(3, 1, 2, 1), None).await;
    received_case(103, shape(2, 65, 1, 1), None).await; // one past a workgroup of 64
}

async fn received_attention_masked() {
    received_case(110, shape(3, 50, 4, 2), Some(&[50, 23, 2])).await;
    received_case(111, shape(1, 197, 3, 1), Some(&[120])).await;
    received_case(112, shape(3, 65, 2, 1), Some(&[1, 65, 64])).await;
    // A count of 0 leaves no valid row at all.
    received_case(113, shape(2, 9, 2, 1), Some(&[0, 9])).await;
}

/// `s[i] = 1/H sum_h A_h[0, i]`.
fn cls_ref(p: &[f32], s: TokenShape) -> Vec<Want> {
    let (n, heads) = (s.n, s.heads);
    let mut out = Vec::with_capacity(s.batch * n);
    for b in 0..s.batch {
        for i in 0..n {
            let acc: f64 = (0..heads)
                .map(|h| p[(b * heads + h) * n * n + i] as f64)
                .sum();
            out.push(Want::Near(acc / heads as f64));
        }
    }
    out
}

async fn cls_attention_matches_cpu() {
    for (seed, s) in [
        (120, shape(1, 197, 3, 1)),
        (121, shape(3, 50, 4, 2)),
        (122, shape(3, 1, 2, 1)),
        (123, shape(2, 130, 6, 2)),
    ] {
        let mut r = rng(seed);
        let p = attention(&mut r, s.batch * s.heads, s.n, 3.0, 2.0);
        let probs = upload(&p);
        let score = out_f32(s.batch * s.n);
        run([kernels().cls_attention("cls", s, &probs, &score).unwrap()]);
        let what = format!("cls_attention B{} n{} H{}", s.batch, s.n, s.heads);
        check(&what, &read(&score).await, &cls_ref(&p, s), TOL);
    }
}

/// `pcg(v)` of docs/pruning.md, wrapping u32 arithmetic.
fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// `s = pcg(seed + pcg(step + pcg(b + pcg(orig))))` as `f32(s >> 8)`.
fn random_ref(orig: &[u32], batch: usize, n: usize, seed: u32, step: u32) -> Vec<f32> {
    (0..batch * n)
        .map(|e| {
            let b = (e / n) as u32;
            let h =
                pcg(seed.wrapping_add(pcg(step.wrapping_add(pcg(b.wrapping_add(pcg(orig[e])))))));
            (h >> 8) as f32
        })
        .collect()
}

/// Positions where two score vectors agree.
fn agreeing(a: &[f32], b: &[f32]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x == y).count()
}

async fn random_score_is_the_documented_pcg_hash() {
    // Values of the documented hash computed separately (Python, arbitrary-precision integers
    // reduced mod 2^32), so a slip in the Rust reference cannot mirror one in the kernel.
    for (v, h) in [
        (0, 129_708_002),
        (1, 2_831_084_092),
        (12_345, 4_099_845_390),
        (u32::MAX, 3_861_530_882),
    ] {
        assert_eq!(pcg(v), h, "pcg({v})");
    }

    let (batch, n) = (3, 197);
    let mut r = rng(130);
    // The same original indices in every image (so only `b` tells images apart), some of them huge.
    let mut per_image: Vec<u32> = (0..n as u32).collect();
    per_image.shuffle(&mut r);
    per_image[5] = u32::MAX;
    per_image[6] = r.random();
    let orig: Vec<u32> = (0..batch).flat_map(|_| per_image.clone()).collect();
    let orig_t = upload_u32(&orig);
    let cases: [(u32, u32); 6] = [
        (0, 0),
        (1, 0),
        (0, 1),
        (0, 7),
        (0xdead_beef, 2),
        (u32::MAX, u32::MAX),
    ];
    let outs: Vec<GpuTensor> = cases.iter().map(|_| out_f32(batch * n)).collect();
    let s = shape(batch, n, 1, 1);
    run(cases.iter().zip(&outs).map(|(&(seed, step), out)| {
        kernels()
            .random_score("random", s, &orig_t, out, seed, step)
            .unwrap()
    }));
    let mut got: Vec<Vec<f32>> = Vec::new();
    for out in &outs {
        got.push(read(out).await);
    }
    for (&(seed, step), g) in cases.iter().zip(&got) {
        let want = random_ref(&orig, batch, n, seed, step);
        let want: Vec<Want> = want.iter().map(|&v| Want::Exact(v)).collect();
        check(
            &format!("random_score seed {seed} step {step}"),
            g,
            &want,
            0.0,
        );
        for &v in g {
            assert!(
                v >= 0.0 && v < (1u32 << 24) as f32 && v.fract() == 0.0,
                "{v}"
            );
        }
        // Images differ although their original indices are the same.
        for b in 1..batch {
            let same = agreeing(&g[..n], &g[b * n..][..n]);
            assert!(
                same <= 2,
                "seed {seed} step {step}: image {b} repeats image 0 ({same})"
            );
        }
    }
    // Seeds and steps change the scores.
    for i in 0..cases.len() {
        for j in i + 1..cases.len() {
            let same = agreeing(&got[i], &got[j]);
            assert!(
                same <= 3,
                "{:?} and {:?} agree at {same} positions",
                cases[i],
                cases[j]
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Weighted PageRank and head combining

struct WprRef {
    /// `[B, H, n]`, 0 for rows that are not alive.
    scores: Vec<f64>,
    /// Iterations run, per (image, head).
    iters: Vec<u32>,
    /// L1 changes, per (image, head) and iteration.
    deltas: Vec<Vec<f64>>,
}

/// Per-head Weighted PageRank of docs/pruning.md on the alive rows `S`: rows renormalised over `S`,
/// `s = 1/|S|`, at most `iters` times `s_new[i] = sum_{j in S} A'[j, i] s[j]`, stop when the L1
/// change is below `eps`.
fn wpr_ref(p: &[f32], alive: &[u32], s: TokenShape, iters: u32, eps: f64) -> WprRef {
    let (n, heads) = (s.n, s.heads);
    let mut out = WprRef {
        scores: vec![0.0; s.batch * heads * n],
        iters: Vec::new(),
        deltas: Vec::new(),
    };
    for b in 0..s.batch {
        let set: Vec<usize> = (0..n).filter(|&i| alive[b * n + i] != 0).collect();
        let m = set.len();
        assert!(m > 0, "the test needs a survivor per image");
        for h in 0..heads {
            let a = &p[(b * heads + h) * n * n..][..n * n];
            // norm[jj][ii] = A'[set[jj], set[ii]]
            let norm: Vec<Vec<f64>> = set
                .iter()
                .map(|&j| {
                    let sum: f64 = set.iter().map(|&i| a[j * n + i] as f64).sum();
                    set.iter().map(|&i| a[j * n + i] as f64 / sum).collect()
                })
                .collect();
            let mut sv = vec![1.0 / m as f64; m];
            let (mut done, mut deltas) = (0, Vec::new());
            for _ in 0..iters {
                let fresh: Vec<f64> = (0..m)
                    .map(|ii| (0..m).map(|jj| norm[jj][ii] * sv[jj]).sum())
                    .collect();
                let delta: f64 = fresh.iter().zip(&sv).map(|(x, y)| (x - y).abs()).sum();
                sv = fresh;
                done += 1;
                deltas.push(delta);
                if delta < eps {
                    break;
                }
            }
            for (ii, &i) in set.iter().enumerate() {
                out.scores[(b * heads + h) * n + i] = sv[ii];
            }
            out.iters.push(done);
            out.deltas.push(deltas);
        }
    }
    out
}

/// One PageRank step from the uniform start, written directly: the mean over the alive rows of
/// the renormalised attention, `s[i] = 1/|S| sum_{j in S} A[j, i] / sum_{i' in S} A[j, i']`.
fn column_mean_ref(p: &[f32], alive: &[u32], s: TokenShape) -> Vec<f64> {
    let (n, heads) = (s.n, s.heads);
    let mut out = vec![0.0; s.batch * heads * n];
    for b in 0..s.batch {
        let is_alive = |i: usize| alive[b * n + i] != 0;
        let m = (0..n).filter(|&i| is_alive(i)).count() as f64;
        for h in 0..heads {
            let a = &p[(b * heads + h) * n * n..][..n * n];
            for j in (0..n).filter(|&j| is_alive(j)) {
                let row = &a[j * n..][..n];
                let sum: f64 = (0..n).filter(|&i| is_alive(i)).map(|i| row[i] as f64).sum();
                for i in (0..n).filter(|&i| is_alive(i)) {
                    out[(b * heads + h) * n + i] += row[i] as f64 / sum / m;
                }
            }
        }
    }
    out
}

/// Runs WPR on the GPU; returns `[B, H, n]` scores.
async fn wpr_gpu(
    s: TokenShape,
    probs: &GpuTensor,
    alive: &GpuTensor,
    iters: u32,
    eps: f32,
) -> Vec<f32> {
    let out = out_f32(s.batch * s.heads * s.n);
    // NaN scratch: a value the kernel reads without writing it first poisons the scores.
    let matrix = upload(&vec![f32::NAN; zeroprune::gpu::Kernels::wpr_matrix_len(s)]);
    run([kernels()
        .wpr("wpr", s, probs, alive, &out, &matrix, iters, eps)
        .unwrap()]);
    read(&out).await
}

/// GPU against CPU, plus: exact zeros off `S`, and each (image, head) sums to 1 over `S`.
fn check_wpr(what: &str, got: &[f32], want: &[f64], alive: &[u32], s: TokenShape) -> f64 {
    let n = s.n;
    let want: Vec<Want> = want
        .iter()
        .enumerate()
        .map(|(e, &v)| {
            let b = e / (s.heads * n);
            if alive[b * n + e % n] == 0 {
                Want::Exact(0.0)
            } else {
                Want::Near(v)
            }
        })
        .collect();
    let err = check(what, got, &want, TOL);
    for z in 0..s.batch * s.heads {
        let sum: f64 = got[z * n..][..n].iter().map(|&v| v as f64).sum();
        assert!(
            (sum - 1.0).abs() < 1e-5,
            "{what}: image {} head {} sums to {sum}",
            z / s.heads,
            z % s.heads
        );
    }
    err
}

/// WPR with early stopping against the reference. The GPU's L1 change is an f32 sum that differs
/// from the f64 one by a few percent near convergence, so where the reference's change at its last
/// (or next) iteration lies within 50% of `eps`, an (image, head) may also stop one iteration
/// earlier or later; it must then match the reference run for that many iterations.
fn check_wpr_stopping(
    what: &str,
    got: &[f32],
    (p, alive): (&[f32], &[u32]),
    s: TokenShape,
    iters: u32,
    eps: f32,
) {
    let n = s.n;
    let eps64 = eps as f64;
    let want = wpr_ref(p, alive, s, iters, eps64);
    let mut fixed: std::collections::HashMap<u32, Vec<f64>> = Default::default();
    let mut merged = want.scores.clone();
    let mut moved = Vec::new();
    for z in 0..s.batch * s.heads {
        let (k, d) = (want.iters[z], &want.deltas[z]);
        let mut counts = vec![k];
        if k >= 2 && d[k as usize - 2] < 1.5 * eps64 {
            counts.push(k - 1);
        }
        if k >= 1 && k < iters && d[k as usize - 1] > eps64 / 1.5 {
            counts.push(k + 1);
        }
        let got_z: Vec<f64> = got[z * n..][..n].iter().map(|&v| v as f64).collect();
        let (count, scores) = counts
            .iter()
            .map(|&c| {
                let all = fixed
                    .entry(c)
                    .or_insert_with(|| wpr_ref(p, alive, s, c, 0.0).scores);
                (c, all[z * n..][..n].to_vec())
            })
            .min_by(|a, b| rel_diff(&got_z, &a.1).total_cmp(&rel_diff(&got_z, &b.1)))
            .unwrap();
        if count != k {
            moved.push((z, k, count));
        }
        merged[z * n..][..n].copy_from_slice(&scores);
    }
    eprintln!(
        "{what}: the reference stops after {:?} iterations; (image * heads + head, reference, GPU) \
         where the GPU stops elsewhere: {moved:?}",
        want.iters
    );
    check_wpr(what, got, &merged, alive, s);
}

/// Largest |a - b| relative to the largest |b|.
fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

async fn wpr_matches_cpu_pagerank() {
    for (seed, s, frac) in [
        (200, shape(1, 197, 3, 1), vec![1.0]),
        (201, shape(3, 50, 4, 2), vec![0.7, 1.0, 0.1]),
        (202, shape(2, 300, 2, 1), vec![0.6, 0.9]), // more rows than threads
    ] {
        let mut r = rng(seed);
        let p = attention(&mut r, s.batch * s.heads, s.n, 2.0, 5.0);
        let alive = alive_flags(&mut r, s.n, s.prefix, &frac);
        let (probs, alive_t) = (upload(&p), upload_u32(&alive));
        let tag = format!("wpr B{} n{} H{}", s.batch, s.n, s.heads);

        // eps = 0 never stops early: exactly T iterations. T = 1, 3, 10, 30 must all differ.
        let mut previous: Option<Vec<f64>> = None;
        for iters in [0, 1, 3, 10, 30] {
            let want = wpr_ref(&p, &alive, s, iters, 0.0);
            assert!(want.iters.iter().all(|&t| t == iters));
            let got = wpr_gpu(s, &probs, &alive_t, iters, 0.0).await;
            check_wpr(
                &format!("{tag} T={iters} eps=0"),
                &got,
                &want.scores,
                &alive,
                s,
            );
            if let Some(prev) = previous {
                if iters <= 10 {
                    let d = rel_diff(&prev, &want.scores);
                    assert!(d > 100.0 * TOL, "{tag}: T={iters} changes only {d:.2e}");
                }
            }
            previous = Some(want.scores);
        }

        // The schedule's setting: T = 30, eps = 1e-6 (stops once converged).
        let got = wpr_gpu(s, &probs, &alive_t, 30, 1e-6).await;
        let what = format!("{tag} T=30 eps=1e-6");
        check_wpr_stopping(&what, &got, (&p, &alive), s, 30, 1e-6);
    }
}

async fn wpr_at_the_token_limit() {
    // 1024 rows: every thread owns 4 columns.
    let s = shape(1, MAX_PRUNE_TOKENS, 1, 1);
    let mut r = rng(205);
    let p = attention(&mut r, s.batch * s.heads, s.n, 2.0, 5.0);
    let alive = alive_flags(&mut r, s.n, s.prefix, &[0.8]);
    let (probs, alive_t) = (upload(&p), upload_u32(&alive));
    for (iters, eps) in [(3, 0.0), (30, 1e-6)] {
        let got = wpr_gpu(s, &probs, &alive_t, iters, eps).await;
        let what = format!("wpr n1024 T={iters} eps={eps}");
        check_wpr_stopping(&what, &got, (&p, &alive), s, iters, eps);
    }
}

async fn wpr_early_stop() {
    let s = shape(3, 50, 4, 1);
    let mut r = rng(210);
    let p = attention(&mut r, s.batch * s.heads, s.n, 2.0, 5.0);
    let alive = alive_flags(&mut r, s.n, s.prefix, &[1.0, 0.5, 0.8]);
    let (probs, alive_t) = (upload(&p), upload_u32(&alive));

    // A huge eps: exactly one iteration, the mean of the renormalised rows.
    let one = column_mean_ref(&p, &alive, s);
    let loop_one = wpr_ref(&p, &alive, s, 1, 0.0).scores;
    assert!(
        rel_diff(&loop_one, &one) < 1e-12,
        "the two references disagree"
    );
    let huge = wpr_gpu(s, &probs, &alive_t, 30, 1e30).await;
    check_wpr("wpr eps=1e30 (one iteration)", &huge, &one, &alive, s);

    // A tiny eps runs to convergence, which differs from one iteration.
    let converged = wpr_ref(&p, &alive, s, 30, 1e-9);
    assert!(
        converged.iters.iter().any(|&t| t > 2),
        "{:?}",
        converged.iters
    );
    let tiny = wpr_gpu(s, &probs, &alive_t, 30, 1e-9).await;
    check_wpr("wpr eps=1e-9", &tiny, &converged.scores, &alive, s);
    let d = rel_diff(&converged.scores, &one);
    assert!(
        d > 100.0 * TOL,
        "one iteration is already converged ({d:.2e})"
    );
    let got_d = rel_diff(
        &tiny.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        &huge.iter().map(|&v| v as f64).collect::<Vec<_>>(),
    );
    assert!(got_d > 100.0 * TOL, "eps does not change the GPU result");

    // eps = 1: the stop follows the L1 change of each (image, head); the reference's changes must
    // not sit at the border, or f32 rounding could decide differently.
    let want = wpr_ref(&p, &alive, s, 30, 1.0);
    for d in want.deltas.iter().flatten() {
        assert!((d - 1.0).abs() > 0.01, "L1 change {d} too close to eps = 1");
    }
    // Here every (image, head) changes by less than 1 in its first iteration: one iteration.
    assert!(want.iters.iter().all(|&t| t == 1), "{:?}", want.iters);
    assert!(rel_diff(&want.scores, &one) < 1e-12);
    let got = wpr_gpu(s, &probs, &alive_t, 30, 1.0).await;
    check_wpr("wpr eps=1", &got, &want.scores, &alive, s);
}

/// docs/pruning.md "Combining heads". Returns the scores and, per image, which heads were used.
fn combine_ref(
    hs: &[f32],
    alive: &[u32],
    s: TokenShape,
    how: HeadCombine,
    band: (f32, f32),
) -> (Vec<Want>, Vec<Vec<bool>>) {
    let (n, heads) = (s.n, s.heads);
    let mut out = Vec::with_capacity(s.batch * n);
    let mut used_all = Vec::new();
    for b in 0..s.batch {
        let is_alive = |i: usize| alive[b * n + i] != 0;
        let survivors = (0..n).filter(|&i| is_alive(i)).count() as f64;
        let patches: Vec<usize> = (s.prefix..n).filter(|&i| is_alive(i)).collect();
        let head = |h: usize| &hs[(b * heads + h) * n..][..n];
        let mut used: Vec<bool> = (0..heads)
            .map(|h| {
                if how != HeadCombine::Band {
                    return true;
                }
                let vals: Vec<f64> = patches
                    .iter()
                    .map(|&i| survivors * head(h)[i] as f64)
                    .collect();
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
                var >= band.0 as f64 && var <= band.1 as f64
            })
            .collect();
        if !used.contains(&true) {
            used = vec![true; heads];
        }
        for i in 0..n {
            if !is_alive(i) {
                out.push(Want::Exact(NEG));
                continue;
            }
            let vals: Vec<f64> = (0..heads)
                .filter(|&h| used[h])
                .map(|h| head(h)[i] as f64)
                .collect();
            let k = vals.len() as f64;
            out.push(Want::Near(match how {
                HeadCombine::Mean => vals.iter().sum::<f64>() / k,
                HeadCombine::Rms | HeadCombine::Band => {
                    (vals.iter().map(|v| v * v).sum::<f64>() / k).sqrt()
                }
            }));
        }
        used_all.push(used);
    }
    (out, used_all)
}

async fn combine_gpu(
    s: TokenShape,
    hs: &[f32],
    alive: &[u32],
    how: HeadCombine,
    band: (f32, f32),
) -> Vec<f32> {
    let (heads_t, alive_t) = (upload(hs), upload_u32(alive));
    let score = out_f32(s.batch * s.n);
    run([kernels()
        .combine_heads("combine", s, &heads_t, &alive_t, &score, how, band, None)
        .unwrap()]);
    let got = read(&score).await;
    // With the top-k fused in: the same scores, and the flags select_topk gives on them.
    let keep = (s.n / 2).max(s.prefix + 1).min(s.n);
    let (score2, flags, want_flags) = (
        out_f32(s.batch * s.n),
        out_u32(s.batch * s.n),
        out_u32(s.batch * s.n),
    );
    run([
        kernels()
            .combine_heads(
                "combine_topk",
                s,
                &heads_t,
                &alive_t,
                &score2,
                how,
                band,
                Some((&flags, keep)),
            )
            .unwrap(),
        kernels()
            .select_topk("topk", s, &score, &want_flags, keep)
            .unwrap(),
    ]);
    assert_eq!(read(&score2).await, got, "fused combine_heads scores");
    assert_eq!(
        read_u32(&flags).await,
        read_u32(&want_flags).await,
        "fused combine_heads top-{keep} flags"
    );
    got
}

async fn combine_heads_mean_and_rms() {
    for (seed, s, frac) in [
        (220, shape(1, 197, 3, 1), vec![1.0]),
        (221, shape(3, 50, 6, 2), vec![0.5, 1.0, 0.2]),
        (222, shape(2, 300, 12, 1), vec![0.8, 0.3]),
    ] {
        let mut r = rng(seed);
        let alive = alive_flags(&mut r, s.n, s.prefix, &frac);
        let hs = uniform(&mut r, s.batch * s.heads * s.n, 0.0, 0.05);
        for how in [HeadCombine::Mean, HeadCombine::Rms] {
            let got = combine_gpu(s, &hs, &alive, how, BAND).await;
            let (want, _) = combine_ref(&hs, &alive, s, how, BAND);
            let what = format!("combine_heads {how:?} B{} n{} H{}", s.batch, s.n, s.heads);
            check(&what, &got, &want, TOL);
        }
    }
}

/// Head scores `[B, H, n]` such that `|S| * s_h` over the alive patch rows of image `b` has the
/// population variance `targets[b][h]`; prefix rows get unrelated values and dead rows garbage,
/// so including either in the variance would move it far.
fn banded_heads(r: &mut StdRng, s: TokenShape, alive: &[u32], targets: &[Vec<f64>]) -> Vec<f32> {
    let n = s.n;
    let mut out = vec![0.0f32; s.batch * s.heads * n];
    for b in 0..s.batch {
        let is_alive = |i: usize| alive[b * n + i] != 0;
        let survivors = (0..n).filter(|&i| is_alive(i)).count() as f64;
        let patches: Vec<usize> = (s.prefix..n).filter(|&i| is_alive(i)).collect();
        for h in 0..s.heads {
            let mut z: Vec<f64> = patches.iter().map(|_| r.random_range(-1.0..1.0)).collect();
            let mean = z.iter().sum::<f64>() / z.len() as f64;
            let sd = (z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / z.len() as f64).sqrt();
            for v in &mut z {
                *v = (*v - mean) / sd;
            }
            let row = &mut out[(b * s.heads + h) * n..][..n];
            for (i, v) in row.iter_mut().enumerate() {
                *v = if i < s.prefix {
                    r.random_range(0.2..0.6)
                } else {
                    7.5 // dead patch row
                };
            }
            for (k, &i) in patches.iter().enumerate() {
                row[i] = ((1.0 + targets[b][h].sqrt() * z[k]) / survivors) as f32;
            }
        }
    }
    out
}

/// (seed, shape, alive probability per image, target variance per image and head)
type BandCase = (u64, TokenShape, Vec<f64>, Vec<Vec<f64>>);

async fn combine_heads_band_selects_heads() {
    // Variances around the band [0.01, 0.7]: in (0.012, 0.05, 0.3, 0.66, 0.697) and out (0.001,
    // 0.0085, 0.00995, 0.75, 2.0); even the closest is 0.3% from an edge, far above f32 rounding.
    let cases: [BandCase; 3] = [
        (
            230,
            shape(1, 197, 4, 1),
            vec![1.0],
            vec![vec![0.001, 0.05, 0.3, 2.0]],
        ),
        (
            231,
            shape(3, 50, 6, 2),
            vec![0.7, 1.0, 0.9],
            vec![
                vec![0.012, 0.0085, 0.66, 0.75, 0.05, 5.0],
                // Just inside / outside the edges (0.4% / 0.5%): the population variance
                // decides, not the sample variance (48 patches: x 1.02).
                vec![0.3, 0.697, 0.00995, 0.001, 0.001, 0.001],
                vec![0.75, 0.0085, 0.0085, 0.012, 2.0, 0.001],
            ],
        ),
        (
            232,
            shape(2, 300, 3, 1),
            vec![0.6, 0.9],
            vec![vec![0.5, 0.0085, 0.66], vec![3.0, 0.02, 0.001]],
        ),
    ];
    for (seed, s, frac, targets) in cases {
        let mut r = rng(seed);
        let alive = alive_flags(&mut r, s.n, s.prefix, &frac);
        let hs = banded_heads(&mut r, s, &alive, &targets);
        let (want, used) = combine_ref(&hs, &alive, s, HeadCombine::Band, BAND);
        // The construction picks the heads it means to.
        for (b, t) in targets.iter().enumerate() {
            let intended: Vec<bool> = t.iter().map(|&v| (0.01..=0.7).contains(&v)).collect();
            assert!(intended.contains(&true));
            assert_eq!(used[b], intended, "image {b}: reference heads");
        }
        let got = combine_gpu(s, &hs, &alive, HeadCombine::Band, BAND).await;
        let what = format!("combine_heads band B{} n{} H{}", s.batch, s.n, s.heads);
        check(&what, &got, &want, TOL);
        // Using all heads would give other scores: the band really selects.
        let (all, _) = combine_ref(&hs, &alive, s, HeadCombine::Rms, BAND);
        let differs = got.iter().zip(&all).any(|(&g, w)| match *w {
            Want::Near(v) => (g as f64 - v).abs() > 1e-3 * v.abs(),
            Want::Exact(_) => false,
        });
        assert!(differs, "{what}: band result equals rms over all heads");
    }
}

async fn combine_heads_band_falls_back_to_all_heads() {
    let s = shape(3, 50, 3, 1);
    let mut r = rng(240);
    let alive = alive_flags(&mut r, s.n, s.prefix, &[1.0, 0.6, 0.4]);
    let targets = vec![
        vec![0.001, 3.0, 5.0],
        vec![0.0085, 0.75, 0.002],
        vec![0.3, 0.001, 0.9], // one image still in the band
    ];
    let hs = banded_heads(&mut r, s, &alive, &targets);
    let (want, used) = combine_ref(&hs, &alive, s, HeadCombine::Band, BAND);
    assert_eq!(used[0], vec![true; 3]);
    assert_eq!(used[1], vec![true; 3]);
    assert_eq!(used[2], vec![true, false, false]);
    let got = combine_gpu(s, &hs, &alive, HeadCombine::Band, BAND).await;
    check("combine_heads band fallback", &got, &want, TOL);
    // The fallback images are the RMS over all heads.
    let (rms, _) = combine_ref(&hs, &alive, s, HeadCombine::Rms, BAND);
    check(
        "combine_heads band fallback = rms (images 0, 1)",
        &got[..2 * s.n],
        &rms[..2 * s.n],
        TOL,
    );
    // A band that holds nothing falls back everywhere.
    let got = combine_gpu(s, &hs, &alive, HeadCombine::Band, (1e6, 1e7)).await;
    check("combine_heads empty band = rms", &got, &rms, TOL);
}

// ---------------------------------------------------------------------------------------------
// Similarity: ToMe's metric and best matches

/// `m[b, t, e] = 1/H sum_h K[b, t, h dh + e]`, K the middle third of each QKV row.
/// Rows of `Features::vec4_width(dim / heads)` values: the head means, then exact zeros.
fn head_mean_ref(qkv: &[f32], s: TokenShape, dim: usize) -> Vec<Want> {
    let dh = dim / s.heads;
    let mut out = Vec::new();
    for row in 0..s.batch * s.n {
        let k = &qkv[row * 3 * dim + dim..][..dim];
        for e in 0..dh {
            let acc: f64 = (0..s.heads).map(|h| k[h * dh + e] as f64).sum();
            out.push(Want::Near(acc / s.heads as f64));
        }
        out.extend((dh..Features::vec4_width(dh)).map(|_| Want::Exact(0.0)));
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Neither,
    Source,
    Dest,
}

/// A feature layout (the fields of `Features` without the buffer).
#[derive(Clone, Copy, Debug)]
struct Lay {
    width: usize,
    off: usize,
    row_stride: usize,
    img_stride: usize,
}

impl Lay {
    fn row<'a>(&self, feat: &'a [f32], b: usize, t: usize) -> &'a [f32] {
        &feat[self.off + b * self.img_stride + t * self.row_stride..][..self.width]
    }
    fn on<'a>(&self, t: &'a GpuTensor) -> Features<'a> {
        Features {
            t,
            width: self.width,
            off: self.off,
            row_stride: self.row_stride,
            img_stride: self.img_stride,
        }
    }
}

fn cosine(u: &[f32], v: &[f32]) -> f64 {
    let norm = |x: &[f32]| x.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
    let dot: f64 = u.iter().zip(v).map(|(&a, &b)| a as f64 * b as f64).sum();
    dot / (norm(u).max(1e-12) * norm(v).max(1e-12))
}

/// For each source `a`: `keep_score = -max_t cos(a, t)` over the destinations, `dst` the lowest
/// such `t`; other rows `3e38` and `u32::MAX`.
fn match_ref(
    feat: &[f32],
    lay: Lay,
    s: TokenShape,
    role: &dyn Fn(usize, usize) -> Role,
) -> (Vec<Want>, Vec<u32>) {
    let (mut score, mut dst) = (Vec::new(), Vec::new());
    for b in 0..s.batch {
        for a in 0..s.n {
            if role(b, a) != Role::Source {
                score.push(Want::Exact(POS));
                dst.push(NONE);
                continue;
            }
            let mut best: Option<(f64, usize)> = None;
            for t in (0..s.n).filter(|&t| role(b, t) == Role::Dest) {
                let c = cosine(lay.row(feat, b, a), lay.row(feat, b, t));
                if best.is_none_or(|(bc, _)| c > bc) {
                    best = Some((c, t));
                }
            }
            let (c, t) = best.expect("the test gives every image a destination");
            score.push(Want::Near(-c));
            dst.push(t as u32);
        }
    }
    (score, dst)
}

/// Copies row `from` of image `b` over rows `to` (the K part of a QKV buffer, all heads), scaled.
fn duplicate_key(
    qkv: &mut [f32],
    n: usize,
    dim: usize,
    b: usize,
    from: usize,
    to: &[(usize, f32)],
) {
    let at = |t: usize| (b * n + t) * 3 * dim + dim;
    let src: Vec<f32> = qkv[at(from)..][..dim].to_vec();
    for &(t, scale) in to {
        for (k, &v) in src.iter().enumerate() {
            qkv[at(t) + k] = v * scale;
        }
    }
}

/// Packs any view into the vec4 layout the matching kernels read (head_mean_keys with one head).
async fn pack(s: TokenShape, feat: &GpuTensor, lay: Lay) -> (GpuTensor, Lay) {
    let width = Features::vec4_width(lay.width);
    let packed = out_f32(s.batch * s.n * width);
    let one_head = TokenShape { heads: 1, ..s };
    run([kernels()
        .head_mean_keys("pack", one_head, lay.on(feat), &packed)
        .unwrap()]);
    let packed_lay = Lay {
        width,
        off: 0,
        row_stride: width,
        img_stride: s.n * width,
    };
    (packed, packed_lay)
}

/// best_match on the view; a view that is not vec4-aligned must be refused with a message, then
/// matched after packing (zero padding leaves every cosine as it was).
async fn run_match(
    s: TokenShape,
    feat: &GpuTensor,
    lay: Lay,
    split: MatchSplit,
    flags: Option<&GpuTensor>,
) -> (Vec<f32>, Vec<u32>) {
    let keep = out_f32(s.batch * s.n);
    let dst = out_u32(s.batch * s.n);
    if !lay.on(feat).is_vec4() {
        let err = kernels()
            .best_match("match", s, lay.on(feat), split, flags, None, &keep, &dst)
            .unwrap_err()
            .to_string();
        assert!(err.contains("multiples of 4"), "{err}");
        let (packed, packed_lay) = pack(s, feat, lay).await;
        return Box::pin(run_match(s, &packed, packed_lay, split, flags)).await;
    }
    run([kernels()
        .best_match("match", s, lay.on(feat), split, flags, None, &keep, &dst)
        .unwrap()]);
    (read(&keep).await, read_u32(&dst).await)
}

async fn head_mean_keys_and_parity_match() {
    for (seed, s, dim) in [
        (300, shape(1, 197, 3, 1), 48),
        (301, shape(3, 50, 4, 2), 64),
        (302, shape(3, 9, 2, 1), 6),
    ] {
        let mut r = rng(seed);
        let n = s.n;
        let mut qkv = uniform(&mut r, s.batch * n * 3 * dim, -1.0, 1.0);
        // Ties: in every image, a destination's key is repeated at a later destination, and two
        // sources point exactly along it (equal and doubled), so both destinations reach cosine 1.
        // Parity: destinations are odd patch positions, sources even.
        let p = s.prefix;
        for b in 0..s.batch {
            // d1: an early destination; d2: the last one.
            let d1 = p + 1 + 2 * (b % 2);
            let d2 = if (n - 1 - p) % 2 == 1 { n - 1 } else { n - 2 };
            assert!(d2 > d1 && (d1 - p) % 2 == 1 && (d2 - p) % 2 == 1);
            duplicate_key(
                &mut qkv,
                n,
                dim,
                b,
                d1,
                &[(d2, 1.0), (p, 1.0), (p + 4, 2.0)],
            );
            // A zero source: every cosine is 0, the first destination wins.
            if n > p + 6 {
                duplicate_key(&mut qkv, n, dim, b, d1, &[(p + 6, 0.0)]);
            }
        }
        let qkv_t = upload(&qkv);
        let dh = Features::vec4_width(dim / s.heads);
        let metric = out_f32(s.batch * n * dh);
        // The keys are the middle third of each [B, n, 3D] qkv row.
        let keys = Features {
            t: &qkv_t,
            width: dim,
            off: dim,
            row_stride: 3 * dim,
            img_stride: n * 3 * dim,
        };
        run([kernels()
            .head_mean_keys("metric", s, keys, &metric)
            .unwrap()]);
        let got_metric = read(&metric).await;
        let what = format!("head_mean_keys B{} n{n} D{dim} H{}", s.batch, s.heads);
        check(&what, &got_metric, &head_mean_ref(&qkv, s, dim), TOL);

        // ToMe's layout: dense metric rows. The reference reads the GPU's metric, so both compare
        // the same f32 inputs.
        let lay = Lay {
            width: dh,
            off: 0,
            row_stride: dh,
            img_stride: n * dh,
        };
        let role = |_: usize, t: usize| {
            if t < p {
                Role::Neither
            } else if (t - p).is_multiple_of(2) {
                Role::Source
            } else {
                Role::Dest
            }
        };
        let (keep, dst) = run_match(s, &metric, lay, MatchSplit::Parity, None).await;
        let (want_keep, want_dst) = match_ref(&got_metric, lay, s, &role);
        let what = format!("best_match parity B{} n{n} w{dh}", s.batch);
        check(&what, &keep, &want_keep, TOL);
        check_u32(&what, &dst, &want_dst, n);
        for b in 0..s.batch {
            let d1 = p + 1 + 2 * (b % 2);
            assert_eq!(dst[b * n + p], d1 as u32, "{what}: tie, image {b}");
            assert_eq!(
                dst[b * n + p + 4],
                d1 as u32,
                "{what}: scaled tie, image {b}"
            );
            if n > p + 6 {
                assert_eq!(dst[b * n + p + 6], (p + 1) as u32, "{what}: zero source");
                assert_eq!(keep[b * n + p + 6], 0.0, "{what}: zero source");
            }
        }

        // The same match on a padded layout: an offset, gaps between rows and between images,
        // aligned (read as is) and not (refused, then packed).
        for (off, gap, img_gap) in [(4, 4, 8), (5, 3, 7)] {
            let padded = Lay {
                width: dh,
                off,
                row_stride: dh + gap,
                img_stride: n * (dh + gap) + img_gap,
            };
            let mut buf = uniform(&mut r, off + s.batch * padded.img_stride, -9.0, 9.0);
            for b in 0..s.batch {
                for t in 0..n {
                    let at = padded.off + b * padded.img_stride + t * padded.row_stride;
                    buf[at..at + dh].copy_from_slice(lay.row(&got_metric, b, t));
                }
            }
            let (keep2, dst2) = run_match(s, &upload(&buf), padded, MatchSplit::Parity, None).await;
            check(
                &format!("{what} padded layout {off}"),
                &keep2,
                &want_keep,
                TOL,
            );
            check_u32(&format!("{what} padded layout {off}"), &dst2, &want_dst, n);
        }
    }
}

async fn best_match_flags_on_full_keys() {
    for (seed, s, dim) in [
        (310, shape(1, 197, 3, 1), 48),
        (311, shape(3, 50, 4, 2), 32),
        (312, shape(3, 7, 1, 2), 5),
        // 70,000 rows: one workgroup per row spills past 65,535 workgroups into y.
        (313, shape(700, 100, 1, 1), 4),
    ] {
        if s.batch > 100 && cfg!(target_arch = "wasm32") {
            continue; // the grid spill is the same code; SwiftShader would take long over it
        }
        let mut r = rng(seed);
        let (n, p) = (s.n, s.prefix);
        let mut qkv = uniform(&mut r, s.batch * n * 3 * dim, -1.0, 1.0);
        // Random halves; prefix flags are random too (the prefix is never a source or destination).
        let mut flags: Vec<u32> = (0..s.batch * n).map(|_| r.random_range(0..2)).collect();
        for b in 0..s.batch {
            let f = &mut flags[b * n..][..n];
            // Fixed roles for the tie rows: destinations p + 1 and n - 1, sources p and p + 2.
            f[p + 1] = 1;
            f[n - 1] = 1;
            f[p] = 0;
            f[p + 2] = 0;
            duplicate_key(
                &mut qkv,
                n,
                dim,
                b,
                p + 1,
                &[(n - 1, 1.0), (p, 1.0), (p + 2, 3.0)],
            );
        }
        let (qkv_t, flags_t) = (upload(&qkv), upload_u32(&flags));
        let lay = Lay {
            width: dim,
            off: dim,
            row_stride: 3 * dim,
            img_stride: n * 3 * dim,
        };
        let role = |b: usize, t: usize| {
            if t < p {
                Role::Neither
            } else if flags[b * n + t] != 0 {
                Role::Dest
            } else {
                Role::Source
            }
        };
        let (keep, dst) = run_match(s, &qkv_t, lay, MatchSplit::Flags, Some(&flags_t)).await;
        let (want_keep, want_dst) = match_ref(&qkv, lay, s, &role);
        let what = format!("best_match flags B{} n{n} D{dim}", s.batch);
        check(&what, &keep, &want_keep, TOL);
        check_u32(&what, &dst, &want_dst, n);
        for b in 0..s.batch {
            assert_eq!(dst[b * n + p], (p + 1) as u32, "{what}: tie, image {b}");
            assert_eq!(dst[b * n + p + 2], (p + 1) as u32, "{what}: scaled tie");
            for t in 0..p {
                assert_eq!(dst[b * n + t], NONE, "{what}: prefix row {t}");
            }
        }
    }
}

/// Roles 1 (source) / 2 (destination) / other (neither) given per row: the match PiToMe and
/// protected ToMe use. Unknown role values are neither.
async fn best_match_by_roles() {
    for (seed, s, dim) in [
        (320, shape(1, 197, 3, 1), 16),
        (321, shape(3, 50, 4, 2), 8),
        (322, shape(2, 9, 1, 1), 5),
    ] {
        let mut r = rng(seed);
        let n = s.n;
        let feat = uniform(&mut r, s.batch * n * dim, -1.0, 1.0);
        let mut roles: Vec<u32> = (0..s.batch * n).map(|_| r.random_range(0..4)).collect();
        for b in 0..s.batch {
            roles[b * n + n - 1] = 2; // every image has a destination
        }
        let lay = Lay {
            width: dim,
            off: 0,
            row_stride: dim,
            img_stride: n * dim,
        };
        let role = |b: usize, t: usize| match roles[b * n + t] {
            _ if t < s.prefix => Role::Neither,
            1 => Role::Source,
            2 => Role::Dest,
            _ => Role::Neither,
        };
        let (feat_t, roles_t) = (upload(&feat), upload_u32(&roles));
        let (keep, dst) = run_match(s, &feat_t, lay, MatchSplit::Roles, Some(&roles_t)).await;
        let (want_keep, want_dst) = match_ref(&feat, lay, s, &role);
        let what = format!("best_match roles B{} n{n} D{dim}", s.batch);
        check(&what, &keep, &want_keep, TOL);
        check_u32(&what, &dst, &want_dst, n);
    }
}

/// Masked rows (past each image's valid count) are neither source nor destination, in every split:
/// the match rows after a per-image step run on.
async fn best_match_skips_masked_rows() {
    for (seed, s, dim, counts) in [
        (330, shape(3, 50, 4, 2), 16, vec![50u32, 23, 5]),
        (331, shape(2, 197, 3, 1), 8, vec![120, 197]),
        (332, shape(2, 9, 1, 1), 4, vec![4, 3]),
    ] {
        let mut r = rng(seed);
        let n = s.n;
        let feat = uniform(&mut r, s.batch * n * dim, -1.0, 1.0);
        // Flags and roles: random, except that every image has a valid destination.
        let mut flags: Vec<u32> = (0..s.batch * n).map(|_| r.random_range(0..2)).collect();
        let mut roles: Vec<u32> = (0..s.batch * n).map(|_| r.random_range(0..3)).collect();
        for (b, &c) in counts.iter().enumerate() {
            flags[b * n + c as usize - 1] = 1;
            roles[b * n + c as usize - 1] = 2;
        }
        let lay = Lay {
            width: dim,
            off: 0,
            row_stride: dim,
            img_stride: n * dim,
        };
        let (feat_t, counts_t) = (upload(&feat), upload_u32(&counts));
        let (flags_t, roles_t) = (upload_u32(&flags), upload_u32(&roles));
        for (split, buf) in [
            (MatchSplit::Parity, None),
            (MatchSplit::Flags, Some(&flags_t)),
            (MatchSplit::Roles, Some(&roles_t)),
        ] {
            let role = |b: usize, t: usize| {
                if t < s.prefix || t >= counts[b] as usize {
                    return Role::Neither;
                }
                match split {
                    MatchSplit::Parity if (t - s.prefix).is_multiple_of(2) => Role::Source,
                    MatchSplit::Parity => Role::Dest,
                    MatchSplit::Flags if flags[b * n + t] == 0 => Role::Source,
                    MatchSplit::Flags => Role::Dest,
                    MatchSplit::Roles => match roles[b * n + t] {
                        1 => Role::Source,
                        2 => Role::Dest,
                        _ => Role::Neither,
                    },
                }
            };
            let (keep, dst) = (out_f32(s.batch * n), out_u32(s.batch * n));
            run([kernels()
                .best_match(
                    "match",
                    s,
                    lay.on(&feat_t),
                    split,
                    buf,
                    Some(&counts_t),
                    &keep,
                    &dst,
                )
                .unwrap()]);
            // An image whose valid rows hold no destination has nothing to match: its sources
            // keep "no match" (the reference needs a destination).
            let has_dest = |b: usize| (0..n).any(|t| role(b, t) == Role::Dest);
            let (mut want_keep, mut want_dst) = match_ref(&feat, lay, s, &|b, t| {
                if has_dest(b) {
                    role(b, t)
                } else {
                    Role::Neither
                }
            });
            for b in (0..s.batch).filter(|&b| !has_dest(b)) {
                for t in (0..n).filter(|&t| role(b, t) == Role::Source) {
                    want_keep[b * n + t] = Want::Exact(POS);
                    want_dst[b * n + t] = NONE;
                }
            }
            let what = format!(
                "best_match {split:?} masked B{} n{n} counts {counts:?}",
                s.batch
            );
            check(&what, &read(&keep).await, &want_keep, TOL);
            check_u32(&what, &read_u32(&dst).await, &want_dst, n);
        }
    }
}

/// docs/pruning.md "token-transforming": every source's `k` most similar destinations (higher
/// cosine first, ties to the lower row), NONE past the destinations it has, and shares
/// `softmax(cos / tau)` over them.
fn spread_ref(
    feat: &[f32],
    lay: Lay,
    s: TokenShape,
    role: &dyn Fn(usize, usize) -> Role,
    (k, tau): (usize, f64),
) -> (Vec<Vec<(usize, f64)>>, Vec<f64>) {
    let mut dst = Vec::new();
    let mut weight = Vec::new();
    for b in 0..s.batch {
        for a in 0..s.n {
            if role(b, a) != Role::Source {
                dst.push(Vec::new());
                weight.extend(std::iter::repeat_n(0.0, k));
                continue;
            }
            let mut cands: Vec<(usize, f64)> = (0..s.n)
                .filter(|&t| role(b, t) == Role::Dest)
                .map(|t| (t, cosine(lay.row(feat, b, a), lay.row(feat, b, t))))
                .collect();
            // Stable: equal cosines stay in row order.
            cands.sort_by(|x, y| y.1.total_cmp(&x.1));
            cands.truncate(k);
            let e: Vec<f64> = cands
                .iter()
                .map(|&(_, c)| ((c - cands[0].1) / tau).exp())
                .collect();
            let sum: f64 = e.iter().sum();
            weight.extend(e.iter().map(|v| v / sum));
            weight.extend(std::iter::repeat_n(0.0, k - cands.len()));
            dst.push(cands);
        }
    }
    (dst, weight)
}

async fn spread_match_matches_cpu() {
    // (seed, shape, feature width, k, tau, valid counts)
    for (seed, s, dim, k, tau, counts) in [
        (340, shape(1, 197, 3, 1), 16, 2, 0.02, None),
        (341, shape(3, 50, 4, 2), 8, 4, 0.1, Some(vec![50u32, 23, 6])),
        (342, shape(2, 9, 1, 1), 4, 3, 0.05, None),
        (343, shape(2, 40, 2, 1), 12, 1, 0.02, Some(vec![40, 17])),
    ] {
        let mut r = rng(seed);
        let n = s.n;
        let mut feat = uniform(&mut r, s.batch * n * dim, -1.0, 1.0);
        let mut flags: Vec<u32> = (0..s.batch * n).map(|_| r.random_range(0..2)).collect();
        let valid = |b: usize| counts.as_ref().map_or(n, |c: &Vec<u32>| c[b] as usize);
        for b in 0..s.batch {
            // Ties: two destinations with one key, and a source along it; the lower row first.
            let (d1, d2, src) = (s.prefix, valid(b) - 1, s.prefix + 1);
            flags[b * n + d1] = 1;
            flags[b * n + d2] = 1;
            flags[b * n + src] = 0;
            for c in 0..dim {
                let v = feat[(b * n + d1) * dim + c];
                feat[(b * n + d2) * dim + c] = v;
                feat[(b * n + src) * dim + c] = 2.0 * v;
            }
        }
        let role = |b: usize, t: usize| {
            if t < s.prefix || t >= valid(b) {
                Role::Neither
            } else if flags[b * n + t] == 0 {
                Role::Source
            } else {
                Role::Dest
            }
        };
        let lay = Lay {
            width: dim,
            off: 0,
            row_stride: dim,
            img_stride: n * dim,
        };
        let (feat_t, flags_t) = (upload(&feat), upload_u32(&flags));
        let counts_t = counts.as_ref().map(|c| upload_u32(c));
        let (weight, dst) = (out_f32(s.batch * n * k), out_u32(s.batch * n * k));
        run([kernels()
            .spread_match(
                "spread",
                s,
                lay.on(&feat_t),
                &flags_t,
                counts_t.as_ref(),
                (k, tau as f32),
                &weight,
                &dst,
            )
            .unwrap()]);
        let (want_dst, want_w) = spread_ref(&feat, lay, s, &role, (k, tau));
        let what = format!(
            "spread_match B{} n{n} k{k} tau {tau} counts {counts:?}",
            s.batch
        );
        let got_dst = read_u32(&dst).await;
        for (e, want) in want_dst.iter().enumerate() {
            let (b, a) = (e / n, e % n);
            for j in 0..k {
                let got = got_dst[e * k + j];
                let Some(&(t, c)) = want.get(j) else {
                    assert_eq!(got, NONE, "{what}: row {e} slot {j}");
                    continue;
                };
                // A different row only where f32 cannot tell the two cosines apart.
                if got as usize != t {
                    assert!(got != NONE, "{what}: row {e} slot {j}: none, want {t}");
                    let got_c = cosine(lay.row(&feat, b, a), lay.row(&feat, b, got as usize));
                    assert!(
                        (got_c - c).abs() < 1e-6,
                        "{what}: row {e} slot {j}: got {got} ({got_c}), want {t} ({c})"
                    );
                }
            }
            if a == s.prefix + 1 && k > 1 && want.len() > 1 {
                let (d1, d2) = (s.prefix as u32, valid(b) as u32 - 1);
                let got = &got_dst[e * k..][..2];
                assert_eq!(
                    got,
                    [d1, d2],
                    "{what}: image {b}: the tie goes to the lower row"
                );
            }
        }
        let want_w: Vec<Want> = want_w.iter().map(|&w| Want::Near(w)).collect();
        check(&what, &read(&weight).await, &want_w, 1e-4);
    }
    // The launcher refuses spreads and temperatures it cannot run.
    let (s, feat) = (shape(1, 8, 1, 1), upload(&[0.5; 8 * 4]));
    let lay = Lay {
        width: 4,
        off: 0,
        row_stride: 4,
        img_stride: 32,
    };
    let (flags, weight, dst) = (upload_u32(&[0; 8]), out_f32(40), out_u32(40));
    for (k, tau, needle) in [
        (0, 0.1, "1 to 4"),
        (5, 0.1, "not 5"),
        (2, 0.0, "temperature"),
    ] {
        let err = kernels()
            .spread_match(
                "spread",
                s,
                lay.on(&feat),
                &flags,
                None,
                (k, tau),
                &weight,
                &dst,
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "k {k} tau {tau}: {err}");
    }
}

/// docs/pruning.md "pitome": `E[t] = 1/N_p sum_{u patch} elu(cos(m_t, m_u) - margin)` for patch rows
/// (alpha = 1), `-3e38` for prefix rows.
fn energy_ref(feat: &[f32], lay: Lay, s: TokenShape, margin: f64, alpha: f64) -> Vec<Want> {
    let mut out = Vec::new();
    for b in 0..s.batch {
        for t in 0..s.n {
            if t < s.prefix {
                out.push(Want::Exact(NEG));
                continue;
            }
            let sum: f64 = (s.prefix..s.n)
                .map(|u| {
                    let x = cosine(lay.row(feat, b, t), lay.row(feat, b, u)) - margin;
                    if x > 0.0 {
                        x
                    } else {
                        alpha * (x.exp() - 1.0)
                    }
                })
                .sum();
            out.push(Want::Near(sum / (s.n - s.prefix) as f64));
        }
    }
    out
}

async fn energy_matches_cpu() {
    for (seed, s, dim, margin) in [
        (330, shape(1, 197, 3, 1), 64, 0.9f32),
        (331, shape(3, 50, 4, 2), 16, 0.5),
        (332, shape(2, 5, 1, 1), 3, 0.1),
        // 2,700 images of 25 tiles of 4 rows: 67,500 workgroups, past 65,535 into y.
        (333, shape(2700, 100, 1, 1), 4, 0.5),
    ] {
        if s.batch > 100 && cfg!(target_arch = "wasm32") {
            continue; // the grid spill is the same code; SwiftShader would take long over it
        }
        let mut r = rng(seed);
        let n = s.n;
        // Clustered features: a few centres plus noise, so energies spread both sides of zero.
        let centres = uniform(&mut r, 4 * dim, -1.0, 1.0);
        let mut feat = Vec::with_capacity(s.batch * n * 2 * dim);
        for _ in 0..s.batch * n {
            let c = r.random_range(0..4);
            for k in 0..dim {
                feat.push(centres[c * dim + k] + r.random_range(-0.3..0.3));
            }
            // A second half the view skips (a strided layout).
            feat.extend(uniform(&mut r, dim, -9.0, 9.0));
        }
        let lay = Lay {
            width: dim,
            off: 0,
            row_stride: 2 * dim,
            img_stride: n * 2 * dim,
        };
        let out = out_f32(s.batch * n);
        let feat_t = upload(&feat);
        let (feat_t, run_lay) = if lay.on(&feat_t).is_vec4() {
            (feat_t, lay)
        } else {
            let err = kernels()
                .energy("energy", s, lay.on(&feat_t), &out, (margin, 1.0))
                .unwrap_err()
                .to_string();
            assert!(err.contains("multiples of 4"), "{err}");
            pack(s, &feat_t, lay).await
        };
        run([kernels()
            .energy("energy", s, run_lay.on(&feat_t), &out, (margin, 1.0))
            .unwrap()]);
        let what = format!("energy B{} n{n} D{dim} margin {margin}", s.batch);
        check(
            &what,
            &read(&out).await,
            &energy_ref(&feat, lay, s, margin as f64, 1.0),
            TOL,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Selection

/// Prefix rows, then the first `keep - prefix` patch rows by (score desc, position asc).
fn topk_ref(score: &[f32], s: TokenShape, keep: usize) -> Vec<u32> {
    let n = s.n;
    let mut flags = vec![0u32; s.batch * n];
    for b in 0..s.batch {
        let sc = &score[b * n..][..n];
        let mut order: Vec<usize> = (s.prefix..n).collect();
        order.sort_by(|&i, &j| sc[j].partial_cmp(&sc[i]).unwrap().then(i.cmp(&j)));
        for i in 0..s.prefix.min(n) {
            flags[b * n + i] = 1;
        }
        for &i in order.iter().take(keep.saturating_sub(s.prefix)) {
            flags[b * n + i] = 1;
        }
    }
    flags
}

/// Scores with many ties: a few levels, some `-3e38` (masked) and the extreme f32 values.
fn tied_scores(r: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len)
        .map(|_| match r.random_range(0..40) {
            0 => NEG,
            1 => f32::MAX,
            2 => -f32::MAX,
            3 => -0.0,
            k if k < 20 => (k % 5) as f32 * 0.25,
            _ => r.random_range(-1.0..1.0),
        })
        .collect()
}

async fn select_topk_matches_cpu_sort() {
    let mut cases = 0;
    for (seed, n) in [
        (400u64, 197usize),
        (401, 50),
        (402, 1),
        (403, 2),
        (404, 3),
        (405, 257),
        (406, 1024),
    ] {
        let mut r = rng(seed);
        let mut steps = Vec::new();
        let mut checks = Vec::new();
        for batch in [1, 3] {
            for prefix in [1, 2].into_iter().filter(|&p| p <= n) {
                let s = shape(batch, n, 1, prefix);
                let score = tied_scores(&mut r, batch * n);
                let score_t = upload(&score);
                let mut keeps = vec![prefix, prefix + 1, (n + prefix) / 2, n.saturating_sub(1), n];
                keeps.retain(|&k| k >= prefix && k <= n);
                keeps.sort_unstable();
                keeps.dedup();
                for keep in keeps {
                    let flags = out_u32(batch * n);
                    steps.push(
                        kernels()
                            .select_topk("topk", s, &score_t, &flags, keep)
                            .unwrap(),
                    );
                    checks.push((s, keep, score.clone(), flags));
                }
            }
        }
        run(steps);
        for (s, keep, score, flags) in checks {
            let got = read_u32(&flags).await;
            let what = format!(
                "select_topk B{} n{} prefix {} keep {keep}",
                s.batch, s.n, s.prefix
            );
            check_u32(&what, &got, &topk_ref(&score, s, keep), s.n);
            for b in 0..s.batch {
                let kept: u32 = got[b * s.n..][..s.n].iter().sum();
                assert_eq!(kept as usize, keep, "{what}: image {b}");
            }
            cases += 1;
        }
    }
    eprintln!("select_topk: {cases} cases");
}

/// Roles from a ranking by (score desc, position asc) of the patch rows: RankPairs alternates
/// source, destination over the first `2 * count`; ParityProtect gives even patch positions
/// source, odd destination, except that the first `count` in rank order are not sources.
fn roles_ref(score: &[f32], s: TokenShape, split: RoleSplit, count: usize) -> Vec<u32> {
    let n = s.n;
    let mut roles = vec![0u32; s.batch * n];
    for b in 0..s.batch {
        let sc = &score[b * n..][..n];
        let mut order: Vec<usize> = (s.prefix..n).collect();
        order.sort_by(|&i, &j| sc[j].partial_cmp(&sc[i]).unwrap().then(i.cmp(&j)));
        for (rank, &row) in order.iter().enumerate() {
            roles[b * n + row] = match split {
                RoleSplit::RankPairs if rank < 2 * count => 1 + (rank % 2) as u32,
                RoleSplit::RankPairs => 0,
                RoleSplit::ParityProtect => {
                    let even = (row - s.prefix).is_multiple_of(2);
                    if !even {
                        2
                    } else if rank < count {
                        0
                    } else {
                        1
                    }
                }
            };
        }
    }
    roles
}

async fn split_roles_matches_cpu() {
    let mut cases = 0;
    for (seed, n) in [
        (410u64, 197usize),
        (411, 50),
        (412, 2),
        (413, 9),
        (414, 1024),
    ] {
        let mut r = rng(seed);
        for batch in [1, 3] {
            for prefix in [1, 2].into_iter().filter(|&p| p < n) {
                let s = shape(batch, n, 1, prefix);
                let score = tied_scores(&mut r, batch * n);
                let patches = n - prefix;
                for (split, count) in [
                    (RoleSplit::RankPairs, patches / 2),
                    (RoleSplit::RankPairs, patches / 4),
                    (RoleSplit::RankPairs, 0),
                    (RoleSplit::ParityProtect, patches / 10),
                    (RoleSplit::ParityProtect, patches),
                ] {
                    let roles = out_u32(batch * n);
                    run([kernels()
                        .split_roles("roles", s, &upload(&score), &roles, split, count)
                        .unwrap()]);
                    let what = format!(
                        "split_roles {split:?} B{batch} n{n} prefix {prefix} count {count}"
                    );
                    check_u32(
                        &what,
                        &read_u32(&roles).await,
                        &roles_ref(&score, s, split, count),
                        n,
                    );
                    cases += 1;
                }
            }
        }
    }
    eprintln!("split_roles: {cases} cases");
}

/// docs/pruning.md "threshold": keep patch `i < c` when `c * s[i] >= theta` (f32); if none does,
/// the best patch row (top-k rule). Prefix always, rows `>= c` never.
fn threshold_ref(
    score: &[f32],
    s: TokenShape,
    counts: Option<&[u32]>,
    on: ThresholdOn,
    theta: f32,
) -> Vec<u32> {
    let n = s.n;
    let mut flags = vec![0u32; s.batch * n];
    for b in 0..s.batch {
        let c = counts.map_or(n, |c| (c[b] as usize).min(n));
        let sc = &score[b * n..][..n];
        let f = &mut flags[b * n..][..n];
        for (i, v) in f.iter_mut().enumerate() {
            let value = match on {
                ThresholdOn::TimesCount => c as f32 * sc[i],
                ThresholdOn::Score => sc[i],
            };
            *v = (i < s.prefix || (i < c && value >= theta)) as u32;
        }
        let any = (s.prefix..c).any(|i| f[i] == 1);
        if !any && c > s.prefix {
            let best = (s.prefix..c)
                .reduce(|a, i| if sc[i] > sc[a] { i } else { a })
                .unwrap();
            f[best] = 1;
        }
    }
    flags
}

/// Received-attention-like scores (valid rows sum to 1, masked rows `-3e38`), with some rows at
/// exactly `theta / c` and a tie for the best valid row; a large score in a masked row.
fn threshold_scores(
    r: &mut StdRng,
    s: TokenShape,
    counts: Option<&[u32]>,
    theta: f32,
) -> (Vec<f32>, Vec<usize>) {
    let n = s.n;
    let mut out = vec![NEG; s.batch * n];
    let mut best_rows = Vec::new();
    for b in 0..s.batch {
        let c = counts.map_or(n, |c| (c[b] as usize).min(n));
        let u: Vec<f64> = (0..c)
            .map(|_| r.random_range(0.0..1.0f64).powi(3))
            .collect();
        let total: f64 = u.iter().sum();
        let row = &mut out[b * n..][..n];
        for i in 0..c {
            row[i] = (u[i] / total) as f32;
        }
        if c > s.prefix + 4 {
            if theta < 1e20 {
                for _ in 0..3 {
                    let i = r.random_range(s.prefix..c);
                    row[i] = theta / c as f32;
                }
            }
            // Tie for the best valid patch row.
            let top = (s.prefix..c).map(|i| row[i]).fold(f32::MIN, f32::max) + 0.5;
            let (i, j) = (r.random_range(s.prefix..c), r.random_range(s.prefix..c));
            row[i] = top;
            row[j] = top;
            best_rows.push(i.min(j));
        } else {
            best_rows.push(usize::MAX);
        }
        if c < n {
            row[r.random_range(c..n)] = 100.0;
        }
    }
    (out, best_rows)
}

async fn select_threshold_matches_cpu() {
    let mut steps = Vec::new();
    let mut checks = Vec::new();
    let cases: [(u64, TokenShape, Option<Vec<u32>>); 6] = [
        (410, shape(1, 197, 3, 1), None),
        (411, shape(3, 50, 3, 2), None),
        (412, shape(3, 50, 3, 2), Some(vec![50, 23, 3])),
        (413, shape(3, 300, 3, 1), Some(vec![300, 257, 40])),
        (414, shape(1, 197, 3, 1), Some(vec![100])),
        (415, shape(3, 8, 2, 2), Some(vec![2, 8, 3])), // no valid patch row in image 0
    ];
    for (seed, s, counts) in &cases {
        let mut r = rng(*seed);
        // Received attention times the count, then the plain score (zero-tprune-adaptive's minus
        // cosine, against theta - 1), with rows exactly at the threshold either way.
        for (on, theta) in [
            (ThresholdOn::TimesCount, 1.0f32),
            (ThresholdOn::TimesCount, 0.5),
            (ThresholdOn::TimesCount, 2.0),
            (ThresholdOn::TimesCount, 1e30),
            (ThresholdOn::Score, 0.01),
            (ThresholdOn::Score, 1e30),
        ] {
            let (mut score, best) = threshold_scores(&mut r, *s, counts.as_deref(), theta);
            if on == ThresholdOn::Score && theta < 1e20 {
                // Scores around theta itself, some exactly at it.
                let c_of = |b: usize| counts.as_ref().map_or(s.n, |c| c[b] as usize);
                for (i, v) in score.iter_mut().enumerate() {
                    if i % s.n < c_of(i / s.n) {
                        *v *= c_of(i / s.n) as f32 * 0.02;
                        if i % 5 == 0 {
                            *v = theta;
                        }
                    }
                }
            }
            let score_t = upload(&score);
            let valid = counts.as_deref().map(upload_u32);
            let flags = out_u32(s.batch * s.n);
            steps.push(
                kernels()
                    .select_threshold("threshold", *s, &score_t, valid.as_ref(), &flags, on, theta)
                    .unwrap(),
            );
            checks.push((*s, counts.clone(), on, theta, score, best, flags, valid));
        }
    }
    run(steps);
    for (s, counts, on, theta, score, best, flags, _counts_buffer) in checks {
        let got = read_u32(&flags).await;
        let what = format!(
            "select_threshold B{} n{} counts {counts:?} {on:?} theta {theta}",
            s.batch, s.n
        );
        check_u32(
            &what,
            &got,
            &threshold_ref(&score, s, counts.as_deref(), on, theta),
            s.n,
        );
        if theta == 1e30 {
            // Nothing passes: exactly the best (lowest of the tied) valid patch row survives.
            for (b, &bi) in best.iter().enumerate() {
                let row = &got[b * s.n..][..s.n];
                let kept: Vec<usize> = (s.prefix..s.n).filter(|&i| row[i] == 1).collect();
                if bi == usize::MAX {
                    assert!(kept.len() <= 1, "{what}: image {b} keeps {kept:?}");
                } else {
                    assert_eq!(kept, vec![bi], "{what}: image {b}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compaction, gathering, copying

/// Stable compaction: the flagged rows in order, cut at `n_out`, padded with `u32::MAX`.
fn compact_ref(
    flags: &[u32],
    orig: &[u32],
    batch: usize,
    n_in: usize,
    n_out: usize,
) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let (mut src, mut orig_out, mut count) = (Vec::new(), Vec::new(), Vec::new());
    for b in 0..batch {
        let kept: Vec<usize> = (0..n_in).filter(|&i| flags[b * n_in + i] != 0).collect();
        let c = kept.len().min(n_out);
        for r in 0..n_out {
            if r < c {
                src.push(kept[r] as u32);
                orig_out.push(orig[b * n_in + kept[r]]);
            } else {
                src.push(NONE);
                orig_out.push(NONE);
            }
        }
        count.push(c as u32);
    }
    (src, orig_out, count)
}

/// How a compaction test chooses `n_out`: the largest kept count, every row, or fewer rows than
/// some image keeps (the survivors past `n_out` are cut).
#[derive(Clone, Copy, Debug)]
enum Out {
    MaxCount,
    All,
    Fewer,
}

/// (seed, batch, n_in, d, keep probability per image, how n_out is chosen)
type CompactCase = (u64, usize, usize, usize, &'static [f64], Out);

async fn compact_and_gather_rows() {
    let cases: [CompactCase; 9] = [
        (500, 1, 197, 16, &[0.5], Out::MaxCount),
        (507, 2, 197, 192, &[0.8, 0.4], Out::MaxCount),
        (508, 5, 33, 12, &[0.5, 1.0, 0.0, 0.2, 0.9], Out::Fewer),
        (501, 3, 50, 8, &[0.3, 1.0, 0.0], Out::MaxCount),
        (502, 3, 50, 8, &[0.3, 0.9, 0.6], Out::All),
        (503, 3, 1024, 4, &[0.5, 0.05, 0.95], Out::MaxCount),
        (504, 3, 300, 5, &[0.7, 0.7, 0.7], Out::Fewer),
        (505, 1, 1, 3, &[1.0], Out::All),
        (506, 3, 5, 7, &[0.5, 1.0, 0.0], Out::All),
    ];
    for (seed, batch, n_in, d, frac, how) in cases {
        let mut r = rng(seed);
        let flags: Vec<u32> = (0..batch * n_in)
            .map(|e| r.random_bool(frac[e / n_in]) as u32)
            .collect();
        let orig: Vec<u32> = (0..batch * n_in).map(|_| r.random()).collect();
        let max_count = (0..batch)
            .map(|b| flags[b * n_in..][..n_in].iter().sum::<u32>() as usize)
            .max()
            .unwrap();
        let n_out = match how {
            Out::MaxCount => max_count.max(1),
            Out::All => n_in,
            Out::Fewer => (max_count * 3 / 4).max(1),
        };
        let x = uniform(&mut r, batch * n_in * d, -5.0, 5.0);
        let (flags_t, orig_t, x_t) = (upload_u32(&flags), upload_u32(&orig), upload(&x));
        let (src, orig_out, count) = (
            out_u32(batch * n_out),
            out_u32(batch * n_out),
            out_u32(batch),
        );
        let gathered = out_f32(batch * n_out * d);
        let k = kernels();
        run([
            k.compact(
                "compact",
                batch,
                (n_in, n_out),
                &flags_t,
                &orig_t,
                &src,
                &orig_out,
                &count,
            )
            .unwrap(),
            k.gather_rows("gather", batch, (n_in, n_out, d), &x_t, &src, &gathered)
                .unwrap(),
        ]);
        let what = format!("compact B{batch} {n_in}->{n_out} ({how:?})");
        let (want_src, want_orig, want_count) = compact_ref(&flags, &orig, batch, n_in, n_out);
        check_u32(
            &format!("{what} src"),
            &read_u32(&src).await,
            &want_src,
            n_out,
        );
        check_u32(
            &format!("{what} orig"),
            &read_u32(&orig_out).await,
            &want_orig,
            n_out,
        );
        check_u32(
            &format!("{what} count"),
            &read_u32(&count).await,
            &want_count,
            1,
        );

        let mut want = Vec::with_capacity(batch * n_out * d);
        for (row, &t) in want_src.iter().enumerate() {
            let b = row / n_out;
            for c in 0..d {
                want.push(Want::Exact(if t == NONE {
                    0.0
                } else {
                    x[(b * n_in + t as usize) * d + c]
                }));
            }
        }
        check(
            &format!("gather_rows B{batch} {n_in}->{n_out} d{d}"),
            &read(&gathered).await,
            &want,
            0.0,
        );
        // The fused kernel (rows of a multiple of 4 values): the same four outputs, exactly.
        if d % 4 == 0 {
            let (src2, orig2, count2) = (
                out_u32(batch * n_out),
                out_u32(batch * n_out),
                out_u32(batch),
            );
            let gathered2 = out_f32(batch * n_out * d);
            run([k
                .compact_gather(
                    "compact_gather",
                    batch,
                    (n_in, n_out, d),
                    (&flags_t, &orig_t),
                    (&src2, &orig2, &count2),
                    (&x_t, &gathered2),
                )
                .unwrap()]);
            let what = format!("compact_gather B{batch} {n_in}->{n_out} d{d} ({how:?})");
            check_u32(
                &format!("{what} src"),
                &read_u32(&src2).await,
                &want_src,
                n_out,
            );
            check_u32(
                &format!("{what} orig"),
                &read_u32(&orig2).await,
                &want_orig,
                n_out,
            );
            check_u32(
                &format!("{what} count"),
                &read_u32(&count2).await,
                &want_count,
                1,
            );
            check(&format!("{what} rows"), &read(&gathered2).await, &want, 0.0);
        } else {
            assert!(kernels()
                .compact_gather(
                    "compact_gather",
                    batch,
                    (n_in, n_out, d),
                    (&flags_t, &orig_t),
                    (&src, &orig_out, &count),
                    (&x_t, &gathered),
                )
                .is_err());
        }
    }
}

async fn copy_kernel() {
    let mut r = rng(510);
    for len in [0usize, 1, 255, 256, 1000, 70_000] {
        let src = uniform(&mut r, len + 9, -3.0, 3.0);
        let dst = out_f32(len + 300);
        run([kernels().copy("copy", &upload(&src), &dst, len).unwrap()]);
        let want: Vec<Want> = (0..len + 300)
            .map(|i| Want::Exact(if i < len { src[i] } else { SENTINEL_F32 }))
            .collect();
        check(&format!("copy {len}"), &read(&dst).await, &want, 0.0);
    }
}

// ---------------------------------------------------------------------------------------------
// ToMe merge

/// A merge plan as ToMe's launch sequence would build it: sources at even patch positions, `r` of
/// them merged (flag 0) into random destinations; every source has a destination, unmerged ones too.
struct MergePlan {
    flags: Vec<u32>,
    dst: Vec<u32>,
    src: Vec<u32>,
    n_out: usize,
}

fn merge_plan(rng: &mut StdRng, s: TokenShape, merges: usize, pad: usize) -> MergePlan {
    let (n, p) = (s.n, s.prefix);
    let n_out = n - merges + pad;
    let (mut flags, mut dst, mut src) =
        (vec![1u32; s.batch * n], vec![NONE; s.batch * n], Vec::new());
    for b in 0..s.batch {
        let sources: Vec<usize> = (p..n).filter(|t| (t - p).is_multiple_of(2)).collect();
        let dests: Vec<usize> = (p..n).filter(|t| (t - p) % 2 == 1).collect();
        assert!(merges <= sources.len() && (merges == 0 || !dests.is_empty()));
        for &a in &sources {
            if !dests.is_empty() {
                dst[b * n + a] = dests[rng.random_range(0..dests.len())] as u32;
            }
        }
        let mut chosen = sources.clone();
        chosen.shuffle(rng);
        for &a in &chosen[..merges] {
            flags[b * n + a] = 0;
        }
        let kept: Vec<u32> = (0..n as u32)
            .filter(|&t| flags[b * n + t as usize] != 0)
            .collect();
        assert_eq!(kept.len() + pad, n_out);
        src.extend(kept);
        src.extend(std::iter::repeat_n(NONE, pad));
    }
    MergePlan {
        flags,
        dst,
        src,
        n_out,
    }
}

/// `x'[t] = (size[t] x[t] + sum_{a -> t} size[a] x[a]) / size'[t]` for every kept row `t`.
fn merge_ref(
    x: &[f32],
    sizes: &[f32],
    plan: &MergePlan,
    s: TokenShape,
    d: usize,
) -> (Vec<Want>, Vec<Option<f32>>) {
    let n = s.n;
    let (mut out, mut size_out) = (Vec::new(), Vec::new());
    for (row, &t) in plan.src.iter().enumerate() {
        let b = row / plan.n_out;
        if t == NONE {
            out.extend(std::iter::repeat_n(Want::Exact(0.0), d));
            size_out.push(None);
            continue;
        }
        let t = t as usize;
        let mut parts = vec![t];
        parts.extend(
            (0..n).filter(|&a| plan.flags[b * n + a] == 0 && plan.dst[b * n + a] as usize == t),
        );
        let size: f64 = parts.iter().map(|&a| sizes[b * n + a] as f64).sum();
        for c in 0..d {
            let acc: f64 = parts
                .iter()
                .map(|&a| sizes[b * n + a] as f64 * x[(b * n + a) * d + c] as f64)
                .sum();
            out.push(Want::Near(acc / size));
        }
        size_out.push(Some(size as f32));
    }
    (out, size_out)
}

async fn tome_merge_matches_cpu() {
    // (seed, shape, d, merges, padding rows)
    for (seed, s, d, merges, pad) in [
        (600, shape(1, 197, 1, 1), 16, 60, 0),
        (601, shape(3, 50, 1, 2), 8, 24, 0), // every source merges
        (602, shape(3, 11, 1, 1), 5, 0, 0),  // nothing merges
        (603, shape(3, 51, 1, 1), 33, 10, 0),
        (604, shape(2, 8, 1, 2), 3, 2, 2), // padded output rows
    ] {
        let mut r = rng(seed);
        let plan = merge_plan(&mut r, s, merges, pad);
        let x = uniform(&mut r, s.batch * s.n * d, -4.0, 4.0);
        let sizes: Vec<f32> = (0..s.batch * s.n)
            .map(|_| r.random_range(1..5) as f32)
            .collect();
        let (x_t, src_t, flags_t, dst_t, size_t) = (
            upload(&x),
            upload_u32(&plan.src),
            upload_u32(&plan.flags),
            upload_u32(&plan.dst),
            upload(&sizes),
        );
        let out = out_f32(s.batch * plan.n_out * d);
        let size_out = out_f32(s.batch * plan.n_out);
        run([kernels()
            .merge_rows(
                "merge",
                s,
                (plan.n_out, d),
                &x_t,
                &src_t,
                &flags_t,
                MergeTargets::One(&dst_t),
                (&size_t, &size_out),
                &out,
            )
            .unwrap()]);
        let (want, want_size) = merge_ref(&x, &sizes, &plan, s, d);
        let what = format!("tome_merge B{} n{} -> {} d{d}", s.batch, s.n, plan.n_out);
        check(&what, &read(&out).await, &want, TOL);
        let got_size = read(&size_out).await;
        for (row, w) in want_size.iter().enumerate() {
            if let Some(w) = w {
                assert_eq!(got_size[row], *w, "{what}: size of output row {row}");
            }
        }
        // Sizes are conserved: the kept rows carry every input token.
        for b in 0..s.batch {
            let total_in: f32 = sizes[b * s.n..][..s.n].iter().sum();
            let total_out: f32 = (0..plan.n_out)
                .filter(|&r| want_size[b * plan.n_out + r].is_some())
                .map(|r| got_size[b * plan.n_out + r])
                .sum();
            assert_eq!(total_in, total_out, "{what}: image {b} sizes");
        }
    }
}

async fn spread_merge_matches_cpu() {
    // (seed, shape, d, removed rows, k)
    for (seed, s, d, removed, k) in [
        (610, shape(1, 197, 1, 1), 16, 60, 2),
        (611, shape(3, 50, 1, 2), 8, 20, 4),
        (612, shape(2, 12, 1, 1), 5, 4, 3),
    ] {
        let mut r = rng(seed);
        let n = s.n;
        let (mut flags, mut dst, mut weight, mut src) = (
            vec![1u32; s.batch * n],
            vec![NONE; s.batch * n * k],
            vec![0f32; s.batch * n * k],
            Vec::new(),
        );
        for b in 0..s.batch {
            let mut patch: Vec<usize> = (s.prefix..n).collect();
            patch.shuffle(&mut r);
            for &a in &patch[..removed] {
                flags[b * n + a] = 0;
            }
            let kept: Vec<usize> = (0..n).filter(|&t| flags[b * n + t] != 0).collect();
            let dests: Vec<usize> = kept.iter().copied().filter(|&t| t >= s.prefix).collect();
            for &a in &patch[..removed] {
                // Distinct destinations, sometimes fewer than k (the rest NONE, weight 0).
                let mut ds = dests.clone();
                ds.shuffle(&mut r);
                let used = r.random_range(1..=k);
                let w: Vec<f32> = (0..used).map(|_| r.random_range(0.05..1.0)).collect();
                let sum: f32 = w.iter().sum();
                for j in 0..used {
                    dst[(b * n + a) * k + j] = ds[j] as u32;
                    weight[(b * n + a) * k + j] = w[j] / sum;
                }
            }
            src.extend(kept.iter().map(|&t| t as u32));
        }
        let n_out = n - removed;
        let x = uniform(&mut r, s.batch * n * d, -4.0, 4.0);
        let sizes: Vec<f32> = (0..s.batch * n)
            .map(|_| r.random_range(1..5) as f32)
            .collect();
        let out = out_f32(s.batch * n_out * d);
        let size_out = out_f32(s.batch * n_out);
        let (dst_t, weight_t) = (upload_u32(&dst), upload(&weight));
        run([kernels()
            .merge_rows(
                "spread",
                s,
                (n_out, d),
                &upload(&x),
                &upload_u32(&src),
                &upload_u32(&flags),
                MergeTargets::Spread {
                    dst: &dst_t,
                    weight: &weight_t,
                    k,
                },
                (&upload(&sizes), &size_out),
                &out,
            )
            .unwrap()]);
        // x'[t] = (size[t] x[t] + sum_{a, j: dst[a, j] = t} w[a, j] size[a] x[a]) / size'[t]
        let (mut want, mut want_size) = (Vec::new(), Vec::new());
        for (row, &t) in src.iter().enumerate() {
            let b = row / n_out;
            let t = t as usize;
            let mut parts = vec![(t, 1.0f64)];
            for a in (0..n).filter(|&a| flags[b * n + a] == 0) {
                for j in 0..k {
                    if dst[(b * n + a) * k + j] as usize == t {
                        parts.push((a, weight[(b * n + a) * k + j] as f64));
                    }
                }
            }
            let size: f64 = parts
                .iter()
                .map(|&(a, w)| w * sizes[b * n + a] as f64)
                .sum();
            for c in 0..d {
                let acc: f64 = parts
                    .iter()
                    .map(|&(a, w)| w * sizes[b * n + a] as f64 * x[(b * n + a) * d + c] as f64)
                    .sum();
                want.push(Want::Near(acc / size));
            }
            want_size.push(Want::Near(size));
        }
        let what = format!("spread merge B{} n{n} -> {n_out} k{k}", s.batch);
        check(&what, &read(&out).await, &want, TOL);
        let got_size = read(&size_out).await;
        check(&format!("{what}: sizes"), &got_size, &want_size, TOL);
        // The sizes still add up to the tokens each image started with.
        for b in 0..s.batch {
            let total_in: f32 = sizes[b * n..][..n].iter().sum();
            let total_out: f32 = got_size[b * n_out..][..n_out].iter().sum();
            assert!(
                (total_in - total_out).abs() < 1e-3,
                "{what}: image {b} sizes"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Softmax with ToMe's size bias and masked keys

/// Row softmax of `logits + log(size[b, j])` over the keys `j < count[b]`; 0 for the others.
fn softmax_biased_ref(
    x: &[f32],
    s: TokenShape,
    sizes: Option<&[f32]>,
    counts: Option<&[u32]>,
) -> Vec<Want> {
    let n = s.n;
    let mut out = Vec::with_capacity(x.len());
    for (row, logits) in x.chunks(n).enumerate() {
        let b = row / (s.heads * n);
        let valid = counts.map_or(n, |c| c[b] as usize);
        if row % n >= valid {
            // A masked query's row is not computed: it keeps what the buffer held.
            out.extend(logits.iter().map(|&v| Want::Exact(v)));
            continue;
        }
        let v: Vec<f64> = (0..valid)
            .map(|j| logits[j] as f64 + sizes.map_or(0.0, |sz| (sz[b * n + j] as f64).ln()))
            .collect();
        let m = v.iter().fold(f64::NEG_INFINITY, |m, &a| m.max(a));
        let total: f64 = v.iter().map(|a| (a - m).exp()).sum();
        out.extend(v.iter().map(|a| Want::Near((a - m).exp() / total)));
        out.extend(std::iter::repeat_n(Want::Exact(0.0), n - valid));
    }
    out
}

/// (name, token sizes, valid counts)
type SoftmaxVariant<'a> = (&'a str, Option<&'a [f32]>, Option<&'a [u32]>);

async fn softmax_biased_log_size_and_mask() {
    for (seed, s, counts) in [
        (700, shape(1, 197, 3, 1), vec![120]),
        (701, shape(3, 50, 4, 2), vec![50, 17, 1]),
        (702, shape(3, 7, 2, 1), vec![3, 7, 6]),
        (703, shape(2, 300, 2, 1), vec![129, 300]), // more keys than threads
    ] {
        let mut r = rng(seed);
        let rows = s.batch * s.heads * s.n;
        let x = uniform(&mut r, rows * s.n, -8.0, 8.0);
        let sizes: Vec<f32> = (0..s.batch * s.n)
            .map(|_| {
                if r.random_bool(0.5) {
                    1.0
                } else {
                    r.random_range(1.0..6.0)
                }
            })
            .collect();
        let (sizes_t, counts_t) = (upload(&sizes), upload_u32(&counts));
        let variants: [SoftmaxVariant; 4] = [
            ("plain", None, None),
            ("log_size", Some(&sizes), None),
            ("masked", None, Some(&counts)),
            ("log_size+masked", Some(&sizes), Some(&counts)),
        ];
        let bufs: Vec<GpuTensor> = variants.iter().map(|_| upload(&x)).collect();
        run(variants.iter().zip(&bufs).map(|((_, sz, c), t)| {
            let bias = AttentionBias {
                log_size: sz.map(|_| &sizes_t),
                valid: c.map(|_| &counts_t),
            };
            kernels()
                .softmax_biased("softmax", t, rows, s.n, s.n, s.heads * s.n, bias)
                .unwrap()
        }));
        for ((name, sz, c), t) in variants.iter().zip(&bufs) {
            let got = read(t).await;
            let what = format!(
                "softmax {name} B{} H{} n{} counts {counts:?}",
                s.batch, s.heads, s.n
            );
            check(&what, &got, &softmax_biased_ref(&x, s, *sz, *c), TOL);
            for (row, p) in got.chunks(s.n).enumerate() {
                let b = row / (s.heads * s.n);
                if c.is_some_and(|c| row % s.n >= c[b] as usize) {
                    continue;
                }
                let sum: f64 = p.iter().map(|&v| v as f64).sum();
                assert!((sum - 1.0).abs() < 1e-5, "{what}: row {row} sums to {sum}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Limits

async fn launchers_reject_unsupported_shapes() {
    let k = kernels();
    let t = upload(&[0.0; 4]);
    let big = shape(1, MAX_PRUNE_TOKENS + 1, 1, 1);
    assert!(k.received_attention("x", big, &t, None, &t).is_err());
    assert!(k.wpr("x", big, &t, &t, &t, &t, 1, 0.0).is_err());
    // Scratch one value short of what PageRank needs.
    let small = shape(2, 5, 3, 1);
    let short = upload(&vec![
        0.0;
        zeroprune::gpu::Kernels::wpr_matrix_len(small) - 1
    ]);
    let err = k
        .wpr("x", small, &t, &t, &t, &short, 1, 0.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("pagerank matrix"), "{err}");
    assert!(k.select_topk("x", big, &t, &t, 1).is_err());
    assert!(k
        .select_threshold("x", big, &t, None, &t, ThresholdOn::TimesCount, 1.0)
        .is_err());
    assert!(k
        .compact("x", 1, (MAX_PRUNE_TOKENS + 1, 1), &t, &t, &t, &t, &t)
        .is_err());
    let lay = Lay {
        width: 4,
        off: 0,
        row_stride: 4,
        img_stride: 4,
    };
    assert!(k
        .best_match("x", big, lay.on(&t), MatchSplit::Parity, None, None, &t, &t)
        .is_err());
    let many_heads = shape(1, 4, 65, 1);
    assert!(k
        .combine_heads("x", many_heads, &t, &t, &t, HeadCombine::Band, BAND, None)
        .is_err());
    // The largest supported shape is accepted.
    let max = shape(1, MAX_PRUNE_TOKENS, 64, 2);
    assert!(k.select_topk("x", max, &t, &t, 2).is_ok());
    assert!(k
        .combine_heads("x", max, &t, &t, &t, HeadCombine::Band, BAND, None)
        .is_ok());
}

gpu_tests!(
    received_attention_unmasked,
    received_attention_masked,
    cls_attention_matches_cpu,
    random_score_is_the_documented_pcg_hash,
    wpr_matches_cpu_pagerank,
    wpr_at_the_token_limit,
    wpr_early_stop,
    combine_heads_mean_and_rms,
    combine_heads_band_selects_heads,
    combine_heads_band_falls_back_to_all_heads,
    head_mean_keys_and_parity_match,
    best_match_by_roles,
    energy_matches_cpu,
    split_roles_matches_cpu,
    best_match_flags_on_full_keys,
    best_match_skips_masked_rows,
    spread_match_matches_cpu,
    select_topk_matches_cpu_sort,
    select_threshold_matches_cpu,
    compact_and_gather_rows,
    copy_kernel,
    tome_merge_matches_cpu,
    spread_merge_matches_cpu,
    softmax_biased_log_size_and_mask,
    launchers_reject_unsupported_shapes,
);
