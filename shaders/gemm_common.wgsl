// What every GEMM kernel shares (the host appends this file to matmul.wgsl, gemm_tiled.wgsl and
// gemm_rb.wgsl): where matrix z starts, the epilogue switches and the epilogue
//   C[m, n] = (alpha * acc (+ bias[n])) -> (GELU | quick GELU | tanh GELU) -> (+ C[m, n]) (+ residual[m, n])
// It uses the including shader's bindings `bias`, `c` (of `T_c`, f32 or f16), `residual` and `p`.
// With NORM it is a pre-norm linear layer with its LayerNorm folded in (see `store_normed`).

// Where matrix z of A, B and C starts.
struct Bases { a: u32, b: u32, c: u32 }

fn bases(z: u32) -> Bases {
    let zo = z / p.heads;
    let zi = z % p.heads;
    return Bases(
        p.a_off + zo * p.a_zo + zi * p.a_zi,
        p.b_off + zo * p.b_zo + zi * p.b_zi,
        p.c_off + zo * p.c_zo + zi * p.c_zi,
    );
}

// Threshold pruning keeps a count of live rows per image, the first ones; the rest are masked and
// nothing reads them, so no GEMM computes them. Two forms (`live` is bound by the including shader):
//  live_mode 1, one matrix per image and head (attention): matrix z belongs to image z / heads,
//    whose first live[z / heads] rows are live; with live_cols the columns are that image's keys
//    and only as many are computed (scores), with live_k the sum runs over them alone (context);
//  live_mode 2, packed rows (the linear layers): live[0] of the m rows are live, and row r stands
//    for row live[1 + r] of A and C, so the live rows of every image are contiguous.
// live_mode 0: every row is live.
fn image_live(z: u32) -> u32 {
    return live[z / p.heads];
}

fn row_live(z: u32, row: u32) -> bool {
    if (p.live_mode == 1u) {
        return row < image_live(z);
    }
    if (p.live_mode == 2u) {
        return row < live[0];
    }
    return true;
}

// Whether any of rows m0.. of matrix z is live (live rows come first). Uniform across a workgroup
// when m0 is: `live` is read-only.
fn rows_live(z: u32, m0: u32) -> bool {
    return row_live(z, m0);
}

// (column tile, row tile) of a workgroup. Over packed live rows (live_mode 2) the grid runs the
// row tiles along x: the dead ones, past the live count, are the last row tiles of every column,
// so a device that splits the grid into contiguous ranges of workgroups (lavapipe gives each thread
// one) gives every range its share of live tiles. With the row tiles along y the dead tiles were
// one thread's whole range, and that thread idled while the other did all the work.
fn tile_ids(wid: vec3<u32>) -> vec2<u32> {
    if (p.live_mode == 2u) {
        return vec2<u32>(wid.y, wid.x);
    }
    return wid.xy;
}

// Columns of matrix z to compute, and the end of its sum over k.
fn n_end(z: u32) -> u32 {
    if (p.live_mode == 1u && p.live_cols == 1u) {
        return min(p.n, image_live(z));
    }
    return p.n;
}

fn k_end(z: u32) -> u32 {
    if (p.live_mode == 1u && p.live_k == 1u) {
        return min(p.k, image_live(z));
    }
    return p.k;
}

// The row of A and C that row `row` of the product stands for.
fn data_row(row: u32) -> u32 {
    if (p.live_mode == 2u) {
        return min(live[1u + row], p.m - 1u);
    }
    return row;
}

// The epilogue switches, bits of p.epilogue. Parameters rather than override constants: one
// pipeline serves every layer, and a uniform branch per output costs nothing measurable.
const HAS_BIAS: u32 = 1u;
const GELU: u32 = 2u;
const ACCUMULATE: u32 = 4u;
// Add the residual from another buffer laid out like C: after a pruning step the survivors sit in
// the step's compacted rows, and the block's last GEMM writes C = rows + MLP(rows) in one go instead
// of the rows being copied back first.
const RESIDUAL: u32 = 8u;
// x * sigmoid(1.702 x): OpenAI CLIP's activation.
const QUICK_GELU: u32 = 16u;
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): SigLIP's activation.
const GELU_TANH: u32 = 32u;

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): WGSL has no erf, and timm/HF use the exact GELU.
fn erf(x: f32) -> f32 {
    let s = sign(x);
    let ax = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * ax);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-ax * ax);
    return s * y;
}

fn gelu(x: f32) -> f32 {
    return 0.5 * x * (1.0 + erf(x * 0.70710678118654752));
}

fn store(c_base: u32, row: u32, col: u32, acc: f32) {
    var v = p.alpha * acc;
    if ((p.epilogue & HAS_BIAS) != 0u) {
        v += bias[p.bias_off + col];
    }
    if ((p.epilogue & GELU) != 0u) {
        v = gelu(v);
    }
    if ((p.epilogue & QUICK_GELU) != 0u) {
        v = v / (1.0 + exp(-1.702 * v));
    }
    if ((p.epilogue & GELU_TANH) != 0u) {
        // tanh through exp, clamped where exp would overflow (tanh is +-1 there).
        let u = clamp(0.7978845608028654 * (v + 0.044715 * v * v * v), -15.0, 15.0);
        let e = exp(2.0 * u);
        v = 0.5 * v * (1.0 + (e - 1.0) / (e + 1.0));
    }
    let i = c_base + row * p.c_rs + col;
    if ((p.epilogue & ACCUMULATE) != 0u) {
        v += f32(c[i]);
    }
    if ((p.epilogue & RESIDUAL) != 0u) {
        v += residual[i];
    }
    c[i] = T_c(v);
}

// A pre-norm linear layer with its LayerNorm folded in (NORM: the host compiles this variant for it,
// rewriting the line below; the template's other users never pay for it):
//   LN(x) . W + b = rstd * (x . W' - mean * colsum(W')) + b',   W' = diag(gamma) W,  b' = b + beta . W
// The host folds gamma and beta into the weights and puts colsum(W') after the bias (at
// bias_off + n + col); A is the raw residual stream, and each kernel sums x and x^2 over its rows in
// the k loop it runs anyway, so the row's mean and variance need no pass (and no dispatch) of their own.
const NORM: bool = false;

fn store_normed(c_base: u32, row: u32, col: u32, acc: f32, sum: f32, sq: f32) {
    if NORM {
        let inv_k = 1.0 / f32(p.k);
        let mean = sum * inv_k;
        let rstd = inverseSqrt(max(sq * inv_k - mean * mean, 0.0) + p.norm_eps);
        store(c_base, row, col, rstd * (acc - mean * bias[p.bias_off + p.n + col]));
    } else {
        store(c_base, row, col, acc);
    }
}
