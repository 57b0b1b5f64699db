//! Bad input never panics: every failure is a typed `Error` whose message names the file, tensor or
//! parameter at fault. Each case below checks both the variant and the `Display` text.
//!
//! Broken models are made on the fly from the tiny fixtures (`tests/fixtures/tiny-*`) in temporary
//! folders: a tensor dropped, reshaped, retyped or added, or a config field changed.

use crate::common::{fixture, gpu};
use safetensors::tensor::Dtype;
use serde_json::{json, Value};
use tempfile::TempDir;
use zeroprune::gpu::{AdapterChoice, GpuContext};
use zeroprune::model::vit::Activations;
use zeroprune::{Error, ModelWeights, Session};

// ------------------------------------------------------------------------------------------------
// Helpers: tensors as a name -> (dtype, shape, bytes) map, model folders in temporary directories.

use crate::common::{
    assert_mentions, broken_model, f32_bytes, file_with, load_err, serialize, with_json, with_text,
    Tensors,
};

fn model_file(dir: &TempDir) -> String {
    dir.path().join("model.safetensors").display().to_string()
}

// ------------------------------------------------------------------------------------------------
// Paths and files that are not a model.

#[test]
fn path_that_does_not_exist() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("no-such-model");
    let e = load_err(&missing);
    match &e {
        Error::Io { path, source } => {
            assert_eq!(path, &missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Error::Io, got {other:?}"),
    }
    assert_mentions(&e, &["no-such-model"]);
}

#[test]
fn folder_without_model_safetensors() {
    let dir = TempDir::new().unwrap();
    std::fs::copy(
        fixture("tiny-timm").join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let e = load_err(dir.path());
    assert!(
        matches!(&e, Error::Io { path, .. } if path == &dir.path().join("model.safetensors")),
        "{e:?}"
    );
    assert_mentions(&e, &[&model_file(&dir), "no model.safetensors"]);

    // Hints for the two usual reasons: PyTorch pickles and sharded checkpoints.
    std::fs::write(dir.path().join("pytorch_model.bin"), b"pickle").unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert_mentions(&e, &["model.safetensors", "pytorch_model.bin"]);
    // An index of a sharded checkpoint that is not one.
    std::fs::write(dir.path().join("model.safetensors.index.json"), b"{}").unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert_mentions(&e, &["model.safetensors.index.json", "weight_map"]);
}

/// A sharded checkpoint (an index and its shards, as the hub ships large models) loads as the
/// single file does; a missing shard, a tensor missing from its shard or a shard outside the
/// folder is an error naming it.
#[test]
fn sharded_checkpoints_load_and_bad_shards_are_named() {
    use safetensors::SafeTensors;
    let src = fixture("tiny-hf-dinov2-reg");
    let whole = ModelWeights::load(&src).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let half = names.len() / 2;
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "preprocessor_config.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut map = serde_json::Map::new();
    for (i, part) in [&names[..half], &names[half..]].into_iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let views: Vec<(String, _)> = part
            .iter()
            .map(|n| (n.clone(), st.tensor(n).unwrap()))
            .collect();
        std::fs::write(
            dir.path().join(&file),
            safetensors::serialize(views, None).unwrap(),
        )
        .unwrap();
        for n in part {
            map.insert(n.clone(), json!(file));
        }
    }
    let index = dir.path().join("model.safetensors.index.json");
    let write_index = |map: &serde_json::Map<String, Value>| {
        std::fs::write(
            &index,
            json!({"metadata": {}, "weight_map": map}).to_string(),
        )
        .unwrap()
    };
    write_index(&map);
    let sharded = ModelWeights::load(dir.path()).unwrap();
    assert_eq!(sharded.config, whole.config);
    assert_eq!(sharded.pos_embed, whole.pos_embed);
    assert_eq!(sharded.blocks[1].fc2.w, whole.blocks[1].fc2.w);

    // A tensor the index puts in the wrong shard.
    let mut wrong = map.clone();
    wrong.insert(names[0].clone(), json!("model-00002-of-00002.safetensors"));
    write_index(&wrong);
    let e = load_err(dir.path());
    assert!(matches!(e, Error::MissingTensor { .. }), "{e:?}");
    assert_mentions(&e, &[&names[0], "model-00002-of-00002.safetensors"]);
    // A shard outside the folder.
    let mut outside = map.clone();
    outside.insert(names[0].clone(), json!("../model.safetensors"));
    write_index(&outside);
    assert_mentions(
        &load_err(dir.path()),
        &["../model.safetensors", "beside the index"],
    );
    // A missing shard.
    write_index(&map);
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    assert_mentions(&load_err(dir.path()), &["model-00002-of-00002.safetensors"]);
}

fn assert_not_safetensors(bytes: &[u8], file_name: &str) {
    // As a bare file...
    let (_dir, path) = file_with(bytes, file_name);
    let e = load_err(&path);
    let name = path.display().to_string();
    assert!(
        matches!(&e, Error::Safetensors { file, .. } if file == &name),
        "{e:?}"
    );
    assert_mentions(&e, &[&name, "not a valid safetensors file"]);
    // ...and as the model.safetensors of a folder.
    let dir = broken_model("tiny-timm", |_| {});
    std::fs::write(dir.path().join("model.safetensors"), bytes).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, Error::Safetensors { .. }), "{e:?}");
    assert_mentions(&e, &[&model_file(&dir)]);
}

