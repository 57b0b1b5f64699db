// Patch embedding, around one GEMM: `im2col` unfolds the image into one row per patch
// (channel, then kernel row, then kernel column: the order of the conv weight), the GEMM projects
// the rows into the token buffer, and `add_prefix_pos` writes CLS (and distillation) tokens and
// adds the position embedding.

@group(0) @binding(0) var<storage, read> image: array<f32>;
@group(0) @binding(1) var<storage, read_write> patches: array<f32>;
@group(0) @binding(2) var<uniform> ip: Im2colParams;

@compute @workgroup_size(256, 1, 1)
fn im2col(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let e = (wid.x + wid.y * nwg.x) * 256u + lane;
    if (e >= ip.total) {
        return;
    }
    let row = e / ip.cols;
    let col = e % ip.cols;
    let b = row / ip.num_patches;
    let pi = row % ip.num_patches;
    let py = pi / ip.grid_w;
    let px = pi % ip.grid_w;
    let pp = ip.psize * ip.psize;
    let ch = col / pp;
    let ky = (col % pp) / ip.psize;
    let kx = col % ip.psize;
    let y = py * ip.psize + ky;
    let x = px * ip.psize + kx;
    patches[e] = image[((b * ip.chans + ch) * ip.height + y) * ip.width + x];
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> prefix_tokens: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<f32>;
@group(0) @binding(3) var<uniform> pp: PosParams;

@compute @workgroup_size(256, 1, 1)
fn add_prefix_pos(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let e = (wid.x + wid.y * nwg.x) * 256u + lane;
    if (e >= pp.total) {
        return;
    }
    let td = e % (pp.tokens * pp.dim);
    let t = td / pp.dim;
    if (t < pp.prefix) {
        x[e] = prefix_tokens[td] + pos[td];
    } else {
        x[e] += pos[td];
    }
}
