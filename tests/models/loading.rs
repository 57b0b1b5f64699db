//! Loading models: the four tiny fixtures (timm and Hugging Face layouts, plain and distilled) with
//! their config files, bare `.safetensors` files whose dimensions come from the tensor shapes, and
//! f16 / bf16 checkpoints.

use std::path::PathBuf;

use crate::common::{fixture, gpu, max_rel_err, plain_vit, read_tensor};
use safetensors::tensor::Dtype;
use tempfile::TempDir;
use zeroprune::model::Interpolation;
use zeroprune::{Error, ModelWeights, Preprocess, Session, ViTConfig};

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

// ------------------------------------------------------------------------------------------------
// Helpers.

use crate::common::{f32_bytes, read_tensors, serialize, Tensors};

fn as_f32(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn load(name: &str) -> ModelWeights {
    let dir = fixture(name);
    ModelWeights::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every host-side array of a model, by name, in a fixed order.
fn arrays(w: &ModelWeights) -> Vec<(String, &[f32])> {
    let mut v: Vec<(String, &[f32])> = vec![
        ("patch_w".into(), &w.patch.w),
        ("patch_b".into(), &w.patch.b),
        ("prefix_tokens".into(), &w.prefix_tokens),
        ("pos_embed".into(), &w.pos_embed),
        ("norm_w".into(), &w.norm.as_ref().unwrap().w),
        ("norm_b".into(), &w.norm.as_ref().unwrap().b),
        ("head_w".into(), &w.head.as_ref().unwrap().w),
        ("head_b".into(), &w.head.as_ref().unwrap().b),
    ];
    for (i, b) in w.blocks.iter().enumerate() {
        for (name, a) in [
            ("norm1_w", &b.norm1.w),
            ("norm1_b", &b.norm1.b),
            ("qkv_w", &b.qkv.w),
            ("qkv_b", &b.qkv.b),
            ("proj_w", &b.proj.w),
            ("proj_b", &b.proj.b),
            ("norm2_w", &b.norm2.w),
            ("norm2_b", &b.norm2.b),
            ("fc1_w", &b.fc1.w),
            ("fc1_b", &b.fc1.b),
            ("fc2_w", &b.fc2.w),
            ("fc2_b", &b.fc2.b),
        ] {
            v.push((format!("blocks.{i}.{name}"), a));
        }
    }
    v
}

/// Both models hold bit-identical arrays.
fn assert_same_arrays(a: &ModelWeights, b: &ModelWeights) {
    let (a, b) = (arrays(a), arrays(b));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(x.len(), y.len(), "{name}: lengths differ");
        let bad = x
            .iter()
            .zip(y.iter())
            .position(|(p, q)| p.to_bits() != q.to_bits());
        assert!(
            bad.is_none(),
            "{name}[{}]: {} != {}",
            bad.unwrap(),
            x[bad.unwrap()],
            y[bad.unwrap()]
        );
    }
}

fn class_names(n: usize) -> Option<Vec<String>> {
    Some((0..n).map(|i| format!("class-{i}")).collect())
}

// ------------------------------------------------------------------------------------------------
// The fixtures with their config files.

#[test]
fn tiny_timm_config() {
    let w = load("tiny-timm");
    assert_eq!(
        w.config,
        ViTConfig {
            image_size: (40, 40),
            patch_size: 8,
            in_chans: 3,
            embed_dim: 40,
            depth: 2,
            num_heads: 2,
            mlp_dim: 120,
            num_classes: 10,
            distilled: false,
            layer_norm_eps: 1e-6,
            class_names: None,
            preprocess: Preprocess {
                input_size: (40, 40),
                crop_pct: 0.875,
                interpolation: Interpolation::Bicubic,
                mean: IMAGENET_MEAN,
                std: IMAGENET_STD,
                resize: zeroprune::model::vit::Resize::CropPct,
                crop_offset: zeroprune::model::vit::CropOffset::Round,
            },
            ..plain_vit()
        }
    );
    assert_eq!(w.config.num_tokens(), 26);
    assert_eq!(w.config.head_dim(), 20);
    assert!(w.source.contains(
        &fixture("tiny-timm")
            .join("model.safetensors")
            .display()
            .to_string()
    ));
    assert_eq!(w.blocks.len(), 2);
    assert_eq!(w.patch.w.len(), 3 * 8 * 8 * 40);
    assert_eq!(w.prefix_tokens.len(), 40);
    assert_eq!(w.pos_embed.len(), 26 * 40);
    assert_eq!(w.head.as_ref().unwrap().w.len(), 40 * 10);
    assert_eq!(w.head.as_ref().unwrap().b.len(), 10);

    // Linear weights come out transposed to [in, out]: fc1 is [120, 40] in the file.
    let file = fixture("tiny-timm").join("model.safetensors");
    let (shape, fc1) = read_tensor(&file, "blocks.1.mlp.fc1.weight");
    assert_eq!(shape, [120, 40]);
    for (r, c) in [(0, 0), (7, 3), (119, 39), (64, 17)] {
        assert_eq!(w.blocks[1].fc1.w[c * 120 + r], fc1[r * 40 + c]);
    }
    // Every stored value is counted once.
    let stored: usize = read_tensors(&file)
        .values()
        .map(|(_, s, _)| s.iter().product::<usize>())
        .sum();
    assert_eq!(w.parameter_count(), stored);
}

#[test]
fn tiny_timm_distilled_config() {
    let w = load("tiny-timm-distilled");
    assert_eq!(
        w.config,
        ViTConfig {
            image_size: (32, 32),
            patch_size: 8,
            in_chans: 3,
            embed_dim: 48,
            depth: 2,
            num_heads: 3,
            mlp_dim: 96,
            num_classes: 10,
            distilled: true,
            layer_norm_eps: 1e-6,
            class_names: None,
            preprocess: Preprocess {
                input_size: (32, 32),
                crop_pct: 0.875,
                interpolation: Interpolation::Bicubic,
                mean: IMAGENET_MEAN,
                std: IMAGENET_STD,
                resize: zeroprune::model::vit::Resize::CropPct,
                crop_offset: zeroprune::model::vit::CropOffset::Round,
            },
            ..plain_vit()
        }
    );
    assert_eq!(w.config.num_prefix_tokens(), 2);
    assert_eq!(w.config.num_tokens(), 18);
    assert_eq!(w.prefix_tokens.len(), 2 * 48);
    assert_eq!(w.pos_embed.len(), 18 * 48);

    // The two heads, stacked and halved: [2D, C], bias the mean.
    let file = fixture("tiny-timm-distilled").join("model.safetensors");
    let (_, h1) = read_tensor(&file, "head.weight");
    let (_, h2) = read_tensor(&file, "head_dist.weight");
    let (_, b1) = read_tensor(&file, "head.bias");
    let (_, b2) = read_tensor(&file, "head_dist.bias");
    assert_eq!(w.head.as_ref().unwrap().w.len(), 2 * 48 * 10);
    for (cls, d) in [(0, 0), (3, 47), (9, 20)] {
        assert_eq!(
            w.head.as_ref().unwrap().w[d * 10 + cls],
            0.5 * h1[cls * 48 + d]
        );
        assert_eq!(
            w.head.as_ref().unwrap().w[(48 + d) * 10 + cls],
            0.5 * h2[cls * 48 + d]
        );
    }
    for c in 0..10 {
        assert_eq!(w.head.as_ref().unwrap().b[c], 0.5 * (b1[c] + b2[c]));
    }
    let (_, dist) = read_tensor(&file, "dist_token");
    assert_eq!(&w.prefix_tokens[48..], &dist[..]);
}

#[test]
fn tiny_hf_vit_config() {
    let w = load("tiny-hf-vit");
    assert_eq!(
        w.config,
        ViTConfig {
            image_size: (32, 32),
            patch_size: 8,
            in_chans: 3,
            embed_dim: 48,
            depth: 2,
            num_heads: 4,
            mlp_dim: 96,
            num_classes: 7,
            distilled: false,
            layer_norm_eps: 1e-12,
            class_names: class_names(7),
            // preprocessor_config.json: resize to 32x32 with resample 3 (bicubic), no crop, mean/std 0.5.
            preprocess: Preprocess {
                input_size: (32, 32),
                crop_pct: 1.0,
                interpolation: Interpolation::Bicubic,
                mean: [0.5; 3],
                std: [0.5; 3],
                resize: zeroprune::model::vit::Resize::Exact(32, 32),
                crop_offset: zeroprune::model::vit::CropOffset::Floor,
            },
            ..plain_vit()
        }
    );
    // Separate q, k, v stacked into timm's fused [D, 3D] (columns q, then k, then v).
    let file = fixture("tiny-hf-vit").join("model.safetensors");
    let d = 48;
    for (part, what) in ["query", "key", "value"].iter().enumerate() {
        let name = format!("vit.encoder.layer.1.attention.attention.{what}.weight");
        let (_, m) = read_tensor(&file, &name);
        for (r, c) in [(0, 0), (5, 40), (47, 47)] {
            // m is [out, in]; qkv.w is [in, 3 * out].
            assert_eq!(
                w.blocks[1].qkv.w[c * 3 * d + part * d + r],
                m[r * d + c],
                "{name}"
            );
        }
        let (_, b) = read_tensor(
            &file,
            &format!("vit.encoder.layer.1.attention.attention.{what}.bias"),
        );
        assert_eq!(&w.blocks[1].qkv.b[part * d..(part + 1) * d], &b[..]);
    }
}

#[test]
fn tiny_hf_deit_distilled_config() {
    let w = load("tiny-hf-deit-distilled");
    assert_eq!(
        w.config,
        ViTConfig {
            image_size: (24, 24),
            patch_size: 8,
            in_chans: 3,
            embed_dim: 32,
            depth: 3,
            num_heads: 2,
            mlp_dim: 64,
            num_classes: 5,
            distilled: true,
            layer_norm_eps: 1e-12,
            class_names: class_names(5),
            preprocess: Preprocess {
                input_size: (24, 24),
                crop_pct: 1.0,
                interpolation: Interpolation::Bicubic,
                mean: IMAGENET_MEAN,
                std: IMAGENET_STD,
                resize: zeroprune::model::vit::Resize::Exact(24, 24),
                crop_offset: zeroprune::model::vit::CropOffset::Floor,
            },
            ..plain_vit()
        }
    );
    assert_eq!(w.config.num_tokens(), 11);
    assert_eq!(w.head.as_ref().unwrap().w.len(), 2 * 32 * 5);
}

#[test]
fn hf_config_fields_are_read() {
    // layer_norm_eps and a resize of the shorter side to 256, then a crop, from the files.
    let dir = TempDir::new().unwrap();
    let src = fixture("tiny-hf-vit");
    std::fs::copy(
        src.join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["layer_norm_eps"] = serde_json::json!(1e-5);
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let mut pre: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(src.join("preprocessor_config.json")).unwrap(),
    )
    .unwrap();
    pre["size"] = serde_json::json!({"shortest_edge": 256});
    pre["crop_size"] = serde_json::json!({"height": 224, "width": 224});
    pre["do_center_crop"] = serde_json::json!(true);
    pre["resample"] = serde_json::json!(2);
    std::fs::write(dir.path().join("preprocessor_config.json"), pre.to_string()).unwrap();
    let w = ModelWeights::load(dir.path()).unwrap();
    assert_eq!(w.config.layer_norm_eps, 1e-5);
    assert_eq!(
        w.config.preprocess.resize,
        zeroprune::model::vit::Resize::ShortestEdge(256)
    );
    assert_eq!(
        w.config.preprocess.crop_offset,
        zeroprune::model::vit::CropOffset::Floor
    );
    assert_eq!(w.config.preprocess.interpolation, Interpolation::Bilinear);
    // The model's input size still comes from config.json.
    assert_eq!(w.config.preprocess.input_size, (32, 32));
}

// ------------------------------------------------------------------------------------------------
// Bare safetensors files: every dimension from the shapes.

/// `name`'s model.safetensors copied alone into a temporary folder.
fn bare(name: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::copy(fixture(name).join("model.safetensors"), &path).unwrap();
    (dir, path)
}

/// The fixtures' model.safetensors alone. Heads are not in any tensor shape: without a config they fall
/// back to the timm architecture-name table (needs config.json's `architecture`, so never here) or to
/// D / 64. The tiny models are 32, 40 or 48 wide, so today none of them loads bare, and the error says
/// why. (If the loader learns to guess heads another way, this test must change to check the dims.)
#[test]
fn bare_fixture_files_cannot_infer_the_head_count() {
    for name in [
        "tiny-timm",
        "tiny-timm-distilled",
        "tiny-hf-vit",
        "tiny-hf-deit-distilled",
    ] {
        let full = load(name).config;
        let (_dir, path) = bare(name);
        let e = ModelWeights::load(&path).unwrap_err();
        eprintln!("{name} bare: {e}");
        assert!(matches!(e, Error::Config { .. }), "{name}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("head count") && msg.contains(&format!("embed_dim {}", full.embed_dim)),
            "{name}: {msg}"
        );
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
}

/// A random ViT in timm's or Hugging Face's names, `d` wide (a multiple of 64 so heads = d / 64).
fn synthetic(
    hf: bool,
    d: usize,
    patch: usize,
    grid: usize,
    depth: usize,
    classes: usize,
) -> Tensors {
    let mut s = 0x9e37_79b9_7f4a_7c15u64 ^ d as u64;
    let mut rand = |n: usize| -> Vec<u8> {
        f32_bytes((0..n).map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        }))
    };
    let mlp = 2 * d;
    let tokens = grid * grid + 1;
    let mut t = Tensors::new();
    let mut put = |name: String, shape: Vec<usize>| {
        let n = shape.iter().product();
        t.insert(name, (Dtype::F32, shape, rand(n)));
    };
    if hf {
        let e = "vit.embeddings.";
        put(format!("{e}cls_token"), vec![1, 1, d]);
        put(format!("{e}position_embeddings"), vec![1, tokens, d]);
        put(
            format!("{e}patch_embeddings.projection.weight"),
            vec![d, 3, patch, patch],
        );
        put(format!("{e}patch_embeddings.projection.bias"), vec![d]);
        for i in 0..depth {
            let l = format!("vit.encoder.layer.{i}.");
            for p in ["query", "key", "value"] {
                put(format!("{l}attention.attention.{p}.weight"), vec![d, d]);
                put(format!("{l}attention.attention.{p}.bias"), vec![d]);
            }
            put(format!("{l}attention.output.dense.weight"), vec![d, d]);
            put(format!("{l}attention.output.dense.bias"), vec![d]);
            put(format!("{l}intermediate.dense.weight"), vec![mlp, d]);
            put(format!("{l}intermediate.dense.bias"), vec![mlp]);
            put(format!("{l}output.dense.weight"), vec![d, mlp]);
            put(format!("{l}output.dense.bias"), vec![d]);
            for n in ["layernorm_before", "layernorm_after"] {
                put(format!("{l}{n}.weight"), vec![d]);
                put(format!("{l}{n}.bias"), vec![d]);
            }
        }
        put("vit.layernorm.weight".into(), vec![d]);
        put("vit.layernorm.bias".into(), vec![d]);
        put("classifier.weight".into(), vec![classes, d]);
        put("classifier.bias".into(), vec![classes]);
    } else {
        put("cls_token".into(), vec![1, 1, d]);
        put("pos_embed".into(), vec![1, tokens, d]);
        put("patch_embed.proj.weight".into(), vec![d, 3, patch, patch]);
        put("patch_embed.proj.bias".into(), vec![d]);
        for i in 0..depth {
            let l = format!("blocks.{i}.");
            put(format!("{l}attn.qkv.weight"), vec![3 * d, d]);
            put(format!("{l}attn.qkv.bias"), vec![3 * d]);
            put(format!("{l}attn.proj.weight"), vec![d, d]);
            put(format!("{l}attn.proj.bias"), vec![d]);
            put(format!("{l}mlp.fc1.weight"), vec![mlp, d]);
            put(format!("{l}mlp.fc1.bias"), vec![mlp]);
            put(format!("{l}mlp.fc2.weight"), vec![d, mlp]);
            put(format!("{l}mlp.fc2.bias"), vec![d]);
            for n in ["norm1", "norm2"] {
                put(format!("{l}{n}.weight"), vec![d]);
                put(format!("{l}{n}.bias"), vec![d]);
            }
        }
        put("norm.weight".into(), vec![d]);
        put("norm.bias".into(), vec![d]);
        put("head.weight".into(), vec![classes, d]);
        put("head.bias".into(), vec![classes]);
    }
    t
}