#[test]
fn random_bytes_are_not_safetensors() {
    // Deterministic pseudo-random bytes (an LCG), a few sizes: shorter and longer than a header.
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut bytes = Vec::new();
    for len in [3usize, 8, 64, 4096] {
        bytes.clear();
        for _ in 0..len {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            bytes.push((s >> 33) as u8);
        }
        assert_not_safetensors(&bytes, "random.safetensors");
    }
    // A plausible little header length followed by garbage.
    let mut b = 16u64.to_le_bytes().to_vec();
    b.extend_from_slice(&[0xff; 32]);
    assert_not_safetensors(&b, "bad-header.safetensors");
}

#[test]
fn json_file_is_not_safetensors() {
    let text = std::fs::read(fixture("tiny-timm").join("config.json")).unwrap();
    assert_not_safetensors(&text, "config.safetensors");
    // A JSON file passed directly, under its own name.
    let e = load_err(&fixture("tiny-timm").join("config.json"));
    assert!(matches!(e, Error::Safetensors { .. }), "{e:?}");
    assert_mentions(&e, &["config.json"]);
}

#[test]
fn empty_file_is_not_safetensors() {
    assert_not_safetensors(&[], "empty.safetensors");
}

#[test]
fn truncated_safetensors() {
    let bytes = std::fs::read(fixture("tiny-timm").join("model.safetensors")).unwrap();
    // Cut in the tensor data, and cut inside the JSON header.
    for cut in [bytes.len() / 2, bytes.len() - 1, 100] {
        assert_not_safetensors(&bytes[..cut], "truncated.safetensors");
    }
}

// ------------------------------------------------------------------------------------------------
// Tensors that are missing, misshapen, of the wrong type, or unknown.

#[test]
fn missing_tensor_is_named() {
    let name = "blocks.1.mlp.fc2.bias";
    let dir = broken_model("tiny-timm", |t| {
        t.remove(name).unwrap();
    });
    let e = load_err(dir.path());
    assert!(
        matches!(&e, Error::MissingTensor { name: n, file } if n == name && file == &model_file(&dir)),
        "{e:?}"
    );
    assert_mentions(&e, &[name, &model_file(&dir), "missing"]);

    // Hugging Face layout, distilled: the distillation head's bias.
    let name = "distillation_classifier.bias";
    let dir = broken_model("tiny-hf-deit-distilled", |t| {
        t.remove(name).unwrap();
    });
    let e = load_err(dir.path());
    assert!(
        matches!(&e, Error::MissingTensor { name: n, .. } if n == name),
        "{e:?}"
    );
    assert_mentions(&e, &[name]);

    let name = "vit.encoder.layer.1.attention.attention.key.weight";
    let dir = broken_model("tiny-hf-vit", |t| {
        t.remove(name).unwrap();
    });
    let e = load_err(dir.path());
    assert!(
        matches!(&e, Error::MissingTensor { name: n, .. } if n == name),
        "{e:?}"
    );
    assert_mentions(&e, &[name]);
}

