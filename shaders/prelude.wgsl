// Shared by every kernel. The host puts it first, after two limits the Rust side owns (MAX_TOKENS:
// the most rows per image the one-workgroup kernels handle; MAX_HEADS: the most heads head
// combining handles), and before the parameter structs it generates from their Rust declarations.
const NONE: u32 = 0xffffffffu;       // "no row" in index buffers
const NEG: f32 = -3.0e38;            // a score below every real one (rows that take no part)
const POS: f32 = 3.0e38;             // a score above every real one
const LOWEST: f32 = -3.40282346e38;  // f32::MIN, written so that WGSL front ends that reject rounding up accept it
const HIGHEST: f32 = 3.40282346e38;  // f32::MAX