#[test]
fn bare_files_with_64_multiple_widths_load() {
    // timm names, D = 128: heads fall back to D / 64 = 2; image size from the 3x3 grid of 4-pixel patches;
    // timm's ImageNet preprocessing defaults.
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("vit.safetensors");
    std::fs::write(&path, serialize(&synthetic(false, 128, 4, 3, 2, 5))).unwrap();
    let w = ModelWeights::load(&path).unwrap();
    let mut want = ViTConfig {
        image_size: (12, 12),
        patch_size: 4,
        in_chans: 3,
        embed_dim: 128,
        depth: 2,
        num_heads: 2,
        mlp_dim: 256,
        num_classes: 5,
        distilled: false,
        layer_norm_eps: 1e-6,
        class_names: None,
        preprocess: Preprocess::imagenet(12),
        ..plain_vit()
    };
    assert_eq!(w.config, want);

    // Hugging Face names, D = 64: one head; HF defaults (eps 1e-12, mean/std 0.5, bilinear, no crop).
    std::fs::write(&path, serialize(&synthetic(true, 64, 4, 2, 1, 3))).unwrap();
    let w = ModelWeights::load(&path).unwrap();
    want = ViTConfig {
        image_size: (8, 8),
        patch_size: 4,
        in_chans: 3,
        embed_dim: 64,
        depth: 1,
        num_heads: 1,
        mlp_dim: 128,
        num_classes: 3,
        distilled: false,
        layer_norm_eps: 1e-12,
        class_names: None,
        preprocess: Preprocess {
            input_size: (8, 8),
            crop_pct: 1.0,
            interpolation: Interpolation::Bilinear,
            mean: [0.5; 3],
            std: [0.5; 3],
            resize: zeroprune::model::vit::Resize::CropPct,
            crop_offset: zeroprune::model::vit::CropOffset::Floor,
        },
        ..plain_vit()
    };
    assert_eq!(w.config, want);

    // A folder holding only model.safetensors is read the same way.
    std::fs::rename(&path, dir.path().join("model.safetensors")).unwrap();
    let w2 = ModelWeights::load(dir.path()).unwrap();
    assert_eq!(w2.config, want);
    assert_same_arrays(&w, &w2);

    // And the inferred model runs.
    let mut session = Session::new(gpu(), &w2).unwrap();
    let logits = session
        .run(
            &vec![0.1; 2 * session.image_len()],
            &zeroprune::prune::Pruning::dense(),
        )
        .unwrap()
        .items
        .into_iter()
        .map(|o| o.logits)
        .collect::<Vec<_>>();
    assert_eq!(logits.len(), 2);
    assert!(logits.iter().flatten().all(|x| x.is_finite()));
    assert!(max_rel_err(&logits[0], &logits[1]) < 1e-6);
}