#[test]
fn wrong_shape_is_named_with_both_shapes() {
    let name = "blocks.1.attn.proj.weight";
    let dir = broken_model("tiny-timm", |t| {
        t.insert(
            name.into(),
            (Dtype::F32, vec![40, 41], f32_bytes(vec![0.0; 40 * 41])),
        );
    });
    let e = load_err(dir.path());
    match &e {
        Error::TensorShape {
            name: n,
            got,
            expected,
            ..
        } => {
            assert_eq!(n, name);
            assert_eq!(got, &[40, 41]);
            assert_eq!(expected, &[40, 40]);
        }
        other => panic!("expected Error::TensorShape, got {other:?}"),
    }
    assert_mentions(&e, &[name, "[40, 41]", "[40, 40]", &model_file(&dir)]);

    // A bias one element short, Hugging Face layout.
    let name = "vit.encoder.layer.0.attention.attention.value.bias";
    let dir = broken_model("tiny-hf-vit", |t| {
        t.insert(
            name.into(),
            (Dtype::F32, vec![47], f32_bytes(vec![0.0; 47])),
        );
    });
    let e = load_err(dir.path());
    assert!(
        matches!(&e, Error::TensorShape { name: n, got, expected, .. }
            if n == name && got == &[47] && expected == &[48]),
        "{e:?}"
    );
    assert_mentions(&e, &[name, "[47]", "[48]"]);

    // Position embeddings for a different token count (not a square grid either).
    let name = "pos_embed";
    let dir = broken_model("tiny-timm", |t| {
        t.insert(
            name.into(),
            (Dtype::F32, vec![1, 20, 40], f32_bytes(vec![0.0; 20 * 40])),
        );
    });
    let e = load_err(dir.path());
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert_mentions(&e, &[name, "20", "26"]);
}

#[test]
fn integer_dtype_is_named() {
    for (name, dtype, width) in [
        ("blocks.0.norm1.weight", Dtype::I32, 4),
        ("pos_embed", Dtype::I64, 8),
        ("head.bias", Dtype::I64, 8),
    ] {
        let dir = broken_model("tiny-timm", |t| {
            let (_, shape, _) = t[name].clone();
            let n: usize = shape.iter().product();
            t.insert(name.into(), (dtype, shape, vec![0u8; n * width]));
        });
        let e = load_err(dir.path());
        let want = format!("{dtype:?}");
        assert!(
            matches!(&e, Error::TensorDtype { name: n, dtype: d, .. } if n == name && d == &want),
            "{e:?}"
        );
        assert_mentions(&e, &[name, &want, &model_file(&dir)]);
    }
    // F64 is a float, but not one we read.
    let name = "vit.layernorm.weight";
    let dir = broken_model("tiny-hf-vit", |t| {
        t.insert(name.into(), (Dtype::F64, vec![48], vec![0u8; 48 * 8]));
    });
    let e = load_err(dir.path());
    assert!(
        matches!(&e, Error::TensorDtype { name: n, .. } if n == name),
        "{e:?}"
    );
    assert_mentions(&e, &[name, "F64"]);
}

#[test]
fn unknown_layout() {
    let mut t = Tensors::new();
    t.insert(
        "encoder.conv1.weight".into(),
        (Dtype::F32, vec![4, 3], f32_bytes(vec![1.0; 12])),
    );
    t.insert(
        "decoder.fc.bias".into(),
        (Dtype::F32, vec![4], f32_bytes(vec![1.0; 4])),
    );
    let (_dir, path) = file_with(&serialize(&t), "resnet.safetensors");
    let e = load_err(&path);
    assert!(
        matches!(&e, Error::UnknownLayout { file, .. } if file == &path.display().to_string()),
        "{e:?}"
    );
    assert_mentions(&e, &["resnet.safetensors", "encoder.conv1.weight", "timm"]);

    // No tensors at all.
    let (_dir, path) = file_with(&serialize(&Tensors::new()), "nothing.safetensors");
    let e = load_err(&path);
    assert!(matches!(e, Error::UnknownLayout { .. }), "{e:?}");
    assert_mentions(&e, &["nothing.safetensors", "0 tensors"]);
}

/// Fixture `fixture` with one more f32 tensor `name` of `len` ones.
fn with_tensor_of_ones(fixture: &str, name: &str, len: usize) -> tempfile::TempDir {
    broken_model(fixture, |t| {
        t.insert(
            name.into(),
            (Dtype::F32, vec![len], f32_bytes(vec![1.0; len])),
        );
    })
}

