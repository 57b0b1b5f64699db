// The vec4 load blocks of gemm_rb.wgsl (not a shader by itself: the host splices them in).
// A as vec4: a_ks = 1 and every A offset and stride a multiple of 4, so four consecutive k of a row
// are one aligned vec4. B as vec4: b_ns = 1, offsets and strides multiples of 4 and n % 4 = 0.

// @a-begin
alias T_a = f32;
@group(0) @binding(0) var<storage, read> a: array<vec4<T_a>>;
fn la(i: u32) -> f32 { return f32(a[i >> 2u][i & 3u]); }
fn la4(i: u32, s: u32) -> vec4<f32> { return vec4<f32>(a[i >> 2u]); }
// @a-end

// @b-begin
alias T_b = f32;
@group(0) @binding(1) var<storage, read> b: array<vec4<T_b>>;
fn lb(i: u32) -> f32 { return f32(b[i >> 2u][i & 3u]); }
fn lb4(row: u32, col4: u32) -> vec4<f32> {
    return vec4<f32>(b[(row >> 2u) + min(col4, p.n / 4u - 1u)]);
}
// @b-end