#[test]
fn head_count_from_the_architecture_table() {
    // The timm architecture table (tiny = 3 heads, small = 6, ...) is read from config.json's
    // `architecture` only: without config.json the file name is not used.
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("vit_tiny_patch8.safetensors");
    std::fs::copy(fixture("tiny-timm").join("model.safetensors"), &path).unwrap();
    assert!(ModelWeights::load(&path).is_err());

    // With a config that names the architecture but not the heads, the table applies (tiny = 3,
    // small = 6, medium = 8, base = 12, large/huge = 16); a name with no entry falls back to D / 64.
    for (fixture_name, arch, heads) in [
        (
            "tiny-timm-distilled",
            "deit_tiny_distilled_patch16_224",
            Ok(3),
        ),
        (
            "tiny-timm-distilled",
            "deit_small_distilled_patch16_224",
            Ok(6),
        ),
        ("tiny-timm", "vit_medium_patch16_gap_256", Ok(8)),
        // 3 heads do not divide D = 40.
        (
            "tiny-timm",
            "vit_tiny_patch16_224",
            Err("not divisible by 3 heads"),
        ),
        // No entry, and 40 is not a multiple of 64.
        (
            "tiny-timm",
            "vit_unknown_test",
            Err("head count is not stated"),
        ),
    ] {
        let src = fixture(fixture_name);
        let dir = TempDir::new().unwrap();
        std::fs::copy(
            src.join("model.safetensors"),
            dir.path().join("model.safetensors"),
        )
        .unwrap();
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap())
                .unwrap();
        cfg["model_args"]
            .as_object_mut()
            .unwrap()
            .remove("num_heads");
        cfg["architecture"] = serde_json::json!(arch);
        std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
        match (ModelWeights::load(dir.path()), heads) {
            (Ok(w), Ok(h)) => assert_eq!(w.config.num_heads, h, "{arch}"),
            (Err(e), Err(text)) => {
                assert!(matches!(e, Error::Config { .. }), "{arch}: {e:?}");
                assert!(e.to_string().contains(text), "{arch}: {e}");
            }
            (r, _) => panic!("{arch}: unexpected {:?}", r.map(|w| w.config.num_heads)),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Half-precision checkpoints.

#[derive(Clone, Copy, Debug)]
enum Half {
    F16,
    BF16,
}

impl Half {
    fn round(self, x: f32) -> f32 {
        match self {
            Half::F16 => half::f16::from_f32(x).to_f32(),
            Half::BF16 => half::bf16::from_f32(x).to_f32(),
        }
    }
    fn bytes(self, x: f32) -> [u8; 2] {
        match self {
            Half::F16 => half::f16::from_f32(x).to_le_bytes(),
            Half::BF16 => half::bf16::from_f32(x).to_le_bytes(),
        }
    }
    fn dtype(self) -> Dtype {
        match self {
            Half::F16 => Dtype::F16,
            Half::BF16 => Dtype::BF16,
        }
    }
}

/// Fixture `name` in a temporary folder with its tensors rewritten: those `pick` selects as `half`
/// (`rounded`: as F32 holding the half-rounded values instead).
fn rewritten(name: &str, half: Half, rounded: bool, pick: impl Fn(&str) -> bool) -> TempDir {
    let src = fixture(name);
    let dir = TempDir::new().unwrap();
    for f in ["config.json", "preprocessor_config.json"] {
        if src.join(f).is_file() {
            std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
        }
    }
    let mut t = read_tensors(&src.join("model.safetensors"));
    for (n, (dtype, _, data)) in t.iter_mut() {
        assert_eq!(*dtype, Dtype::F32);
        if !pick(n) {
            continue;
        }
        let values = as_f32(data);
        if rounded {
            *data = f32_bytes(values.iter().map(|&x| half.round(x)));
        } else {
            *data = values.iter().flat_map(|&x| half.bytes(x)).collect();
            *dtype = half.dtype();
        }
    }
    std::fs::write(dir.path().join("model.safetensors"), serialize(&t)).unwrap();
    dir
}

/// Load `name` in `half`, check the weights are exactly the rounded f32 ones, run the reference input
/// and return the logits' largest error relative to the f32 PyTorch logits.
fn half_error(name: &str, half: Half) -> f32 {
    let dir = rewritten(name, half, false, |_| true);
    let st = read_tensors(&dir.path().join("model.safetensors"));
    assert!(st.values().all(|(d, _, _)| *d == half.dtype()));
    let w = ModelWeights::load(dir.path()).unwrap_or_else(|e| panic!("{name} {half:?}: {e}"));
    let f32_model = load(name);
    assert_eq!(w.config, f32_model.config);

    // Exactly the rounded values: one tensor directly, every array against an F32 file of rounded values.
    let norm = if name.starts_with("tiny-hf") {
        let prefix = if name.contains("deit") { "deit" } else { "vit" };
        format!("{prefix}.encoder.layer.0.layernorm_before.weight")
    } else {
        "blocks.0.norm1.weight".into()
    };
    let (_, orig) = read_tensor(&fixture(name).join("model.safetensors"), &norm);
    let want: Vec<f32> = orig.iter().map(|&x| half.round(x)).collect();
    assert_eq!(w.blocks[0].norm1.w, want);
    assert_ne!(w.blocks[0].norm1.w, orig, "rounding changed nothing");
    let rounded = rewritten(name, half, true, |_| true);
    assert_same_arrays(&w, &ModelWeights::load(rounded.path()).unwrap());

    let reference = fixture(name).join("reference.safetensors");
    let (_, input) = read_tensor(&reference, "input");
    let (_, logits) = read_tensor(&reference, "logits");
    let mut session = Session::new(gpu(), &w).unwrap();
    let got = session
        .run(&input, &zeroprune::prune::Pruning::dense())
        .unwrap()
        .logits();
    let err = max_rel_err(&got, &logits);
    eprintln!("{name} {half:?}: max relative logit error {err:.2e}");
    err
}

/// Measured on lavapipe (max error / max abs logit): f16 1.2e-3 to 1.6e-3, bf16 5.9e-3 to 1.2e-2; the
/// f32 weights give about 1e-6.
const F16_TOL: f32 = 2e-2;
const BF16_TOL: f32 = 5e-2;

#[test]
fn f16_weights() {
    for name in ["tiny-timm", "tiny-hf-deit-distilled"] {
        let err = half_error(name, Half::F16);
        assert!(err < F16_TOL, "{name} f16: {err} > {F16_TOL}");
    }
}

#[test]
fn bf16_weights() {
    for name in ["tiny-timm-distilled", "tiny-hf-vit"] {
        let err = half_error(name, Half::BF16);
        assert!(err < BF16_TOL, "{name} bf16: {err} > {BF16_TOL}");
    }
}

#[test]
fn mixed_precision_weights() {
    // Blocks in bf16, the rest f32 (as some exports keep embeddings and heads in full precision).
    let mixed = rewritten("tiny-timm", Half::BF16, false, |n| n.starts_with("blocks."));
    let rounded = rewritten("tiny-timm", Half::BF16, true, |n| n.starts_with("blocks."));
    let dtypes: Vec<Dtype> = read_tensors(&mixed.path().join("model.safetensors"))
        .values()
        .map(|(d, _, _)| *d)
        .collect();
    assert!(dtypes.contains(&Dtype::F32) && dtypes.contains(&Dtype::BF16));
    let w = ModelWeights::load(mixed.path()).unwrap();
    assert_same_arrays(&w, &ModelWeights::load(rounded.path()).unwrap());
    // Untouched tensors are bit-exact f32.
    let f32_model = load("tiny-timm");
    assert_eq!(w.pos_embed, f32_model.pos_embed);
    assert_eq!(
        w.head.as_ref().unwrap().w,
        f32_model.head.as_ref().unwrap().w
    );
}

/// `random:NAME` models have the published shapes (timm's deit_*_patch16_224 parameter counts) and
/// run; an unknown name lists the known ones.
#[test]
fn random_models_have_the_published_shapes() {
    use zeroprune::model::random::random_model;
    for (name, d, heads, params) in [
        ("deit-tiny", 192, 3, 5_717_416),
        ("deit-small", 384, 6, 22_050_664),
    ] {
        let w = random_model(name).unwrap();
        let c = &w.config;
        assert_eq!(
            (c.embed_dim, c.num_heads, c.depth),
            (d, heads, 12),
            "{name}"
        );
        assert_eq!(w.parameter_count(), params, "{name}");
        assert!(w.source.contains(name));
    }
    let w = random_model("deit-tiny").unwrap();
    let mut s = Session::new(gpu(), &w).unwrap();
    let out = s
        .run(
            &vec![0.2; s.image_len()],
            &zeroprune::prune::Pruning::dense(),
        )
        .unwrap();
    assert!(out.items[0].logits.iter().all(|v| v.is_finite()));
    let err = random_model("deit-huge").unwrap_err().to_string();
    assert!(err.contains("random:deit-base"), "{err}");
}