#[test]
fn extra_tensors_are_named() {
    // A per-head query norm (timm's qk_norm) is not read.
    let name = "blocks.0.attn.q_norm.weight";
    let dir = with_tensor_of_ones("tiny-timm", name, 20);
    let e = load_err(dir.path());
    assert!(matches!(e, Error::UnknownLayout { .. }), "{e:?}");
    assert_mentions(&e, &[name, &model_file(&dir)]);

    // A LayerNorm after pooling (timm's fc_norm) beside the class token's head: not a
    // combination timm builds.
    let name = "fc_norm.weight";
    let dir = with_tensor_of_ones("tiny-timm", name, 40);
    let e = load_err(dir.path());
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert_mentions(&e, &[name, "class token"]);

    // Architectures known by a tensor: the message names the feature.
    for (name, feature) in [
        (
            "blocks.0.attn.relative_position_bias_table",
            "relative position biases",
        ),
        ("rope.freqs_cos", "rotary position embeddings"),
    ] {
        let dir = with_tensor_of_ones("tiny-timm", name, 40);
        let e = load_err(dir.path());
        assert!(matches!(e, Error::UnknownLayout { .. }), "{e:?}");
        assert_mentions(&e, &[name, feature, "not supported"]);
    }

    // Layer scale on one branch of a block but not the other: the missing one is named.
    let dir = with_tensor_of_ones("tiny-timm", "blocks.0.ls1.gamma", 40);
    let e = load_err(dir.path());
    assert!(matches!(e, Error::MissingTensor { .. }), "{e:?}");
    assert_mentions(&e, &["blocks.0.ls2.gamma"]);

    // fc_norm beside the class token's head, Hugging Face layout: named too.
    let name = "vit.fc_norm.weight";
    let dir = with_tensor_of_ones("tiny-hf-vit", name, 48);
    let e = load_err(dir.path());
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert_mentions(&e, &[name]);
}

#[test]
fn headless_checkpoint() {
    // A config that states classes, over weights without a head: the two disagree.
    let dir = broken_model("tiny-timm", |t| {
        t.remove("head.weight").unwrap();
        t.remove("head.bias").unwrap();
    });
    let e = load_err(dir.path());
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert_mentions(&e, &["num_classes", "head.weight", &model_file(&dir)]);

    // Without a classifier and no class count stated: a backbone, which embeds and refuses to
    // classify.
    let dir = broken_model("tiny-hf-vit", |t| {
        t.remove("classifier.weight").unwrap();
        t.remove("classifier.bias").unwrap();
    });
    let w = ModelWeights::load(dir.path()).unwrap();
    assert!(w.head.is_none() && w.config.num_classes == 0);
    let e = w.config.check_classifies("--model").unwrap_err();
    assert_mentions(&e, &["backbone", "zeroprune embed"]);

    // Only the distillation head left out: that tensor is missing.
    let dir = broken_model("tiny-timm-distilled", |t| {
        t.remove("head_dist.weight").unwrap();
        t.remove("head_dist.bias").unwrap();
    });
    let e = load_err(dir.path());
    assert!(
        matches!(&e, Error::MissingTensor { name, .. } if name.starts_with("head_dist.")),
        "{e:?}"
    );
    assert_mentions(&e, &["head_dist."]);
}

// ------------------------------------------------------------------------------------------------
// Config files.

/// A config error from `config.json` (or `what`) naming `parts`.
fn assert_config_err(dir: &TempDir, what: &str, parts: &[&str]) {
    let e = load_err(dir.path());
    assert!(
        matches!(&e, Error::Config { file, .. } if file.contains(what) && file.contains(&model_file(dir))),
        "{e:?}"
    );
    assert_mentions(&e, parts);
}

#[test]
fn timm_config_contradicting_the_weights() {
    let dir = with_json("tiny-timm", "config.json", |v| {
        v["model_args"]["embed_dim"] = json!(64)
    });
    assert_config_err(&dir, "config.json", &["embed_dim", "64", "40"]);
    let dir = with_json("tiny-timm", "config.json", |v| {
        v["model_args"]["depth"] = json!(3)
    });
    assert_config_err(&dir, "config.json", &["depth", "3", "2"]);
    let dir = with_json("tiny-timm", "config.json", |v| v["num_classes"] = json!(11));
    assert_config_err(&dir, "config.json", &["num_classes", "11", "10", "head"]);
    let dir = with_json("tiny-timm", "config.json", |v| {
        v["model_args"]["patch_size"] = json!(16)
    });
    assert_config_err(&dir, "config.json", &["patch_size", "16", "8"]);
    let dir = with_json("tiny-timm", "config.json", |v| {
        v["model_args"]["mlp_ratio"] = json!(4.0)
    });
    assert_config_err(&dir, "config.json", &["mlp_ratio", "160", "120"]);
    let dir = with_json("tiny-timm", "config.json", |v| {
        v["model_args"]["img_size"] = json!(48)
    });
    assert_config_err(&dir, "config.json", &["image size", "pos_embed"]);
    let dir = with_json("tiny-timm", "config.json", |v| {
        v["model_args"]["num_heads"] = json!(3)
    });
    assert_config_err(&dir, "config.json", &["embed_dim 40", "3 heads"]);
    let dir = with_json("tiny-timm", "config.json", |v| {
        v["global_pool"] = json!("max")
    });
    assert_config_err(&dir, "config.json", &["global_pool", "max"]);
}

#[test]
fn hf_config_contradicting_the_weights() {
    let dir = with_json("tiny-hf-vit", "config.json", |v| {
        v["hidden_size"] = json!(64)
    });
    assert_config_err(&dir, "config.json", &["hidden_size", "64", "48"]);
    let dir = with_json("tiny-hf-vit", "config.json", |v| {
        v["num_hidden_layers"] = json!(12)
    });
    assert_config_err(&dir, "config.json", &["num_hidden_layers", "12", "2"]);
    let dir = with_json("tiny-hf-deit-distilled", "config.json", |v| {
        v["intermediate_size"] = json!(128)
    });
    assert_config_err(&dir, "config.json", &["intermediate_size", "128", "64"]);
    let dir = with_json("tiny-hf-deit-distilled", "config.json", |v| {
        v["image_size"] = json!(224)
    });
    assert_config_err(&dir, "config.json", &["image size", "position_embeddings"]);
}

#[test]
fn invalid_json() {
    let dir = with_text(
        "tiny-timm",
        "config.json",
        "{ \"model_args\": { \"depth\": 2, ",
    );
    assert_config_err(&dir, "config.json", &["config.json"]);
    let dir = with_text("tiny-hf-vit", "config.json", "not json at all");
    assert_config_err(&dir, "config.json", &["config.json"]);
    let dir = with_text("tiny-hf-vit", "preprocessor_config.json", "{\"size\": }");
    assert_config_err(
        &dir,
        "preprocessor_config.json",
        &["preprocessor_config.json"],
    );
}

#[test]
fn crop_pct_out_of_range() {
    for crop in [json!(0.0), json!(0), json!(2.0), json!(-0.5)] {
        let dir = with_json("tiny-timm", "config.json", |v| {
            v["pretrained_cfg"]["crop_pct"] = crop.clone()
        });
        assert_config_err(&dir, "config.json", &["crop_pct"]);
    }
    // Hugging Face: a center crop larger than the resize.
    let dir = with_json("tiny-hf-vit", "preprocessor_config.json", |v| {
        v["crop_size"] = json!({"height": 40, "width": 40});
        v["do_center_crop"] = json!(true);
    });
    assert_config_err(&dir, "preprocessor_config.json", &["crop_size", "40"]);
}

#[test]
fn other_bad_preprocess_fields() {
    let dir = with_json("tiny-timm", "config.json", |v| {
        v["pretrained_cfg"]["interpolation"] = json!("hamming")
    });
    assert_config_err(&dir, "config.json", &["interpolation", "hamming"]);
    let dir = with_json("tiny-timm", "config.json", |v| {
        v["pretrained_cfg"]["mean"] = json!([0.5, 0.5])
    });
    assert_config_err(&dir, "config.json", &["mean"]);
    let dir = with_json("tiny-timm", "config.json", |v| {
        v["pretrained_cfg"]["crop_mode"] = json!("squash")
    });
    assert_config_err(&dir, "config.json", &["crop_mode", "squash"]);
    let dir = with_json("tiny-hf-vit", "preprocessor_config.json", |v| {
        v["image_std"] = json!("0.5")
    });
    assert_config_err(&dir, "preprocessor_config.json", &["image_std"]);
    let dir = with_json("tiny-hf-vit", "preprocessor_config.json", |v| {
        v["resample"] = json!(7)
    });
    assert_config_err(&dir, "preprocessor_config.json", &["resample", "7"]);
}

#[test]
fn hf_hidden_act_relu() {
    let dir = with_json("tiny-hf-vit", "config.json", |v| {
        v["hidden_act"] = json!("relu")
    });
    assert_config_err(&dir, "config.json", &["hidden_act", "relu"]);
    let dir = with_json("tiny-hf-deit-distilled", "config.json", |v| {
        v["hidden_act"] = json!("gelu_new")
    });
    assert_config_err(&dir, "config.json", &["hidden_act", "gelu_new"]);
}

// ------------------------------------------------------------------------------------------------
// Degenerate shapes and sizes: still an error, never a panic (index out of range, division by zero,
// overflow) nor an abort.

/// Edit `file` (JSON) of a model folder in place.
fn edit_json(dir: &TempDir, file: &str, edit: impl FnOnce(&mut Value)) {
    let path = dir.path().join(file);
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, v.to_string()).unwrap();
}

/// tiny-timm (with its config) with `name` replaced by zeros of `shape`.
fn reshaped(name: &str, shape: Vec<usize>) -> TempDir {
    broken_model("tiny-timm", |t| {
        let n: usize = shape.iter().product();
        t.insert(name.into(), (Dtype::F32, shape, f32_bytes(vec![0.0; n])));
    })
}

#[test]
fn scalar_head_weight_is_an_error() {
    let dir = reshaped("head.weight", vec![]);
    let e = load_err(dir.path());
    assert!(matches!(e, Error::TensorShape { .. }), "{e:?}");
    assert_mentions(&e, &["head.weight"]);
}

#[test]
fn scalar_fc1_weight_is_an_error() {
    let dir = reshaped("blocks.0.mlp.fc1.weight", vec![]);
    let e = load_err(dir.path());
    assert!(matches!(e, Error::TensorShape { .. }), "{e:?}");
    assert_mentions(&e, &["blocks.0.mlp.fc1.weight"]);
}

#[test]

fn zero_patch_size_is_an_error() {
    // A [D, 3, 0, 0] kernel and a config that does not state patch_size.
    let dir = reshaped("patch_embed.proj.weight", vec![40, 3, 0, 0]);
    edit_json(&dir, "config.json", |v| {
        v["model_args"]
            .as_object_mut()
            .unwrap()
            .remove("patch_size");
    });
    let e = load_err(dir.path());
    assert_mentions(&e, &["patch_embed.proj.weight"]);
}

#[test]
fn zero_input_channels_is_an_error() {
    let dir = reshaped("patch_embed.proj.weight", vec![40, 0, 8, 8]);
    let e = load_err(dir.path());
    assert_mentions(&e, &["patch_embed.proj.weight"]);
}

#[test]

fn block_index_usize_max_is_an_error() {
    let dir = broken_model("tiny-timm", |t| {
        t.insert(
            format!("blocks.{}.norm1.weight", usize::MAX),
            (Dtype::F32, vec![40], f32_bytes(vec![0.0; 40])),
        );
    });
    edit_json(&dir, "config.json", |v| {
        v["model_args"].as_object_mut().unwrap().remove("depth");
    });
    let e = load_err(dir.path());
    assert_mentions(&e, &["blocks."]);
}

#[test]
fn huge_block_index_is_an_error() {
    let dir = broken_model("tiny-timm", |t| {
        t.insert(
            "blocks.99999999999.norm1.weight".into(),
            (Dtype::F32, vec![40], f32_bytes(vec![0.0; 40])),
        );
    });
    edit_json(&dir, "config.json", |v| {
        v["model_args"].as_object_mut().unwrap().remove("depth");
    });
    let e = load_err(dir.path());
    assert_mentions(&e, &["blocks."]);
}

#[test]

fn huge_image_size_is_an_error() {
    let dir = with_json("tiny-timm", "config.json", |v| {
        v["model_args"]["img_size"] = json!(1u64 << 40)
    });
    assert_config_err(&dir, "config.json", &["image size"]);
}

#[test]

fn zero_std_is_an_error() {
    let dir = with_json("tiny-timm", "config.json", |v| {
        v["pretrained_cfg"]["std"] = json!([0.229, 0.0, 0.225])
    });
    assert_config_err(&dir, "config.json", &["std"]);
}

#[test]
fn non_numeric_mean_is_an_error() {
    let dir = with_json("tiny-timm", "config.json", |v| {
        v["pretrained_cfg"]["mean"] = json!([0.5, "x", 0.5, 0.5])
    });
    assert_config_err(&dir, "config.json", &["mean"]);
}

// ------------------------------------------------------------------------------------------------
// Running: inputs, batch sizes, adapters.

fn dense() -> zeroprune::prune::Pruning {
    zeroprune::prune::Pruning::dense()
}

fn tiny_session() -> Session {
    let weights = ModelWeights::load(&fixture("tiny-timm")).unwrap();
    Session::new(gpu(), &weights).unwrap()
}

#[test]
fn input_length_not_a_multiple_of_the_image() {
    let mut session = tiny_session();
    let per = session.image_len();
    assert_eq!(per, 3 * 40 * 40);
    for len in [1, per - 1, per + 1, 2 * per + 7] {
        let e = session.run(&vec![0.0; len], &dense()).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidParam { name, .. } if name == "images"),
            "{e:?}"
        );
        assert_mentions(&e, &["images", &per.to_string(), &len.to_string()]);
    }
    // The session still works after rejected inputs.
    assert_eq!(
        session.run(&vec![0.0; per], &dense()).unwrap().items.len(),
        1
    );
}

#[test]
fn empty_input() {
    let mut session = tiny_session();
    let e = session.run(&[], &dense()).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidParam { name, .. } if name == "images"),
        "{e:?}"
    );
    assert_mentions(&e, &["images", "got 0"]);
    let e = pollster::block_on(session.run_async(&[], &dense())).unwrap_err();
    assert!(matches!(e, Error::InvalidParam { .. }), "{e:?}");
}

#[test]
fn batch_larger_than_the_device_allows() {
    let mut session = tiny_session();
    let config = session.config().clone();
    let max = session.max_batch();
    let (max2, limiting) = Activations::max_batch(&config, gpu().max_binding_bytes());
    assert_eq!(max, max2);
    eprintln!(
        "max batch {max} (limited by the {limiting} buffer, {} byte bindings)",
        gpu().max_binding_bytes()
    );
    assert!(max >= 1);

    let huge = 10_000_000;
    assert!(huge > max);
    let e = match Activations::new(gpu(), &config, huge, zeroprune::gpu::kernel::Elem::F32) {
        Ok(_) => panic!("a batch of {huge} was allocated"),
        Err(e) => e,
    };
    match &e {
        Error::BatchTooLarge { batch, max: m, .. } => {
            assert_eq!(*batch, huge);
            assert_eq!(*m, max);
        }
        other => panic!("expected Error::BatchTooLarge, got {other:?}"),
    }
    assert_mentions(&e, &[&huge.to_string(), &max.to_string(), limiting]);

    // Absurd batches fail the same way, without overflow.
    let e = match Activations::new(
        gpu(),
        &config,
        usize::MAX,
        zeroprune::gpu::kernel::Elem::F32,
    ) {
        Ok(_) => panic!("a batch of usize::MAX was allocated"),
        Err(e) => e,
    };
    assert!(
        matches!(e, Error::BatchTooLarge { max: m, .. } if m == max),
        "{e:?}"
    );
    // Batch 0 is a parameter error.
    let e = match Activations::new(gpu(), &config, 0, zeroprune::gpu::kernel::Elem::F32) {
        Ok(_) => panic!("a batch of 0 was allocated"),
        Err(e) => e,
    };
    assert!(
        matches!(&e, Error::InvalidParam { name, .. } if name == "batch"),
        "{e:?}"
    );

    // Through Session::run, where max + 1 images are cheap to hold on the host (<= 256 MiB).
    let per = session.image_len();
    if (max + 1) * per * 4 <= 256 << 20 {
        let e = session
            .run(&vec![0.0; (max + 1) * per], &dense())
            .unwrap_err();
        assert!(
            matches!(e, Error::BatchTooLarge { batch, max: m, .. } if batch == max + 1 && m == max),
            "{e:?}"
        );
    } else {
        eprintln!(
            "skipped Session::run with {} images: too large for the host",
            max + 1
        );
    }
}

#[test]
fn unknown_adapter_name_lists_the_adapters() {
    let wanted = "no-such-adapter-xyz";
    let result = GpuContext::new_blocking(&AdapterChoice {
        backends: None,
        name: Some(wanted.into()),
    });
    let e = match result {
        Ok(g) => panic!("opened {} for {wanted:?}", g.describe()),
        Err(e) => e,
    };
    assert!(matches!(e, Error::NoAdapter(_)), "{e:?}");
    eprintln!("{e}");
    // The test device's own adapter is among those listed.
    let ours = gpu().info().name;
    assert_mentions(&e, &[wanted, "available", &ours]);
}
